"""How long from an event to its alert, and to /metrics, at a fixed offered rate?

    python bench/latency.py [--rate 300] [--seconds 40] [--keep]
    python bench/latency.py --rates 100,300,600,900,1200    # for bench/plot.py

Why: an at-risk alert is worth most when it follows the event that caused it
quickly, and dashboards should show what just happened. Throughput (see
bench/throughput.py) says how much one worker can take; this says how fast
it answers at a given load, and where it stops keeping up.

What, per offered rate (each on a fresh broker and worker):

1. warm state: a short history (--history-days of a simulated population of
   --customers, plus the at-risk customers' healthy first weeks) is produced
   and processed by one worker before anything is timed;
2. live phase: the next events of the same population are produced at
   --rate events/s for about --seconds s. Mixed in are --at-risk customers
   built to raise an alert (the recipe of tests/integration/test_alerts_e2e.py):
   a business plan (MRR 500) used daily, whose usage stops, and who a week
   later open three urgent tickets and answer CSAT 1 and NPS 0. Their alert
   is raised by one of those events (in practice the CSAT answer).

Measured:

- event -> read by a plain aiokafka consumer (no group, the worker's
  fetch_max_wait_ms: `Settings.fetch_max_wait_ms`, default 10 ms; Faust's
  own consumer hard-codes 1500, stream_app/runtime/offsets.py replaces it): the floor
  that the broker and that fetch setting put under every figure below. The
  embedded broker (Tansu) answers a fetch when its wait runs out rather than
  when data arrives, so this floor is about half the wait here (386 ms p50
  with Faust's 1500); on Apache Kafka a fetch returns as soon as there is
  data.
- event -> alert: the wall time just before the event is handed to the
  producer (by event_id) vs the alert on churn.alerts whose trigger_event_id
  is that event: its `emitted_at` (when the worker decided), its Kafka record
  timestamp (when the worker handed it to its producer) and when this script's
  consumer received it. Alerts of the daily sweep (no trigger event) and of
  events outside the live phase are left out. p50/p90/p99/max.
- event -> metric visible: /metrics is polled, pausing --poll-ms between
  polls (default 100 ms, not less: one scrape costs the worker 10-15 ms of
  CPU here, so polling every 20 ms would take half of its time and measure
  the poller; the scrape time is printed); for every
  --marker-every-th event k of the live phase, the first poll whose
  `churn_events_processed_total` reaches warm + k + 1 (the count that includes
  it; the worker reads its partitions in its own order, so this is how far
  the count lags behind the producer rather than the fate of that very
  event). Resolution is one poll interval plus one scrape. p50/p99.
- achieved rates: what was really sent per second, what the worker processed
  per second (from the polls), and the largest backlog (sent - processed).

Event time runs much faster than wall time here (weeks in --seconds), so the
daily sweep that re-scores every customer runs every second or two instead of
once a day: a heavier load than a live stream of the same rate.

Prints the figures; writes bench/results/latency.json (--rate) or
bench/results/latency_rates.json (--rates).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402


def worker_fetch_wait_ms(worker_env: dict[str, str]) -> int:
    """The worker's fetch wait: a plain consumer with the same setting shows the
    part of the latency that is the broker's and the fetch's, not the worker's."""
    from stream_app.config import Settings

    return int(worker_env.get("CHURNMON_FETCH_MAX_WAIT_MS", Settings().fetch_max_wait_ms))

SILENCE_DAYS = 7  # at-risk customers stop using the product this long before their tickets
MRR = 500.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=300.0, help="offered events per second (default 300)")
    p.add_argument("--rates", default="", help="comma-separated offered rates, one run each (e.g. 100,300,600,900,1200)")
    p.add_argument("--seconds", type=float, default=40.0, help="length of the live phase at the offered rate (default 40)")
    p.add_argument("--customers", type=int, default=300, help="simulated background population (default 300)")
    p.add_argument("--at-risk", type=int, default=100, help="customers built to raise an alert in the live phase (default 100)")
    p.add_argument("--history-days", type=int, default=30, help="event-time days of warm-up history (default 30)")
    p.add_argument("--poll-ms", type=float, default=100.0,
                   help="pause between /metrics polls in ms (default 100: a scrape costs the worker ~10-15 ms, "
                        "so polling every 20 ms takes about half of its time)")
    p.add_argument("--marker-every", type=int, default=10, help="time every n-th live event to /metrics (default 10)")
    p.add_argument("--linger-ms", type=float, default=5.0,
                   help="the live producer's linger.ms (default 5, as stream_app/tools/producer.py; 0 = one record per batch)")
    p.add_argument("--partitions", type=int, default=8, help="partitions of every topic (default 8)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) after the run")
    h.add_worker_env_option(p)
    args = p.parse_args(argv)
    args.rate_list = [float(x) for x in args.rates.split(",") if x.strip()] or [args.rate]
    if min(args.rate_list) <= 0 or args.seconds <= 0:
        p.error("rates and --seconds must be positive")
    return args


# --------------------------------------------------------------------------- the events


@dataclass
class World:
    history: list[dict]
    live: list[dict]
    live_days: float  # event-time days the live phase covers


def background(args: argparse.Namespace, n_live: int, start: float) -> tuple[list[tuple[float, dict]], float, float]:
    """Simulated population: every event of the first --history-days, then the
    next n_live events. Returns them with times, the live start and end."""
    from stream_app.ingest.contract import format_ts, parse_ts
    from stream_app.tools.simulator import SimConfig, events

    live_start = start + args.history_days * h.DAY
    out: list[tuple[float, dict]] = []
    live = 0
    for e in events(SimConfig(customers=args.customers, days=365, seed=args.seed, start=format_ts(start))):
        t = parse_ts(e["ts"])
        if t >= live_start:
            live += 1
            if live > n_live:
                break
        out.append((t, e))
    if live < n_live:
        raise SystemExit(f"the simulated year has only {live} live events, {n_live} wanted: raise --customers")
    return out, live_start, out[-1][0]


def at_risk(i: int, start: float, trouble: float) -> list[tuple[float, dict]]:
    """One customer built to be alerted: daily use from day 0, silence for
    SILENCE_DAYS, then three urgent tickets, CSAT 1 and NPS 0 at `trouble`."""
    from stream_app.ingest.contract import format_ts

    cid = f"bench-risk-{i:04d}"
    out: list[tuple[float, dict]] = []

    def ev(t: float, typ: str, **fields) -> None:
        out.append((t, {"event_id": f"{cid}-{len(out)}", "customer_id": cid, "type": typ, "ts": format_ts(t), **fields}))

    first = start + 60.0 * (i + 1)
    ev(first, "subscription_started", plan="business", mrr=MRR)
    offset = 9 * 3600 + (i * 997) % (8 * 3600)  # each one's own hour of the day
    day = 1
    while start + day * h.DAY + offset < trouble - SILENCE_DAYS * h.DAY:
        t = start + day * h.DAY + offset
        ev(t, "session", duration_s=900)
        ev(t + 60, "feature_used", feature=("reports", "export", "sso", "search")[day % 4])
        day += 1
    for k in range(3):
        ev(trouble + 600 * k, "ticket_opened", ticket_id=f"{cid}-T{k}", priority="urgent", category="bug")
    ev(trouble + 1800, "csat", score=1)
    ev(trouble + 2400, "nps", score=0)
    return out


def build_world(args: argparse.Namespace, rate: float) -> World:
    """History and live events, both in event-time order, all in the past
    (timestamps more than a day ahead of the wall clock are dead-lettered)."""
    from stream_app.tools.producer import check_line
    import orjson

    start = math.floor(time.time() / h.DAY) * h.DAY - 370 * h.DAY
    bg, live_start, live_end = background(args, int(rate * args.seconds), start)
    span = live_end - live_start
    if span < 2 * h.DAY:
        raise SystemExit(f"the live phase covers only {span / h.DAY:.1f} event-time days: raise --seconds or the rate, or lower --customers")
    first, last = live_start + h.DAY, live_end - 3600.0
    risky = [x for i in range(args.at_risk) for x in at_risk(i, start, first + (i + 0.5) / args.at_risk * (last - first))]
    for _, e in risky[:200]:  # the same gate as the worker's
        assert isinstance(check_line(orjson.dumps(e), time.time()), dict), e
    merged = sorted(bg + risky, key=lambda te: te[0])
    return World(
        history=[e for t, e in merged if t < live_start],
        live=[e for t, e in merged if live_start <= t <= live_end],
        live_days=span / h.DAY,
    )


# --------------------------------------------------------------------------- the live phase


@dataclass
class Trace:
    """What the live phase saw, all in wall seconds (time.time())."""

    sent: list[float] = field(default_factory=list)  # index-aligned with the live events
    polls: list[tuple[float, float]] = field(default_factory=list)  # (time, processed counter)
    scrape_seconds: list[float] = field(default_factory=list)  # round trip of each poll
    alerts: list[tuple[float, float, dict]] = field(default_factory=list)  # (received, record timestamp, alert)
    fetched: list[tuple[float, float, dict]] = field(default_factory=list)  # the same for live events, by a plain consumer


async def send_paced(producer, events: list[dict], rate: float, trace: Trace) -> None:
    """Event i is sent at start + i / rate (never early); its send time is recorded just before."""
    import orjson

    from stream_app.ingest.contract import topic_for_type

    t0 = time.time()
    for i, e in enumerate(events):
        delay = t0 + i / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif i % 50 == 0:
            await asyncio.sleep(0)  # behind schedule: still let the poller and the consumer run
        trace.sent.append(time.time())
        await producer.send(topic_for_type(e["type"]), key=e["customer_id"].encode(), value=orjson.dumps(e))
    await producer.flush()


async def poll_metrics(url: str, every: float, trace: Trace) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        while True:
            try:
                asked = time.time()
                async with session.get(url + "/metrics") as resp:
                    text = await resp.text()
                answered = time.time()
                trace.polls.append((answered, h.metric_sum(text, h.PROCESSED)))
                trace.scrape_seconds.append(answered - asked)
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(every)


async def tail(stack: contextlib.AsyncExitStack, servers: str, topics: list[str], partitions: int, fetch_max_wait_ms: int):
    """A tail (no group) of every partition of `topics`, positioned at
    their current end before anything live is sent."""
    from aiokafka import TopicPartition

    from stream_app.runtime import kafka_io

    consumer = await stack.enter_async_context(kafka_io.consumer(servers, fetch_max_wait_ms=fetch_max_wait_ms))
    scan = kafka_io.Scan(consumer, {TopicPartition(t, p): kafka_io.END for t in topics for p in range(partitions)}, to=None, timeout_ms=200)
    await scan.seek()
    return scan


async def collect(scan, out: list[tuple[float, float, dict]]) -> None:
    """(received, record timestamp, decoded value) of everything the tail reads."""
    import orjson

    async for batches in scan:
        received = time.time()
        for records in batches.values():
            for r in records:
                out.append((received, r.timestamp / 1000.0, orjson.loads(r.value)))


async def live_phase(broker_url: str, worker: h.Worker, events: list[dict], rate: float, base: float, args) -> Trace:
    from stream_app.runtime import kafka_io
    from stream_app.runtime.topics import ALERTS, bootstrap_servers

    trace = Trace()
    servers = bootstrap_servers(broker_url)
    async with contextlib.AsyncExitStack() as stack:  # stops the tails, then the producer
        producer = await stack.enter_async_context(kafka_io.producer(servers, linger_ms=args.linger_ms))
        fetch_wait = worker_fetch_wait_ms(h.worker_env(args.worker_env))
        tails = [await tail(stack, servers, [ALERTS], args.partitions, fetch_wait),
                 await tail(stack, servers, list(h.INPUT_TOPICS), args.partitions, fetch_wait)]
        await _live(producer, tails, worker, events, rate, base, args, trace)
    return trace


async def _live(producer, tails: list, worker: h.Worker, events: list[dict], rate: float, base: float, args, trace: Trace) -> None:
    tasks = [asyncio.create_task(poll_metrics(worker.url, args.poll_ms / 1000.0, trace)),
             asyncio.create_task(collect(tails[0], trace.alerts)),
             asyncio.create_task(collect(tails[1], trace.fetched))]
    try:
        await send_paced(producer, events, rate, trace)
        target, deadline = base + len(events), time.monotonic() + max(120.0, len(events) / 50)
        while not trace.polls or trace.polls[-1][1] < target:
            worker.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not process the live phase in time:\n{worker.log_tail()}")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # alerts of the last events
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------- figures


def alert_latencies(events: list[dict], trace: Trace) -> dict[str, dict]:
    from stream_app.ingest.contract import parse_ts

    sent = {e["event_id"]: trace.sent[i] for i, e in enumerate(events)}
    decided, on_kafka, received = [], [], []
    for recv, record_ts, alert in trace.alerts:
        t = sent.get(alert.get("trigger_event_id"))
        if t is None:
            continue
        decided.append(parse_ts(alert["emitted_at"]) - t)
        on_kafka.append(record_ts - t)
        received.append(recv - t)
    return {"decided (emitted_at)": h.percentiles(decided), "on Kafka (record timestamp)": h.percentiles(on_kafka),
            "received by a consumer": h.percentiles(received)}


def fetch_latencies(events: list[dict], trace: Trace) -> dict:
    sent = {e["event_id"]: trace.sent[i] for i, e in enumerate(events)}
    return h.percentiles([recv - sent[e["event_id"]] for recv, _, e in trace.fetched if e.get("event_id") in sent])


def metric_latencies(trace: Trace, base: float, every: int) -> tuple[dict, int]:
    times = [t for t, _ in trace.polls]
    counts = [c for _, c in trace.polls]
    out, missing = [], 0
    for k in range(0, len(trace.sent), every):
        j = bisect.bisect_left(counts, base + k + 1)
        if j == len(counts):
            missing += 1
        else:
            out.append(times[j] - trace.sent[k])
    return h.percentiles(out, (50, 90, 99)), missing


def rates(trace: Trace, base: float, n: int) -> dict:
    live = [(t, c) for t, c in trace.polls if c > base]
    done = next(((t, c) for t, c in live if c >= base + n), live[-1])
    processed = (done[1] - live[0][1]) / (done[0] - live[0][0]) if done[0] > live[0][0] else float("nan")
    backlog = int(max((bisect.bisect_right(trace.sent, t) - (c - base) for t, c in trace.polls if t <= trace.sent[-1]), default=0))
    gaps = [b[0] - a[0] for a, b in zip(trace.polls, trace.polls[1:])]
    return {
        "sent_per_s": (n - 1) / (trace.sent[-1] - trace.sent[0]),
        "processed_per_s": processed,
        "max_backlog": backlog,
        "send_seconds": trace.sent[-1] - trace.sent[0],
        "drain_seconds": done[0] - trace.sent[-1],
        "poll_interval_ms": 1000 * sum(gaps) / len(gaps) if gaps else float("nan"),
        "scrape_ms": 1000 * sum(trace.scrape_seconds) / len(trace.scrape_seconds),
    }


def figures(world: World, trace: Trace, base: float, args: argparse.Namespace) -> dict:
    metric, missing = metric_latencies(trace, base, args.marker_every)
    return {
        "alerts_seen": len(trace.alerts), "alert_latency_s": alert_latencies(world.live, trace),
        "fetch_latency_s": fetch_latencies(world.live, trace), "metric_latency_s": metric,
        "markers_never_counted": missing, **rates(trace, base, len(world.live)),
    }


# --------------------------------------------------------------------------- one offered rate


def run_rate(run: h.Run, rate: float, args: argparse.Namespace) -> dict:
    world = build_world(args, rate)
    broker = run.broker()
    worker = None
    try:
        h.say(f"rate {rate:g}/s: warming up on {len(world.history):,} history events ...")
        h.produce(broker.url, world.history, args.partitions)
        worker = run.worker(broker.url, h.app_id("bench-latency"), args.partitions, h.worker_env(args.worker_env)).wait_serving(120)
        base = wait_for_count(worker, len(world.history))
        h.say(f"rate {rate:g}/s: warm ({base:,.0f} processed); live phase: {len(world.live):,} events "
              f"({world.live_days:.0f} event-time days) ...")
        before, cpu = h.busy(worker), time.process_time()
        trace = asyncio.run(live_phase(broker.url, worker, world.live, rate, base, args))
        cpu, after = time.process_time() - cpu, h.busy(worker)
        return {
            "offered_rate": rate, "live_events": len(world.live), "live_event_days": world.live_days,
            "history_events": len(world.history), "at_risk_customers": args.at_risk,
            **figures(world, trace, base, args),
            "rejected": h.metric_sum(worker.fetch("/metrics").decode(), "churn_events_rejected_total"),
            "worker_ms_per_event": 1000 * (after[0] - before[0]) / max(1.0, after[1] - before[1]),
            "bench_cpu_seconds": cpu,
            "log_problems": worker.problems(),
        }
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()


def wait_for_count(worker: h.Worker, n: int, timeout: float = 300.0, settle: float = 5.0) -> float:
    """Wait until the worker processed n events, then `settle` s more (its
    idle-partition ticks run), and return its count."""
    deadline = time.monotonic() + timeout
    while worker.processed() < n:
        worker.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"warm-up not processed in {timeout:.0f} s:\n{worker.log_tail()}")
        time.sleep(0.5)
    time.sleep(settle)
    return worker.processed()


def print_run(r: dict, args: argparse.Namespace) -> None:
    print(f"\noffered {r['offered_rate']:g} events/s: {r['live_events']:,} live events over {r['send_seconds']:.1f} s "
          f"({r['live_event_days']:.0f} event-time days) after {r['history_events']:,} warm-up events; "
          f"{args.at_risk} at-risk customers")
    print(f"sent {r['sent_per_s']:,.0f}/s, processed {r['processed_per_s']:,.0f}/s, largest backlog "
          f"{r['max_backlog']:,} events, drained {r['drain_seconds']:.1f} s after the last send; "
          f"{r['rejected']:.0f} rejected")
    print(f"/metrics polled every {r['poll_interval_ms']:.0f} ms; one scrape took {r['scrape_ms']:.1f} ms "
          f"(worker time the polling takes from processing); the worker's own time per event "
          f"{r['worker_ms_per_event']:.2f} ms; this script used {r['bench_cpu_seconds']:.1f} s of CPU")
    rows = [[f"event -> read by a plain consumer (fetch wait {worker_fetch_wait_ms(h.worker_env(args.worker_env))} ms, as the worker's)", *_ms(r["fetch_latency_s"])]]
    rows += [[f"event -> alert {k}", *_ms(v)] for k, v in r["alert_latency_s"].items()]
    rows.append([f"event -> counted on /metrics (every {args.marker_every}th)", *_ms(r["metric_latency_s"])])
    print(h.table(["latency (ms)", "n", "p50", "p90", "p99", "max"], rows))
    for line in r["log_problems"]:
        print(f"note: worker log: {line}")


def _ms(p: dict) -> list:
    return [p["n"], *(1000 * p[k] for k in ("p50", "p90", "p99", "max"))]


def print_summary(runs: list[dict]) -> None:
    print("\nsummary (latencies in ms; floor = a plain consumer's read; alert = record timestamp on churn.alerts)")
    print(h.table(
        ["offered/s", "processed/s", "max backlog", "floor p50", "alerts", "alert p50", "alert p90", "alert p99", "alert max",
         "metric p50", "metric p99"],
        [[r["offered_rate"], r["processed_per_s"], r["max_backlog"], 1000 * r["fetch_latency_s"]["p50"],
          r["alert_latency_s"]["on Kafka (record timestamp)"]["n"],
          *(1000 * r["alert_latency_s"]["on Kafka (record timestamp)"][k] for k in ("p50", "p90", "p99", "max")),
          1000 * r["metric_latency_s"]["p50"], 1000 * r["metric_latency_s"]["p99"]] for r in runs],
    ))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs = []
    h.warn_if_busy()
    with h.Run(keep=args.keep) as run:
        for rate in args.rate_list:
            runs.append(run_rate(run, rate, args))
            print_run(runs[-1], args)
    if len(runs) > 1:
        print_summary(runs)
    settings = {k: getattr(args, k) for k in ("seconds", "customers", "at_risk", "history_days", "poll_ms", "marker_every", "linger_ms", "partitions", "seed")}
    settings["worker_env"] = {**h.embedded_broker_env(), **h.worker_env(args.worker_env)}
    path = h.write_results("latency_rates" if args.rates else "latency", {**settings, "runs": runs})
    print(f"\nwrote {path.relative_to(h.REPO)}")


if __name__ == "__main__":
    main()
