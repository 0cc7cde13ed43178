"""What the customer lookup endpoint returns: one customer's state as JSON.

Timestamps go out as RFC 3339 strings and derived figures (tenure, usage in 7
and 30 days, active days) are computed at the clock, so a success manager
reads the customer as the monitor sees them now.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import orjson

from .config import DAY
from .contract import format_ts
from .state import CustomerState, Rules, day_of, next_deadline, prune

_TIME_FIELDS = (
    "first_seen_t", "started_t", "spell_start_t", "trial_start_t", "last_event_t", "last_activity_t",
    "first_failed_t", "last_renewal_t", "cancel_effective_t", "last_price_increase_t",
    "first_purchase_t", "last_purchase_t", "churned_t",
)


def usage_in(s: CustomerState, days: int, clock: float) -> int:
    """Usage events in the `days` days ending on the clock's day."""
    today = day_of(clock)
    return sum(n for d, n in s.usage.items() if today - days < d <= today)


def active_days(s: CustomerState, days: int, clock: float) -> int:
    today = day_of(clock)
    return sum(1 for d in s.usage if today - days < d <= today)


def customer_view(s: CustomerState, clock: float | None, rules: Rules) -> dict:
    out = asdict(s)
    for name in ("offsets", "seen_ids", "spells", "mrr_changes", "usage", "tickets", "first_days"):
        out.pop(name, None)
    for name in _TIME_FIELDS:
        value = out.pop(name)
        out[name[:-2] + "_at"] = None if value is None else format_ts(value)
    clock = clock if clock is not None else (s.last_event_t or 0.0)
    out["clock"] = format_ts(clock)
    out["tenure_days"] = None if s.spell_start_t is None else round((clock - s.spell_start_t) / DAY, 2)
    out["usage_7d"] = usage_in(s, 7, clock)
    out["usage_30d"] = usage_in(s, 30, clock)
    out["active_days_30d"] = active_days(s, 30, clock)
    out["tickets_30d"] = sum(n for d, n in s.tickets.items() if day_of(clock) - 30 < d <= day_of(clock))
    out["cancelled_not_yet_churned"] = s.cancel_effective_t is not None
    deadline = next_deadline(s, rules)
    out["next_transition_at"] = None if deadline is None else format_ts(deadline)
    out["sessions_first_14d"] = s.sessions_first_14d
    out["fingerprint"] = fingerprint(s, clock, rules)
    return out


def fingerprint(s: CustomerState, clock: float, rules: Rules) -> str:
    """A digest of everything the events decided about this customer.

    Two workers that processed the same events (one crashed and replayed,
    or the partition moved between workers) must give the same fingerprint
    on the same clock day. Left out is what legitimately depends on when the
    worker ran: the risk (which model version scored it), how many events
    arrived late (the clock's pace), and history older than any window (pruned
    lazily, on the customer's next visit).
    """
    canon = s.copy()
    prune(canon, clock, rules)
    canon.risk = canon.risk_band = None
    canon.late_events = 0
    # keys sorted: dicts keep insertion order, which follows the read order
    # (a late event adds an older day after newer ones)
    canonical = orjson.dumps(canon, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=12).hexdigest()
