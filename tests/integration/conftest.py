"""Real processes for integration tests: a fresh embedded broker per test,
worker processes started with `python -m stream_app worker`, and helpers to
scrape their /metrics (the process, HTTP and Kafka side shared with the
benchmarks: stream_app/tools/harness.py). Nothing here is mocked."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stream_app.runtime import kafka_io
from stream_app.runtime.children import die_with_parent
from stream_app.runtime.topics import bootstrap_servers
from stream_app.tools.broker import EmbeddedBroker, embedded_broker
from stream_app.tools.harness import Worker, scrape, send, start_worker, wait_for  # noqa: F401 - the tests import them from here

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh broker per test: the input topic names are fixed, so tests
    sharing a broker would read each other's events."""
    with embedded_broker() as b:
        yield b


@dataclass
class WorkerFactory:
    broker: EmbeddedBroker
    tmp: Path
    started: list[Worker] = field(default_factory=list)

    def __call__(self, app_id: str, *args: str, **env: str) -> Worker:
        """A worker process serving /metrics (`args`: extra `churnmon worker` flags; `env`: CHURNMON_* overrides)."""
        # a bearer token as in production; `Worker.get` sends it
        w = start_worker(self.broker.url, app_id, self.tmp, *args, env={"CHURNMON_LOOKUP_TOKEN": f"test-token-{uuid.uuid4().hex}", **env})
        self.started.append(w)
        return w.wait_serving(60, every=0.5)


@pytest.fixture
def workers(broker, tmp_path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(broker, tmp_path)
    try:
        yield factory
    finally:
        for w in factory.started:
            w.stop()


@pytest.fixture
def app_id() -> str:
    """A fresh consumer group and changelog per test (the broker is shared)."""
    return f"t{uuid.uuid4().hex[:8]}"


def processed(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("churn_events_processed_total"))


def replay(broker: EmbeddedBroker, path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", "replay", str(path), "--broker", broker.url, *extra],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, **die_with_parent(),
    )


def simulate(path: Path, customers: int, days: int, seed: int) -> int:
    """Write a simulated history to `path`; returns its number of events."""
    subprocess.run(
        [sys.executable, "-m", "stream_app", "simulate", "--customers", str(customers), "--days", str(days), "--seed", str(seed), "--out", str(path)],
        check=True, capture_output=True, env={"PYTHONPATH": str(REPO), "PATH": ""}, **die_with_parent(),
    )
    with open(path, "rb") as f:
        return sum(1 for _ in f)


_NOT_LEDGER = ("_total", "_created", "_bucket", "_sum", "_count", "churn_event_time_lag", "churn_event_time_clock", "churn_partitions",
               "python_", "process_", "churn_model_", "churn_at_risk_", "churn_expected_mrr_loss",
               # fitted and learnt by each worker from the labels it saw, like the model: not a table figure
               "churn_bgnbd_", "churn_purchase_model_", "churn_winback_")


def ledger_gauges(m: dict[str, float]) -> dict[str, float]:
    """The churn figures derived from table state (counters restart with the
    process). Risk and model gauges are left out: they depend on which model
    version scored when, which differs between two independently trained
    workers even without a crash."""
    return {k: v for k, v in m.items() if k.startswith("churn_") and not any(s in k for s in _NOT_LEDGER)}


def summed(*metrics: dict[str, float]) -> dict[str, float]:
    """Several workers' figures added up: every ledger gauge is a sum over partitions."""
    out: dict[str, float] = {}
    for m in metrics:
        for k, v in m.items():
            out[k] = out.get(k, 0.0) + v
    return {k: round(v, 6) for k, v in out.items()}


def figures_differ(a: dict[str, float], b: dict[str, float]) -> dict[str, tuple]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def equal_figures(reference: Worker, other: Worker, timeout: float, what: str) -> dict[str, float]:
    """Wait until `other`'s summed ledger gauges equal `reference`'s and return
    them; fail naming every figure that differs if they never do."""
    def converged():
        a, b = summed(ledger_gauges(reference.metrics())), summed(ledger_gauges(other.metrics()))
        return a == b and len(a) > 20 and a
    try:
        return wait_for(converged, timeout, what, other)
    except AssertionError:
        a, b = summed(ledger_gauges(reference.metrics())), summed(ledger_gauges(other.metrics()))
        raise AssertionError(f"{what}: figures differ (reference, other): {figures_differ(a, b)}") from None


def lookup(w: Worker, cid: str) -> dict:
    status, body = w.get(f"/customers/{cid}")
    assert status == 200, (cid, status, body[:200])
    return json.loads(body)


# table fields that depend on when a worker ran, not on the events (see views.fingerprint)
_TIMING = {"late_events", "risk", "risk_band"}


def state_differences(a: Worker, b: Worker, cid: str) -> dict:
    """The fields of a customer's raw table value that differ between two
    workers (to explain a fingerprint mismatch)."""
    want, got = (json.loads(w.get(f"/customers/{cid}?raw=1")[1]) for w in (a, b))
    return {k: (want.get(k), got.get(k)) for k in sorted((set(want) | set(got)) - _TIMING) if want.get(k) != got.get(k)}


def read_all(url: str, topic: str) -> list:
    """Every record of partition 0 of `topic` (churn.training, churn.models), in order."""
    return asyncio.run(kafka_io.read(bootstrap_servers(url), topic, numbers=[0], timeout_ms=2000))
