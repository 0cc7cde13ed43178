"""Real processes for integration tests: a fresh embedded broker per test,
worker processes started with `python -m stream_app worker`, and helpers to
scrape their /metrics. Nothing here is mocked."""

from __future__ import annotations

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

from stream_app.broker import EmbeddedBroker, free_port

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

    def metrics(self) -> dict[str, float]:
        return scrape(self.port)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
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

    def __call__(self, app_id: str, **env: str) -> Worker:
        port = free_port()
        log = self.tmp / f"worker-{app_id}-{port}.log"
        environment = {
            **os.environ,
            "CHURNMON_BROKER": self.broker.url,
            "CHURNMON_APP_ID": app_id,
            "CHURNMON_WEB_PORT": str(port),
            "CHURNMON_DATA_DIR": str(self.tmp / f"data-{app_id}-{port}"),
            "PYTHONPATH": str(REPO),
            **env,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker", "--loglevel", "info"],
            env=environment, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        w = Worker(port, app_id, proc, log)
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
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
