"""What the customer lookup endpoint returns: one customer's state as JSON.

Timestamps go out as RFC 3339 strings and derived figures (tenure, usage in 7
and 30 days, active days) are computed at the clock, so a success manager
reads the customer as the monitor sees them now.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import msgspec
import orjson

from ..config import DAY
from ..domain.purchases import winback_band
from ..domain.state import CustomerState, Rules, compact, day_of, next_deadline, prune
from ..ingest.contract import format_ts
from ..risk.alerts import normalise_reasons

_TIME_FIELDS = (
    "first_seen_t", "started_t", "spell_start_t", "trial_start_t", "last_event_t", "last_activity_t",
    "first_failed_t", "last_renewal_t", "cancel_effective_t", "last_price_increase_t",
    "first_purchase_t", "last_purchase_t", "churned_t", "scored_t",
)
# internal bookkeeping, not facts about the customer
_HIDDEN = ("offsets", "seen", "spells", "mrr_changes", "usage", "tickets", "first_days", "onboarding_total",
           "observed_through", "model_score", "labelled_through", "label_due_t")


def usage_in(s: CustomerState, days: int, clock: float) -> int:
    """Usage events in the `days` days ending on the clock's day."""
    return s.usage.window(day_of(clock), days) if s.usage is not None else 0


def active_days(s: CustomerState, days: int, clock: float) -> int:
    today = day_of(clock)
    return sum(1 for d in s.usage_days() if today - days < d <= today)


def customer_view(s: CustomerState, clock: float | None, rules: Rules) -> dict:
    out = msgspec.structs.asdict(s)
    for name in _HIDDEN:
        out.pop(name, None)
    out["alert"] = s.alert.to_dict() if s.alert is not None else None
    out["features"] = list(s.features)
    out["open_tickets"] = list(s.open_tickets)
    out["plan_changes"] = [list(c) for c in s.plan_changes]
    out["purchase_days"] = [list(c) for c in s.bought()]
    out["retained_mrr"] = [list(c) for c in s.retained_mrr_items()]
    for name in _TIME_FIELDS:
        value = out.pop(name)
        out[name[:-2] + "_at"] = None if value is None else format_ts(value)
    clock = clock if clock is not None else (s.last_event_t or 0.0)
    out["clock"] = format_ts(clock)
    out["tenure_days"] = None if s.spell_start_t is None else round((clock - s.spell_start_t) / DAY, 2)
    out["usage_7d"] = usage_in(s, 7, clock)
    out["usage_30d"] = usage_in(s, 30, clock)
    out["active_days_30d"] = active_days(s, 30, clock)
    out["tickets_30d"] = s.tickets_in(day_of(clock), 30)
    out["cancelled_not_yet_churned"] = s.cancel_effective_t is not None
    deadline = next_deadline(s, rules)
    out["next_transition_at"] = None if deadline is None else format_ts(deadline)
    out["sessions_first_14d"] = s.sessions_first_14d
    out["fingerprint"] = fingerprint(s, clock, rules)
    return out


if TYPE_CHECKING:
    from .process import Processor


def risk_view(processor: "Processor", s: CustomerState, now: float) -> dict:
    """The customer's risk at the clock, scored as the worker would score it
    now (the stored `risk` is the last visit's, up to an observation period
    old): features, risk, who scored it and why; for a lapsed buyer also its
    win-back probability, band and the `winback` play."""
    x = processor.features_at(s, now)
    a = processor.assess(s, x)
    model = processor.model
    out = {"features": x, "risk_now": a.risk, "scored_by": a.scored_by, "model_version": model.version,
           "model_candidate": getattr(model, "serving", model.kind), "reasons": normalise_reasons(a.reasons)}
    if not s.is_customer:
        p = 1.0 - a.risk
        out["winback"] = {"probability": round(p, 4), "band": winback_band(p, processor.settings.winback_bands),
                          "recommended_play": "winback"}
    return out


def fingerprint(s: CustomerState, clock: float, rules: Rules) -> str:
    """A digest of everything the events decided about this customer.

    Two workers that processed the same events (one crashed and replayed,
    or the partition moved between workers) must give the same fingerprint
    on the same clock day. Left out is what legitimately depends on when the
    worker ran: the risk and when it was scored (which model version, which
    visit), how many events arrived late (the clock's pace), and history older
    than any window (pruned lazily, on the customer's next visit).
    """
    canon = s.copy()
    prune(canon, clock, rules)
    compact(canon, clock)
    d = msgspec.structs.asdict(canon)
    for name in ("risk", "risk_band", "late_events", "scored_t", "model_score", "observed_through", "alert",
                 "labelled_through", "label_due_t"):
        d.pop(name)
    # day buckets as (day, count) pairs: the ring's layout is not a fact
    d["usage"] = canon.usage_items()
    d["tickets"] = canon.tickets.items() if canon.tickets is not None else []
    d["first_days"] = canon.sessions_first_14d
    d.pop("onboarding_total")
    d["seen"] = None if canon.seen is None else canon.seen.hex()
    d["purchase_days"] = canon.bought()
    d["retained_mrr"] = canon.retained_mrr_items()
    canonical = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=12).hexdigest()


def raw_view(s: CustomerState) -> bytes:
    """The table value itself as JSON, field by field (the changelog holds a
    positional msgpack array), for debugging a fingerprint mismatch.

    >>> import orjson
    >>> orjson.loads(raw_view(CustomerState("c1")))["customer_id"]
    'c1'
    """
    return msgspec.json.encode(msgspec.structs.asdict(s))
