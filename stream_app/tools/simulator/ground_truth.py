"""What really happened to each simulated customer: the answer key the
monitor's figures, alerts and models are checked against."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .clock import DAY, epoch
from .scenarios import SimConfig


@dataclass
class Truth:
    """Ground truth for one customer (the package docstring, section Truth, gives the exact semantics)."""

    customer_id: str
    started_at: str
    plan: str
    contractual: bool
    churned: bool
    churned_at: str | None
    churn_kind: str | None  # "voluntary" | "involuntary" | "inactivity"
    reason: str | None
    latent_risk: float  # mean daily latent risk over the observed (first) life
    drivers: list[str]
    # Extras (defaults, so code written against the fields above is unaffected):
    converted_at: str | None = None  # trial_converted time (paying customer from then on)
    reactivated_at: str | None = None  # won back after churn (new subscription_started)
    pending_churn_at: str | None = None  # churn decided but takes effect after the period end


def churn_summary(truths: list[Truth], cfg: SimConfig) -> dict:
    """Churn counts by kind/reason and the mean monthly (30-day) customer churn rate.

    The rate follows the ChartMogul B2B formula: customers churned in the
    window / paying customers at the window start (customers who join during
    the window are left out).  Paying = contractual customers from their start
    (trials from ``converted_at``) and purchase-only customers from their first
    purchase; trials that never converted are not customers.
    """
    start = epoch(cfg.start)
    rows = []
    for t in truths:
        if "trial_not_converted" in t.drivers and not t.converted_at:
            continue
        paid_from = epoch(t.converted_at or t.started_at)
        if paid_from < start + 3600:  # opening book (announced in the first hour of day 0)
            paid_from = start
        ch = epoch(t.churned_at) if t.churned_at else None
        rows.append((paid_from, ch))
    months = []
    for m in range(cfg.days // 30):
        ws, we = start + m * 30 * DAY, start + (m + 1) * 30 * DAY
        base = [ch for pf, ch in rows if pf <= ws and (ch is None or ch > ws)]
        lost = sum(1 for ch in base if ch is not None and ch <= we)
        months.append(lost / len(base) if base else 0.0)
    churned = [t for t in truths if t.churned]
    return {
        "customers": len(truths),
        "churned": len(churned),
        "by_kind": dict(Counter(t.churn_kind for t in churned)),
        "by_reason": dict(Counter(t.reason for t in churned if t.reason)),
        "trial_not_converted": sum(1 for t in truths if "trial_not_converted" in t.drivers),
        "reactivated": sum(1 for t in truths if t.reactivated_at),
        "monthly_churn_rate": sum(months) / len(months) if months else 0.0,
        "monthly_rates": months,
    }
