"""Does the live worker rank CDNOW's churners? (a script, not a test)

    python bench/cdnow_live.py [--keep]

The CDNOW sample (bench/_cdnow.py: 2,357 real customers of an online CD shop,
first purchase in Q1 1997) replayed through a real broker and worker: its 39
calibration weeks (1997-01-01 .. 1997-09-30) as `purchase` events on the
embedded broker, one `python -m stream_app worker` (default settings, 8
partitions). When the worker has processed them all, the risk of every
customer is read from the lookup (`GET /customers/{id}`: `risk_now`, scored
at the worker's clock; also the stored `risk` of its last visit, up to an
observation period old) and ranked against the holdout: churned = no purchase
in weeks 40-78 (1997-10-01 .. 1998-06-30), as in Fader, Hardie & Lee (2005).

Printed: ROC AUC and top-decile lift of the lookup's `risk_now`, its stored
`risk`, recency (days since the last purchase) and BG/NBD's expected
purchases in 39 weeks fitted offline to the same data (the reference:
0.7725); how many customers had no risk (target: none); who scored them
(`scored_by`); the worker's BG/NBD fit. Target (issue 12): ROC AUC of the
lookup's risk >= 0.78. Results go to bench/results/cdnow_live.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import _cdnow  # noqa: E402
from _harness import Run, app_id, ensure_worker_topics, machine, metric_sum, produce, say, table, write_results  # noqa: E402
from model_quality import auc, top_decile_lift  # noqa: E402

from stream_app.ingest.contract import parse_ts  # noqa: E402
from stream_app.domain.purchases import expected_purchases, fit  # noqa: E402

PARTITIONS = 8
HOLDOUT = range(273, 273 + 39 * 7)
END = parse_ts("1997-09-30T12:00:00Z")  # the worker's clock trails the last purchase (noon) by the allowed lateness
TARGET = 0.78


SETTLED = ("churn_customers_active", "churn_customers_scored_total", "churn_training_examples_total")


def wait_settled(worker, quiet_s: float = 10.0, timeout: float = 300.0) -> float:
    """Seconds until the worker's figures stop moving for `quiet_s`: after the
    last event is read, the sweep still works through the customers whose
    lapse the clock made due (a bounded number per tick) and their labels."""
    t0 = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - t0 < timeout:
        text = worker.fetch("/metrics").decode()
        now = tuple(metric_sum(text, name) for name in SETTLED)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return since - t0
        time.sleep(1.0)
    raise RuntimeError(f"the worker's figures still moved after {timeout:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the logs and data directory")
    args = ap.parse_args()
    say(f"machine: {machine()}")
    events = _cdnow.events(39)
    days = _cdnow.purchase_days()
    ids = sorted(days)
    churned = np.array([not any(d in HOLDOUT for d in days[c]) for c in ids])
    with Run(keep=args.keep) as run:
        broker = run.broker()
        app = app_id("cdnow")
        ensure_worker_topics(broker.url, app, PARTITIONS)
        worker = run.worker(broker.url, app, PARTITIONS).wait_serving()
        started = time.monotonic()
        produce(broker.url, events, PARTITIONS)
        say(f"produced {len(events):,} purchases of {len(ids):,} customers")
        deadline = time.monotonic() + 600
        while True:
            worker.check()
            text = worker.fetch("/metrics").decode()
            if metric_sum(text, "churn_events_processed_total") >= len(events) and \
                    metric_sum(text, "churn_event_time_clock_seconds") >= END - 3600:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not process the sample in 600 s:\n{worker.log_tail()}")
            time.sleep(0.5)
        say(f"processed in {time.monotonic() - started:.1f} s; waiting for the visits the clock made due")
        settled = wait_settled(worker)
        say(f"settled (lapses, labels, refits done) {settled:.1f} s later; reading {len(ids):,} lookups")
        views = [json.loads(worker.fetch(f"/customers/{c}")) for c in ids]
        text = worker.fetch("/metrics").decode()
    now = np.array([np.nan if v.get("risk_now") is None else v["risk_now"] for v in views])
    stored = np.array([np.nan if v.get("risk") is None else v["risk"] for v in views])
    x, t_x, T = (np.array(c, dtype=float) for c in zip(*_cdnow.calibration(days)))
    recency = np.array([_cdnow.CALIBRATION_END - max(d for d in days[c] if d <= _cdnow.CALIBRATION_END) for c in ids], float)
    offline = fit(x, t_x, T)
    scores = {
        "lookup risk_now": now,
        "lookup risk (last visit)": stored,
        "recency (days since last purchase)": recency,
        "BG/NBD -expected purchases in 39 weeks (offline fit)": -expected_purchases(offline, 39.0, x, t_x, T),
    }
    rows, result = [], {"machine": machine(), "customers": len(ids), "churned": float(churned.mean())}
    for name, s in scores.items():
        missing = int(np.isnan(s).sum())
        a, lift = auc(churned, np.nan_to_num(s, nan=1.0)), top_decile_lift(churned, np.nan_to_num(s, nan=1.0))
        rows.append([name, f"{a:.4f}", f"{lift:.2f}", missing])
        result[name] = {"roc_auc": a, "top_decile_lift": lift, "without_risk": missing}
    print(f"\nCDNOW, {len(ids):,} customers, {churned.mean():.1%} bought nothing in weeks 40-78")
    print(table(["score", "ROC AUC", "top-10% lift", "customers without it"], rows))
    by = Counter(v.get("scored_by") for v in views)
    statuses = Counter(v.get("status") for v in views)
    params = {p: metric_sum(text, f'churn_bgnbd_parameter{{param="{p}"}}') for p in ("r", "alpha", "a", "b")}
    serving = metric_sum(text, "churn_purchase_model_serving")
    overdue = sum(1 for v in views if v.get("next_transition_at") and v["next_transition_at"] <= v["clock"])
    print(f"scored_by: {dict(by)}; statuses: {dict(statuses)}; transitions overdue at the lookup's clock: {overdue}; "
          f"clocks seen: {sorted(Counter(v['clock'][:13] for v in views).items())}")
    print("worker's BG/NBD fit (weeks): " + ", ".join(f"{k} {v:.4f}" for k, v in params.items())
          + f"; purchase model serving: {serving:.0f}")
    ok = result["lookup risk_now"]["roc_auc"] >= TARGET and result["lookup risk_now"]["without_risk"] == 0
    print(f"target: lookup ROC AUC >= {TARGET} with every customer ranked: {'met' if ok else 'MISSED'}")
    result.update(scored_by=dict(by), statuses=dict(statuses), overdue_transitions=overdue, bgnbd=params, purchase_model_serving=serving, target_met=ok)
    write_results("cdnow_live", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
