"""Each source system end to end: its records on its source topic, through a
real broker and a real worker (adapter agent -> input topics -> processor),
to figures on /metrics worked out by hand; what cannot be mapped lands on
churn.dlq with the source topic and a reason."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
import pytest
from prometheus_client import generate_latest

from stream_app.runtime.children import die_with_parent
from stream_app.config import Settings
from stream_app.tools.dlq import read
from stream_app.tools.harness import parse_metrics
from stream_app.runtime.metrics import Metrics
from stream_app.tools.simulator import Simulation, scenario
from stream_app.runtime.topics import bootstrap_servers, ensure_topics
from tests.data import stripe_story
from tests.data.stripe_shapes import BASIC, event, invoice, item, subscription, t
from tests.data import support_usage_stories as story
from tests.integration.conftest import REPO, ledger_gauges, lookup, send, wait_for
from tests.pure_pipeline import PurePipeline

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


def test_events_still_upstream_hold_the_clock_back(broker, workers, app_id):
    """A partition whose inputs are read to their end is moved to the worker's
    clock only once the source topics are mapped to their end too: its next
    events may still be waiting for the adapter. Here a payment fails, the
    adapter has 40,000 records to map before the invoice that pays it, and
    another customer's event is 40 days ahead: moved early, the customer would
    churn for the failed payment (14-day grace) before the payment is read."""
    topic = "churn.source.stripe"
    sub = subscription("sub_w1", "cus_waits", [item(BASIC)], created=t("2025-05-01T09:00"))
    failed = invoice("in_w1", "cus_waits", "sub_w1", 2000, paid=False, created=t("2025-05-02T09:00"))
    paid = invoice("in_w1", "cus_waits", "sub_w1", 2000, paid=True, created=t("2025-05-02T09:00"), attempt_count=2)
    waits = [event("evt_w_created", "customer.subscription.created", sub, t("2025-05-01T09:00")),
             event("evt_w_failed", "invoice.payment_failed", failed, t("2025-05-02T09:00"))]
    waits += [event(f"evt_w_nochange{i}", "customer.subscription.updated", sub, t("2025-05-02T10:00"), {}) for i in range(40_000)]
    waits += [event("evt_w_paid", "invoice.paid", paid, t("2025-05-04T09:00"))]
    ahead = event("evt_a_created", "customer.subscription.created",
                  subscription("sub_a1", "cus_ahead", [item(BASIC)], created=t("2025-06-10T09:00")), t("2025-06-10T09:00"))
    # all of it on the source topic before the worker starts: the adapter maps faster than a producer writes
    asyncio.run(ensure_topics(Settings(broker=broker.url, app_id=app_id), broker.url))
    send(broker.url, [(topic, b"cus_waits", orjson.dumps(e)) for e in waits] + [(topic, b"cus_ahead", orjson.dumps(ahead))], batched=True)
    w = workers(app_id, CHURNMON_IDLE_PARTITION_S="1")  # moved after 1 s idle: the adapter needs longer for the backlog
    wait_for(lambda: w.metrics().get('churn_source_records_total{outcome="ignored",source="stripe"}') == 40_000, 240,
             "the adapter to map the backlog", w)
    clock = t("2025-06-10T09:00") - 3600
    wait_for(lambda: w.metrics().get("churn_event_time_clock_seconds") == clock, 60, "the worker's clock at the newest event", w)
    got = wait_for(lambda: (c := lookup(w, "cus_waits")) and c.get("failed_payments") == 0 and c, 60,
                   "the invoice paid after the backlog", w)
    assert (got["status"], got["churn_reason"], got["mrr"]) == ("active", None, 20.0), got


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


def _exported(values: dict, clock: float) -> dict[str, float]:
    """Ledger values as the worker's own exporter writes them on /metrics."""
    m = Metrics()
    m.watch_ledgers(lambda: (values, clock, 1, None))
    return parse_metrics(generate_latest(m.registry).decode())


def test_a_simulated_population_through_all_three_adapters(broker, workers, app_id, tmp_path):
    """`simulate --format stripe|segment|zendesk --broker` into the source topics: the
    worker's figures equal the simulator's own events run through the processor in
    process. Only figures the formats carry in full are compared (not the risk
    gauges: Zendesk's two-point CSAT and its missing NPS move scores)."""
    args = ["--customers", "60", "--days", "90", "--seed", "11"]
    pipe = PurePipeline(caught_up=True)
    for ev in Simulation(scenario("default", customers=60, days=90, seed=11)).events():
        pipe.feed(ev)
    pipe.finish()
    expected = ledger_gauges(_exported(pipe.values(), pipe.book.clock))
    assert expected['churn_window_customers_start{window="30d"}'] > 0 and expected["churn_users_monthly_active"] > 0

    w = workers(app_id)
    for fmt in ("stripe", "segment", "zendesk"):
        done = subprocess.run([sys.executable, "-m", "stream_app", "simulate", *args, "--format", fmt, "--broker", broker.url],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, **die_with_parent())
        assert done.returncode == 0 and f"{fmt} records to churn.source.{fmt}" in done.stderr, done.stderr
    settle(w, expected, "the simulated population's figures")
    assert w.metrics().get('churn_source_records_total{outcome="dead_lettered",source="stripe"}', 0.0) == 0
