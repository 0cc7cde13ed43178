"""What one input event costs a real worker: changelog records, scores, memory, time.
(a script, not a test)

    python bench/writes.py [--populations sim300,purchase-only,cdnow,default] [--keep]

For each population: a fresh embedded broker, one worker (`python -m stream_app
worker`, memory store, default settings), the events produced as fast as
possible while the worker runs. Printed per population:

- `customers` and `risk` changelog records per input event: the sum of the
  changelogs' end offsets (read from fetch responses: the embedded broker's
  ListOffsets lags a batch) over the events produced;
- scores per input event: `churn_customers_scored_total` over the events;
- seconds from the last event produced to the last one processed;
- the worker's RSS at the end (VmRSS) and its peak (VmHWM), and its trainer
  process's RSS at the end (the targets are the worker's);
- how often Faust logged "producer buffer full";
- labels the trainer has learnt (`churn_model_labels_total`) of those
  produced (`churn_training_examples_total`), when the last event was
  processed and 3 s later.

Populations:
- `sim300`: the simulator's default scenario, 300 customers x 120 days, seed 7;
- `default`: the simulator's default population (2,000 customers x 365 days, seed 42);
- `purchase-only`: the simulator's purchase-only scenario, 2,500 customers
  buying 1 to 30 times each over 270 days (seed 7);
- `cdnow`: the CDNOW sample's first 39 weeks (bench/_cdnow.py: 2,357 real
  customers, downloaded from the Lifetimes wheel on PyPI).

Results go to bench/results/writes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    REPO, Run, app_id, ensure_worker_topics, machine, metric_sum, produce, say, table, warn_if_busy, write_results,
)

from stream_app.config import Settings  # noqa: E402
from stream_app.runtime import kafka_io  # noqa: E402
from stream_app.runtime.topics import CUSTOMERS_TABLE, RISK_TABLE, bootstrap_servers, changelog_topic  # noqa: E402

PARTITIONS = 8
TARGETS = {"customers": 1.0, "risk": 0.1, "scores": 1.1}
PURCHASE_TARGETS = {"scores": 2.0, "settle_s": 30.0, "rss_mb": 400.0}


def population(name: str) -> list[dict]:
    from stream_app.tools.simulator import events, scenario

    if name == "sim300":
        return list(events(scenario("default", customers=300, days=120, seed=7)))
    if name == "default":
        return list(events(scenario("default")))
    if name == "purchase-only":
        return list(events(scenario("purchase-only", customers=2500, days=270, seed=7)))
    if name == "cdnow":
        import _cdnow

        return _cdnow.events()
    raise SystemExit(f"unknown population {name!r}")


def changelog_records(broker_url: str, app: str) -> dict[str, int]:
    """Records in each table's changelog: the sum of its partitions' end offsets."""
    from aiokafka import TopicPartition

    settings = Settings(app_id=app)
    out = {}
    for name in (CUSTOMERS_TABLE, RISK_TABLE):
        topic = changelog_topic(settings, name)
        got = asyncio.run(_true_ends(broker_url, [TopicPartition(topic, p) for p in range(PARTITIONS)]))
        out[name] = sum(got.values())
    return out


async def _true_ends(broker_url: str, tps) -> dict:
    bootstrap = bootstrap_servers(broker_url)
    return await kafka_io.fetched_ends(bootstrap, await kafka_io.listed_ends(bootstrap, tps))


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    get = lambda key: int(next(line.split()[1] for line in status.splitlines() if line.startswith(key))) / 1024  # noqa: E731
    return get("VmRSS:"), get("VmHWM:")


def children_rss_mb(pid: int) -> float:
    """RSS of the processes `pid` started (the trainer process of the worker that owns churn.training)."""
    kids = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return sum(rss_mb(k)[0] for k in kids if Path(f"/proc/{k}/status").exists())


def run_population(name: str, keep: bool) -> dict:
    say(f"{name}: generating events ...")
    events = population(name)
    n = len(events)
    purchases = sum(1 for e in events if e["type"] == "purchase")
    with Run(keep=keep) as run:
        broker = run.broker()
        app = app_id(f"writes-{name}")
        ensure_worker_topics(broker.url, app, PARTITIONS)
        worker = run.worker(broker.url, app, PARTITIONS).wait_serving()
        say(f"{name}: producing {n:,} events as fast as possible to a running worker ...")
        started = time.monotonic()
        produce(broker.url, events, PARTITIONS)
        produced_at = time.monotonic()
        say(f"{name}: produced in {produced_at - started:.1f} s")
        done = None
        while time.monotonic() - produced_at < 900:
            worker.check()
            text = worker.fetch("/metrics").decode()
            seen = metric_sum(text, "churn_events_processed_total") + metric_sum(text, "churn_events_rejected_total") \
                + metric_sum(text, "churn_events_duplicate_total")
            if seen >= n:
                done = time.monotonic()
                learnt_at_done = metric_sum(text, "churn_model_labels_total")
                produced_at_done = metric_sum(text, "churn_training_examples_total")
                break
            time.sleep(0.2)
        if done is None:
            raise RuntimeError(f"{name}: the worker did not process {n} events within 900 s:\n{worker.log_tail()}")
        time.sleep(3.0)  # the ticks' last sweep, and the producer's last flush
        text = worker.fetch("/metrics").decode()
        rss, peak = rss_mb(worker.proc.pid)
        trainer_rss = children_rss_mb(worker.proc.pid)
        records = changelog_records(broker.url, app)
        scores = metric_sum(text, "churn_customers_scored_total")
        rejected = metric_sum(text, "churn_events_rejected_total")
        log = worker.log.read_text(errors="replace")
        result = {
            "events": n, "purchases": purchases, "rejected": rejected,
            "customers_records": records[CUSTOMERS_TABLE], "risk_records": records[RISK_TABLE],
            "customers_per_event": records[CUSTOMERS_TABLE] / n, "risk_per_event": records[RISK_TABLE] / n,
            "scores": scores, "scores_per_event": scores / n,
            "scores_per_purchase": scores / purchases if purchases else None,
            "produce_s": produced_at - started, "settle_s": done - produced_at,
            "rss_mb": rss, "peak_rss_mb": peak, "trainer_rss_mb": trainer_rss,
            "producer_buffer_full": log.count("producer buffer full"),
            "alerts": metric_sum(text, "churn_alerts_emitted_total"),
            "examples": metric_sum(text, "churn_training_examples_total"),
            # the trainer (a process of the worker, issue 12: it must keep up):
            # labels learnt when the last event was processed, and 3 s later
            "examples_at_done": produced_at_done, "learnt_at_done": learnt_at_done,
            "learnt": metric_sum(text, "churn_model_labels_total"),
        }
        say(f"{name}: {result}")
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--populations", default="sim300,purchase-only,cdnow",
                        help="comma-separated: sim300, default, purchase-only, cdnow")
    parser.add_argument("--keep", action="store_true", help="keep logs and data")
    args = parser.parse_args()
    warn_if_busy()
    results = {name: run_population(name, args.keep) for name in args.populations.split(",")}
    rows = []
    for name, r in results.items():
        rows.append([name, f"{r['events']:,}", f"{r['customers_per_event']:.3f}", f"{r['risk_per_event']:.3f}",
                     f"{r['scores_per_event']:.3f}", "-" if r["scores_per_purchase"] is None else f"{r['scores_per_purchase']:.2f}",
                     f"{r['settle_s']:.1f}", f"{r['rss_mb']:.0f} ({r['peak_rss_mb']:.0f})", f"{r['trainer_rss_mb']:.0f}", r["producer_buffer_full"],
                     f"{r['learnt_at_done']:,.0f} of {r['examples_at_done']:,.0f}", f"{r['learnt']:,.0f} of {r['examples']:,.0f}"])
    print()
    print(table(["population", "events", "customers rec/ev", "risk rec/ev", "scores/ev", "scores/purchase",
                 "s after last produced", "RSS MB end (peak)", "trainer RSS MB", "buffer full", "labels learnt at the last event",
                 "3 s later"], rows))
    print(f"targets: customers <= {TARGETS['customers']}, risk <= {TARGETS['risk']}, scores <= {TARGETS['scores']} per event "
          f"(subscription populations); purchase-only: scores <= {PURCHASE_TARGETS['scores']} per purchase, "
          f"settled within {PURCHASE_TARGETS['settle_s']:.0f} s, RSS <= {PURCHASE_TARGETS['rss_mb']:.0f} MB, no 'producer buffer full'")
    path = write_results("writes", {"machine": machine(), "results": results, "targets": {**TARGETS, **PURCHASE_TARGETS}})
    print(f"written to {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
