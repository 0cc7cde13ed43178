"""Shared plumbing of the benchmark scripts (throughput, scaling, latency).

Real processes only, started by the harness the integration tests use
(stream_app/tools/harness.py): an embedded broker (Tansu) per run,
`python -m stream_app worker` child processes in their own session (so
stopping one stops its children too), and /metrics scraped over HTTP.
Everything started here is stopped in a `finally` (see `Run`), also on
Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stream_app.tools import harness  # noqa: E402
from stream_app.tools.broker import EmbeddedBroker, free_port  # noqa: E402
from stream_app.tools.harness import PROCESSED, Proc, Worker, metric_sum, produce  # noqa: E402,F401 - the benches use them from here
from stream_app.config import Settings  # noqa: E402
from stream_app.ingest.contract import TOPICS  # noqa: E402

INPUT_TOPICS: tuple[str, ...] = TOPICS  # what every benchmark consumer reads
DAY = 86400.0


# --------------------------------------------------------------------------- reporting

_T0 = time.monotonic()
_LOAD0 = os.getloadavg()


def say(msg: str) -> None:
    """A progress line, stamped with the seconds since the script started."""
    print(f"[{time.monotonic() - _T0:6.1f} s] {msg}", flush=True)


def machine() -> dict:
    """Where and when the figures were taken (every results file carries it)."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),  # = `uname -m`
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        # 1-minute load average when the script started and ended: other work
        # on the machine shares its cores and lowers every figure
        "loadavg_start": round(_LOAD0[0], 2),
        "loadavg_end": round(os.getloadavg()[0], 2),
    }


def warn_if_busy() -> None:
    load = os.getloadavg()[0]
    if load > 0.5:
        say(f"note: load average {load:.1f} on {os.cpu_count()} CPUs before starting: other work shares the cores, "
            f"expect lower and noisier figures")


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, **machine(), **payload}, indent=2) + "\n")
    return path


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain aligned text table: first column left, the others right."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]

    def line(values):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line([str(h) for h in headers]), line(["-" * w for w in widths]), *map(line, cells)])


def _cell(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:,.0f}" if abs(v) >= 100 or v.is_integer() else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def percentiles(values: list[float], ps: tuple[float, ...] = (50, 90, 99)) -> dict:
    """Nearest-rank percentiles, plus n and max; NaN when there are no values."""
    xs = sorted(values)
    out: dict = {"n": len(xs)}
    for p in ps:
        out[f"p{p:g}"] = xs[max(0, math.ceil(p / 100 * len(xs)) - 1)] if xs else float("nan")
    out["max"] = xs[-1] if xs else float("nan")
    return out


# --------------------------------------------------------------------------- run scope


@dataclass
class Run:
    """Scope of one benchmark run: a work directory (logs, data dirs) and every
    child process started, all stopped on exit. Use as a context manager."""

    keep: bool = False
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="churnmon-bench-")))
    procs: list["Proc"] = field(default_factory=list)
    brokers: list[EmbeddedBroker] = field(default_factory=list)

    def __enter__(self) -> "Run":
        # SIGTERM -> SystemExit, so the finally blocks stop the children
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return self

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            p.stop(timeout=20.0)
        for b in reversed(self.brokers):
            b.stop()
        if self.keep:
            print(f"logs and data kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def broker(self) -> EmbeddedBroker:
        b = EmbeddedBroker(port=free_port()).start()
        self.brokers.append(b)
        return b

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        proc = harness.spawn(name, argv, self.dir / f"{name}.log", env, cwd=REPO)
        self.procs.append(proc)
        return proc

    def worker(self, broker_url: str, app_id: str, partitions: int, env: dict[str, str] | None = None) -> Worker:
        """Start `python -m stream_app worker` as the integration tests do (does not wait for it)."""
        env = {"CHURNMON_PARTITIONS": str(partitions), **(env or {})}
        worker = harness.start_worker(broker_url, app_id, self.dir, loglevel=env.get("CHURNMON_BENCH_LOGLEVEL", "warn"), env=env)
        self.procs.append(worker)
        return worker


def embedded_broker_env() -> dict[str, str]:
    """The settings a worker needs on the embedded broker (stream_app/tools/broker.py):
    the tests and `churnmon demo` start their workers with them, so the
    benchmarks do too."""
    from stream_app.tools.broker import EMBEDDED_ENV

    return dict(EMBEDDED_ENV)


def add_worker_env_option(parser) -> None:
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the project's workers, e.g. CHURNMON_PRODUCER_LINGER_MS=20 "
                             f"(repeatable; on top of {embedded_broker_env() or 'nothing'})")


def worker_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--worker-env wants NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def busy(worker: Worker) -> tuple[float, float]:
    """The worker's own account of its per-event work: (seconds, events) of
    churn_event_processing_seconds (decode to state and metrics; not Faust, Kafka or timers)."""
    text = worker.fetch("/metrics").decode()
    return metric_sum(text, "churn_event_processing_seconds_sum"), metric_sum(text, "churn_event_processing_seconds_count")


# --------------------------------------------------------------------------- events and topics


def simulated_events(n: int, *, seed: int = 42, days: int = 120, start: str = "2025-01-01T00:00:00Z") -> list[dict]:
    """The first `n` events (event-time order) of a simulated population big
    enough to have them: what `python -m stream_app simulate` writes, truncated."""
    from stream_app.tools.simulator import SimConfig, events

    customers = max(50, math.ceil(n / (1.3 * days)))
    while True:
        out = list(itertools.islice(events(SimConfig(customers=customers, days=days, seed=seed, start=start)), n))
        if len(out) == n:
            return out
        customers *= 2


def events_on_a_broker(run: "Run", n: int, seed: int, partitions: int, hold_back: int = 0):
    """Simulate `n` events, start a broker in `run` and produce them to it,
    once. Returns `(broker, held)`: the population's next `hold_back` events,
    simulated too but not produced (for a later phase of the bench)."""
    say(f"generating {n + hold_back:,} events ...")
    events = simulated_events(n + hold_back, seed=seed)
    broker = run.broker()
    started = time.monotonic()
    produce(broker.url, events[:n], partitions)
    say(f"produced {n:,} to {broker.url} in {time.monotonic() - started:.1f} s")
    return broker, events[n:]


def create_topics(broker_url: str, topics: dict[str, int], compacted: bool = False) -> None:
    """Create topics with explicit partition counts (never let the broker auto-create them)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from stream_app.runtime.topics import bootstrap_servers

    async def go() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker_url))
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            config = {"cleanup.policy": "compact"} if compacted else {}
            new = [NewTopic(t, n, 1, topic_configs=config) for t, n in topics.items() if t not in existing]
            if new:
                await admin.create_topics(new)
        finally:
            await admin.close()

    asyncio.run(go())


def ensure_worker_topics(broker_url: str, app_id: str, partitions: int) -> None:
    """Every topic of a worker group, created before its workers start (so
    several workers starting at once do not race to create them)."""
    from stream_app.runtime.topics import ensure_topics

    asyncio.run(ensure_topics(Settings(broker=broker_url, app_id=app_id, partitions=partitions), broker_url))


def app_id(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**8}"


# --------------------------------------------------------------------------- measuring workers


@dataclass
class Window:
    """Counts over wall time: events/s between `start` and `end` samples."""

    t_start: float
    count_start: float
    t_end: float
    count_end: float
    cores: dict[str, float] = field(default_factory=dict)  # name -> CPU seconds per second of the window

    @property
    def seconds(self) -> float:
        return self.t_end - self.t_start

    @property
    def rate(self) -> float:
        return (self.count_end - self.count_start) / self.seconds if self.seconds > 0 else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_group(workers: list[Worker], total: int, partitions: int, every: float = 0.2, timeout: float = 600.0,
                  watch: dict[str, int] | None = None) -> Window:
    """Scrape every worker each `every` s until their processed counters add up
    to `total`. The window starts at the first scrape where the group is
    settled (every worker owns input partitions, together all of them) and
    something was processed; it ends at the first scrape that sees `total`.
    Rate = events processed inside the window / its wall time, so worker
    start-up, group joins and rebalances before it are not counted.

    `watch` (name -> pid; the workers are always watched) gives the window's
    `cores`: how many CPUs each process kept busy inside it, the figure that
    says whether a machine had room for another worker."""
    pids = {w.name: w.proc.pid for w in workers} | (watch or {})
    cpu_start: dict[str, float] = {}
    start: tuple[float, float] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in workers:
            w.check()
        try:
            count = sum(w.processed() for w in workers)
        except OSError:
            time.sleep(every)
            continue
        now = time.monotonic()
        if start is None and count > 0 and _settled(workers, partitions):
            start = (now, count)
            cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if start is not None and count >= total:
            seconds = now - start[0]
            cores = {name: (cpu_seconds(pid) - cpu_start[name]) / seconds if seconds > 0 else float("nan")
                     for name, pid in pids.items()}
            return Window(start[0], start[1], now, count, cores)
        time.sleep(every)
    raise RuntimeError(f"workers did not process {total} events within {timeout:.0f} s:\n{workers[0].log_tail()}")


def _settled(workers: list[Worker], partitions: int) -> bool:
    try:
        owned = [w.assigned() for w in workers]
    except (OSError, ValueError, KeyError):
        return False
    union = set().union(*owned)
    return all(owned) and len(union) == partitions and sum(map(len, owned)) == partitions

