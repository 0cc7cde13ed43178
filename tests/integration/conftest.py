"""Real processes for integration tests: a fresh embedded broker per test,
worker processes started with `python -m stream_app worker`, and helpers to
scrape their /metrics. Nothing here is mocked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.tools.broker import EMBEDDED_ENV, EmbeddedBroker, free_port
from stream_app.runtime.children import die_with_parent
from stream_app.runtime.topics import bootstrap_servers, end_of

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh broker per test: the input topic names are fixed, so tests
    sharing a broker would read each other's events."""
    b = EmbeddedBroker(port=free_port()).start()
    try:
        yield b
    finally:
        b.stop()


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value, labels sorted, as Prometheus would see them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


@dataclass
class Worker:
    port: int
    app_id: str
    proc: subprocess.Popen
    log: Path
    token: str | None = None  # CHURNMON_LOOKUP_TOKEN the worker was started with

    def metrics(self) -> dict[str, float]:
        return scrape(self.port)

    def get(self, path: str, token: str | None = "default") -> tuple[int, bytes]:
        """GET a path, with the worker's bearer token unless another (or None) is given."""
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@dataclass
class WorkerFactory:
    broker: EmbeddedBroker
    tmp: Path
    started: list[Worker] = field(default_factory=list)

    def __call__(self, app_id: str, *args: str, **env: str) -> Worker:
        """A worker process (`args`: extra `churnmon worker` flags; `env`: CHURNMON_* overrides)."""
        port = free_port()
        log = self.tmp / f"worker-{app_id}-{port}.log"
        environment = {
            **os.environ,
            "CHURNMON_BROKER": self.broker.url,
            "CHURNMON_APP_ID": app_id,
            "CHURNMON_WEB_PORT": str(port),
            "CHURNMON_DATA_DIR": str(self.tmp / f"data-{app_id}-{port}"),
            "CHURNMON_LOOKUP_TOKEN": f"test-token-{uuid.uuid4().hex}",  # as in production; `Worker.get` sends it
            **EMBEDDED_ENV,  # the embedded broker's end offsets lag a batch (stream_app/tools/broker.py)
            "PYTHONPATH": str(REPO),
            **env,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker", "--loglevel", "info", *args],
            env=environment, stdout=open(log, "wb"), stderr=subprocess.STDOUT, **die_with_parent(),
        )
        w = Worker(port, app_id, proc, log, environment.get("CHURNMON_LOOKUP_TOKEN"))
        self.started.append(w)
        wait_for(lambda: _answers(w), 60, f"worker {app_id} serving /metrics", w)
        return w


def _answers(w: Worker) -> bool:
    if w.proc.poll() is not None:
        raise AssertionError(f"worker exited with {w.proc.returncode}:\n{w.log.read_text()[-3000:]}")
    try:
        w.metrics()
        return True
    except OSError:
        return False


def wait_for(cond: Callable[[], object], timeout: float, what: str, worker: Worker | None = None, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except (OSError, KeyError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    tail = worker.log.read_text()[-4000:] if worker else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n{tail}")


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


def send(url: str, messages: list[tuple[str, bytes, bytes]], batched: bool = False) -> None:
    """Produce (topic, key, value) messages one by one, each acknowledged; or,
    `batched`, in producer batches (in order per partition) acknowledged at the end."""
    asyncio.run(_produce(url, messages, batched))


async def _produce(url: str, messages: list[tuple[str, bytes, bytes]], batched: bool) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(url), linger_ms=5 if batched else 0)
    await p.start()
    try:
        acks = []
        for topic, key, value in messages:
            if batched:
                acks.append(await p.send(topic, key=key, value=value))
            else:
                await p.send_and_wait(topic, key=key, value=value)
        await asyncio.gather(*acks)
    finally:
        await p.stop()


def read_all(url: str, topic: str) -> list:
    """Every record of partition 0 of `topic` (churn.training, churn.models), in order."""
    return asyncio.run(_read_all(url, topic))


async def _read_all(url: str, topic: str) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(url), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        out = []
        while True:
            batch = await consumer.getmany(tp, timeout_ms=2000)
            out.extend(batch.get(tp, []))
            if await consumer.position(tp) >= await end_of(consumer, tp):
                return out
    finally:
        await consumer.stop()
