"""No customer id or free text ever becomes a metric label.

A stream of thousands of customers, each on a plan name of its own (plans are
the business's own strings) and churning for every reason, must leave the
number of exported series bounded by the label sets in metrics.REFERENCE,
not by the number of customers or plan names.
"""

from __future__ import annotations

import re

from prometheus_client import generate_latest

from stream_app.runtime.metrics import Metrics
from stream_app.domain.state import Churn, Effects, Movement
from tests.pure_pipeline import PurePipeline

CUSTOMERS = 3000


def events(i: int) -> list[dict]:
    cid = f"cus-{i:05d}@example.com"  # an id that looks like personal data: it must never surface
    plan = f"p{i}" if i % 2 else f"plan for {cid} #{i}"  # codes, and free text
    day = f"2025-01-{1 + i % 28:02d}"
    return [
        {"event_id": f"s{i}", "customer_id": cid, "type": "subscription_started", "ts": f"{day}T00:00:00Z", "plan": plan, "mrr": 10.0 + i % 7},
        {"event_id": f"u{i}", "customer_id": cid, "type": "session", "ts": f"{day}T01:00:00Z"},
        {"event_id": f"t{i}", "customer_id": cid, "type": "ticket_opened", "ts": f"{day}T02:00:00Z", "ticket_id": f"tk{i}", "priority": "urgent", "category": "bug"},
    ]


def test_series_stay_bounded_whatever_the_customers_and_plans():
    pipe = PurePipeline()
    metrics = Metrics()
    metrics.watch_ledgers(lambda: (pipe.values(), pipe.book.clock, 1, pipe.book.max_event_t))
    for i in range(CUSTOMERS):
        for ev in events(i):
            pipe.feed(ev)
        metrics.record("churn.subscription", Effects((Movement("new", 10.0),)))
        metrics.record_churn(Churn("voluntary", "price", events(i)[0]["plan"], 10.0, float(i % 400), 0.0))
    pipe.finish()
    text = generate_latest(metrics.registry).decode()
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]

    assert "@example.com" not in text and "cus-" not in text
    plans = set(re.findall(r'plan="([^"]*)"', text))
    # 1,500 plan codes seen: exactly the first `limit` of them, plus "other"
    assert len(plans) == metrics.plan.limit + 1, len(plans)
    assert "other" in plans
    # bounded: far fewer series than customers, whatever the traffic
    assert len(samples) < 1200, len(samples)
    for line in samples:
        for value in re.findall(r'="([^"]*)"', line):
            assert len(value) <= 64, line
