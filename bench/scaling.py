"""Does adding worker processes add throughput? 1, 2 and 3 workers, same events.

    python bench/scaling.py [--events 50000] [--workers 1,2,3] [--partitions 8] [--keep]

Why: the monitor scales out by running more `python -m stream_app worker`
processes under one app id (one Kafka consumer group); Kafka splits the
partitions between them and each owns its customers' state. This measures
what that buys on this machine.

What: simulated events (truncated to --events) are produced once to the three
input topics of one embedded broker. Then, for each worker count k, k workers
are started at once under a fresh app id (its own consumer group and
changelogs, so each k reads every event from the start) and run until they
have processed them all; then they are stopped before the next k.

How time is measured: every worker's /metrics and /healthz are scraped every
0.2 s. The window opens at the first scrape where the group has settled
(every worker owns input partitions, together all --partitions of them) and
something was processed, and closes at the first scrape where the summed
`churn_events_processed_total` reaches the total. Rate = events processed in
the window / its length: start-up and the joins before the group settles are
not counted, the uneven end is (8 partitions over 3 workers is 3+3+2: the
last worker to finish sets the time).

Expect: Python runs one core per process and the broker needs CPU too, so on a
2-core machine the speed-up should flatten at about 2 (or below: the broker,
this script's scrapes and other load share the same two cores); 3 workers
cannot beat 2 there. On a machine with more cores it should keep rising
until the broker or the partition count (8) limits it. One more cost grows
with the worker count if standby replicas are on (`standby_replicas`,
default 1, as Faust's own): each worker then also replays the changelog
writes of the others, record by record through Faust's recovery path.
Whether the machine had room for another worker shows in the "CPUs busy"
columns: the CPU time each worker and the broker used inside the window,
per second of it (a worker is one Python process: 1.0 is all it can use).

Failover (--failover-events, default 1000; 0 skips it): after the counts,
two workers of a fresh app id process every event, wait until their offsets
are committed, and one of them is killed with SIGKILL (a crash: it cannot
leave the group, so the coordinator notices only when its session times out,
`session_timeout_s`). Then --failover-events more events of the same
population, held back until now, are produced across every partition.
Measured from the kill: when the survivor owns every partition (/healthz),
and when it has processed all the new events (its counter rose by that
many), which includes restoring the dead worker's table partitions from
their changelogs (the part a standby replica shortens) and any redelivery.
Run it with `--worker-env CHURNMON_STANDBY_REPLICAS=0` and `=1` to compare.

Prints events/s and speed-up vs 1 worker, and the failover times; writes
bench/results/scaling.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=50_000, help="events to generate and process per worker count (default 50000)")
    p.add_argument("--workers", default="1,2,3", help="comma-separated worker counts (default 1,2,3)")
    p.add_argument("--partitions", type=int, default=8, help="partitions of every topic (default 8)")
    p.add_argument("--seed", type=int, default=42, help="simulator seed")
    p.add_argument("--timeout", type=float, default=600.0, help="give up on one worker count after this many seconds")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) after the run")
    p.add_argument("--failover-events", type=int, default=1000,
                   help="events held back and produced after one of two workers is killed (default 1000; 0: no failover step)")
    h.add_worker_env_option(p)
    args = p.parse_args(argv)
    args.counts = [int(x) for x in args.workers.split(",") if x.strip()]
    if not args.counts or min(args.counts) < 1 or max(args.counts) > args.partitions:
        p.error(f"--workers must be counts between 1 and --partitions ({args.partitions})")
    return args


def start_group(run: h.Run, broker_url: str, k: int, prefix: str, args: argparse.Namespace) -> list[h.Worker]:
    """k workers of one fresh app id (its own consumer group and changelogs), started together."""
    group = h.app_id(prefix)
    h.ensure_worker_topics(broker_url, group, args.partitions)
    workers = [run.worker(broker_url, group, args.partitions, h.worker_env(args.worker_env)) for _ in range(k)]
    for w in workers:
        w.wait_serving(timeout=120)
    return workers


def run_group(run: h.Run, broker_url: str, k: int, args: argparse.Namespace, broker_pid: int) -> dict:
    """k workers started together, measured to the last event."""
    workers = start_group(run, broker_url, k, f"bench-scale{k}", args)
    try:
        window = h.measure_group(workers, args.events, args.partitions, every=0.2, timeout=args.timeout,
                                 watch={"broker": broker_pid})
        cores = dict(window.cores)
        return {
            "workers": k, "rate": window.rate, "seconds": window.seconds, "counted": window.count_end - window.count_start,
            "before_settled": window.count_start, "processed": window.count_end,
            "broker_cpus": cores.pop("broker"), "worker_cpus": list(cores.values()),
            "log_problems": {w.name: w.problems() for w in workers if w.problems()},
        }
    finally:
        for w in workers:
            w.stop()


def failover(run: h.Run, broker_url: str, held: list[dict], args: argparse.Namespace) -> dict:
    """Two workers process everything; one is killed; how long until the
    survivor has taken over and processed events of every partition?"""
    import signal
    import time

    from stream_app.config import Settings

    env = h.worker_env(args.worker_env)
    workers = start_group(run, broker_url, 2, "bench-failover", args)
    h.measure_group(workers, args.events, args.partitions, every=0.2, timeout=args.timeout)
    # let both commit what they processed, so the survivor's count rises by
    # the new events only (Faust commits every 2.8 s by default)
    time.sleep(4.0)
    survivor, victim = workers
    before = survivor.processed()
    victim_partitions = sorted(victim.assigned())
    killed = time.monotonic()
    os.killpg(victim.proc.pid, signal.SIGKILL)
    h.produce(broker_url, held, args.partitions)
    produced = time.monotonic() - killed
    owned_at = done_at = None
    deadline = killed + args.timeout
    while time.monotonic() < deadline and done_at is None:
        survivor.check()
        now = time.monotonic()
        try:
            if owned_at is None and len(survivor.assigned()) == args.partitions:
                owned_at = now - killed
            if survivor.processed() - before >= len(held):
                done_at = now - killed
        except OSError:
            pass
        time.sleep(0.1)
    survivor.stop()
    if done_at is None:
        raise RuntimeError(f"the survivor did not process the {len(held)} new events within {args.timeout:.0f} s:\n{survivor.log_tail()}")
    return {"killed_partitions": victim_partitions, "new_events": len(held), "produce_seconds": produced,
            "owns_all_seconds": owned_at, "processed_new_seconds": done_at,
            "session_timeout_s": float({**h.embedded_broker_env(), **env}.get("CHURNMON_SESSION_TIMEOUT_S", Settings().session_timeout_s)),
            "log_problems": {w.name: w.problems() for w in workers if w.problems()}}


def report(args: argparse.Namespace, rows: list[dict], over: dict | None) -> dict:
    base = next((r["rate"] for r in rows if r["workers"] == 1), None)
    for r in rows:
        r["speedup"] = r["rate"] / base if base else None
    print(f"\n{args.events:,} simulated events, {args.partitions} partitions, {os.cpu_count()} CPUs; "
          f"timed from the settled group to the last event\n")
    print(h.table(
        ["workers", "events/s", "speed-up vs 1", "seconds", "events in window", "done before settled", "CPUs busy: workers",
         "broker", "events per worker CPU-second"],
        [[r["workers"], r["rate"], r["speedup"], r["seconds"], int(r["counted"]), int(r["before_settled"]),
          " + ".join(f"{c:.2f}" for c in r["worker_cpus"]), r["broker_cpus"], r["rate"] / sum(r["worker_cpus"])] for r in rows],
    ))
    print(f"\nOn {os.cpu_count()} cores the speed-up cannot pass {os.cpu_count()}: each worker is one Python process "
          f"(one core at most) and the broker and this script share the same cores, so expect it to flatten at "
          f"{os.cpu_count()} workers and not to grow beyond.")
    if over:
        print(f"\nfailover: one of two workers killed (SIGKILL) owning partitions {over['killed_partitions']}; "
              f"{over['new_events']:,} new events produced after the kill (in {over['produce_seconds']:.1f} s)")
        print(h.table(["from the kill to", "seconds"], [
            ["the survivor owns every partition", over["owns_all_seconds"]],
            ["the survivor has processed the new events", over["processed_new_seconds"]],
        ]))
        print(f"(a crashed worker is noticed when its session times out: session_timeout_s = {over['session_timeout_s']:g} s "
              f"here; a worker that stops cleanly leaves the group at once)")
    for r in rows + ([over] if over else []):
        for name, lines in r["log_problems"].items():
            for line in lines:
                print(f"note: {name} log: {line}")
    return {"events": args.events, "partitions": args.partitions,
            "worker_env": {**h.embedded_broker_env(), **h.worker_env(args.worker_env)}, "runs": rows, "failover": over}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    h.warn_if_busy()
    with h.Run(keep=args.keep) as run:
        broker, held = h.events_on_a_broker(run, args.events, args.seed, args.partitions, hold_back=args.failover_events)
        rows = []
        for k in args.counts:
            h.say(f"{k} worker(s) ...")
            rows.append(run_group(run, broker.url, k, args, broker.process.pid))
            h.say(f"{k} worker(s): {rows[-1]['rate']:,.0f} events/s")
        over = None
        if args.failover_events:
            h.say("failover: two workers, one killed ...")
            over = failover(run, broker.url, held, args)
        path = h.write_results("scaling", report(args, rows, over))
        print(f"\nwrote {path.relative_to(h.REPO)}")


if __name__ == "__main__":
    main()
