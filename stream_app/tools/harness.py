"""Real processes for the integration tests and the benchmarks: worker
processes (`python -m stream_app worker`) on an embedded broker, their logs,
their /metrics, and events put on a broker for them.

tests/integration/conftest.py (as pytest fixtures) and bench/_harness.py (as
a benchmark run's scope) both start their workers here, so a worker under
test and a worker under measurement run with the same settings. Every child
is started with `children.die_with_parent()`: it goes when its parent does,
however the parent dies; `Proc.stop` stops it and whatever it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..runtime import kafka_io
from ..runtime.children import die_with_parent, stop
from ..runtime.topics import bootstrap_servers
from .broker import EMBEDDED_ENV, free_port

# on a child's PYTHONPATH: the child imports the very stream_app its parent runs
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
PROCESSED = "churn_events_processed_total"


# --------------------------------------------------------------------------- /metrics


def parse_metrics(text: str) -> dict[str, float]:
    """`name{labels}` -> value, labels sorted, as Prometheus would see them."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def scrape(port: int, timeout: float = 3.0) -> dict[str, float]:
    """A worker's /metrics, parsed (`parse_metrics`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        return parse_metrics(resp.read().decode())


def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of one metric in a Prometheus text exposition
    (a line scan: cheap enough to run every few milliseconds)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --------------------------------------------------------------------------- processes


def wait_for(cond: Callable[[], object], timeout: float, what: str, proc: "Proc | None" = None, every: float = 0.5):
    """`cond()`'s first truthy value, tried every `every` s (an OSError or
    KeyError counts as not yet); an AssertionError naming `what`, the last
    answer and the tail of `proc`'s log after `timeout` s."""
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
    tail = proc.log_tail(4000) if proc else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n{tail}")


@dataclass
class Proc:
    """A child process whose output goes to `log`."""

    name: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def problems(self, limit: int = 5) -> list[str]:
        """Warnings and errors in the log, repeats folded: "N x message" (to report, not to hide)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        seen: dict[str, int] = {}
        for ln in lines:
            if any(w in ln for w in ("Traceback", "WARNING", "ERROR", "CRITICAL", "Error:")):
                # drop terminal escapes, the "[date time] [pid]" prefix and numbers, so repeats fold
                ln = re.sub(r"[\x00-\x1f]", "", re.sub(r"\x1b\[[?0-9;]*[A-Za-z]", "", ln)).strip()
                msg = re.sub(r"\d+", "N", re.sub(r"^\[[^]]*\] \[\d+\] ", "", ln))
                seen[msg] = seen.get(msg, 0) + 1
        top = sorted(seen.items(), key=lambda kv: -kv[1])
        return [f"{n} x {msg[:160]}" for msg, n in top[:limit]] + ([f"... and {len(top) - limit} other messages"] if len(top) > limit else [])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """`sig` to its process group, SIGKILL after `timeout` s (children.stop)."""
        stop(self.proc, sig, timeout)


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str], cwd: Path | None = None, *,
          own_settings: bool = False) -> Proc:
    """Start `argv` with output to `log`, in its own process group, dying with us.

    `own_settings`: the child inherits none of this process's CHURNMON_*
    variables, only `env`'s, so a demo or worker runs on its defaults whatever
    the shell that started the tests exported."""
    inherited = {k: v for k, v in os.environ.items() if not (own_settings and k.startswith("CHURNMON_"))}
    with open(log, "wb") as out:
        popen = subprocess.Popen(argv, env={**inherited, "PYTHONPATH": str(PACKAGE_PARENT), **env}, cwd=cwd,
                                 stdout=out, stderr=subprocess.STDOUT, **die_with_parent())
    return Proc(name, popen, log)


@dataclass
class Worker(Proc):
    """A `python -m stream_app worker` process and its HTTP side."""

    port: int = 0
    app_id: str = ""
    token: str | None = None  # CHURNMON_LOOKUP_TOKEN the worker was started with

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, token: str | None = "default", timeout: float = 5.0) -> tuple[int, bytes]:
        """(status, body) of a GET, with the worker's bearer token unless another (or None) is given."""
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers), timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def fetch(self, path: str, timeout: float = 5.0) -> bytes:
        """The body of a GET; an HTTP error status raises."""
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return resp.read()

    def metrics(self) -> dict[str, float]:
        return scrape(self.port)

    def processed(self) -> float:
        return metric_sum(self.fetch("/metrics").decode(), PROCESSED)

    def assigned(self) -> set[int]:
        """Input partitions this worker owns right now (from /healthz)."""
        return {int(p) for p in json.loads(self.fetch("/healthz"))["partitions"]}

    def serving(self) -> bool:
        """/metrics answers; an AssertionError with its log if the process has exited."""
        self.check()
        try:
            self.fetch("/metrics", timeout=2)
            return True
        except OSError:
            return False

    def wait_serving(self, timeout: float = 90.0, every: float = 0.2) -> "Worker":
        wait_for(self.serving, timeout, f"{self.name} serving /metrics", self, every)
        return self


def start_worker(broker_url: str, app_id: str, workdir: Path, *args: str, loglevel: str = "info",
                 env: dict[str, str] | None = None, name: str | None = None) -> Worker:
    """Start a worker of group `app_id` (does not wait for it): its log and
    data in `workdir`, a free web port, the embedded broker's settings
    (stream_app/tools/broker.py); `args`: extra `churnmon worker` flags;
    `env`: CHURNMON_* overrides; `name`: of its log file, `<name>.log`."""
    port = free_port()
    name = name or f"worker-{app_id}-{port}"
    environment = {
        **EMBEDDED_ENV,  # the embedded broker's end offsets lag a batch (stream_app/tools/broker.py)
        "CHURNMON_BROKER": broker_url, "CHURNMON_APP_ID": app_id, "CHURNMON_WEB_PORT": str(port),
        "CHURNMON_DATA_DIR": str(workdir / f"data-{app_id}-{port}"), **(env or {}),
    }
    proc = spawn(name, [sys.executable, "-m", "stream_app", "worker", "--loglevel", loglevel, *args], workdir / f"{name}.log",
                 environment)
    return Worker(name, proc.proc, proc.log, port, app_id, environment.get("CHURNMON_LOOKUP_TOKEN"))


# --------------------------------------------------------------------------- events


def produce(broker_url: str, events: list[dict], partitions: int, rate: float = 0.0) -> int:
    """Put events on the input topics as `replay` does (creating the topics first)."""
    from .producer import produce_events

    return asyncio.run(produce_events(Settings(broker=broker_url, partitions=partitions), events, rate=rate))


def send(broker_url: str, messages: Iterable[tuple], batched: bool = False) -> int:
    """Produce (topic, key, value[, partition, headers]) messages one by one,
    each acknowledged; or, `batched`, in producer batches (in order per
    partition) acknowledged at the end."""
    return asyncio.run(kafka_io.send(bootstrap_servers(broker_url), messages, each_acked=not batched,
                                     linger_ms=5 if batched else 0))
