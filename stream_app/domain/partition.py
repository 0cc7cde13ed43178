"""What a worker knows about one input partition beyond the customer table.

Each assigned partition has a `PartitionBook`: the KPI ledger (the sum of its
customers' contributions), the visit index (customers by the time of their
next visit: `schedule.next_visit`), and the partition's event-time clock. All
three are derived from the customer table, so they are kept in memory only and
rebuilt from the table after a restart or a rebalance (`PartitionBook.load`):
the changelog-backed table stays the one thing that must survive.

The event-time clock of a partition is the highest event time seen less the
allowed lateness, raised to the worker's clock by ticks (so a partition that
goes quiet still sees its cancellations take effect and its customers lapse).
"""

from __future__ import annotations

import collections
import heapq
import time
from collections.abc import Iterator
from typing import NamedTuple

from ..config import DAY
from .dayring import DayRing
from .kpis import (
    Ledger,
    account_key,
    account_steps,
    cohort_key,
    cohort_steps,
    daily_free_steps,
    mau_runs,
    mau_steps,
    presence_key,
    presence_steps,
    purchase_steps,
    risk_key,
    risk_steps,
)
from .purchases import History, PurchaseSummary
from .state import CustomerState, day_of


def buyer_history(s: CustomerState) -> History | None:
    """What the partition's BG/NBD summary counts of `s`: the purchase history
    of a purchase-only (non-contractual) customer, live or lapsed; None for
    subscribers, whose purchases are add-ons, not the relationship."""
    if s.contractual or s.first_purchase_t is None:
        return None
    return History.of(s.first_purchase_t, s.last_purchase_t, s.purchase_day_count or s.purchases)


class Before(NamedTuple):
    """What the ledger knows of a customer, captured before a visit mutates it.

    The account steps are computed from a shallow copy only when the account
    key changed (rare); the activity days only when the usage ring changed.
    """

    account: tuple
    copy: CustomerState
    presence: tuple | None
    risk: tuple | None
    usage_end: int
    usage: bytes
    visit: float | None  # the visit time the index holds for the customer
    purchases: bytes  # the purchases per day (`kpis.purchase_steps`)
    cohort: tuple | None  # `kpis.cohort_key`
    buyer: History | None  # `buyer_history`


class PartitionBook:
    __slots__ = ("partition", "ledger", "due", "later_today", "held", "held_count", "received", "max_event_t", "floor_t", "windows", "lateness_s",
                 "last_event_wall", "inputs", "topic_max", "idle", "buyers")

    def __init__(self, partition: int, windows: tuple[int, ...], lateness_s: float, inputs: tuple[str, ...] = ()) -> None:
        self.partition = partition
        self.inputs = inputs  # input topics; the clock waits for the slowest one
        self.topic_max: dict[str, float] = {}
        self.idle: set[str] = set()  # inputs with no backlog: they do not hold the clock back
        self.ledger = Ledger()
        # the partition's purchase-only customers as BG/NBD needs them
        # (`purchases.PurchaseSummary`): the worker fits its population's
        # parameters from the sum over its books
        self.buyers = PurchaseSummary()
        # visit index: customers by the day of their next visit, and those of
        # the clock's own day by exact time (a visit later today must wait for
        # the clock to reach it, not be handed out on the next event)
        self.due: dict[int, set[str]] = {}
        self.later_today: list[tuple[float, str]] = []
        # events received but not applied yet, per input, oldest first, and
        # the newest event time received per input (`release`)
        self.held: dict[str, collections.deque] = {t: collections.deque() for t in inputs}
        self.held_count = 0
        self.received: dict[str, float] = {}
        self.max_event_t: float | None = None
        self.floor_t: float | None = None  # raised by ticks from the worker clock
        self.windows = windows
        self.lateness_s = lateness_s
        # monotonic time of the last input event; a new book counts as busy
        self.last_event_wall = time.monotonic()

    # -- input alignment --------------------------------------------------------
    def receive(self, topic: str, t: float, item: object) -> None:
        """An event read from `topic`, to be applied when `release` says."""
        self.held[topic].append((t, item))
        self.held_count += 1
        self.idle.discard(topic)
        if t > self.received.get(topic, float("-inf")):
            self.received[topic] = t

    def release(self, lateness_s: float, hold_max: int, limit: int | None = None) -> Iterator[object]:
        """The held events that may be applied now, in event-time order across inputs.

        Kafka orders a partition's records within a topic, not across topics,
        and a consumer may read one topic days of event time ahead of another
        (a backlog: the fetcher serves one partition's buffer before the
        next). Like Kafka Streams' choice of the oldest head among a task's
        partitions, the oldest held event is applied next, but only while
        every busy input with nothing held has been read to within
        `lateness_s` of it: an input with no backlog (idle: read to its
        high-water mark) holds nothing back, and one not read at all yet
        holds everything. Beyond `hold_max` held events the oldest is
        applied anyway (a bound on memory; skew beyond it is applied as read,
        which the state's transitions tolerate).
        """
        n = 0
        while limit is None or n < limit:
            topic = self._next(lateness_s, hold_max)
            if topic is None:
                return
            self.held_count -= 1
            n += 1
            yield self.held[topic].popleft()[1]

    def releasable(self, lateness_s: float, hold_max: int) -> bool:
        """Whether `release` would apply an event now."""
        return self._next(lateness_s, hold_max) is not None

    def _next(self, lateness_s: float, hold_max: int) -> str | None:
        """The input whose oldest held event is applied next, or None (see `release`)."""
        if not self.held_count:
            return None
        inf = float("inf")
        topic, head, bound = None, inf, inf
        for name, queue in self.held.items():
            if queue:
                if queue[0][0] < head:
                    topic, head = name, queue[0][0]
            elif name not in self.idle:
                bound = min(bound, self.received.get(name, -inf))
        if self.held_count > hold_max or head <= bound + lateness_s:
            return topic
        return None

    # -- the clock ---------------------------------------------------------------
    def observe(self, t: float, topic: str | None = None) -> None:
        if self.max_event_t is None or t > self.max_event_t:
            self.max_event_t = t
        if topic is not None:  # (receiving an event makes its input busy: `receive`)
            prev = self.topic_max.get(topic)
            if prev is None or t > prev:
                self.topic_max[topic] = t

    def raise_to(self, t: float) -> None:
        if self.floor_t is None or t > self.floor_t:
            self.floor_t = t

    @property
    def read_through(self) -> float | None:
        """The event time every input has been read up to: the slowest busy
        input's newest event, or what a tick from the worker's clock says
        (an idle partition has read everything there is). None: an input
        with data has delivered nothing yet. The clock is this less the
        allowed lateness."""
        own = self._inputs_through()
        floor = None if self.floor_t is None else self.floor_t + self.lateness_s
        if own is None or floor is None:
            return own if floor is None else floor
        return max(own, floor)

    def _inputs_through(self) -> float | None:
        if not self.inputs:
            return self.max_event_t
        busy = [self.topic_max.get(t) for t in self.inputs if t not in self.idle]
        if not busy:
            return self.max_event_t
        return None if None in busy else min(busy)

    @property
    def clock(self) -> float | None:
        """min over busy inputs of their highest event time, less the lateness.

        Kafka does not order messages across topics: a partition's usage
        topic may be read months of event time ahead of its subscription
        topic. Like Kafka Streams' stream-time and Flink's watermarks, the
        clock follows the slowest input that still has data to read; an input
        that is caught up (idle) does not hold it back.
        """
        through = self.read_through
        return None if through is None else through - self.lateness_s

    # -- ledger ---------------------------------------------------------------------
    def load(self, s: CustomerState, visit: float | None) -> None:
        """Add one customer read from the table (rebuilding after a rebalance).

        `kpis.contributions(s)`, with the active days counted per day
        (`Ledger.add_days`) rather than as steps: a million customers with
        90 active days each are rebuilt in seconds, not minutes."""
        ledger = self.ledger
        ledger.add(daily_free_steps(s, self.windows))
        days = s.usage_days()
        if days:
            ledger.add_days(days)
            ledger.add(mau_steps(days))
        history = buyer_history(s)
        if history is not None:
            self.buyers.add(*history)
        self.schedule(s.customer_id, None, visit)
        if s.last_event_t is not None:
            self.observe(s.last_event_t)

    def before(self, s: CustomerState, visit: float | None) -> Before:
        """Capture what the ledger knows of `s` before it is mutated in place."""
        ring = s.usage
        return Before(account_key(s), s.__copy__(), presence_key(s), risk_key(s),
                      ring.end if ring is not None else -1, bytes(ring.counts) if ring is not None else b"", visit,
                      s.purchase_days, cohort_key(s), buyer_history(s))

    def after(self, before: Before, s: CustomerState) -> None:
        """Swap the steps of the groups that changed since `before`; most visits change one or none."""
        ledger = self.ledger
        if account_key(s) != before.account:
            ledger.add(account_steps(before.copy, self.windows), -1.0)
            ledger.add(account_steps(s, self.windows), 1.0)
        key = presence_key(s)
        if key != before.presence:
            ledger.add(presence_steps(before.presence), -1.0)
            ledger.add(presence_steps(key), 1.0)
        key = risk_key(s)
        if key != before.risk:
            ledger.add(risk_steps(before.risk), -1.0)
            ledger.add(risk_steps(key), 1.0)
        if s.purchase_days != before.purchases:
            ledger.add(purchase_steps(before.copy.bought(), self.windows), -1.0)
            ledger.add(purchase_steps(s.bought(), self.windows), 1.0)
        self.buyers.move(before.buyer, buyer_history(s))
        if cohort_key(s) != before.cohort:
            ledger.add(cohort_steps(before.copy), -1.0)
            ledger.add(cohort_steps(s), 1.0)
        ring = s.usage
        if ring is not None and (ring.end != before.usage_end or ring.counts != before.usage):
            old = DayRing(before.usage_end, bytearray(before.usage)).days() if before.usage else ()
            new = ring.days()
            if old != new:
                gone, added = set(old) - set(new), set(new) - set(old)
                ledger.add_days(gone, -1)
                ledger.add_days(added, 1)
                runs_old, runs_new = mau_runs(old), mau_runs(new)
                if runs_old != runs_new:
                    ledger.add(mau_steps((), runs_old), -1.0)
                    ledger.add(mau_steps((), runs_new), 1.0)

    # -- the visit index --------------------------------------------------------------
    def schedule(self, customer_id: str, old: float | None, new: float | None) -> None:
        """Move a customer's entry from its old visit time to the new one."""
        if new is not None and old is not None and day_of(new) == day_of(old):
            return
        if old is not None:
            bucket = self.due.get(day_of(old))
            if bucket is not None:
                bucket.discard(customer_id)
        if new is not None:
            self.due.setdefault(day_of(new), set()).add(customer_id)

    def pop_due(self, clock: float, limit: int | None = None) -> list[str]:
        """Customer ids whose visit may be due by `clock`, at most `limit`.

        Entries are hints: the caller re-checks `schedule.next_visit` and
        puts back (`defer`) those not due yet.
        """
        out: list[str] = []
        heap = self.later_today
        while heap and heap[0][0] <= clock and (limit is None or len(out) < limit):
            out.append(heapq.heappop(heap)[1])
        today = day_of(clock)
        for d in sorted(d for d in self.due if d <= today):
            bucket = self.due[d]
            while bucket and (limit is None or len(out) < limit):
                out.append(bucket.pop())
            if bucket:
                break
            del self.due[d]
        return out

    def defer(self, customer_id: str, clock: float, visit: float | None) -> None:
        """Index a customer popped too early again: later today by exact time, else by day."""
        if visit is None:
            return
        if day_of(visit) <= day_of(clock):
            heapq.heappush(self.later_today, (visit, customer_id))
        else:
            self.due.setdefault(day_of(visit), set()).add(customer_id)

    def has_due(self) -> bool:
        """Some visit is due at the clock (a sweep's budget left it waiting)."""
        clock = self.clock
        if clock is None:
            return False
        if self.later_today and self.later_today[0][0] <= clock:
            return True
        today = day_of(clock)
        return any(bucket for d, bucket in self.due.items() if d <= today)

    def pending_visits(self) -> int:
        return sum(len(b) for b in self.due.values()) + len(self.later_today)

    def held_events(self) -> int:
        return self.held_count

    def fold(self) -> None:
        """Fold ledger steps the clock has left behind (keeps scrapes cheap)."""
        clock = self.clock
        if clock is not None:
            self.ledger.fold(day_of(clock) - 1)

    def day(self) -> int | None:
        clock = self.clock
        return None if clock is None else int(clock // DAY)
