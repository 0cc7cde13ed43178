"""The clock topic is a trust boundary: ticks that are not objects, carry no
number, lie far in the future, or claim a time the input events do not allow
(the wall clock, a year ahead of a replayed history) are dead-lettered or
capped. A worker fed such ticks, mid-stream and after, ends with every figure
and every customer equal to a clean run of the same events."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from stream_app.runtime import kafka_io
from stream_app.tools.broker import EmbeddedBroker, free_port
from stream_app.tools.dlq import read
from stream_app.runtime.topics import bootstrap_servers
from tests.integration.conftest import WorkerFactory, equal_figures, lookup, processed, replay, simulate, wait_for

pytestmark = pytest.mark.integration

CUSTOMERS, DAYS, SEED = 150, 120, 3
PARTITIONS = 8


def poison() -> list[tuple[bytes, str | None]]:
    """(tick payload, the reason it is dead-lettered; None = valid but capped)."""
    now = time.time()
    return [
        (orjson.dumps({"t": now}), None),  # the wall clock: months past the replayed events
        (orjson.dumps({"t": now + 3600}), None),
        (b'{"t": 1e300}', "future_timestamp"),
        (b"[1, 2]", "not_object"),  # crashed on_tick before (AttributeError)
        (b"tick", "not_json"),
        (b'{"t": "2030-01-01T00:00:00Z"}', "wrong_type"),
        (b'{"t": true}', "wrong_type"),
        (b"{}", "missing_field"),
        (b'{"t": -1}', "ancient_timestamp"),
    ]


async def _send_ticks(url: str, topic: str, payloads: list[bytes]) -> None:
    await kafka_io.send(bootstrap_servers(url), [(topic, None, value, partition) for partition in range(PARTITIONS) for value in payloads])


def rejected_ticks(w, topic: str) -> dict[str, float]:
    return {k.split('reason="')[1].split('"')[0]: v for k, v in w.metrics().items()
            if k.startswith("churn_events_rejected_total") and f'topic="{topic}"' in k}


def test_poisoned_ticks_leave_every_figure_equal_to_a_clean_run(broker, workers, app_id, tmp_path):
    path = tmp_path / "sim.jsonl"
    n_events = simulate(path, CUSTOMERS, DAYS, SEED)
    assert replay(broker, path).returncode == 0
    clean_broker = EmbeddedBroker(port=free_port()).start()
    (tmp_path / "clean").mkdir()
    clean_workers = WorkerFactory(clean_broker, tmp_path / "clean")
    try:
        assert replay(clean_broker, path).returncode == 0
        clean = clean_workers(app_id)
        poisoned = workers(app_id)
        clock_topic = f"{app_id}-clock"
        payloads = poison()
        bad = [p for p, reason in payloads if reason]

        # mid-stream, while partitions still have a backlog ...
        wait_for(lambda: processed(poisoned.metrics()) >= n_events // 4, 180, "a quarter of the events", poisoned)
        asyncio.run(_send_ticks(broker.url, clock_topic, [p for p, _ in payloads]))
        wait_for(lambda: processed(poisoned.metrics()) >= n_events, 300, "every event (poisoned run)", poisoned, every=1)
        wait_for(lambda: processed(clean.metrics()) >= n_events, 300, "every event (clean run)", clean, every=1)
        # ... and once everything is read
        asyncio.run(_send_ticks(broker.url, clock_topic, [p for p, _ in payloads]))

        expected = {}
        for _, reason in payloads:
            if reason:
                expected[reason] = expected.get(reason, 0) + 2 * PARTITIONS
        wait_for(lambda: rejected_ticks(poisoned, clock_topic) == expected, 60, "every bad tick dead-lettered", poisoned)
        assert poisoned.proc.poll() is None

        final = equal_figures(clean, poisoned, 120, "the poisoned run's figures to equal the clean run's")
        assert final['churn_window_customers_start{window="30d"}'] > 20
        # the clock: the events' last day less the lateness, not the wall clock
        clocks = [w.metrics()["churn_event_time_clock_seconds"] for w in (clean, poisoned)]
        assert clocks[0] == clocks[1] < time.time() - 86400 * 30, clocks
        ids = [f"cus_{i:06d}" for i in range(CUSTOMERS)]
        differ = [cid for cid in ids if lookup(clean, cid)["fingerprint"] != lookup(poisoned, cid)["fingerprint"]]
        assert not differ, f"{len(differ)} customers differ, e.g. {differ[:5]}"

        # the dead-lettered ticks kept their bytes and say why and where from
        letters = [d for d in asyncio.run(read(bootstrap_servers(broker.url))) if d.source_topic == clock_topic]
        assert len(letters) == 2 * PARTITIONS * len(bad)
        assert {d.value for d in letters} == set(bad)
        assert sorted({d.reason for d in letters}) == sorted(expected)
    finally:
        for w in clean_workers.started:
            w.stop()
        clean_broker.stop()
