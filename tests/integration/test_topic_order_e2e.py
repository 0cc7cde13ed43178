"""A customer's usage topic read weeks of event time ahead of their
subscription topic, through a real broker and a real worker: the state must
be what reading in event-time order gives.

Kafka orders a partition's messages within a topic, not across topics, so a
worker may read a purchase before the trial that came three weeks earlier
(seen in the scale-out test, where cus_000034 kept `trial_start_t` None on
the scaled workers and not on the single one). Here the order is forced: the
purchase is produced and processed first, the subscription events after it.
"""

from __future__ import annotations

import json

import orjson
import pytest

from stream_app.ingest.contract import decode, topic_for_type
from stream_app.domain.state import Rules, apply, new_state
from stream_app.runtime.views import raw_view
from tests.integration.conftest import processed, send, wait_for

pytestmark = pytest.mark.integration

CID = "cus_000034"
# cus_000034's own events in the scale-out test's history (seed 11)
TRIAL = {"event_id": "11-353", "customer_id": CID, "type": "trial_started", "ts": "2025-01-01T11:47:04Z", "plan": "business"}
CONVERTED = {"event_id": "11-5195", "customer_id": CID, "type": "trial_converted", "ts": "2025-01-15T11:47:04Z", "plan": "business", "mrr": 299.0}
PURCHASE = {"event_id": "11-7575", "customer_id": CID, "type": "purchase", "ts": "2025-01-22T11:36:54Z", "amount": 19.0}

FIELDS = ("status", "contractual", "plan", "mrr", "trial_start_t", "started_t", "spell_start_t", "first_seen_t",
          "mrr_changes", "spells", "purchases", "first_purchase_t")


def _message(ev: dict) -> tuple[str, bytes, bytes]:
    return topic_for_type(ev["type"]), CID.encode(), orjson.dumps(ev)


def _in_event_time_order() -> dict:
    st = new_state(CID)
    for ev in (TRIAL, CONVERTED, PURCHASE):
        topic, key, raw = _message(ev)
        st, _ = apply(st, decode(topic, key, raw, now=4e9), Rules())
    return orjson.loads(raw_view(st))  # the lookup's ?raw=1 form


def test_a_purchase_read_before_an_earlier_trial_gives_the_in_order_state(broker, workers, app_id):
    w = workers(app_id)
    send(broker.url, [_message(PURCHASE)])
    wait_for(lambda: processed(w.metrics()) >= 1, 60, "the purchase to be processed", w)
    send(broker.url, [_message(TRIAL), _message(CONVERTED)])
    wait_for(lambda: processed(w.metrics()) >= 3, 60, "the trial and its conversion to be processed", w)

    status, body = w.get(f"/customers/{CID}?raw=1")
    assert status == 200, body[:200]
    got, want = json.loads(body), _in_event_time_order()
    assert want["trial_start_t"] is not None
    assert {k: got[k] for k in FIELDS} == {k: want[k] for k in FIELDS}
