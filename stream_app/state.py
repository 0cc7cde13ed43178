"""Per-customer state and its pure transitions.

`apply(state, event, rules)` folds one validated event into a customer's state;
`advance(state, now, rules)` applies the transitions that happen by the passage
of event time alone (a cancellation taking effect, a payment grace period
running out, a non-contractual customer going quiet for too long). Both are
pure: same input, same output, no clock but the event time they are given, so a
replay of a year of history lands on the same state as living through it.

Both return the effects the transition had (MRR movements, churn), which the
agent turns into counters. What counts as churn follows DOMAIN.md:

- contractual: a cancellation, when it takes effect (`effective_at`, or at once);
- involuntary: a failed payment not recovered within `grace_days`;
- inactivity: a non-contractual (purchase-only) customer with no usage for
  `inactivity_days`.

History kept inside the state is bounded: daily usage and ticket buckets for
the longest window, spells and MRR changes until they can no longer affect
any rolling KPI window (see `kpis.contributions`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from .config import DAY, Settings
from .contract import TOPIC_TYPES, TOPICS

# Statuses. `cancelled` customers churned by cancellation or failed payment;
# `lapsed` ones by inactivity; `trial_expired` never converted (not churn).
TRIAL, ACTIVE, CANCELLED, LAPSED, TRIAL_EXPIRED = "trial", "active", "cancelled", "lapsed", "trial_expired"
STATUSES = (TRIAL, ACTIVE, CANCELLED, LAPSED, TRIAL_EXPIRED)

# Churn kinds (the `kind` label of churn_customers_churned_total).
VOLUNTARY, INVOLUNTARY, INACTIVITY = "voluntary", "involuntary", "inactivity"
# Reason label for churn that carries no stated reason.
REASON_PAYMENT, REASON_INACTIVITY = "payment", "inactivity"

NO_PLAN = "none"  # plan label of purchase-only customers
MAX_FEATURES = 64
MAX_OPEN_TICKETS = 64
MAX_PLAN_CHANGES = 10


def day_of(t: float) -> int:
    """Days since 1970-01-01 (UTC) of an epoch timestamp.

    >>> day_of(0.0), day_of(86399.9), day_of(86400.0)
    (0, 0, 1)
    """
    return int(t // DAY)


@dataclass(frozen=True, slots=True)
class Rules:
    """The churn definitions and history bounds, taken from Settings."""

    grace_s: float = 14 * DAY
    inactivity_s: float = 90 * DAY
    trial_s: float = 14 * DAY
    keep_days: int = 90  # longest rolling window
    dedupe_ids: int = 64

    @classmethod
    def from_settings(cls, s: Settings) -> "Rules":
        return cls(
            grace_s=s.grace_days * DAY,
            inactivity_s=s.inactivity_days * DAY,
            trial_s=s.trial_days * DAY,
            keep_days=max(max(s.windows_days), 30),
            dedupe_ids=s.dedupe_ids,
        )


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    partition: int = -1
    status: str | None = None
    contractual: bool = False
    plan: str | None = None
    mrr: float = 0.0
    first_seen_t: float | None = None
    started_t: float | None = None  # first paid (or first purchase) start, ever
    spell_start_t: float | None = None  # start of the current paying spell
    trial_start_t: float | None = None
    last_event_t: float | None = None
    last_activity_t: float | None = None
    # daily buckets, day -> count, for the longest window
    usage: dict[int, int] = field(default_factory=dict)
    tickets: dict[int, int] = field(default_factory=dict)
    # usage per day in the first 14 days since the customer was first seen
    # (the earliest event time, whatever order the topics are read in)
    first_days: dict[int, int] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    open_tickets: list[str] = field(default_factory=list)
    csat: int | None = None
    nps: int | None = None
    failed_payments: int = 0
    first_failed_t: float | None = None
    last_renewal_t: float | None = None
    cancel_effective_t: float | None = None
    cancel_reason: str | None = None
    last_price_increase_t: float | None = None
    plan_changes: list[list[Any]] = field(default_factory=list)  # [t, plan, mrr_delta]
    purchases: int = 0
    purchase_amount: float = 0.0
    first_purchase_t: float | None = None
    last_purchase_t: float | None = None
    # KPI history: ended spells [start_t, end_t, mrr_at_end] and MRR changes
    # [t, mrr_after, kind] kept while a rolling window can still see them.
    spells: list[list[Any]] = field(default_factory=list)
    mrr_changes: list[list[Any]] = field(default_factory=list)
    churned_t: float | None = None
    churn_kind: str | None = None
    churn_reason: str | None = None
    # Idempotence, two ways. `offsets`: the highest source offset applied per
    # input topic. A customer's events on a topic all sit in one partition
    # (keyed by customer), so anything at or below it is a redelivery, however
    # far back the consumer was rewound (a rebalance can replay a whole
    # partition). `seen_ids`: the last event ids applied per topic, for the
    # same event *produced* twice (a retrying producer, a DLQ re-publication),
    # which arrives at a new offset.
    offsets: dict[str, int] = field(default_factory=dict)
    seen_ids: dict[str, list[str]] = field(default_factory=dict)
    late_events: int = 0
    # the current churn risk (scoring.update_risk), for the at-risk gauges
    risk: float | None = None
    risk_band: str | None = None

    # -- serialisation (the table codec) ---------------------------------------
    def to_bytes(self) -> bytes:
        # orjson serialises the slotted dataclass natively: ~40x faster than
        # dataclasses.asdict, which deep-copies every list first (this runs
        # on every table write, the hot path)
        return orjson.dumps(self, option=orjson.OPT_NON_STR_KEYS)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "CustomerState":
        d = orjson.loads(raw)
        d["usage"] = {int(k): v for k, v in d.get("usage", {}).items()}
        d["tickets"] = {int(k): v for k, v in d.get("tickets", {}).items()}
        d["first_days"] = {int(k): v for k, v in d.get("first_days", {}).items()}
        d.pop("sessions_first_14d", None)  # stored before it was derived from first_days
        return cls(**d)

    @property
    def sessions_first_14d(self) -> int:
        """Usage in the first 14 days since the customer was first seen."""
        return sum(self.first_days.values())

    def copy(self) -> "CustomerState":
        return CustomerState.from_bytes(self.to_bytes())

    # -- derived views -----------------------------------------------------------
    @property
    def is_customer(self) -> bool:
        """Counts as a live customer (ChartMogul: has MRR, or buys; trials excluded)."""
        return self.status == ACTIVE

    def plan_label(self) -> str:
        return self.plan if self.contractual and self.plan else NO_PLAN


class Movement(NamedTuple):
    kind: str  # new | expansion | contraction | churn | reactivation
    amount: float  # money, always >= 0


class Churn(NamedTuple):
    kind: str  # voluntary | involuntary | inactivity
    reason: str
    plan: str
    mrr: float
    tenure_days: float
    at: float = 0.0  # event time the churn took effect (labels its snapshots)


class Effects(NamedTuple):
    movements: tuple[Movement, ...] = ()
    churn: Churn | None = None
    duplicate: bool = False
    late: bool = False


NO_EFFECTS = Effects()


# ---------------------------------------------------------------------------
# Transitions
# ---------------------------------------------------------------------------


def new_state(customer_id: str, partition: int = -1) -> CustomerState:
    return CustomerState(customer_id=customer_id, partition=partition)


def apply(state: CustomerState, event: dict, rules: Rules, clock: float | None = None, offset: int | None = None) -> tuple[CustomerState, Effects]:
    """Fold one validated event into the state (mutates and returns it).

    `clock` is the partition's event-time clock; an event older than it is late:
    it still updates what it safely can (its day bucket, counts), and the
    `late` effect lets the agent count it. `offset` is the event's offset in
    its topic-partition (None outside Kafka). A redelivery (offset already
    applied) or a repeated `event_id` changes nothing.

    >>> s = new_state("c1")
    >>> ev = {"event_id": "e1", "customer_id": "c1", "type": "session", "_t": 0.0}
    >>> [apply(s, ev, Rules(), offset=7)[1].duplicate, apply(s, ev, Rules(), offset=7)[1].duplicate]
    [False, True]
    """
    topic = _TOPIC_OF[event["type"]]
    if offset is not None:
        if offset <= state.offsets.get(topic, -1):
            return state, Effects(duplicate=True)
        state.offsets[topic] = offset
    eid = event["event_id"]
    seen = state.seen_ids.get(topic)
    if seen is None:
        seen = state.seen_ids[topic] = []
    elif eid in seen:
        return state, Effects(duplicate=True)
    seen.append(eid)
    if len(seen) > rules.dedupe_ids:
        del seen[: len(seen) - rules.dedupe_ids]

    t: float = event["_t"]
    late = clock is not None and t < clock
    if late:
        state.late_events += 1
    # Time-driven transitions that were due before this event happen first, so
    # a payment after the grace period does not undo an involuntary churn. The
    # clock may take every transition; the event's own time only those its
    # topic decides: topics are read at different paces, and a usage event
    # read weeks ahead must not expire a grace period whose payment (on the
    # subscription topic) has not been read yet.
    due = NO_EFFECTS
    if clock is not None:
        state, due = advance(state, clock, rules)
    state, own = advance(state, t, rules, decided_by=_TOPIC_OF[event["type"]])
    if own.churn is not None or own.movements:
        due = Effects(due.movements + own.movements, own.churn or due.churn)
    if state.first_seen_t is None or t < state.first_seen_t:
        _first_seen(state, t)
    if state.last_event_t is None or t > state.last_event_t:
        state.last_event_t = t

    handler = HANDLERS[event["type"]]
    state, effects = handler(state, event, t, rules)
    movements = due.movements + effects.movements
    churn = effects.churn or due.churn
    prune(state, max(t, state.last_event_t or t), rules)
    return state, Effects(movements, churn, False, late)


SUBSCRIPTION_TOPIC, USAGE_TOPIC = TOPICS[0], TOPICS[1]


def advance(state: CustomerState, now: float, rules: Rules, decided_by: str | None = None) -> tuple[CustomerState, Effects]:
    """Apply every transition that event time `now` has made due.

    `decided_by` limits it to the transitions one input topic decides:
    cancellations, grace periods and trials by the subscription topic (only
    a subscription event can prevent them), inactivity by the usage topic.
    """
    movements: list[Movement] = []
    churn = None
    by_subscription = decided_by in (None, SUBSCRIPTION_TOPIC)
    by_usage = decided_by in (None, USAGE_TOPIC)
    if state.status == ACTIVE:
        if by_subscription and state.cancel_effective_t is not None and state.cancel_effective_t <= now:
            churn = _churn(state, state.cancel_effective_t, VOLUNTARY, state.cancel_reason or "other", movements)
        elif by_subscription and state.contractual and state.first_failed_t is not None and state.first_failed_t + rules.grace_s <= now:
            churn = _churn(state, state.first_failed_t + rules.grace_s, INVOLUNTARY, REASON_PAYMENT, movements)
        elif by_usage and not state.contractual and state.last_activity_t is not None and state.last_activity_t + rules.inactivity_s <= now:
            churn = _churn(state, state.last_activity_t + rules.inactivity_s, INACTIVITY, REASON_INACTIVITY, movements)
    elif by_subscription and state.status == TRIAL and state.trial_start_t is not None and state.trial_start_t + rules.trial_s <= now:
        state.status = TRIAL_EXPIRED
    if churn is None and not movements:
        return state, NO_EFFECTS
    return state, Effects(tuple(movements), churn)


def next_deadline(state: CustomerState, rules: Rules) -> float | None:
    """When `advance` will next change this customer, if nothing else happens.

    The sweep indexes customers by this time so that it visits only those due,
    never the whole table.
    """
    if state.status == ACTIVE:
        if state.cancel_effective_t is not None:
            return state.cancel_effective_t
        if state.contractual and state.first_failed_t is not None:
            return state.first_failed_t + rules.grace_s
        if not state.contractual and state.last_activity_t is not None:
            return state.last_activity_t + rules.inactivity_s
    elif state.status == TRIAL and state.trial_start_t is not None:
        return state.trial_start_t + rules.trial_s
    return None


def _churn(state: CustomerState, at: float, kind: str, reason: str, movements: list[Movement]) -> Churn:
    mrr = state.mrr
    start = state.spell_start_t if state.spell_start_t is not None else at
    churn = Churn(kind, reason, state.plan_label(), mrr, max(0.0, (at - start) / DAY), at)
    if mrr > 0:
        movements.append(Movement("churn", mrr))
    state.spells.append([start, at, mrr])
    _mrr_change(state, at, 0.0, "churn")
    state.status = LAPSED if kind == INACTIVITY else CANCELLED
    state.mrr = 0.0
    state.spell_start_t = None
    state.cancel_effective_t = None
    state.cancel_reason = None
    state.failed_payments = 0
    state.first_failed_t = None
    state.churned_t, state.churn_kind, state.churn_reason = at, kind, reason
    state.risk = state.risk_band = None
    return churn


def _mrr_change(state: CustomerState, t: float, mrr_after: float, kind: str) -> None:
    # kept in event-time order: topics are not ordered with each other, so a
    # change may be read after a later one (the step function needs time order)
    changes = state.mrr_changes
    if not changes or changes[-1][0] <= t:
        changes.append([t, mrr_after, kind])
    else:
        bisect.insort(changes, [t, mrr_after, kind], key=lambda c: c[0])


def _start_spell(state: CustomerState, t: float, plan: str | None, mrr: float, contractual: bool) -> Effects:
    """Become a paying customer: new on the first spell, reactivation after churn."""
    returning = state.started_t is not None and state.status in (CANCELLED, LAPSED)
    kind = "reactivation" if returning else "new"
    state.status = ACTIVE
    state.contractual = contractual
    state.plan = plan
    state.mrr = mrr
    state.spell_start_t = t
    if state.started_t is None:
        state.started_t = t
    state.churned_t = state.churn_kind = state.churn_reason = None
    if mrr > 0 or returning:
        _mrr_change(state, t, mrr, kind)
    return Effects((Movement(kind, mrr),) if mrr > 0 else ())


def _set_mrr(state: CustomerState, t: float, plan: str, mrr: float) -> Effects:
    delta = mrr - state.mrr
    if plan == state.plan and delta > 0:
        state.last_price_increase_t = t
    state.plan_changes.append([t, plan, delta])
    del state.plan_changes[:-MAX_PLAN_CHANGES]
    state.plan, state.mrr = plan, mrr
    if delta == 0:
        return NO_EFFECTS
    kind = "expansion" if delta > 0 else "contraction"
    _mrr_change(state, t, mrr, kind)
    return Effects((Movement(kind, abs(delta)),))


def _on_started(state, ev, t, rules):
    if state.status == ACTIVE and state.contractual:  # a second start while active is a plan change
        return state, _set_mrr(state, t, ev["plan"], float(ev["mrr"]))
    if state.status == ACTIVE:
        return state, _subscribe_buyer(state, t, ev["plan"], float(ev["mrr"]))
    return state, _start_spell(state, t, ev["plan"], float(ev["mrr"]), True)


def _subscribe_buyer(state: CustomerState, t: float, plan: str, mrr: float) -> Effects:
    """An active buyer subscribes: same spell, now contractual, with new MRR.

    Also the path when a subscriber's purchase (usage topic) is read before
    their subscription_started (subscription topic): the spell then starts
    at the earlier of the two, exactly as if they had arrived in order.
    """
    state.contractual = True
    state.plan, state.mrr = plan, mrr
    state.spell_start_t = min(t, state.spell_start_t if state.spell_start_t is not None else t)
    state.started_t = min(t, state.started_t if state.started_t is not None else t)
    if mrr > 0:
        _mrr_change(state, t, mrr, "new")
        return Effects((Movement("new", mrr),))
    return NO_EFFECTS


def _on_plan_changed(state, ev, t, rules):
    if state.status != ACTIVE:  # a plan change on a non-customer starts them
        return _on_started(state, ev, t, rules)
    return state, _set_mrr(state, t, ev["plan"], float(ev["mrr"]))


def _on_renewed(state, ev, t, rules):
    state.last_renewal_t = t
    return state, NO_EFFECTS


def _on_cancelled(state, ev, t, rules):
    reason = ev["reason"]
    effective = ev.get("_effective_t")
    if state.status == TRIAL:  # a trial that is cancelled never became a customer
        state.status = TRIAL_EXPIRED
        return state, NO_EFFECTS
    if state.status != ACTIVE:
        return state, NO_EFFECTS
    if effective is not None and effective > t:
        # cancelled, not yet churned: keeps its MRR until the period ends
        state.cancel_effective_t, state.cancel_reason = effective, reason
        return state, NO_EFFECTS
    movements: list[Movement] = []
    churn = _churn(state, t, VOLUNTARY, reason, movements)
    return state, Effects(tuple(movements), churn)


def _on_payment_failed(state, ev, t, rules):
    state.failed_payments += 1
    if state.first_failed_t is None:
        state.first_failed_t = t
    return state, NO_EFFECTS


def _on_payment_succeeded(state, ev, t, rules):
    state.failed_payments = 0
    state.first_failed_t = None
    return state, NO_EFFECTS


def _on_trial_started(state, ev, t, rules):
    if state.status != ACTIVE:
        state.status = TRIAL
        state.plan = ev["plan"]
        state.contractual = True
        state.trial_start_t = t
    return state, NO_EFFECTS


def _on_trial_converted(state, ev, t, rules):
    if state.status == ACTIVE and not state.contractual:
        return state, _subscribe_buyer(state, t, ev["plan"], float(ev["mrr"]))
    if state.status == ACTIVE:
        return state, _set_mrr(state, t, ev["plan"], float(ev["mrr"]))
    return state, _start_spell(state, t, ev["plan"], float(ev["mrr"]), True)


def _activity(state: CustomerState, t: float) -> None:
    d = day_of(t)
    state.usage[d] = state.usage.get(d, 0) + 1
    if state.last_activity_t is None or t > state.last_activity_t:
        state.last_activity_t = t
    if state.first_seen_t is not None and d < day_of(state.first_seen_t) + ONBOARDING_DAYS:
        state.first_days[d] = state.first_days.get(d, 0) + 1


ONBOARDING_DAYS = 14


def _first_seen(state: CustomerState, t: float) -> None:
    """An earlier event than any seen: the onboarding window moves back.

    Topics are read at different paces, so a customer's first usage may be
    read before their subscription started. Moving the window earlier can
    only drop days from its end, so the count stays what an in-order read
    would give.
    """
    state.first_seen_t = t
    end = day_of(t) + ONBOARDING_DAYS
    for d in [d for d in state.first_days if d >= end]:
        del state.first_days[d]


def _on_session(state, ev, t, rules):
    _activity(state, t)
    return state, NO_EFFECTS


def _on_feature_used(state, ev, t, rules):
    _activity(state, t)
    f = ev["feature"]
    if f not in state.features and len(state.features) < MAX_FEATURES:
        state.features.append(f)
    return state, NO_EFFECTS


def _on_purchase(state, ev, t, rules):
    effects = NO_EFFECTS
    if state.status != ACTIVE and not state.contractual:
        # a purchase makes a non-contractual customer (re)active
        effects = _start_spell(state, t, None, 0.0, False)
    _activity(state, t)
    state.purchases += 1
    state.purchase_amount += float(ev["amount"])
    if state.first_purchase_t is None:
        state.first_purchase_t = t
    if state.last_purchase_t is None or t > state.last_purchase_t:
        state.last_purchase_t = t
    return state, effects


def _on_ticket_opened(state, ev, t, rules):
    d = day_of(t)
    state.tickets[d] = state.tickets.get(d, 0) + 1
    tid = ev["ticket_id"]
    if tid not in state.open_tickets and len(state.open_tickets) < MAX_OPEN_TICKETS:
        state.open_tickets.append(tid)
    return state, NO_EFFECTS


def _on_ticket_resolved(state, ev, t, rules):
    tid = ev["ticket_id"]
    if tid in state.open_tickets:
        state.open_tickets.remove(tid)
    return state, NO_EFFECTS


def _on_csat(state, ev, t, rules):
    state.csat = int(ev["score"])
    return state, NO_EFFECTS


def _on_nps(state, ev, t, rules):
    state.nps = int(ev["score"])
    return state, NO_EFFECTS


HANDLERS = {
    "subscription_started": _on_started,
    "plan_changed": _on_plan_changed,
    "subscription_renewed": _on_renewed,
    "subscription_cancelled": _on_cancelled,
    "payment_failed": _on_payment_failed,
    "payment_succeeded": _on_payment_succeeded,
    "trial_started": _on_trial_started,
    "trial_converted": _on_trial_converted,
    "session": _on_session,
    "feature_used": _on_feature_used,
    "purchase": _on_purchase,
    "ticket_opened": _on_ticket_opened,
    "ticket_resolved": _on_ticket_resolved,
    "csat": _on_csat,
    "nps": _on_nps,
}


_TOPIC_OF = {t: topic for topic, types in TOPIC_TYPES.items() for t in types}


def prune(state: CustomerState, now: float, rules: Rules) -> None:
    """Drop history no rolling window can see any more.

    A bucket, spell or MRR change older than the longest window (plus one day
    of slack) contributes nothing to a KPI at `now` or later, so dropping it
    changes no figure (see `kpis.contributions`).
    """
    horizon = day_of(now) - rules.keep_days - 1
    for buckets in (state.usage, state.tickets):
        if buckets and min(buckets) < horizon:
            for d in [d for d in buckets if d < horizon]:
                del buckets[d]
    cutoff = horizon * DAY
    if state.spells and state.spells[0][1] < cutoff:
        state.spells = [s for s in state.spells if s[1] >= cutoff]
    if len(state.mrr_changes) > 1 and state.mrr_changes[1][0] < cutoff:
        # keep the last change before the cutoff: it is the MRR level at the cutoff
        keep_from = max(i for i, c in enumerate(state.mrr_changes) if c[0] < cutoff)
        state.mrr_changes = state.mrr_changes[keep_from:]
