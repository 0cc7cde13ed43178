"""The lookup endpoint's guards, on real workers: with no token it serves
state on loopback only, never the raw table value; with a token every
lookup, raw or not, needs it; a worker that would serve it on a reachable
address without a token refuses to start unless told `--lookup-insecure`.
And a purchase of amount 0 is a purchase, end to end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import orjson
import pytest

from stream_app.tools.broker import free_port
from stream_app.runtime.children import die_with_parent
from stream_app.tools.dlq import read
from stream_app.runtime.topics import bootstrap_servers
from tests.integration.conftest import REPO, lookup, processed, send, wait_for

pytestmark = pytest.mark.integration


def purchase(eid: str, cid: str, ts: str, amount: float) -> tuple[str, bytes, bytes]:
    ev = {"event_id": eid, "customer_id": cid, "type": "purchase", "ts": ts, "amount": amount}
    return "churn.usage", cid.encode(), orjson.dumps(ev)


def test_free_purchases_count_and_refunds_are_dead_lettered(broker, workers, app_id):
    w = workers(app_id)  # creates the topics
    send(broker.url, [
        purchase("p1", "cus-free", "2025-03-01T10:00:00Z", 20.0),
        purchase("p2", "cus-free", "2025-04-01T10:00:00Z", 0),  # a free item: a purchase, and activity
        purchase("p3", "cus-refund", "2025-04-01T11:00:00Z", -5.0),  # refunds are not in the contract yet
    ])
    wait_for(lambda: processed(w.metrics()) == 2 and w.metrics().get('churn_events_rejected_total{reason="bad_value",topic="churn.usage"}') == 1,
             60, "two purchases applied and the refund dead-lettered", w)
    free = lookup(w, "cus-free")
    assert (free["status"], free["purchases"], free["purchase_amount"]) == ("active", 2, 20.0)
    assert free["last_purchase_at"] == free["last_activity_at"] == "2025-04-01T10:00:00Z"
    (letter,) = asyncio.run(read(bootstrap_servers(broker.url)))
    assert letter.reason == "bad_value" and "data.amount" in letter.detail and json.loads(letter.value)["event_id"] == "p3"


def test_lookup_guards(broker, workers, app_id):
    # no token (loopback, the default): state is served, the raw table value is not
    open_worker = workers(app_id, CHURNMON_LOOKUP_TOKEN="")
    send(broker.url, [purchase("p1", "cus-1", "2025-03-01T10:00:00Z", 20.0)])
    wait_for(lambda: open_worker.get("/customers/cus-1")[0] == 200, 60, "the customer", open_worker)
    status, body = open_worker.get("/customers/cus-1?raw=1")
    assert status == 403 and b"raw" in body
    open_worker.stop()

    # a token: every lookup needs it, raw included; compared in constant time (security.bearer_ok)
    guarded = workers(app_id)
    wait_for(lambda: guarded.get("/customers/cus-1")[0] == 200, 60, "the customer", guarded)
    status, raw = guarded.get("/customers/cus-1?raw=1")
    assert status == 200 and json.loads(raw)["customer_id"] == "cus-1"
    for token in (None, "wrong", guarded.token[:-1]):
        assert guarded.get("/customers/cus-1?raw=1", token=token)[0] == 401
        assert guarded.get("/customers/cus-1", token=token)[0] == 401
    assert guarded.get("/metrics", token=None)[0] == 200  # Prometheus needs no token
    guarded.stop()

    # a reachable address without a token: refused, one line, exit 2; nothing is served
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNMON_")}
    refused = subprocess.run([sys.executable, "-m", "stream_app", "worker", "--broker", broker.url, "--web-bind", "0.0.0.0",
                              "--web-port", str(port)], env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                             timeout=60, **die_with_parent())
    assert refused.returncode == 2 and "without a token" in refused.stderr and "--lookup-insecure" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    # ... unless the operator says so explicitly
    insecure = workers(app_id, "--web-bind", "0.0.0.0", "--lookup-insecure", CHURNMON_LOOKUP_TOKEN="")
    wait_for(lambda: insecure.get("/customers/cus-1")[0] == 200, 60, "the customer, served without a token", insecure)
    assert insecure.get("/customers/cus-1?raw=1")[0] == 403
