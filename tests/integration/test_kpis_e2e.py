"""A fixed event file through a real broker and a real worker: every KPI on
/metrics equals the hand computation in tests/data/make_kpi_events.py; bad
input is dead-lettered with the reason, and the worker keeps going."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from stream_app.runtime import kafka_io
from stream_app.runtime.topics import bootstrap_servers
from tests.data.make_kpi_events import EXPECTED, events
from tests.integration.conftest import processed, replay, send, wait_for

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data"

BAD = [
    ("churn.usage", b"cus-x", b"{not json"),
    ("churn.usage", b"cus-x", b"[1, 2]"),
    ("churn.subscription", b"cus-x", json.dumps({"event_id": "x1", "customer_id": "cus-x", "type": "subscription_started", "ts": "2025-06-30T12:00:00Z", "plan": "pro", "mrr": -5}).encode()),
    ("churn.support", b"someone-else", json.dumps({"event_id": "x2", "customer_id": "cus-x", "type": "csat", "ts": "2025-06-30T12:00:00Z", "score": 3}).encode()),
    ("churn.usage", b"cus-x", json.dumps({"event_id": "x3", "customer_id": "cus-x", "type": "teleport", "ts": "2025-06-30T12:00:00Z"}).encode()),
]


async def _read_dlq(url: str, n: int, timeout: float = 30.0):
    """The dead letters once `n` are there, waiting for them at most `timeout` s."""
    return await kafka_io.read(bootstrap_servers(url), "churn.dlq", count=n, timeout_s=timeout)


def test_replayed_file_gives_the_hand_computed_kpis(broker, workers, app_id):
    done = replay(broker, DATA / "kpi_events.jsonl")
    assert done.returncode == 0, done.stderr
    assert f"replayed {len(events)} events" in done.stderr
    send(broker.url, BAD)

    w = workers(app_id)
    wait_for(lambda: processed(w.metrics()) >= len(events), 90, "all events processed", w)
    # the event-time clock reaches the file's last day on every partition (ticks)
    def settled():
        m = w.metrics()
        return all(m.get(k, 0.0) == v for k, v in EXPECTED.items()) and m
    try:
        m = wait_for(settled, 30, "KPIs to settle", w)
    except AssertionError:
        m = w.metrics()
        diff = {k: (m.get(k), v) for k, v in EXPECTED.items() if m.get(k, 0.0) != v}
        raise AssertionError(f"KPIs differ from the hand computation (got, expected): {diff}")
    assert processed(m) == len(events)
    assert m["churn_event_time_clock_seconds"] == pytest.approx(1751284800 - 3600)  # 2025-06-30T12:00Z less lateness

    # -- bad input: counted by reason, dead-lettered with the original bytes, the worker keeps going.
    # The bad messages were sent after the file: a partition may read them after
    # its KPIs settled (its other inputs are read first), so wait for all of them
    def all_rejected():
        got = {k: v for k, v in w.metrics().items() if k.startswith("churn_events_rejected_total")}
        return got if sum(got.values()) >= len(BAD) else None
    rejected = wait_for(all_rejected, 30, "every bad message to be dead-lettered", w)
    assert rejected == {
        'churn_events_rejected_total{reason="not_json",topic="churn.usage"}': 1,
        'churn_events_rejected_total{reason="not_object",topic="churn.usage"}': 1,
        'churn_events_rejected_total{reason="bad_value",topic="churn.subscription"}': 1,
        'churn_events_rejected_total{reason="key_mismatch",topic="churn.support"}': 1,
        'churn_events_rejected_total{reason="unknown_type",topic="churn.usage"}': 1,
    }
    dead = asyncio.run(_read_dlq(broker.url, len(BAD)))
    assert sorted(m.value for m in dead) == sorted(v for _, _, v in BAD)
    for msg in dead:
        headers = dict(msg.headers)
        assert headers["churnmon.error.reason"] in {b"not_json", b"not_object", b"bad_value", b"key_mismatch", b"unknown_type"}
        assert headers["churnmon.source.topic"].startswith(b"churn.")
        assert int(headers["churnmon.source.offset"]) >= 0
        assert headers["churnmon.error.detail"]
    bad_value = next(x for x in dead if dict(x.headers)["churnmon.error.reason"] == b"bad_value")
    assert b"mrr" in dict(bad_value.headers)["churnmon.error.detail"]

    # -- the lookup endpoint
    status, body = w.get("/customers/a010")
    assert status == 200
    c = json.loads(body)
    assert c["status"] == "cancelled" and c["churn_reason"] == "price" and c["churned_at"] == "2025-06-15T09:00:00Z"
    status, body = w.get("/customers/a035")
    assert json.loads(body)["cancelled_not_yet_churned"] is True
    status, body = w.get("/customers/nobody")
    assert status == 404 and "nobody" in json.loads(body)["error"]
