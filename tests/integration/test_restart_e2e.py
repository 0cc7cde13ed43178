"""Crashes: a worker SIGKILLed at random points (no goodbye, no final commit),
again and again, ends with every figure and every customer equal to a worker
that never crashed; its trainer resumes from the newest model snapshot each
time and never publishes a version twice. SIGTERM is a clean stop: offsets
committed and state flushed, so a restart after it redelivers nothing.

The never-crashed reference runs on a broker of its own: churn.training and
churn.models are shared by every app on a cluster, and two trainers on one
broker would learn each other's examples.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal

import pytest

from stream_app.tools.broker import EmbeddedBroker, free_port
from stream_app.risk.snapshots import decode
from stream_app.runtime.topics import MODELS, TRAINING
from tests.integration.conftest import (
    WorkerFactory, equal_figures, ledger_gauges, lookup, processed, read_all, replay, simulate, state_differences, summed,
    wait_for,
)

pytestmark = pytest.mark.integration

CUSTOMERS, DAYS, SEED = 300, 100, 7
KILLS = 4
TRAINING_ENV = {"CHURNMON_MIN_LABELS": "200", "CHURNMON_PUBLISH_EVERY": "100"}


def snapshots(url: str) -> list[tuple[int, int, int]]:
    """(version, training_offset, labels learnt) of every model snapshot published, in order."""
    return [(s.model.version, s.training_offset, s.model.labels_seen)
            for s in (decode(m.value) for m in read_all(url, MODELS))]


def test_random_sigkills_lose_nothing_and_sigterm_is_clean(broker, workers, app_id, tmp_path):
    path = tmp_path / "sim.jsonl"
    n_events = simulate(path, CUSTOMERS, DAYS, SEED)
    assert replay(broker, path).returncode == 0

    ref_broker = EmbeddedBroker(port=free_port()).start()
    ref_workers = WorkerFactory(ref_broker, tmp_path / "ref")
    (tmp_path / "ref").mkdir()
    try:
        assert replay(ref_broker, path).returncode == 0
        reference = ref_workers(app_id, **TRAINING_ENV)

        # kill points: after a random number of events processed by each incarnation;
        # one kill lands while the worker is still recovering its tables
        rng = random.Random(SEED)
        points = [rng.randint(2_000, 9_000) for _ in range(KILLS - 1)] + [0]
        rng.shuffle(points)
        versions_before_kill = []
        for i, point in enumerate(points):
            crashy = workers(app_id, **TRAINING_ENV)
            if point:
                wait_for(lambda: processed(crashy.metrics()) >= point, 180, f"incarnation {i} to process {point} events", crashy)
            versions_before_kill.append(crashy.metrics().get("churn_model_version", 0))
            assert "Traceback" not in crashy.log.read_text(), crashy.log.read_text()[-3000:]
            crashy.stop(signal.SIGKILL)
        crashy = workers(app_id, **TRAINING_ENV)

        wait_for(lambda: processed(reference.metrics()) >= n_events, 300, "the reference worker to finish", reference)

        final = equal_figures(reference, crashy, 300, f"the crashed worker to catch up after {KILLS} kills")
        assert final['churn_window_customers_start{window="30d"}'] > 100

        # every customer: the same fingerprint of what the events decided
        ids = [f"cus_{i:06d}" for i in range(CUSTOMERS)]
        pairs = {cid: (lookup(reference, cid), lookup(crashy, cid)) for cid in ids}
        mismatched = {cid: state_differences(reference, crashy, cid) for cid, (a, b) in pairs.items() if a["fingerprint"] != b["fingerprint"]}
        assert not mismatched, f"{len(mismatched)} customers differ, e.g. {dict(list(mismatched.items())[:5])}"

        # the trainer: versions strictly increase across all the kills, each
        # restart resumed from the newest snapshot, and the last one has learnt
        # every example that was published to churn.training
        def trained_to_the_end():
            snaps = snapshots(broker.url)
            n_train = len(read_all(broker.url, TRAINING))
            return snaps and snaps[-1][1] == n_train - 1 and (snaps, n_train)
        snaps, n_train = wait_for(trained_to_the_end, 120, "the trainer to learn every example", crashy)
        versions = [v for v, _, _ in snaps]
        assert versions == sorted(set(versions)), versions
        assert [o for _, o, _ in snaps] == sorted(o for _, o, _ in snaps)
        # each snapshot learnt every example up to its offset exactly once: a
        # restart resumes from the newest snapshot's offset, not from scratch
        assert all(seen == offset + 1 for _, offset, seen in snaps), snaps
        assert max(versions_before_kill) <= versions[-1]
        assert wait_for(lambda: crashy.metrics().get("churn_model_version") == versions[-1], 30, "the scorer to hot-swap the newest", crashy)
        def examples(url):
            msgs = read_all(url, TRAINING)
            return len(msgs), len({(e["customer_id"], e["snapshot_t"]) for e in map(lambda m: json.loads(m.value), msgs)})
        (crash_n, crash_distinct), (ref_n, ref_distinct) = examples(broker.url), examples(ref_broker.url)
        print(f"crash test: {n_events} events, {KILLS} SIGKILLs at {points}; examples on churn.training: crashed run "
              f"{crash_n} ({crash_distinct} distinct), reference {ref_n} ({ref_distinct} distinct); {len(snaps)} snapshots")

        # SIGTERM: a clean stop commits what it processed; the next start redelivers nothing
        crashy.stop(signal.SIGTERM)
        assert crashy.proc.returncode == 0, crashy.log.read_text()[-2000:]
        again = workers(app_id, **TRAINING_ENV)
        wait_for(lambda: summed(ledger_gauges(again.metrics())) == final, 120, "the restarted worker's figures", again)
        assert processed(again.metrics()) == 0
        assert not any(v for k, v in again.metrics().items() if k.startswith("churn_events_duplicate_total"))
    finally:
        for w in ref_workers.started:
            w.stop()
        ref_broker.stop()
