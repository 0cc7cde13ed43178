"""`simulate --format`: the simulator's population rendered as Stripe, Segment
and Zendesk publish it, and read back by the adapters, gives back what the
simulator said, except where the source system cannot say as much
(stream_app/tools/source_formats.py lists those)."""

from __future__ import annotations

import orjson
import pytest

from stream_app.ingest.contract import Rejection, topic_for_type
from stream_app.tools.simulator import Simulation, scenario
from stream_app.tools.source_formats import render
from stream_app.ingest.sources import SOURCES, run
from tests.pure_pipeline import PurePipeline

EVENTS = list(Simulation(scenario("default", customers=150, days=150, seed=7)).events())


def of(topic: str) -> list[dict]:
    return [e for e in EVENTS if topic_for_type(e["type"]) == topic]


def read_back(fmt: str, events: list[dict]) -> list[dict]:
    source = SOURCES[fmt]
    config = source.config(__import__("stream_app.config", fromlist=["Settings"]).Settings())
    out = []
    for key, record in render(fmt, events):
        got = run(source, orjson.dumps(record), config, 65536)
        assert not isinstance(got, Rejection), (record, got)
        assert all(ev["customer_id"] == key for ev in got.events)
        out.extend(got.events)
    return out


def fields(ev: dict, *names: str) -> tuple:
    return tuple(ev.get(n) for n in ("event_id", "customer_id", "type", "ts", *names))


def test_segment_round_trip():
    originals = of("churn.usage")
    back = read_back("segment", originals)
    assert [fields(e, "feature", "amount") for e in back] == [fields(e, "feature", "amount") for e in originals]


def test_zendesk_round_trip():
    originals = [e for e in of("churn.support") if e["type"] != "nps"]  # Zendesk has no NPS
    back = read_back("zendesk", originals)
    two_point = [{**e, "score": 5 if e["score"] >= 4 else 1} if e["type"] == "csat" else e for e in originals]
    keys = ("ticket_id", "priority", "category", "score")
    assert [fields(e, *keys) for e in back] == [fields(e, *keys) for e in two_point]


def figures(events: list[dict]) -> dict:
    pipe = PurePipeline(caught_up=True)
    for ev in sorted(events, key=lambda e: e["ts"]):
        pipe.feed(ev)
    pipe.finish()
    return {k: v for k, v in pipe.values().items() if k[0] not in ("at_risk", "at_risk_mrr", "expected_loss")}


def test_stripe_round_trip_gives_the_same_mrr_customers_and_movements():
    originals = of("churn.subscription")
    back = read_back("stripe", originals)
    assert len({e["customer_id"] for e in back}) == len({e["customer_id"] for e in originals})
    want, got = figures(originals), figures(back)
    assert got == want
    assert sum(v for k, v in want.items() if k[0] == "mrr") > 0 and want[("lost", 30)] > 0  # the population has both


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="format must be one of"):
        list(render("hubspot", []))
