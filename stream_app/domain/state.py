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
import functools
import hashlib
import struct
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Mapping, NamedTuple

import msgspec

from ..config import DAY, Settings
from ..ingest.contract import TOPIC_TYPES, TOPICS
from .dayring import DayRing
from .packed import PackedCodec

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
ONBOARDING_DAYS = 14
TICKET_DAYS = 92  # ticket buckets: the 30- and 90-day ticket counts, today and a day of slack
# (rings written when this was 31 are grown on their next ticket: `_count`)
_TOPIC_INDEX = {t: i for i, t in enumerate(TOPICS)}


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
    dedupe_ids: int = 8
    winback_s: float = 365 * DAY  # a lapsed buyer is watched this long after its last activity

    @classmethod
    def from_settings(cls, s: Settings) -> "Rules":
        return cls(
            grace_s=s.grace_days * DAY,
            inactivity_s=s.inactivity_days * DAY,
            trial_s=s.trial_days * DAY,
            keep_days=max(max(s.windows_days), 30),
            dedupe_ids=s.dedupe_ids,
            winback_s=s.winback_days * DAY,
        )

    @property
    def usage_days(self) -> int:
        """Days of usage buckets kept: the longest window, today and one day of slack (see `prune`)."""
        return self.keep_days + 2


# Alert states (alerts.py decides them; the customer's state remembers them).
RAISED, ESCALATED, RESOLVED, NONE = "raised", "escalated", "resolved", "none"


class AlertState(msgspec.Struct, array_like=True, gc=False):
    """A customer's alert memory: what the monitor last told the success team (alerts.decide).

    `state` is the last alert emitted (`none` before the first), `alerted_risk`
    the risk it was emitted with (the base for escalation), `last_risk` the
    most recent risk seen, `last_emitted_t` the event time of the last alert.
    """

    state: str = NONE
    last_risk: float = 0.0
    alerted_risk: float = 0.0
    last_emitted_t: float | None = None
    last_alert_id: str | None = None

    def __post_init__(self) -> None:
        self.state = sys.intern(self.state)

    @property
    def open(self) -> bool:
        """An alert is out and not yet resolved."""
        return self.state in (RAISED, ESCALATED)

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AlertState":
        return cls(**{k: d[k] for k in cls.__struct_fields__ if k in d})


def _intern(s: str | None) -> str | None:
    return None if s is None else sys.intern(s)


def event_hash(event_id: str) -> int:
    """A stable 64-bit digest of an event id (never 0: 0 marks an empty slot).

    Stable across processes (unlike `hash`), so a restarted worker recognises
    the ids its predecessor stored.
    """
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little") | 1


class CustomerState(msgspec.Struct, array_like=True, gc=False):
    """Everything the monitor keeps about one customer: the `customers` table value.

    Compact on purpose (a worker holds one per customer): a msgspec Struct,
    serialised as a positional msgpack array (field names are not repeated in
    every changelog record), outside the garbage collector's reach (`gc=False`:
    no field refers back to the state), with day buckets in packed rings
    (`dayring.DayRing`), event ids as 64-bit digests and short histories as
    tuples. New fields go at the end, with a default, so older records decode.
    """

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
    # usage per day for the longest window, tickets per day for 30 days
    usage: DayRing | None = None
    tickets: DayRing | None = None
    # usage per day in the first 14 days since the customer was first seen
    # (the earliest event time, whatever order the topics are read in), one
    # slot per day from that day on; collapsed into `onboarding_total` once the
    # partition clock has left those days behind (`compact`)
    first_days: bytearray | None = None
    onboarding_total: int = -1
    features: tuple[str, ...] = ()
    open_tickets: tuple[str, ...] = ()
    csat: int | None = None
    nps: int | None = None
    failed_payments: int = 0
    first_failed_t: float | None = None
    last_renewal_t: float | None = None
    cancel_effective_t: float | None = None
    cancel_reason: str | None = None
    last_price_increase_t: float | None = None
    plan_changes: tuple[tuple[float, str, float], ...] = ()  # (t, plan, mrr_delta)
    purchases: int = 0
    purchase_amount: float = 0.0
    first_purchase_t: float | None = None
    last_purchase_t: float | None = None
    # KPI history: ended spells (start_t, end_t, mrr_at_end) and MRR changes
    # (t, mrr_after, kind) kept while a rolling window can still see them.
    spells: tuple[tuple[float, float, float], ...] = ()
    mrr_changes: tuple[tuple[float, float, str], ...] = ()
    churned_t: float | None = None
    churn_kind: str | None = None
    churn_reason: str | None = None
    # Idempotence, two ways. `offsets`: the highest source offset applied per
    # input topic (in `contract.TOPICS` order). A customer's events on a topic
    # all sit in one partition (keyed by customer), so anything at or below it
    # is a redelivery, however far back the consumer was rewound (a rebalance
    # can replay a whole partition). `seen`: digests of the last event ids
    # applied per topic (`Rules.dedupe_ids` slots each), for the same event
    # *produced* twice (a retrying producer, a DLQ re-publication), which
    # arrives at a new offset.
    offsets: tuple[int, ...] = (-1, -1, -1)
    seen: bytearray | None = None
    late_events: int = 0
    # the current churn risk (scoring), for the at-risk gauges
    risk: float | None = None
    risk_band: str | None = None
    # scheduling and the label protocol (process.py, schedule.py, labels.py):
    # when the customer was last scored, the model's score then, and the last
    # day whose end-of-day observation is already decided
    scored_t: float | None = None
    model_score: float | None = None
    observed_through: int = -1  # the last day whose observation snapshot is decided (labels.py)
    alert: AlertState | None = None  # None until the customer is first scored
    # the label cursor: snapshots of days up to this one are labelled; and
    # when the oldest one still waiting is known (its horizon passes)
    labelled_through: int = -1
    label_due_t: float | None = None
    # purchases per day for the rolling windows (repeat customer rate,
    # purchase frequency: `kpis.purchase_steps`), pruned with the usage ring:
    # packed (day, count) uint16 pairs, oldest first (`bought`). Not a ring:
    # most customers never buy, and a buyer buys on a few of the 92 days kept;
    # not a tuple of tuples: that cost ~90 B a day in memory, this 4.
    purchase_days: bytes = b""
    # cohort retention (`kpis.cohort_steps`) of the months since the start
    # whose history `prune` has dropped: through which age (months since the
    # start month, -1 none), a bit per age for "active at the month's end",
    # and the MRR at those month ends where it changed, packed (age uint8,
    # mrr float64) pairs (`retained_mrr_items`)
    retained_through: int = -1
    retained: int = 0
    retained_mrr: bytes = b""
    # distinct days with a purchase, ever (BG/NBD's repeat purchases are this
    # less one: `purchases.History`); `purchases` counts orders. 0 in records
    # written before it existed: `purchase_history` then estimates from orders
    purchase_day_count: int = 0
    # support, payment and price history the features need beyond the
    # current values above (`features.py`: recencies and counts): when the
    # last ticket was opened, every CSAT answer summed and counted (their
    # mean, next to the last one in `csat`), payment failures ever and the
    # last one (`failed_payments` and `first_failed_t` are reset by a
    # recovery; these are not)
    last_ticket_t: float | None = None
    csat_sum: int = 0
    csat_n: int = 0
    failures_total: int = 0
    last_failed_t: float | None = None
    # when each open ticket was opened (aligned with `open_tickets`; empty for
    # a state written before it was kept: those tickets' ages are unknown),
    # and bad CSAT answers as a sum that halves every `BAD_CSAT_HALF_LIFE_DAYS`
    # (1 per answer of 1-2, 1/3 per 3), as of `csat_bad_t`
    open_ticket_ts: tuple[float, ...] = ()
    csat_bad: float = 0.0
    csat_bad_t: float | None = None

    def __post_init__(self) -> None:
        # decoded strings are fresh objects; the handful of codes every
        # customer shares are kept once
        self.status = _intern(self.status)
        self.plan = _intern(self.plan)
        self.risk_band = _intern(self.risk_band)
        self.churn_kind = _intern(self.churn_kind)
        self.churn_reason = _intern(self.churn_reason)
        self.cancel_reason = _intern(self.cancel_reason)
        if self.features:
            self.features = tuple(map(sys.intern, self.features))

    # -- serialisation (the table codec) ---------------------------------------
    def to_bytes(self) -> bytes:
        return _CODEC.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "CustomerState":
        return _CODEC.decode(raw)

    def copy(self) -> "CustomerState":
        return CustomerState.from_bytes(self.to_bytes())

    # -- derived views -----------------------------------------------------------
    @property
    def sessions_first_14d(self) -> int:
        """Usage in the first 14 days since the customer was first seen."""
        if self.onboarding_total >= 0:
            return self.onboarding_total
        return sum(memoryview(self.first_days).cast("H")) if self.first_days else 0

    @property
    def is_customer(self) -> bool:
        """Counts as a live customer (ChartMogul: has MRR, or buys; trials excluded)."""
        return self.status == ACTIVE

    @property
    def is_buyer(self) -> bool:
        """A purchase-only customer, live or lapsed: scored with P(no purchase)
        (`features.bgnbd_no_purchase`), and lapsed ones with a win-back chance."""
        return not self.contractual and self.first_purchase_t is not None and self.status in (ACTIVE, LAPSED)

    def watched(self, now: float, rules: "Rules") -> bool:
        """Scored and observed (label snapshots) at `now`: a live customer, or
        a lapsed buyer within `Rules.winback_s` of its last activity."""
        if self.status == ACTIVE:
            return True
        if not self.is_buyer or self.last_activity_t is None:
            return False
        return now < self.last_activity_t + rules.winback_s

    def plan_label(self) -> str:
        return self.plan if self.contractual and self.plan else NO_PLAN

    def usage_items(self) -> list[tuple[int, int]]:
        return self.usage.items() if self.usage is not None else []

    def usage_days(self) -> tuple[int, ...]:
        return self.usage.days() if self.usage is not None else ()

    def tickets_in(self, today: int, days: int) -> int:
        return self.tickets.window(today, days) if self.tickets is not None else 0

    def applied_offset(self, topic: str) -> int:
        return self.offsets[_TOPIC_INDEX[topic]]

    def bought(self) -> tuple[tuple[int, int], ...]:
        """(day, purchases) of the days with a purchase still kept, oldest first."""
        return tuple(_PURCHASE.iter_unpack(self.purchase_days))

    def retained_mrr_items(self) -> tuple[tuple[int, float], ...]:
        """(age, MRR at that month's end) where it changed, of the folded ages."""
        return tuple(_RETAINED_MRR.iter_unpack(self.retained_mrr))


_PURCHASE = struct.Struct("<HH")  # day (to 2149), purchases that day (saturating)
_RETAINED_MRR = struct.Struct("<Bd")  # age, MRR


def _from_legacy(d: dict[str, Any]) -> CustomerState:
    """A state stored as JSON by an earlier release (dict buckets, id lists)."""
    s = CustomerState(d["customer_id"])
    for name in ("partition", "status", "contractual", "plan", "mrr", "first_seen_t", "started_t", "spell_start_t",
                 "trial_start_t", "last_event_t", "last_activity_t", "csat", "nps", "failed_payments",
                 "first_failed_t", "last_renewal_t", "cancel_effective_t", "cancel_reason", "last_price_increase_t",
                 "purchases", "purchase_amount", "first_purchase_t", "last_purchase_t", "churned_t", "churn_kind",
                 "churn_reason", "late_events", "risk", "risk_band"):
        if name in d:
            setattr(s, name, d[name])
    usage = {int(k): v for k, v in (d.get("usage") or {}).items()}
    for day in sorted(usage):
        _count(s, "usage", day, usage[day], Rules().usage_days)
    for day, n in sorted((int(k), v) for k, v in (d.get("tickets") or {}).items()):
        _count(s, "tickets", day, n, TICKET_DAYS)
    first = d.get("first_days") or {}
    if first and s.first_seen_t is not None:
        base = day_of(s.first_seen_t)
        s.first_days = bytearray(2 * ONBOARDING_DAYS)
        view = memoryview(s.first_days).cast("H")
        for k, v in first.items():
            if 0 <= int(k) - base < ONBOARDING_DAYS:
                view[int(k) - base] = min(0xFFFF, v)
    s.features = tuple(d.get("features") or ())
    s.open_tickets = tuple(d.get("open_tickets") or ())
    s.plan_changes = tuple(tuple(c) for c in d.get("plan_changes") or ())
    s.spells = tuple(tuple(c) for c in d.get("spells") or ())
    s.mrr_changes = tuple(tuple(c) for c in d.get("mrr_changes") or ())
    s.offsets = tuple(d.get("offsets", {}).get(t, -1) for t in TOPICS)
    for topic, ids in (d.get("seen_ids") or {}).items():
        for eid in ids:
            _remember(s, _TOPIC_INDEX[topic], event_hash(eid), Rules().dedupe_ids)
    s.__post_init__()
    return s


_CODEC = PackedCodec(CustomerState, _from_legacy)


def _count(state: CustomerState, name: str, day: int, n: int, size: int) -> None:
    ring = getattr(state, name)
    if ring is None:
        ring = DayRing.new(size)
        setattr(state, name, ring)
    elif ring.size < size:  # written by a release that kept fewer days
        ring = ring.resized(size)
        setattr(state, name, ring)
    ring.add(day, n)


def _remember(state: CustomerState, topic: int, digest: int, slots: int) -> bool:
    """Record an event id digest in the topic's window; False if it is already there."""
    seen = state.seen
    width = 8 * slots
    if seen is None or len(seen) != width * len(TOPICS):
        seen = state.seen = bytearray(width * len(TOPICS))
    view = memoryview(seen).cast("Q")
    lo = topic * slots
    segment = view[lo:lo + slots]
    if digest in segment.tolist():
        return False
    # oldest first: shift the window left by one and put the newest last
    start = topic * width
    seen[start:start + width - 8] = seen[start + 8:start + width]
    view[lo + slots - 1] = digest
    return True


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
DUPLICATE = Effects(duplicate=True)


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
    index = _TOPIC_INDEX[topic]
    if offset is not None:
        offsets = state.offsets
        if offset <= offsets[index]:
            return state, DUPLICATE
        state.offsets = offsets[:index] + (offset,) + offsets[index + 1:]
    if rules.dedupe_ids and not _remember(state, index, event_hash(event["event_id"]), rules.dedupe_ids):
        return state, DUPLICATE

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
    state, own = advance(state, t, rules, decided_by=topic)
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
            reason = state.cancel_reason or "other"
            kind = INVOLUNTARY if reason == REASON_PAYMENT else VOLUNTARY
            churn = _churn(state, state.cancel_effective_t, kind, reason, movements)
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
    state.spells += ((start, at, mrr),)
    _mrr_change(state, at, 0.0, "churn")
    state.status = LAPSED if kind == INACTIVITY else CANCELLED
    state.mrr = 0.0
    state.spell_start_t = None
    state.cancel_effective_t = None
    state.cancel_reason = None
    state.failed_payments = 0
    state.first_failed_t = None
    state.churned_t, state.churn_kind, state.churn_reason = at, kind, reason
    # the risk stays: the score the customer had when it churned, for the record
    return churn


def _mrr_change(state: CustomerState, t: float, mrr_after: float, kind: str) -> None:
    # kept in event-time order: topics are not ordered with each other, so a
    # change may be read after a later one (the step function needs time order)
    changes = state.mrr_changes
    change = (t, mrr_after, kind)
    if not changes or changes[-1][0] <= t:
        state.mrr_changes = changes + (change,)
    else:
        i = bisect.bisect_right(changes, t, key=lambda c: c[0])
        state.mrr_changes = changes[:i] + (change,) + changes[i:]


def _start_spell(state: CustomerState, t: float, plan: str | None, mrr: float, contractual: bool) -> Effects:
    """Become a paying customer: new on the first spell, reactivation after churn."""
    returning = state.started_t is not None and state.status in (CANCELLED, LAPSED)
    kind = "reactivation" if returning else "new"
    state.status = ACTIVE
    state.contractual = contractual
    state.plan = _intern(plan)
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
    state.plan_changes = (state.plan_changes + ((t, plan, delta),))[-MAX_PLAN_CHANGES:]
    state.plan, state.mrr = _intern(plan), mrr
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
    state.plan, state.mrr = _intern(plan), mrr
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
    """A renewal after a cancellation was scheduled withdraws it: the
    customer stays (a Stripe subscription whose cancel_at_period_end was
    turned off again)."""
    state.last_renewal_t = t
    if state.cancel_effective_t is not None and state.status == ACTIVE:
        state.cancel_effective_t = state.cancel_reason = None
    return state, NO_EFFECTS


def _on_cancelled(state, ev, t, rules):
    # forced by unpaid invoices (`involuntary`): involuntary churn, reason payment,
    # as when a grace period runs out
    involuntary = ev.get("involuntary") is True
    reason = REASON_PAYMENT if involuntary else ev["reason"]
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
    churn = _churn(state, t, INVOLUNTARY if involuntary else VOLUNTARY, reason, movements)
    return state, Effects(tuple(movements), churn)


def _on_payment_failed(state, ev, t, rules):
    state.failed_payments += 1
    if state.first_failed_t is None:
        state.first_failed_t = t
    state.failures_total += 1
    if state.last_failed_t is None or t > state.last_failed_t:
        state.last_failed_t = t
    return state, NO_EFFECTS


def _on_payment_succeeded(state, ev, t, rules):
    state.failed_payments = 0
    state.first_failed_t = None
    return state, NO_EFFECTS


def _on_trial_started(state, ev, t, rules):
    if _bought_after(state, t):
        # in event order this trial came first, and the purchase started no spell
        state.status = state.spell_start_t = state.started_t = None
    if state.status != ACTIVE:
        state.status = TRIAL
        state.plan = _intern(ev["plan"])
        state.contractual = True
        state.trial_start_t = t
    return state, NO_EFFECTS


def _bought_after(state: CustomerState, t: float) -> bool:
    """Active only as a buyer whose first spell a purchase after `t` started.

    Topics are not ordered with each other: the usage topic may be read weeks
    of event time ahead of the subscription topic, so a purchase can be read
    before the trial that came earlier. Read in event order, the trial makes
    the customer contractual and their purchase starts no spell; read first,
    the purchase made them an active buyer, and the trial was ignored
    (`trial_start_t` None; and for a purchase during the trial, a spell from
    the purchase instead of the conversion). A first spell with no money left nothing
    else behind (no MRR change, no churn), so taking it back restores what
    the in-order read had when the trial started.
    """
    return (state.status == ACTIVE and not state.contractual and state.mrr == 0
            and state.spell_start_t is not None and t < state.spell_start_t and state.started_t == state.spell_start_t)


def _on_trial_converted(state, ev, t, rules):
    if state.status == ACTIVE and not state.contractual:
        return state, _subscribe_buyer(state, t, ev["plan"], float(ev["mrr"]))
    if state.status == ACTIVE:
        return state, _set_mrr(state, t, ev["plan"], float(ev["mrr"]))
    return state, _start_spell(state, t, ev["plan"], float(ev["mrr"]), True)


def _activity(state: CustomerState, t: float, rules: Rules) -> None:
    d = day_of(t)
    _count(state, "usage", d, 1, rules.usage_days)
    if state.last_activity_t is None or t > state.last_activity_t:
        state.last_activity_t = t
    if state.onboarding_total < 0 and state.first_seen_t is not None:
        i = d - day_of(state.first_seen_t)
        if 0 <= i < ONBOARDING_DAYS:
            if state.first_days is None:
                state.first_days = bytearray(2 * ONBOARDING_DAYS)
            view = memoryview(state.first_days).cast("H")
            view[i] = min(0xFFFF, view[i] + 1)


def _first_seen(state: CustomerState, t: float) -> None:
    """An earlier event than any seen: the onboarding window moves back.

    Topics are read at different paces, so a customer's first usage may be
    read before their subscription started. Moving the window earlier can
    only drop days from its end, so the count stays what an in-order read
    would give.
    """
    old = state.first_seen_t
    state.first_seen_t = t
    if old is None or state.first_days is None or state.onboarding_total >= 0:
        return
    shift = day_of(old) - day_of(t)
    if shift > 0:
        days = state.first_days
        keep = max(0, len(days) - 2 * shift)
        state.first_days = bytearray(2 * shift) + days[:keep] if keep else bytearray(len(days))


def _on_session(state, ev, t, rules):
    _activity(state, t, rules)
    return state, NO_EFFECTS


def _on_feature_used(state, ev, t, rules):
    _activity(state, t, rules)
    f = ev["feature"]
    if f not in state.features and len(state.features) < MAX_FEATURES:
        state.features += (sys.intern(f),)
    return state, NO_EFFECTS


def _on_purchase(state, ev, t, rules):
    effects = NO_EFFECTS
    if state.status != ACTIVE and not state.contractual:
        # a purchase makes a non-contractual customer (re)active
        effects = _start_spell(state, t, None, 0.0, False)
    _activity(state, t, rules)
    state.purchases += 1
    state.purchase_amount += float(ev["amount"])
    _count_purchase(state, day_of(t))
    if state.first_purchase_t is None or t < state.first_purchase_t:
        state.first_purchase_t = t  # topics are read out of order
    if state.last_purchase_t is None or t > state.last_purchase_t:
        state.last_purchase_t = t
    return state, effects


def _count_purchase(state: CustomerState, day: int) -> None:
    """One more purchase on `day`, the days kept in order (topics are read out of order)."""
    days = dict(state.bought())
    if day not in days:
        # a day already pruned from the list (a purchase read over three
        # months late) would count twice: late beyond any window, and rare
        state.purchase_day_count += 1
    days[day] = min(0xFFFF, days.get(day, 0) + 1)
    state.purchase_days = b"".join(_PURCHASE.pack(d, n) for d, n in sorted(days.items()))


def _on_ticket_opened(state, ev, t, rules):
    _count(state, "tickets", day_of(t), 1, TICKET_DAYS)
    if state.last_ticket_t is None or t > state.last_ticket_t:
        state.last_ticket_t = t
    tid = ev["ticket_id"]
    if tid not in state.open_tickets and len(state.open_tickets) < MAX_OPEN_TICKETS:
        if len(state.open_ticket_ts) == len(state.open_tickets):  # ages known (see the field)
            state.open_ticket_ts += (t,)
        state.open_tickets += (tid,)
    return state, NO_EFFECTS


def _on_ticket_resolved(state, ev, t, rules):
    tid = ev["ticket_id"]
    if tid in state.open_tickets:
        if len(state.open_ticket_ts) == len(state.open_tickets):
            state.open_ticket_ts = tuple(ts for x, ts in zip(state.open_tickets, state.open_ticket_ts) if x != tid)
        state.open_tickets = tuple(x for x in state.open_tickets if x != tid)
    return state, NO_EFFECTS


def _on_csat(state, ev, t, rules):
    state.csat = int(ev["score"])
    state.csat_sum += state.csat
    state.csat_n += 1
    if state.csat <= 3:
        state.csat_bad = bad_csat_at(state, t) + (1.0 if state.csat <= 2 else 1.0 / 3.0)
        state.csat_bad_t = t if state.csat_bad_t is None else max(t, state.csat_bad_t)
    return state, NO_EFFECTS


BAD_CSAT_HALF_LIFE_DAYS = 30.0


def bad_csat_at(state: CustomerState, t: float) -> float:
    """The customer's bad CSAT answers, faded to time `t` (a month halves them).

    >>> s = new_state("c"); s.csat_bad, s.csat_bad_t = 1.0, 0.0
    >>> bad_csat_at(s, 30 * 86400.0)
    0.5
    """
    if state.csat_bad_t is None or not state.csat_bad:
        return 0.0
    age = max(0.0, t - state.csat_bad_t) / DAY
    return state.csat_bad * 0.5 ** (age / BAD_CSAT_HALF_LIFE_DAYS)


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
    if state.usage is not None:
        state.usage.prune(horizon)
    if state.tickets is not None:
        state.tickets.prune(horizon)
    if state.purchase_days and _PURCHASE.unpack_from(state.purchase_days)[0] < horizon:
        state.purchase_days = b"".join(_PURCHASE.pack(d, n) for d, n in state.bought() if d >= horizon)
    if state.started_t is not None and state.retained_through < COHORT_AGES - 1:
        fold_retention(state, horizon)
    cutoff = horizon * DAY
    if state.spells and state.spells[0][1] < cutoff:
        state.spells = tuple(s for s in state.spells if s[1] >= cutoff)
    if len(state.mrr_changes) > 1 and state.mrr_changes[1][0] < cutoff:
        # keep the last change before the cutoff: it is the MRR level at the cutoff
        keep_from = max(i for i, c in enumerate(state.mrr_changes) if c[0] < cutoff)
        state.mrr_changes = state.mrr_changes[keep_from:]


# Cohort retention covers the first 24 months of a customer (ChartMogul's
# cohort tables): ages 0..23, age 0 the month the customer first started.
COHORT_AGES = 24
_EPOCH = date(1970, 1, 1)


@functools.lru_cache(maxsize=4096)
def month_of(day: int) -> int:
    """Months since year 0 of a day number (`day_of`): the cohort's month index.

    >>> month_of(0), month_of(30), month_of(31)  # 1970-01-01, 01-31, 02-01
    (23640, 23640, 23641)
    """
    d = _EPOCH + timedelta(days=day)
    return d.year * 12 + d.month - 1


@functools.lru_cache(maxsize=1024)
def month_start(month: int) -> int:
    """The day number of the first day of a month index.

    >>> month_start(23640), month_start(23641), month_start(23642)
    (0, 31, 59)
    """
    return (date(month // 12, month % 12 + 1, 1) - _EPOCH).days


def month_label(month: int) -> str:
    """The `cohort` label of a month index.

    >>> month_label(23640 + 17)
    '1971-06'
    """
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def paying_days(s: CustomerState) -> list[tuple[int, int | None]]:
    """The customer's paying spells still in the state, as days [start, end) (end None: ongoing).

    Day granularity as the window KPIs (`kpis.account_steps`): active at the
    end of day d when start <= d < end.
    """
    spells: list[tuple[int, int | None]] = [(day_of(a), day_of(b)) for a, b, _ in s.spells]
    if s.status == ACTIVE and s.spell_start_t is not None:
        spells.append((day_of(s.spell_start_t), None))
    return spells


def active_on(spells: list[tuple[int, int | None]], day: int) -> int:
    return int(any(a <= day and (b is None or day < b) for a, b in spells))


def mrr_on(s: CustomerState, day: int) -> float:
    """MRR at the end of `day`, from the MRR changes (time order) still in the state."""
    level = 0.0
    for t, after, _ in s.mrr_changes:
        if day_of(t) > day:
            break
        level = after
    return level


def fold_retention(state: CustomerState, horizon: int) -> None:
    """Record the cohort ages whose month ended before `horizon`, before `prune`
    drops the spells and MRR changes that tell them: a retention cell of a
    past month must not change when its history goes."""
    first = month_of(day_of(state.started_t))
    age = state.retained_through + 1
    if month_start(first + age + 1) > horizon:  # the month's last day is not before the horizon
        return
    spells = paying_days(state)
    last_mrr = state.retained_mrr_items()[-1][1] if state.retained_mrr else 0.0
    while age < COHORT_AGES and month_start(first + age + 1) <= horizon:
        end = month_start(first + age + 1) - 1
        if active_on(spells, end):
            state.retained |= 1 << age
        mrr = mrr_on(state, end)
        if mrr != last_mrr:
            state.retained_mrr += _RETAINED_MRR.pack(age, mrr)
            last_mrr = mrr
        state.retained_through = age
        age += 1


def compact(state: CustomerState, clock: float) -> bool:
    """Collapse the onboarding days into their total once the partition clock
    (every input's event time, less the allowed lateness) has left them
    behind; returns whether the state changed.

    Only an event later than the allowed lateness and older than the
    customer's first event could still move the onboarding window then; it
    would move `first_seen_t` but no longer the count.

    >>> s = new_state("c"); s.first_seen_t = 0.0
    >>> _activity(s, 3600.0, Rules()); compact(s, 10 * DAY), compact(s, 15 * DAY)
    (False, True)
    >>> s.sessions_first_14d, s.first_days
    (1, None)
    """
    if state.onboarding_total >= 0 or state.first_seen_t is None:
        return False
    if day_of(clock) < day_of(state.first_seen_t) + ONBOARDING_DAYS:
        return False
    state.onboarding_total = state.sessions_first_14d
    state.first_days = None
    return True
