"""Each source system end to end: its records on its source topic, through a
real broker and a real worker (adapter agent -> input topics -> processor),
to figures on /metrics worked out by hand; what cannot be mapped lands on
churn.dlq with the source topic and a reason."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from stream_app.dead_letters import read
from stream_app.topics import bootstrap_servers
from tests.data import stripe_story
from tests.data import support_usage_stories as story
from tests.integration.conftest import lookup, send, wait_for

pytestmark = pytest.mark.integration


def settle(w, expected: dict, what: str) -> dict:
    """Wait until every expected figure is on /metrics; fail naming those that differ."""
    def settled():
        m = w.metrics()
        return all(m.get(k, 0.0) == v for k, v in expected.items()) and m
    try:
        return wait_for(settled, 90, what, w)
    except AssertionError:
        m = w.metrics()
        diff = {k: (m.get(k), v) for k, v in expected.items() if m.get(k, 0.0) != v}
        raise AssertionError(f"{what}: figures differ from the hand computation (got, expected): {diff}") from None


def dead_letters(url: str, n: int, w) -> list:
    return wait_for(lambda: (d := asyncio.run(read(bootstrap_servers(url)))) and len(d) >= n and d, 60,
                    f"{n} records on churn.dlq", w)


def test_stripe_events_give_the_hand_computed_figures(broker, workers, app_id):
    w = workers(app_id)
    topic = "churn.source.stripe"
    send(broker.url, [(topic, cid.encode(), orjson.dumps(evt)) for cid, evt in stripe_story.records])
    # Stripe delivers at least once: an event again, later; and two records that cannot be mapped
    cid, evt = stripe_story.REDELIVERED
    send(broker.url, [(topic, cid.encode(), orjson.dumps(evt))] + [(topic, c.encode(), orjson.dumps(e)) for c, e in stripe_story.BAD])

    m = settle(w, stripe_story.EXPECTED, "the Stripe story's figures")
    assert m["churn_event_time_clock_seconds"] == pytest.approx(1751284800 - 3600)  # 2025-06-30T12:00Z less lateness

    letters = dead_letters(broker.url, len(stripe_story.BAD), w)
    assert sorted((d.reason, d.source_topic) for d in letters) == [("unmappable", topic), ("unsupported_event", topic)]
    assert {orjson.loads(d.value)["id"] for d in letters} == {e["id"] for _, e in stripe_story.BAD}  # the source bytes, as sent
    assert m[f'churn_events_rejected_total{{reason="unsupported_event",topic="{topic}"}}'] == 1

    cape = lookup(w, "cus_cape")
    assert cape["cancelled_not_yet_churned"] is True and cape["mrr"] == 100.0
    gone = lookup(w, "cus_involuntary")
    assert (gone["status"], gone["churn_reason"]) == ("cancelled", "payment")
    assert lookup(w, "cus_stays")["cancelled_not_yet_churned"] is False


def test_segment_calls_give_the_hand_computed_usage(broker, workers, app_id):
    w = workers(app_id)
    topic = "churn.source.segment"
    key = lambda call: (call.get("context", {}).get("groupId") or call.get("userId") or "none").encode()  # noqa: E731
    send(broker.url, [(topic, key(c), orjson.dumps(c)) for c in story.SEGMENT + [story.SEGMENT_REDELIVERED] + story.SEGMENT_BAD])
    settle(w, story.SEGMENT_EXPECTED, "the Segment story's figures")
    letters = dead_letters(broker.url, len(story.SEGMENT_BAD), w)
    assert sorted(d.reason for d in letters) == ["unmappable", "unmappable", "unsupported_event"]
    assert {d.source_topic for d in letters} == {topic}
    acme = lookup(w, "acme")
    assert (acme["features"], acme["usage_30d"]) == (["export", "Dashboard Filtered"], 4)
    assert lookup(w, "globex")["purchases"] == 1


def test_zendesk_webhooks_give_the_hand_computed_tickets(broker, workers, app_id):
    w = workers(app_id)
    topic = "churn.source.zendesk"
    hooks = story.ZENDESK + [story.ZENDESK_REDELIVERED] + story.ZENDESK_BAD
    send(broker.url, [(topic, (h["detail"]["organization_id"] or "none").encode(), orjson.dumps(h)) for h in hooks])
    settle(w, story.ZENDESK_EXPECTED, "the Zendesk story's figures")
    letters = dead_letters(broker.url, len(story.ZENDESK_BAD), w)
    assert sorted((d.reason, d.source_topic) for d in letters) == [("unmappable", topic), ("unsupported_event", topic)]
    for org, want in story.ZENDESK_CUSTOMERS.items():
        got = wait_for(lambda: (c := lookup(w, org)) and {k: c[k] for k in want} == want and c, 30, f"organisation {org}", w)
        assert {k: got[k] for k in want} == want
