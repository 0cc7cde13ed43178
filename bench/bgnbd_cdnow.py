"""Does a BG/NBD fitted from the stream rank CDNOW's churners? (a script, not a test)

    python bench/bgnbd_cdnow.py [--repeat 20]

The CDNOW sample (bench/_cdnow.py: 2,357 customers, first purchase in
Q1 1997) split as in Fader, Hardie & Lee (2005): calibration = the first 39
weeks (1997-01-01 .. 1997-09-30), holdout = weeks 40-78 (1997-10-01 ..
1998-06-30). A customer churned when it bought nothing in the holdout.

Printed:
- the fitted parameters (weeks), directly from per-customer histories and
  through the stream's path (orders in time order into a `PurchaseSummary`),
  with the log-likelihood and each fit's median time over ``--repeat`` runs;
- ROC AUC and top-decile lift (bench/model_quality.py's functions), churners
  as positives, of: recency (days since the last purchase), 1 - P(alive),
  minus the expected purchases in 39 weeks, P(no purchase in 39 weeks), the
  same at the monitor's 30-day horizon, and 1 - the fixed-prior P(alive)
  feature the monitor has today (features.p_alive); also the ROC AUC among
  repeat buyers alone (for one-time buyers every BG/NBD score is a function
  of T only), and P(no purchase)'s ROC AUC as its horizon grows;
- how well P(no purchase in 39 weeks) is calibrated: its mean against the
  holdout's churn rate, and its Brier score.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import _cdnow  # noqa: E402
from model_quality import auc, top_decile_lift  # noqa: E402
from stream_app.risk import features  # noqa: E402
from stream_app.domain.purchases import (  # noqa: E402
    History, PurchaseSummary, expected_purchases, fit, loglik, p_alive, p_no_purchase,
)

CALIBRATION_END = _cdnow.CALIBRATION_END  # 1997-09-30, day index from 1997-01-01
HOLDOUT = range(273, 273 + 39 * 7)  # weeks 40-78: 1997-10-01 .. 1998-06-30
WEEK = 7.0


def split(days: dict[str, list[int]]):
    """Per customer: (x, t_x, T) in weeks at the end of calibration, days
    since the last purchase, and whether it churned (no holdout purchase)."""
    x, t_x, T = (np.array(c, dtype=float) for c in zip(*_cdnow.calibration(days)))
    recency = np.array([CALIBRATION_END - max(d for d in ds if d <= CALIBRATION_END) for ds in days.values()], float)
    churned = np.array([not any(d in HOLDOUT for d in ds) for ds in days.values()])
    return x, t_x, T, recency, churned


def streamed_summary(until: int = CALIBRATION_END) -> PurchaseSummary:
    """The orders up to day ``until``, in time order, through `History` and
    `move`: what a worker's summary holds at the end of that day."""
    summary, state = PurchaseSummary(), {}
    for day, cid in _cdnow.orders():
        if day > until:
            break
        old = state.get(cid)
        state[cid] = History.start(day) if old is None else old.bought(day)
        summary.move(old, state[cid])
    return summary


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20, help="fits timed per path (median reported)")
    args = ap.parse_args()

    x, t_x, T, recency, churned = split(_cdnow.purchase_days())
    print(f"CDNOW: {len(x):,} customers, {int(x.sum()):,} repeat purchases in calibration, "
          f"{churned.mean():.1%} bought nothing in the holdout")

    t0 = time.perf_counter()
    summary = streamed_summary()
    build = time.perf_counter() - t0
    sx, st, sT, sw = summary.arrays(CALIBRATION_END)
    direct = fit(x, t_x, T)
    streamed = summary.refit(CALIBRATION_END)
    t_direct = median_seconds(lambda: fit(x, t_x, T), args.repeat)
    t_summary = median_seconds(lambda: fit(sx, st, sT, weights=sw), args.repeat)
    midway = streamed_summary(until=150).refit(150)  # the fit a worker would have had in early June
    t_warm = median_seconds(lambda: fit(sx, st, sT, weights=sw, init=midway), args.repeat)
    print("\nparameters (weeks); paper: r 0.243, alpha 4.414, a 0.793, b 2.426, LL -9582.4")
    for name, p, rows, seconds in (("direct", direct, len(x), t_direct),
                                   ("summary", streamed, len(summary.cells), t_summary)):
        ll = float(loglik(p, x, t_x, T).sum())
        print(f"  {name:<8} r {p.r:.4f}  alpha {p.alpha:.4f}  a {p.a:.4f}  b {p.b:.4f}  LL {ll:.2f}  "
              f"({rows:,} rows, fit {seconds * 1e3:.1f} ms)")
    print(f"  summary built from the orders in {build * 1e3:.0f} ms; the refit started from the day-150 fit "
          f"(r {midway.r:.4f}, alpha {midway.alpha:.4f}, a {midway.a:.4f}, b {midway.b:.4f}) takes {t_warm * 1e3:.1f} ms")

    p = streamed
    horizon = 39.0
    no_purchase = p_no_purchase(p, horizon, x, t_x, T)
    fixed_prior = np.array([features.p_alive(int(a), b * WEEK, c * WEEK) for a, b, c in zip(x, t_x, T)])
    scores = {
        "recency (days since last purchase)": recency,
        "1 - P(alive)": 1.0 - p_alive(p, x, t_x, T),
        "-expected purchases in 39 weeks": -expected_purchases(p, horizon, x, t_x, T),
        "P(no purchase in 39 weeks)": no_purchase,
        "P(no purchase in 30 days)": p_no_purchase(p, 30.0 / WEEK, x, t_x, T),
        "1 - features.p_alive (fixed priors)": 1.0 - fixed_prior,
    }
    repeat = x > 0
    print(f"\nranking churners (no purchase in weeks 40-78); repeat buyers: the {int(repeat.sum()):,} with x > 0")
    print(f"  {'score':<38}{'ROC AUC':>9}{'top-10% lift':>14}{'AUC, repeat buyers':>20}")
    for name, s in scores.items():
        print(f"  {name:<38}{auc(churned, s):>9.4f}{top_decile_lift(churned, s):>14.2f}"
              f"{auc(churned[repeat], s[repeat]):>20.4f}")
    sweep = ", ".join(f"{w:g} w {auc(churned, p_no_purchase(p, w, x, t_x, T)):.4f}" for w in (1, 13, 26, 39, 78))
    print(f"  ROC AUC of P(no purchase) by horizon: {sweep}")
    print(f"  (top-10% lift is at most {1 / churned.mean():.2f} when {churned.mean():.0%} churn)")
    brier = float(np.mean((no_purchase - churned) ** 2))
    print(f"\nP(no purchase in 39 weeks): mean {no_purchase.mean():.4f} vs observed {churned.mean():.4f}, "
          f"Brier {brier:.4f} (always saying the base rate: {churned.mean() * (1 - churned.mean()):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
