"""When a customer must be looked at although no event arrives for them.

A customer with no event costs nothing until something can change for them:

- a **deadline**: `state.next_deadline` (a cancellation taking effect, a grace
  period ending, a trial expiring, a purchase-only customer lapsing);
- a **check-in**: a live customer's risk is re-assessed, and its observation
  snapshots closed and labelled (`labels.py`), when it has gone silent:
  - a subscription customer at the end of each of its observation days
    (`labels.next_observation_day`) that passes without an event, so silence
    raises its risk and its alert within an observation period (10 days by
    default) and its label book moves on; once its risk is at or above
    `watch_above` (the alert's resolve threshold: an alert is open or near)
    every day, so an alert escalates or resolves as promptly as it was raised;
  - a purchase-only customer once when the lapse rule comes within the
    label horizon (`inactivity - horizon` days after its last activity),
    and once more, lapsed, when its win-back window (`winback_days`) ends:
    its silent days' snapshots are closed and labelled then (a silent
    day's snapshot is the same whenever it is taken). Its risk between
    visits is not re-stored: it moves only with the clock, so the lookup
    scores it at the clock and the win-back gauges come from the
    population's summary (`Processor.refit`). Re-scoring every buyer every
    observation period would cost a score and a write per buyer per
    period for a business whose customers buy a few times a year;

- a **label**: the horizon of the oldest observation snapshot still waiting
  for its label passes (`CustomerState.label_due_t`): its negative label is
  known, and goes to the trainer.

Visits are at most one per event-time day: whatever falls due on one day is
taken together, at the latest of those times.

>>> from stream_app.domain.state import CustomerState, Rules
>>> from stream_app.risk.labels import Policy
>>> s = CustomerState("c1", status="active", contractual=True, mrr=10.0, spell_start_t=0.0, scored_t=0.0)
>>> next_visit(s, Rules(), Policy(every_days=7)) / DAY  # end of c1's first observation day after day 0
2.0
>>> s.cancel_effective_t = 2.5 * DAY  # a deadline on the same day: one visit, at the later time
>>> next_visit(s, Rules(), Policy(every_days=7)) / DAY
2.5
"""

from __future__ import annotations

from ..config import DAY
from ..domain.state import CustomerState, Rules, day_of, next_deadline
from .labels import Policy, next_observation_day

__all__ = ["checkin_at", "next_visit"]


def checkin_at(s: CustomerState, rules: Rules, policy: Policy, watch_above: float = 1.0) -> float | None:
    """When a silent customer is next re-assessed (None: not while silent)."""
    if s.contractual and s.is_customer:
        last = s.scored_t if s.scored_t is not None else s.last_event_t
        if last is None:
            return None
        if s.risk is not None and s.risk >= watch_above:
            return (day_of(last) + 1) * DAY
        return (next_observation_day(s.customer_id, day_of(last), policy.every_days) + 1) * DAY
    if not s.is_buyer or s.last_activity_t is None:
        return None
    if s.is_customer:
        at = s.last_activity_t + rules.inactivity_s - policy.horizon_days * DAY  # its lapse comes near
    else:
        at = s.last_activity_t + rules.winback_s  # the end of its win-back window
    if s.scored_t is not None and s.scored_t >= at:
        return None
    return at


def next_visit(s: CustomerState, rules: Rules, policy: Policy, watch_above: float = 1.0) -> float | None:
    """The event time of the customer's next visit if no event comes first."""
    due = [t for t in (next_deadline(s, rules), checkin_at(s, rules, policy, watch_above), s.label_due_t) if t is not None]
    if not due:
        return None
    first = min(due)
    return max(t for t in due if day_of(t) == day_of(first))
