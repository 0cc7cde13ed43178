"""How good is the online churn model on a simulated year? (a script, not a test)

    python bench/model_quality.py [--customers N --days D --seed S --model logreg|arf]

Replays a simulated population in event-time order through the monitor's own
pure steps, the way the worker would live:

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
simulator's truth file. Each labelled snapshot is scored three ways: the
model (score at snapshot time), the rule-based health score (`health.py`) and
a "days since last activity" baseline. Figures are printed for the snapshots
taken after the model became ready (`min_labels` of both classes) and for the
second half of the period; snapshots of the last H days are never labelled
(censored) and are left out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from stream_app.alerts import AlertConfig, decide  # noqa: E402
from stream_app.config import DAY  # noqa: E402
from stream_app.contract import parse_ts  # noqa: E402
from stream_app.features import features, monthly_value  # noqa: E402
from stream_app.health import health_risk  # noqa: E402
from stream_app.config import Settings  # noqa: E402
from stream_app.labels import LabelBook, Policy, expire, is_observation_day, observe, on_churn  # noqa: E402
from stream_app.model import ChurnModel, Quality  # noqa: E402
from stream_app.simulator import SimConfig, Simulation  # noqa: E402
from stream_app.state import ACTIVE, Rules, advance, apply, day_of, new_state  # noqa: E402


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
        self.rows: list[tuple] = []  # (y, p_model, p_health, days_inactive, snapshot_t, cancel_pending)
        self.ready_t: float | None = None
        self.churns = defaultdict(int)
        self.churn_times: dict[str, list[float]] = defaultdict(list)
        self.snapshots = 0
        # the alert policy, run on the daily scores (rules until the model is ready)
        self.alert_cfg = AlertConfig()
        self.alert_states: dict = {}
        self.alerts: list[dict] = []

    def book(self, cid: str) -> LabelBook:
        b = self.books.get(cid)
        if b is None:
            b = self.books[cid] = LabelBook()
        return b

    def learn(self, examples) -> None:
        m, q = self.model, self.quality
        for ex in examples:
            f = ex.features
            self.rows.append((ex.label, ex.score, health_risk(f)[0], f["days_since_last_activity"],
                              ex.snapshot_t, f["cancel_pending"]))
            q.update(ex.label, ex.score, ex.labelled_t)
            m.learn(f, ex.label)
        if self.ready_t is None and m.ready:
            self.ready_t = self._now

    def churned(self, st, effects) -> None:
        # the churn time is the end of the spell `_churn` just closed
        churn_t = st.spells[-1][1]
        self.churns[effects.churn.kind] += 1
        self.churn_times[st.customer_id].append(churn_t)
        self.learn(on_churn(self.book(st.customer_id), churn_t, self.policy))

    def end_of_day(self, day: int) -> None:
        now = (day + 1) * DAY - 1.0
        self._now = now
        rules = self.rules
        for cid, st in self.states.items():
            st, eff = advance(st, now, rules)
            if eff.churn is not None:
                self.churned(st, eff)
        for b in self.books.values():
            if b.size:
                self.learn(expire(b, now, self.policy))
        model = self.model
        score = model.score
        for cid, st in self.states.items():
            if st.status != ACTIVE:
                continue
            f = features(st, now)
            p = score(f)
            if is_observation_day(cid, day, self.policy.every_days):
                observe(self.book(cid), day, f, p, self.policy)
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


def table(rows: np.ndarray, title: str) -> None:
    y = rows["y"]
    n, pos = len(y), int(y.sum())
    print(f"\n{title}: {n} labelled snapshots, {pos} positive ({pos / max(1, n):.2%})")
    if n == 0 or pos == 0 or pos == n:
        print("  (not enough of both classes)")
        return
    print(f"  {'scorer':<28}{'ROC AUC':>9}{'log loss':>10}{'Brier':>8}{'top-10% lift':>14}")
    for name, s, prob in (
        ("model", rows["p_model"], True),
        ("health score (rules)", rows["p_health"], True),
        ("days since last activity", rows["inactive"], False),
    ):
        ll = f"{log_loss(y, s):.4f}" if prob else "n/a"
        br = f"{brier(y, s):.4f}" if prob else "n/a"
        print(f"  {name:<28}{auc(y, s):>9.4f}{ll:>10}{br:>8}{top_decile_lift(y, s):>14.2f}")


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = SimConfig()
    ap.add_argument("--customers", type=int, default=d.customers)
    ap.add_argument("--days", type=int, default=d.days)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--model", choices=("logreg", "arf"), default="logreg")
    ap.add_argument("--horizon", type=float, default=30.0, help="label horizon H in days")
    ap.add_argument("--lead", type=float, default=0.0, help="lead time in days (fight-churn)")
    ap.add_argument("--min-labels", type=int, default=500)
    ap.add_argument("--every", type=int, default=Settings().snapshot_every_days,
                    help="observe each customer every this many days (the worker's snapshot_every_days; 1 = daily)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)

    cfg = SimConfig(customers=a.customers, days=a.days, seed=a.seed)
    t0 = time.time()
    r = Replay(cfg, a.model, a.horizon, a.lead, a.min_labels, a.every)
    r.run(progress=not a.quiet)
    took = time.time() - t0

    dt = np.dtype([("y", bool), ("p_model", float), ("p_health", float), ("inactive", float),
                   ("t", float), ("cancel", float)])
    rows = np.array(r.rows, dtype=dt)
    half = r.start_t + (r.end_t - r.start_t) / 2.0
    ready = r.ready_t if r.ready_t is not None else r.end_t

    print(f"model_quality: {cfg.customers} customers, {cfg.days} days, seed {cfg.seed}, "
          f"model {a.model}, horizon {a.horizon:g} d, lead {a.lead:g} d, observed every {a.every} d")
    print(f"replay took {took:.0f} s; {len(r.states)} customers seen, {r.snapshots} snapshots, "
          f"churns {dict(r.churns)}")
    print(f"labels seen by the model: {r.model.labels_seen} ({r.model.positives} positive); "
          f"ready (>= {a.min_labels} labels, both classes) on day {(ready - r.start_t) / DAY:.0f}")
    table(rows[rows["t"] >= ready], "after the model became ready")
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
            print(f"    [{b['lo']:.1f}, {b['hi']:.1f}): {b['count']:>7}  {b['mean_predicted']:.3f}  {b['observed_rate']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
