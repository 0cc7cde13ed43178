"""Committed offsets keep up with what was processed, also after a crash.

A worker restarted after SIGKILL used to leave the group's committed offsets
near where it restarted (Faust counted offsets it had filled in as a gap and
then saw acked: stream_app/runtime/offsets.py), so every later restart replayed the
whole backlog. Here a worker is killed mid-stream, its successor processes
everything, stops cleanly, and the group's committed offset of every input
partition must then be its high-water mark: a next start has nothing to redo.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from aiokafka import TopicPartition

from stream_app.runtime import kafka_io
from stream_app.runtime.topics import INPUT_TOPICS, bootstrap_servers
from tests.integration.conftest import processed, replay, simulate, wait_for

pytestmark = pytest.mark.integration


async def committed(url: str, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
    async with kafka_io.consumer(bootstrap_servers(url), group_id=group) as consumer:
        return {tp: await consumer.committed(TopicPartition(*tp)) for tp in tps}


def settled(worker, quiet_s: float = 8.0) -> bool:
    """Nothing processed for `quiet_s`: the backlog is done (the clock ticks are not counted)."""
    before = processed(worker.metrics())
    time.sleep(quiet_s)
    return processed(worker.metrics()) == before


def test_offsets_committed_to_the_end_after_a_crash_and_a_clean_stop(broker, workers, app_id, tmp_path):
    path = tmp_path / "sim.jsonl"
    simulate(path, 200, 80, 3)
    assert replay(broker, path).returncode == 0

    first = workers(app_id)
    wait_for(lambda: processed(first.metrics()) >= 4000, 180, "4,000 events processed", first)
    first.stop(signal.SIGKILL)

    second = workers(app_id)
    wait_for(lambda: processed(second.metrics()) > 0 and settled(second), 300, "the backlog processed", second)
    health = json.loads(second.get("/healthz")[1])
    parts = health["partitions"]
    highwaters = {(t, int(p)): v["highwaters"][t] for p, v in parts.items() for t in INPUT_TOPICS}
    assert len(highwaters) == 3 * 8 and all(h is not None for h in highwaters.values()), parts
    # the consumer's own account of the same partitions: fetched, not paused, read to the end
    consumer = health["consumer"]
    assert consumer["flow_control_active"] and consumer["fetch_flow_active"] and not consumer["rebalancing"], consumer
    fetch = {(name.split("[")[0], int(name.split("[")[1][:-1])): v for name, v in consumer["partitions"].items()}
    assert set(fetch) == set(highwaters), sorted(fetch)
    unread = {tp: v for tp, v in fetch.items()
              if not v["active"] or v["paused"] or v["read_offset"] != highwaters[tp] - 1 or v["aiokafka"]["position"] != highwaters[tp]}
    assert not unread, f"partitions the consumer does not show read to the end: {unread}"
    second.stop(signal.SIGTERM)
    assert second.proc.returncode == 0, second.log.read_text()[-2000:]

    got = asyncio.run(committed(broker.url, app_id, sorted(highwaters)))
    behind = {tp: (got[tp], hw) for tp, hw in highwaters.items() if got[tp] != hw}
    assert not behind, f"committed offset differs from the high-water mark (committed, high-water): {behind}"
