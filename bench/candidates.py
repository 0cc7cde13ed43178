"""The candidate models side by side on simulated populations (a script, not a test).

    python bench/candidates.py [--scenario NAME|all] [--kind select|logreg|...] [--customers N --days D]

The replay is bench/model_quality.py's own (`Replay`: the monitor's pure
steps, labels scored at snapshot time before they exist), run with the
model kind given (default `select`: rules, logistic regression and tree,
the best progressive-validation score serving). It prints model_quality's
table for the snapshots after the model became ready, and for `select`
each candidate's faded ROC AUC at the end and when the serving candidate
changed. Same settings for every scenario: nothing here is tuned per
population.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import model_quality as mq  # noqa: E402

from stream_app.config import DAY  # noqa: E402
from stream_app.risk import model as model_module  # noqa: E402
from stream_app.risk.model import MODEL_KINDS  # noqa: E402
from stream_app.tools.simulator import SCENARIOS, scenario  # noqa: E402


class Watched(mq.Replay):
    """The replay, noting when the serving candidate changes (event-time day)."""

    def learn(self, cid: str, examples) -> None:
        before = getattr(self.model, "serving", None)
        super().learn(cid, examples)
        after = getattr(self.model, "serving", None)
        if after != before:
            self.switch_log = getattr(self, "switch_log", [])
            self.switch_log.append((self._now, before, after))


def run(name: str, kind: str, a: argparse.Namespace) -> dict:
    overrides = {k: v for k, v in (("customers", a.customers), ("days", a.days), ("seed", a.seed)) if v is not None}
    cfg = scenario(name, **overrides)
    t0 = time.time()
    r = Watched(cfg, kind, a.horizon, 0.0, a.min_labels, a.every)
    r.run(progress=False)
    rows = np.array(r.rows, dtype=mq.ROWS_DTYPE)
    ready = r.ready_t if r.ready_t is not None else r.end_t
    print(f"\n=== scenario {name}: {cfg.customers} customers, {cfg.days} days, seed {cfg.seed}, model {kind}; "
          f"replay {time.time() - t0:.0f} s, churns {dict(r.churns)}, labels {r.model.labels_seen}")
    after = rows[rows["t"] >= ready]
    mq.table(after, f"{name}: after the model became ready (day {(ready - r.start_t) / DAY:.0f})")
    out = {"scenario": name, "n": len(after)}
    if len(after) and 0 < after["y"].sum() < len(after):
        out.update(model=mq.auc(after["y"], after["p_model"]), rules=mq.auc(after["y"], after["p_health"]),
                   recency=mq.auc(after["y"], after["inactive"]))
    cands = r.model.candidates()
    if cands:
        print("  candidates at the end (faded progressive-validation ROC AUC):")
        for n, c in cands.items():
            print(f"    {n:<8} roc_auc {c['roc_auc']:.4f}{'  (serving)' if c['serving'] else ''}")
        for t, old, new in getattr(r, "switch_log", []):
            print(f"  day {(t - r.start_t) / DAY:.0f}: serving {old} -> {new}")
        out["serving"] = r.model.serving
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="default", help=f"one of {', '.join(SCENARIOS)} or all")
    ap.add_argument("--kind", choices=MODEL_KINDS, default="select")
    ap.add_argument("--customers", type=int)
    ap.add_argument("--days", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--horizon", type=float, default=30.0)
    ap.add_argument("--min-labels", type=int, default=500)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--half-life", type=int, default=model_module.SELECT_HALF_LIFE,
                    help="labels after which a label's weight in the selection halves (an experiment: the worker uses the default)")
    a = ap.parse_args(argv)
    model_module.Selection._GROWTH = 2.0 ** (1.0 / a.half_life)
    names = list(SCENARIOS) if a.scenario == "all" else [a.scenario]
    results = [run(n, a.kind, a) for n in names]
    print(f"\nsummary (model {a.kind}; ROC AUC after the model became ready; target: model >= recency + 0.05 and >= rules)")
    print(f"  {'scenario':<18}{'model':>8}{'rules':>8}{'recency':>9}{'serving':>10}  target")
    for r in results:
        if "model" not in r:
            print(f"  {r['scenario']:<18}  (not enough of both classes)")
            continue
        ok = r["model"] >= r["recency"] + 0.05 and r["model"] >= r["rules"]
        print(f"  {r['scenario']:<18}{r['model']:>8.4f}{r['rules']:>8.4f}{r['recency']:>9.4f}{r.get('serving', '-'):>10}  {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
