"""Every Prometheus metric the worker exports, named and documented in one place.

Names are a contract: Grafana dashboards and alert rules query them. They
follow Prometheus conventions: `churn_` prefix, counters end in `_total`,
seconds for durations, money in the account currency, and only bounded labels
(plan, reason, kind, window, topic) -- never a customer id.

Two families:

- counters of what happened, incremented as events are processed
  (`churn_customers_churned_total`, `churn_mrr_movement_total`, ...);
- gauges of what is, computed at scrape time from the partition ledgers this
  worker owns (`churn_customers_active`, `churn_window_*`, ...). Each worker
  reports only its own partitions, so `sum()` across workers is the fleet's
  figure -- which is why the windows are exported as numerators and
  denominators, not as rates (a rate cannot be summed).
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..domain.kpis import MOVEMENT_KINDS, Series, cohort_cells, tenure_bucket
from ..domain.state import Churn, Effects, day_of, month_label, month_of
from ..risk.snapshots import REJECTION_REASONS as SNAPSHOT_REJECTIONS

# `_created` series double the exposition and no dashboard uses them.
disable_created_metrics()

OTHER = "other"

# name -> (type, labels, help): the reference the README's metric table is generated from.
REFERENCE: dict[str, tuple[str, str, str]] = {}


def _doc(name: str, kind: str, labels: Iterable[str], help_: str) -> tuple[str, str]:
    REFERENCE[name] = (kind, ",".join(labels), help_)
    return name, help_


def observe_many(histogram: Histogram, value: float, n: int) -> None:
    """`n` observations of one value, as one update.

    Uses the histogram's buckets directly (prometheus_client keeps them in
    `_upper_bounds`, `_buckets` and `_sum`); tests/test_metrics.py checks that
    it equals `n` calls of `observe`, so a client upgrade that changes them
    fails a test, not the worker's figures.
    """
    histogram._sum.inc(value * n)
    i = bisect.bisect_left(histogram._upper_bounds, value)
    histogram._buckets[i].inc(n)


class PlanLabels:
    """Caps the number of distinct `plan` label values (the rest become `other`).

    Plans are the business's own strings; a misbehaving producer must not be
    able to blow up the number of time series, nor put free text (a customer's
    name in a custom plan, say) into a label. So a plan becomes a label only
    if it looks like a plan code (letters, digits, `_.-`, at most 40) and is
    among the first `limit` such codes seen; everything else is `other`.

    >>> labels = PlanLabels(limit=2)
    >>> [labels(p) for p in ("pro", "basic", "team", "pro", "Jane Doe's deal")]
    ['pro', 'basic', 'other', 'pro', 'other']
    """

    CODE = re.compile(r"[A-Za-z0-9_.-]{1,40}")

    def __init__(self, limit: int = 50) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, plan: str) -> str:
        if plan in self.seen:
            return plan
        if len(self.seen) < self.limit and self.CODE.fullmatch(plan):
            self.seen.add(plan)
            return plan
        return OTHER


class Metrics:
    """The worker's metrics on its own registry (so tests can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None, plan_limit: int = 50) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.plan = PlanLabels(plan_limit)
        self.events = Counter(*_doc("churn_events_processed_total", "counter", ["topic"], "Valid input events processed, by input topic."), ["topic"], registry=r)
        self.rejected = Counter(*_doc("churn_events_rejected_total", "counter", ["topic", "reason"], "Messages dead-lettered to churn.dlq, by topic (the inputs, the source topics, the clock topic, churn.training) and rejection reason."), ["topic", "reason"], registry=r)
        self.source_records = Counter(
            *_doc("churn_source_records_total", "counter", ["source", "outcome"], "Source records read by the adapters (source = stripe, segment, zendesk), by outcome: mapped to contract events, ignored (nothing the monitor tracks, e.g. a Segment identify), dead_lettered (to churn.dlq, reason in churn_events_rejected_total)."),
            ["source", "outcome"], registry=r)
        self.duplicates = Counter(*_doc("churn_events_duplicate_total", "counter", ["topic"], "Redelivered events (event_id already applied) that changed nothing."), ["topic"], registry=r)
        self.offset_gaps = Counter(*_doc("churn_input_offset_gaps_total", "counter", ["topic"], "Input events that never reached the processing agent: an offset of a partition arrived after a later one was missed (events of a partition arrive in offset order, so every gap is events lost before the agent, to look into; a read again from an earlier offset is not a gap). Should stay 0."), ["topic"], registry=r)
        self.late = Counter(*_doc("churn_events_late_total", "counter", ["topic"], "Events older than the event-time clock (applied where safe)."), ["topic"], registry=r)
        self.latency = Histogram(
            *_doc("churn_event_processing_seconds", "histogram", [], "Wall time per input event: each batch's processing time (decode, state, scores, table writes, metrics) divided by its events, observed once per event."),
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.movement = Counter(*_doc("churn_mrr_movement_total", "counter", ["kind"], "MRR movements in account currency, kind = new, expansion, contraction, churn, reactivation."), ["kind"], registry=r)
        self.churned = Counter(
            *_doc("churn_customers_churned_total", "counter", ["reason", "plan", "kind"], "Customers churned; kind = voluntary, involuntary, inactivity; reason = cancellation category, payment or inactivity."),
            ["reason", "plan", "kind"],
            registry=r,
        )
        self.churned_by_tenure = Counter(
            *_doc("churn_customers_churned_by_tenure_total", "counter", ["tenure"], "Customers churned by tenure bucket at churn (0-30, 31-60, 61-90, 90+ days): early-life churn."),
            ["tenure"],
            registry=r,
        )
        self.alerts = Counter(*_doc("churn_alerts_emitted_total", "counter", ["state", "play"], "At-risk alerts published to churn.alerts, by state (raised, escalated, resolved) and recommended play."), ["state", "play"], registry=r)
        self.scored = Counter(*_doc("churn_customers_scored_total", "counter", ["scored_by"], "Risk scores computed, by who produced them (model or rules)."), ["scored_by"], registry=r)
        self.examples = Counter(*_doc("churn_training_examples_total", "counter", ["label"], "Labelled examples sent to churn.training (label = churned, stayed)."), ["label"], registry=r)
        self.snapshots_rejected = Counter(
            *_doc("churn_model_snapshots_rejected_total", "counter", ["reason"], "Model snapshots on churn.models refused and skipped (unsigned, badly signed, unreadable, out of bounds); the worker keeps scoring with the model it has."),
            ["reason"], registry=r,
        )
        for reason in sorted(SNAPSHOT_REJECTIONS):
            self.snapshots_rejected.labels(reason=reason)
        self.model_labels = Counter(*_doc("churn_model_labels_total", "counter", [], "Labelled examples the trainer process of this worker has learnt from (0 on workers that do not own churn.training)."), registry=r)
        self.model_version = Gauge(*_doc("churn_model_version", "gauge", [], "Version of the model this worker scores with (0 = rules only so far)."), registry=r)
        self.model_created = Gauge(*_doc("churn_model_created_timestamp_seconds", "gauge", [], "When the model this worker scores with was published; age = time() - this."), registry=r)
        self.model_ready = Gauge(*_doc("churn_model_ready", "gauge", [], "1 when the model has seen enough labels of both classes to replace the rules."), registry=r)
        self.quality = Gauge(*_doc("churn_model_quality", "gauge", ["metric", "window"], "Progressive-validation quality on the trainer: metric = roc_auc, log_loss, brier, top_decile_lift; window = rolling or cumulative."), ["metric", "window"], registry=r)
        self.calibration = Gauge(*_doc("churn_model_calibration", "gauge", ["bin", "stat"], "Calibration bins on the trainer: stat = mean_predicted, observed_rate, count."), ["bin", "stat"], registry=r)
        self.bgnbd_params = Gauge(*_doc("churn_bgnbd_parameter", "gauge", ["param"], "BG/NBD population parameters this worker last fitted to its purchase-only customers (weeks): r and alpha (purchase rate ~ Gamma(r, alpha)), a and b (drop-out ~ Beta(a, b))."), ["param"], registry=r)
        self.bgnbd_buyers = Gauge(*_doc("churn_bgnbd_customers", "gauge", [], "Purchase-only customers the last BG/NBD fit counted (this worker's partitions)."), registry=r)
        self.purchase_auc = Gauge(*_doc("churn_purchase_model_roc_auc", "gauge", ["scorer"], "Progressive-validation ROC AUC on this worker's purchase-only labels (no purchase within the horizon), window of the latest 50,000: scorer = bgnbd (BG/NBD alone) or purchase_model (the logistic layer over it). NaN until judged."), ["scorer"], registry=r)
        self.purchase_labels = Counter(*_doc("churn_purchase_model_labels_total", "counter", [], "Buyers' labels (no purchase within the horizon) the purchase model learnt from, on this worker; once BG/NBD is fitted they go there instead of churn.training."), registry=r)
        self.purchase_serving = Gauge(*_doc("churn_purchase_model_serving", "gauge", [], "1 while the purchase model scores buyers (its ROC AUC beats BG/NBD's), 0 while BG/NBD does."), registry=r)
        self.winback = Gauge(*_doc("churn_winback_customers", "gauge", ["band"], "Lapsed purchase-only customers (no purchase for inactivity_days, within winback_days) of this worker's partitions by win-back probability band (1 - P(no purchase within the horizon) at the clock: BG/NBD or the purchase model): low < 0.1 <= medium < 0.3 <= high (Settings.winback_bands); the play is `winback`. From the buyers' summary, once a day."), ["band"], registry=r)
        for band in ("low", "medium", "high"):  # purchases.WINBACK_BANDS: 0 until a fit counts some
            self.winback.labels(band=band)
        self.bgnbd_fit_failures = Counter(*_doc("churn_bgnbd_fit_failures_total", "counter", [], "BG/NBD refits that failed; the worker keeps the last good parameters."), registry=r)
        self.drift = Gauge(*_doc("churn_model_drift_detected", "gauge", [], "1 after ADWIN detected a change in the model's error on the last update."), registry=r)
        self.drift_events = Gauge(*_doc("churn_model_drift_events", "gauge", [], "Drift events detected by ADWIN since the trainer started (monotonic within a trainer process)."), registry=r)
        self.serving = Gauge(*_doc("churn_model_serving", "gauge", ["candidate"], "1 for the candidate whose scores the model this worker scores with serves (model_kind select: rules, linear, tree), 0 for the others."), ["candidate"], registry=r)
        self.candidate_auc = Gauge(*_doc("churn_model_candidate_roc_auc", "gauge", ["candidate"], "Each candidate's progressive-validation ROC AUC in the model this worker scores with: every label scored by every candidate before any learns it, older labels fading (half weight after 20,000 labels); the best serves."), ["candidate"], registry=r)
        self.candidate_switches = Gauge(*_doc("churn_model_candidate_switches", "gauge", [], "Times the serving candidate has changed in the model's lineage (monotonic across snapshots)."), registry=r)
        self._movement_children = {k: self.movement.labels(kind=k) for k in MOVEMENT_KINDS}
        for label in ("0-30", "31-60", "61-90", "90+"):
            self.churned_by_tenure.labels(tenure=label)

    def set_purchase_model(self, model) -> None:
        self.purchase_auc.labels(scorer="bgnbd").set(model.auc_bgnbd)
        self.purchase_auc.labels(scorer="purchase_model").set(model.auc_model)
        self.purchase_serving.set(1.0 if model.serving else 0.0)

    def set_bgnbd(self, params, buyers: int) -> None:
        for name, value in params._asdict().items():
            self.bgnbd_params.labels(param=name).set(value)
        self.bgnbd_buyers.set(buyers)

    def observe_processing(self, seconds: float, events: int) -> None:
        """A batch of `events` took `seconds`: each event is counted with the
        batch's mean, in one step (not `events` calls of `observe`)."""
        observe_many(self.latency, seconds / events, events)

    def record(self, topic: str, effects: Effects) -> None:
        if effects.duplicate:
            self.duplicates.labels(topic=topic).inc()
            return
        self.events.labels(topic=topic).inc()
        if effects.late:
            self.late.labels(topic=topic).inc()
        self.record_effects(effects)

    def record_effects(self, effects: Effects) -> None:
        for m in effects.movements:
            if m.amount:
                self._movement_children[m.kind].inc(m.amount)
        if effects.churn is not None:
            self.record_churn(effects.churn)

    def record_churn(self, c: Churn) -> None:
        self.churned.labels(reason=c.reason, plan=self.plan(c.plan), kind=c.kind).inc()
        self.churned_by_tenure.labels(tenure=tenure_bucket(c.tenure_days)).inc()

    def record_quality(self, report: dict) -> None:
        q = self.quality
        q.labels(metric="roc_auc", window="cumulative").set(report["roc_auc"])
        q.labels(metric="roc_auc", window="rolling").set(report["roc_auc_rolling"])
        q.labels(metric="log_loss", window="cumulative").set(report["log_loss"])
        q.labels(metric="log_loss", window="rolling").set(report["log_loss_rolling"])
        q.labels(metric="brier", window="cumulative").set(report["brier"])
        q.labels(metric="top_decile_lift", window="rolling").set(report["top_decile_lift"])
        for i, b in enumerate(report["calibration"]):
            for stat in ("mean_predicted", "observed_rate", "count"):
                self.calibration.labels(bin=str(i), stat=stat).set(b[stat])
        self.drift.set(1.0 if report["drift"] else 0.0)
        self.drift_events.set(report["drift_events"])

    def record_candidates(self, candidates: dict[str, dict], switches: int) -> None:
        """Which candidate serves and how each one ranks (`CandidateModel.candidates`)."""
        for name, c in candidates.items():
            self.serving.labels(candidate=name).set(1.0 if c["serving"] else 0.0)
            self.candidate_auc.labels(candidate=name).set(c["roc_auc"])
        self.candidate_switches.set(switches)

    def watch_ledgers(self, source: Callable[[], tuple[dict[Series, float], float | None, int, float | None]]) -> None:
        """Export ledger-derived gauges; `source()` -> (summed values, clock, partitions owned, oldest newest-event time)."""
        self.registry.register(LedgerCollector(source, self.plan))


# Ledger series -> exported gauge. Keep in step with kpis.contributions.
LEDGER_GAUGES = {
    "active": _doc("churn_customers_active", "gauge", ["plan"], "Paying customers now (trials excluded), by plan; plan=none for purchase-only customers."),
    "mrr": _doc("churn_mrr", "gauge", ["plan"], "MRR now in account currency, by plan (Stripe: trials and free plans excluded)."),
    "trial": _doc("churn_customers_trial", "gauge", [], "Customers in a trial now."),
    "pending_cancel": _doc("churn_customers_pending_cancellation", "gauge", [], "Cancelled, not yet churned: the cancellation takes effect at the end of the paid period."),
    "pending_cancel_mrr": _doc("churn_mrr_pending_cancellation", "gauge", [], "MRR of customers cancelled but not yet churned."),
    "start": _doc("churn_window_customers_start", "gauge", ["window"], "Customers active at the start of the window (end of day T-W)."),
    "lost": _doc("churn_window_customers_lost", "gauge", ["window"], "Customers of the starting cohort churned in the window (ChartMogul: joiners who churn inside excluded)."),
    "churned": _doc("churn_window_customers_churned", "gauge", ["window"], "All customers churned in the window (Stripe's numerator)."),
    "new": _doc("churn_window_customers_new", "gauge", ["window"], "Customers who started (or restarted) a paying spell in the window."),
    "mrr_start": _doc("churn_window_mrr_start", "gauge", ["window"], "MRR at the start of the window."),
    "mrr_lost": _doc("churn_window_mrr_lost", "gauge", ["window"], "MRR lost in the window to churn of the starting cohort."),
    "move": _doc("churn_window_mrr_movement", "gauge", ["window", "kind"], "MRR movements in the window by kind (for gross/net MRR churn, NRR, quick ratio)."),
    "dau": _doc("churn_users_daily_active", "gauge", [], "Customers with usage on the clock's day."),
    "mau": _doc("churn_users_monthly_active", "gauge", [], "Customers with usage in the last 30 days."),
    "active_days": _doc("churn_active_days_30d", "gauge", [], "Sum over customers of active days in the last 30 days; stickiness = this / 30 / monthly active."),
    "purchases": _doc("churn_window_purchases", "gauge", ["window"], "Purchases in the window; purchase frequency (Stripe) = this / churn_window_customers_purchasing."),
    "purchasers": _doc("churn_window_customers_purchasing", "gauge", ["window"], "Customers with at least one purchase in the window (the denominator of repeat customer rate and purchase frequency)."),
    "repeat": _doc("churn_window_customers_repeat", "gauge", ["window"], "Customers with more than one purchase in the window; repeat customer rate (Stripe) = this / churn_window_customers_purchasing."),
    "cohort": _doc("churn_cohort_customers_retained", "gauge", ["cohort", "age"], "Customers of a start-month cohort (cohort = YYYY-MM of their first paid start or purchase) active at the end of the month `age` months later (0-23), or now for the current month (ChartMogul cohorts). The 24 latest cohorts."),
    "cohort_mrr": _doc("churn_cohort_mrr_retained", "gauge", ["cohort", "age"], "MRR of a start-month cohort at the end of the month `age` months later (0-23), or now for the current month; the 24 latest cohorts."),
    "forgettable": _doc("churn_customers_forgettable", "gauge", [], "Paying customers with no usage in the last 30 days (the forgettable zone)."),
    "at_risk": _doc("churn_at_risk_customers", "gauge", ["band"], "Paying customers by current churn-risk band (low, medium, high, critical)."),
    "at_risk_mrr": _doc("churn_at_risk_mrr", "gauge", ["band"], "MRR of paying customers by current churn-risk band."),
    "expected_loss": _doc("churn_expected_mrr_loss", "gauge", [], "Sum over paying customers of risk x MRR: the MRR expected to churn within the horizon."),
}
CLOCK_GAUGE = _doc("churn_event_time_clock_seconds", "gauge", [], "The worker's event-time clock (highest event time less allowed lateness), Unix seconds.")
PARTITIONS_GAUGE = _doc("churn_partitions_assigned", "gauge", [], "Input partitions this worker owns.")
LAG_GAUGE = _doc("churn_event_time_lag_seconds", "gauge", [], "Wall clock minus the newest event time of the worker's most behind partition (large during replays).")


class LedgerCollector(Collector):
    def __init__(self, source: Callable[[], tuple[dict[Series, float], float | None, int, float | None]], plan: PlanLabels) -> None:
        self.source = source
        self.plan = plan

    def describe(self):  # registered without calling collect()
        return []

    def collect(self):
        values, clock, owned, behind = self.source()
        fams: dict[str, GaugeMetricFamily] = {}
        for key, (name, help_) in LEDGER_GAUGES.items():
            labels = {"active": ["plan"], "mrr": ["plan"], "move": ["window", "kind"], "at_risk": ["band"], "at_risk_mrr": ["band"],
                      "cohort": ["cohort", "age"], "cohort_mrr": ["cohort", "age"]}.get(key)
            if labels is None:
                labels = ["window"] if REFERENCE[name][1] == "window" else []
            fams[key] = GaugeMetricFamily(name, help_, labels=labels)
        by_plan: dict[tuple[str, str], float] = {}
        latest = None if clock is None else month_of(day_of(clock))
        for series, value in values.items():
            kind = series[0]
            fam = fams.get(kind)
            if fam is None:
                continue
            if kind in ("cohort", "cohort_mrr"):
                continue  # summed into cells below
            if kind in ("active", "mrr"):
                k = (kind, self.plan(series[1]))
                by_plan[k] = by_plan.get(k, 0.0) + value
            elif kind in ("at_risk", "at_risk_mrr"):
                fam.add_metric([str(series[1])], value)
            elif kind == "move":
                fam.add_metric([f"{series[1]}d", series[2]], value)
            elif len(series) == 2:
                fam.add_metric([f"{series[1]}d"], value)
            else:
                fam.add_metric([], value)
        for (kind, plan), value in sorted(by_plan.items()):
            fams[kind].add_metric([plan], value)
        if latest is not None:
            for (kind, cohort, age), value in cohort_cells(values, latest).items():
                fams[kind].add_metric([month_label(cohort), str(age)], value)
        yield from fams.values()
        clock_fam = GaugeMetricFamily(*CLOCK_GAUGE)
        if clock is not None:
            clock_fam.add_metric([], clock)
        yield clock_fam
        owned_fam = GaugeMetricFamily(*PARTITIONS_GAUGE)
        owned_fam.add_metric([], owned)
        yield owned_fam
        lag_fam = GaugeMetricFamily(*LAG_GAUGE)
        if behind is not None:
            lag_fam.add_metric([], time.time() - behind)
        yield lag_fam
