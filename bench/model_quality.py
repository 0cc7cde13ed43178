"""How good is the online churn model on a simulated population? (a script, not a test)

    python bench/model_quality.py [--scenario NAME|all] [--customers N --days D --seed S --model logreg|arf]

Replays a simulated population (`stream_app.tools.simulator.SCENARIOS`, default
`default`; `all` runs every scenario with the same settings) in event-time
order through the monitor's own pure steps, the way the worker would live:

1. every event goes through `state.apply`; a churn it causes labels that
   customer's waiting snapshots (`labels.on_churn`) and the model learns them;
2. at the end of every event-time day: `state.advance` for every customer
   (cancellations taking effect, grace periods and inactivity running out,
   again feeding `on_churn`), then `labels.expire` (negatives whose 30-day
   horizon passed) and learning, then one snapshot per active customer whose
   observation day it is (every `--every` days, the worker's
   `snapshot_every_days`; the end-of-day snapshot of `labels.py`), scored by
   the model *before* any of its labels exist (progressive validation; the
   score is kept in the label book). Alerts are judged on every day's score.

Ground truth is the monitor's own churn transitions (`Effects.churn`), not the
simulator's truth file. Each labelled snapshot is scored by:

- model: what the worker serves (`served_score`, the one place to change when
  the worker's risk changes), at snapshot time;
- rules: the rule-based health score (`health.py`);
- recency: days since last activity (a rank, not a probability: no calibration);
- BG/NBD (the purchase-only scenario): that scenario runs through the
  worker's own processor (`run_buyers`: `process.Replay`), whose buyers'
  question is "no purchase within the horizon" and whose risk is BG/NBD's
  P(no purchase), fitted once a day from the stream, or the purchase model
  over it (`purchases.PurchaseModel`); every label is judged as the worker
  judges it (progressive validation), model = the risk served.

Columns: ROC AUC, top-decile lift (churn rate in the top 10 % of scores /
overall), Brier score and expected calibration error (10 equal-width bins of
the predicted probability: the mean |predicted - observed| weighted by the
bin's share). The table per scenario covers the snapshots taken after the
model became ready (`min_labels` of both classes); snapshots of the last H days
are never labelled (censored) and are left out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from stream_app.risk.alerts import AlertConfig, decide  # noqa: E402
from stream_app.config import DAY  # noqa: E402
from stream_app.ingest.contract import parse_ts  # noqa: E402
from stream_app.risk.features import features, monthly_value  # noqa: E402
from stream_app.risk.health import health_risk  # noqa: E402
from stream_app.config import Settings  # noqa: E402
from stream_app.risk.labels import (  # noqa: E402
    LabelBook, Policy, expire, is_observation_day, observe, on_churn, snapshot_time,
)
from stream_app.risk.model import MODEL_KINDS, ChurnModel, Quality  # noqa: E402
from stream_app.domain.purchases import PurchaseModel  # noqa: E402
from stream_app.tools.simulator import SCENARIOS, SimConfig, Simulation, scenario  # noqa: E402
from stream_app.domain.state import ACTIVE, Rules, advance, apply, day_of, new_state  # noqa: E402


# --------------------------------------------------------------------------- metrics


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """Exact ROC AUC (Mann-Whitney U with average ranks for ties)."""
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(len(s), dtype=float)
    # average ranks over runs of equal scores
    bounds = np.flatnonzero(np.diff(ss)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(ss)]))
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def top_decile_lift(y: np.ndarray, s: np.ndarray) -> float:
    """Churn rate in the top 10 % of scores / overall rate; ties at the cut
    count in proportion (the expected value under a random tie-break)."""
    n = len(y)
    base = y.mean()
    if n == 0 or base == 0:
        return float("nan")
    k = n / 10.0
    cut = np.partition(s, n - int(np.ceil(k)))[n - int(np.ceil(k))]
    above = s > cut
    tied = s == cut
    n_above = above.sum()
    share = (k - n_above) / tied.sum()
    pos_top = y[above].sum() + share * y[tied].sum()
    return float((pos_top / k) / base)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over `bins` equal-width bins of the
    predicted probability: sum over bins of (share of rows) x |mean predicted
    - observed rate|. 0 for a calibrated scorer, whatever its ranking.

    >>> y = np.array([0, 0, 1, 1], dtype=bool)
    >>> ece(y, np.array([0.0, 0.0, 1.0, 1.0])), round(ece(y, np.array([0.5, 0.5, 0.5, 0.5])), 3)
    (0.0, 0.0)
    >>> round(ece(y, np.array([0.25, 0.25, 0.25, 0.25])), 3)
    0.25
    """
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(p) * abs(float(p[m].mean()) - float(y[m].mean()))
    return float(total)


# --------------------------------------------------------------------------- scorers


def served_score(model: ChurnModel, state, feats: dict, now: float) -> float:
    """The model's risk for one customer at `now`, as the worker serves it.

    The single place the bench computes "the model": today the worker scores
    every active customer with `ChurnModel` on `features.features` (the rows
    the tables keep are those after the model became ready, where the served
    risk is the model's, not the rules'). When the worker serves another risk
    for some customers (purchase-only ones from BG/NBD), change it here, with
    the same function the worker calls.
    """
    return model.score(feats)


# --------------------------------------------------------------------------- replay


class Replay:
    def __init__(self, cfg: SimConfig, kind: str, horizon: float, lead: float, min_labels: int, every: int = 1) -> None:
        self.cfg = cfg
        self.rules = Rules(grace_s=cfg.grace_days * DAY)
        self.model = ChurnModel(kind, min_labels=min_labels)
        self.quality = Quality()
        self.horizon, self.lead = horizon, lead
        self.policy = Policy(horizon, lead, every)
        self.states: dict = {}
        self.books: dict[str, LabelBook] = {}
        # (y, p_model, p_health, days_inactive, snapshot_t, cancel_pending, p_bgnbd)
        self.rows: list[tuple] = []
        self.ready_t: float | None = None
        self.churns = defaultdict(int)
        self.churn_times: dict[str, list[float]] = defaultdict(list)
        self.snapshots = 0
        # the risk served at each snapshot, (customer, snapshot time) -> float64. The
        # book keeps it as float32 (labels.py); ranked from that copy, the rules serving
        # as "the model" scored 0.81381 against the same rules' 0.81386 on support-trouble
        # (2000 x 180): float32 made ties of risks 3e-8 apart. The bench judges the risk
        # the worker serves, at its own precision.
        self.served: dict[tuple[str, float], float] = {}
        # the alert policy, run on the daily scores (rules until the model is ready)
        self.alert_cfg = AlertConfig()
        self.alert_states: dict = {}
        self.alerts: list[dict] = []

    def book(self, cid: str) -> LabelBook:
        b = self.books.get(cid)
        if b is None:
            b = self.books[cid] = LabelBook()
        return b

    def learn(self, cid: str, examples) -> None:
        m, q = self.model, self.quality
        served = self.served
        for ex in examples:
            f = ex.features
            score = served.pop((cid, ex.snapshot_t), ex.score)
            self.rows.append((ex.label, score, health_risk(f)[0], f["days_since_last_activity"],
                              ex.snapshot_t, f["cancel_pending"], float("nan")))
            q.update(ex.label, ex.score, ex.labelled_t)
            m.learn(f, ex.label)
        if self.ready_t is None and m.ready:
            self.ready_t = self._now

    def churned(self, st, effects) -> None:
        # the churn time is the end of the spell `_churn` just closed
        churn_t = st.spells[-1][1]
        self.churns[effects.churn.kind] += 1
        self.churn_times[st.customer_id].append(churn_t)
        self.learn(st.customer_id, on_churn(self.book(st.customer_id), churn_t, self.policy))

    def end_of_day(self, day: int) -> None:
        now = (day + 1) * DAY - 1.0
        self._now = now
        rules = self.rules
        for cid, st in self.states.items():
            st, eff = advance(st, now, rules)
            if eff.churn is not None:
                self.churned(st, eff)
        for cid, b in self.books.items():
            if b.size:
                self.learn(cid, expire(b, now, self.policy))
        model = self.model
        for cid, st in self.states.items():
            if st.status != ACTIVE:
                continue
            f = features(st, now)
            p = served_score(model, st, f, now)
            if is_observation_day(cid, day, self.policy.every_days):
                observe(self.book(cid), day, f, p, self.policy)
                self.served[(cid, snapshot_time(day))] = p
                self.snapshots += 1
            self.alert(cid, st, f, p, now)

    def alert(self, cid, st, f, p, now) -> None:
        """The alert policy on today's score; reasons only when an alert may fire."""
        cfg = self.alert_cfg
        prev = self.alert_states.get(cid)
        ready = self.model.ready
        risk = p if ready else health_risk(f)[0]
        if risk < cfg.upper and (prev is None or not prev.open):
            if prev is not None:
                prev.last_risk = risk
            return
        a = self.model.assess(f)
        state, alert = decide(prev, a.risk, monthly_value(st, now), now, a.reasons, cfg,
                              customer_id=cid, model_version=self.model.version,
                              scored_by=a.scored_by)
        self.alert_states[cid] = state
        if alert is not None:
            self.alerts.append(alert)

    def run(self, progress: bool = True) -> None:
        sim = Simulation(self.cfg)
        rules = self.rules
        states = self.states
        cur = None
        t0 = time.time()
        for ev in sim.events():
            t = parse_ts(ev["ts"])
            ev["_t"] = t
            if ev["type"] == "subscription_cancelled" and "effective_at" in ev:
                ev["_effective_t"] = parse_ts(ev["effective_at"])
            d = day_of(t)
            if cur is None:
                cur = d
            while d > cur:
                self.end_of_day(cur)
                cur += 1
                if progress and cur % 30 == 0:
                    print(f"  day {cur - day_of(sim.start_epoch)}: {len(self.rows)} labels, "
                          f"{time.time() - t0:.0f}s", file=sys.stderr, flush=True)
            self._now = t
            cid = ev["customer_id"]
            st = states.get(cid)
            if st is None:
                st = states[cid] = new_state(cid)
            st, eff = apply(st, ev, rules)
            if eff.churn is not None:
                self.churned(st, eff)
        if cur is not None:
            self.end_of_day(cur)
        self.start_t = float(sim.start_epoch)
        self.end_t = float(sim.end_epoch)


ROWS_DTYPE = np.dtype([("y", bool), ("p_model", float), ("p_health", float), ("inactive", float),
                       ("t", float), ("cancel", float), ("p_bgnbd", float)])


def scorers(rows: np.ndarray) -> list[tuple[str, np.ndarray, bool]]:
    """(name, scores, is a probability) of every scorer with a score on every row."""
    out = [
        ("model", rows["p_model"], True),
        ("rules (health.py)", rows["p_health"], True),
        ("recency (days inactive)", rows["inactive"], False),
    ]
    bg = rows["p_bgnbd"]
    if len(bg) and not np.isnan(bg).all():
        out.append(("BG/NBD p_no_purchase", bg, True))
    return out


def measure(rows: np.ndarray) -> dict[str, dict[str, float]]:
    """Per scorer: ROC AUC, top-decile lift, Brier, ECE, log loss (NaN where not a probability)."""
    y = rows["y"]
    out = {}
    for name, s, prob in scorers(rows):
        if np.isnan(s).any():
            raise ValueError(f"{name}: {int(np.isnan(s).sum())} of {len(s)} rows have no score")
        nan = float("nan")
        out[name] = {
            "roc_auc": auc(y, s), "top_decile_lift": top_decile_lift(y, s),
            "brier": brier(y, s) if prob else nan, "ece": ece(y, s) if prob else nan,
            "log_loss": log_loss(y, s) if prob else nan,
        }
    return out


def table(rows: np.ndarray, title: str) -> dict[str, dict[str, float]] | None:
    y = rows["y"]
    n, pos = len(y), int(y.sum())
    print(f"\n{title}: {n} labelled snapshots, {pos} positive ({pos / max(1, n):.2%})")
    if n == 0 or pos == 0 or pos == n:
        print("  (not enough of both classes)")
        return None
    m = measure(rows)
    print(f"  {'scorer':<26}{'ROC AUC':>9}{'top-10% lift':>14}{'Brier':>8}{'ECE':>8}{'log loss':>10}")

    def f(v: float, fmt: str) -> str:
        return "n/a" if v != v else format(v, fmt)

    for name, v in m.items():
        print(f"  {name:<26}{v['roc_auc']:>9.4f}{v['top_decile_lift']:>14.2f}{f(v['brier'], '.4f'):>8}"
              f"{f(v['ece'], '.4f'):>8}{f(v['log_loss'], '.4f'):>10}")
    return m


def alerts_summary(r: Replay) -> None:
    """How the default alert policy would have behaved on the same days."""
    raised = [a for a in r.alerts if a["state"] == "raised"]

    def by(key: str, rows: list[dict]) -> dict:
        return dict(sorted(Counter(a[key] for a in rows).items()))

    end = r.end_t - 30 * DAY
    judged = [a for a in raised if parse_ts(a["ts"]) <= end]
    hit = sum(1 for a in judged
              if any(0 <= c - parse_ts(a["ts"]) <= 30 * DAY for c in r.churn_times.get(a["customer_id"], ())))
    print(f"\nalert policy (upper {r.alert_cfg.upper}, lower {r.alert_cfg.lower}, step {r.alert_cfg.step}, "
          f"cooldown {r.alert_cfg.cooldown_s / DAY:g} d, min expected loss {r.alert_cfg.min_expected_loss:g}):")
    print(f"  alerts {len(r.alerts)} {by('state', r.alerts)}; raised by {by('scored_by', raised)}")
    print(f"  raised: priority {by('priority', raised)}, play {by('recommended_play', raised)}")
    if judged:
        print(f"  precision of raised alerts (churned within 30 days; raised before the last 30 days): "
              f"{hit}/{len(judged)} = {hit / len(judged):.1%}")


class RecordingPurchaseModel(PurchaseModel):
    """The worker's purchase model, keeping a row per label it judges: the
    risk served for that snapshot's customer (the layer's if it served then,
    else BG/NBD's), the rules, days since the last purchase and BG/NBD."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.rows: list[tuple] = []

    def add(self, feats: dict[str, float], label: bool) -> None:
        serving = self.serving
        super().add(feats, label)
        _, then, bgnbd = self.last_judged()
        self.rows.append((bool(label), then if serving else bgnbd, health_risk(feats)[0], feats["recency_days"],
                          float("nan"), 0.0, bgnbd))


def run_buyers(name: str, a) -> dict:
    """A purchase-only population through the worker's own processor
    (`process.Replay`): its labels are "no purchase within the horizon"
    (`labels.on_purchase`), its risk BG/NBD's or the purchase model's
    (`purchases.PurchaseModel`), judged by progressive validation as the
    worker judges them (each label against the layer's weights from before
    it existed, and against BG/NBD's score in the snapshot)."""
    from stream_app.runtime.process import Replay as Worker

    cfg = scenario(name, customers=a.customers, days=a.days, seed=a.seed)
    t0 = time.time()
    settings = Settings(horizon_days=a.horizon, snapshot_every_days=a.every, min_labels=a.min_labels)
    w = Worker(settings, batch=500, caught_up=True)
    pm = w.processor.purchase_model = RecordingPurchaseModel(min_labels=a.min_labels)
    for ev in Simulation(cfg).events():
        w.feed(ev)
        w.examples.clear()
    w.finish()
    took = time.time() - t0
    rows = np.array(pm.rows, dtype=ROWS_DTYPE)
    print(f"\n=== scenario {name} (through the worker's processor) ===")
    print(f"replay took {took:.0f} s; {len(w.customers)} customers, {pm.labels_seen} buyer labels "
          f"(no purchase within {a.horizon:g} days) after the first BG/NBD fit; last fit {w.processor.bgnbd}; "
          f"purchase model serving at the end: {pm.serving}")
    m = table(rows, f"{name}: every buyer label after the first BG/NBD fit (model = the risk served)")
    return {"scenario": name, "seconds": round(took, 1), "customers_seen": len(w.customers),
            "snapshots": pm.labels_seen, "churns": {}, "labels": pm.labels_seen, "ready_day": None,
            "bgnbd_refits": None, "scorers": m, "scorers_without_pending_cancellations": m}


def run_scenario(name: str, a) -> dict:
    """Replay one scenario with the command line's settings; print its tables; return its figures."""
    cfg = scenario(name, customers=a.customers, days=a.days, seed=a.seed)
    if cfg.purchase_only_share >= 1.0:
        return run_buyers(name, a)
    t0 = time.time()
    r = Replay(cfg, a.model, a.horizon, a.lead, a.min_labels, a.every)
    r.run(progress=not a.quiet)
    took = time.time() - t0

    rows = np.array(r.rows, dtype=ROWS_DTYPE)
    ready = r.ready_t if r.ready_t is not None else r.end_t
    print(f"\n=== scenario {name} ===")
    print(f"replay took {took:.0f} s; {len(r.states)} customers seen, {r.snapshots} snapshots, "
          f"churns {dict(r.churns)}")
    print(f"labels seen by the model: {r.model.labels_seen} ({r.model.positives} positive); "
          f"ready (>= {a.min_labels} labels, both classes) on day {(ready - r.start_t) / DAY:.0f}")
    after = rows[rows["t"] >= ready]
    m = table(after, f"{name}: snapshots after the model became ready")
    # a customer who cancelled and waits for the period end is a positive every
    # scorer that reads cancel_pending finds: the harder part of the ranking is the rest
    m_open = table(after[after["cancel"] == 0], f"{name}: the same, without pending cancellations")
    if not a.brief:
        half = r.start_t + (r.end_t - r.start_t) / 2.0
        table(rows[rows["t"] >= half], "second half of the period")
        sub = rows[(rows["t"] >= half) & (rows["cancel"] == 0)]
        table(sub, "second half, without pending cancellations")
        alerts_summary(r)
        r.quality.flush()
        q = r.quality.report()
        print("\nlive Quality tracker (all labels, as the worker would export it):")
        print(f"  labels {q['labels']}, ROC AUC {q['roc_auc']:.4f} (rolling {q['roc_auc_rolling']:.4f}), "
              f"log loss {q['log_loss']:.4f} (rolling {q['log_loss_rolling']:.4f}), Brier {q['brier']:.4f}, "
              f"top-decile lift {q['top_decile_lift']:.2f}, drift events {q['drift_events']}")
        print("  calibration (bin: count, mean predicted, observed):")
        for b in q["calibration"]:
            if b["count"]:
                print(f"    [{b['lo']:.1f}, {b['hi']:.1f}): {b['count']:>7}  {b['mean_predicted']:.3f}  "
                      f"{b['observed_rate']:.3f}")
    return {"scenario": name, "seconds": round(took, 1), "customers_seen": len(r.states),
            "snapshots": r.snapshots, "churns": dict(r.churns), "labels": r.model.labels_seen,
            "ready_day": round((ready - r.start_t) / DAY), "bgnbd_refits": None,
            "scorers": m, "scorers_without_pending_cancellations": m_open}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = SimConfig()
    ap.add_argument("--scenario", default="default", choices=(*SCENARIOS, "all"),
                    help="simulated population (stream_app.tools.simulator.SCENARIOS); all = every one, same settings")
    ap.add_argument("--customers", type=int, default=d.customers)
    ap.add_argument("--days", type=int, default=d.days)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--model", choices=MODEL_KINDS, default=Settings().model_kind,
                    help="the worker's model_kind (default: the worker's default)")
    ap.add_argument("--horizon", type=float, default=30.0, help="label horizon H in days")
    ap.add_argument("--lead", type=float, default=0.0, help="lead time in days (fight-churn)")
    ap.add_argument("--min-labels", type=int, default=500)
    ap.add_argument("--every", type=int, default=Settings().snapshot_every_days,
                    help="observe each customer every this many days (the worker's snapshot_every_days; 1 = daily)")
    ap.add_argument("--brief", action="store_true",
                    help="only the table per scenario (implied by --scenario all)")
    ap.add_argument("--json", type=str, default=None, help="also write the figures to this JSON file")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    names = [n for n in SCENARIOS] if a.scenario == "all" else [a.scenario]
    if a.scenario == "all":
        a.brief = True

    load = os.getloadavg()
    print(f"model_quality: scenarios {', '.join(names)}")
    print(f"settings: {a.customers} customers, {a.days} days, seed {a.seed}, model {a.model}, "
          f"horizon {a.horizon:g} d, lead {a.lead:g} d, observed every {a.every} d, min labels {a.min_labels}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min), "
          f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    t0 = time.time()
    results = [run_scenario(name, a) for name in names]

    if len(results) > 1:
        cols = ["model", "rules (health.py)", "recency (days inactive)", "BG/NBD p_no_purchase"]
        for key, what in (("scorers", "snapshots after the model became ready"),
                          ("scorers_without_pending_cancellations", "the same, without pending cancellations")):
            print(f"\n=== ROC AUC by scenario ({what}) ===")
            print(f"  {'scenario':<18}" + "".join(f"{c.split(' ')[0]:>10}" for c in cols) + f"{'model - recency':>17}")
            for res in results:
                m = res[key] or {}
                vals = [m.get(c, {}).get("roc_auc", float("nan")) for c in cols]
                cells = "".join("n/a".rjust(10) if v != v else f"{v:>10.4f}" for v in vals)
                gap = vals[0] - vals[2]
                print(f"  {res['scenario']:<18}{cells}" + ("n/a".rjust(17) if gap != gap else f"{gap:>+17.4f}"))
    load = os.getloadavg()
    print(f"\ntotal {time.time() - t0:.0f} s; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if a.json:
        import json

        settings = {k: getattr(a, k) for k in ("customers", "days", "seed", "model", "horizon", "lead",
                                               "min_labels", "every")}
        def finite(v):  # NaN (a rank has no Brier) is not JSON: null
            if isinstance(v, dict):
                return {k: finite(x) for k, x in v.items()}
            if isinstance(v, list):
                return [finite(x) for x in v]
            return None if isinstance(v, float) and v != v else v

        with open(a.json, "w") as f:
            json.dump(finite({"settings": settings, "results": results}), f, indent=1, sort_keys=True,
                      allow_nan=False)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
