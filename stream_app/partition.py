"""What a worker knows about one input partition beyond the customer table.

Each assigned partition has a `PartitionBook`: the KPI ledger (the sum of its
customers' contributions), the sweep index (customers by the day of their next
time-driven transition), and the partition's highest event time. All three are
derived from the customer table, so they are kept in memory only and rebuilt
from the table after a restart or a rebalance (`PartitionBook.load`): the
changelog-backed table stays the one thing that must survive.

The event-time clock of a partition is the highest event time seen less the
allowed lateness, raised to the worker's clock by ticks (so a partition that
goes quiet still sees its cancellations take effect and its customers lapse).
"""

from __future__ import annotations

import time
from typing import NamedTuple

from .config import DAY
from .kpis import Ledger, account_key, account_steps, activity_steps, contributions
from .state import CustomerState, Rules, day_of, next_deadline


class Before(NamedTuple):
    key: tuple
    account: "AccountView"
    days: tuple[int, ...]
    deadline: float | None


class AccountView(NamedTuple):
    """What `kpis.account_steps` reads of a state, copied before a mutation.

    Cheap (spells and MRR changes are append-only lists of lists, so shallow
    copies do); the old steps are only computed from it when the account key
    changed, which most events do not do.
    """

    status: str | None
    contractual: bool
    plan: str | None
    mrr: float
    cancel_effective_t: float | None
    last_activity_t: float | None
    spell_start_t: float | None
    risk: float | None
    risk_band: str | None
    spells: list
    mrr_changes: list

    def plan_label(self) -> str:
        return CustomerState.plan_label(self)

    @classmethod
    def of(cls, s: CustomerState) -> "AccountView":
        return cls(s.status, s.contractual, s.plan, s.mrr, s.cancel_effective_t, s.last_activity_t, s.spell_start_t,
                   s.risk, s.risk_band, list(s.spells), list(s.mrr_changes))


class PartitionBook:
    __slots__ = ("partition", "ledger", "due", "max_event_t", "floor_t", "windows", "rules", "lateness_s",
                 "last_event_wall", "inputs", "topic_max", "idle")

    def __init__(self, partition: int, rules: Rules, windows: tuple[int, ...], lateness_s: float, inputs: tuple[str, ...] = ()) -> None:
        self.partition = partition
        self.inputs = inputs  # input topics; the clock waits for the slowest one
        self.topic_max: dict[str, float] = {}
        self.idle: set[str] = set()  # inputs with no backlog: they do not hold the clock back
        self.ledger = Ledger()
        self.due: dict[int, set[str]] = {}
        self.max_event_t: float | None = None
        self.floor_t: float | None = None  # raised by ticks from the worker clock
        self.windows = windows
        self.rules = rules
        self.lateness_s = lateness_s
        # monotonic time of the last input event; a new book counts as busy
        self.last_event_wall = time.monotonic()

    # -- the clock ---------------------------------------------------------------
    def observe(self, t: float, topic: str | None = None) -> None:
        if self.max_event_t is None or t > self.max_event_t:
            self.max_event_t = t
        if topic is not None:
            self.idle.discard(topic)
            prev = self.topic_max.get(topic)
            if prev is None or t > prev:
                self.topic_max[topic] = t

    def raise_to(self, t: float) -> None:
        if self.floor_t is None or t > self.floor_t:
            self.floor_t = t

    @property
    def clock(self) -> float | None:
        """min over busy inputs of their highest event time, less the lateness.

        Kafka does not order messages across topics: a partition's usage
        topic may be read months of event time ahead of its subscription
        topic. Like Kafka Streams' stream-time and Flink's watermarks, the
        clock follows the slowest input that still has data to read; an input
        that is caught up (idle) does not hold it back.
        """
        own = None
        if not self.inputs:
            own = self.max_event_t
        else:
            busy = [self.topic_max.get(t) for t in self.inputs if t not in self.idle]
            if not busy:
                own = self.max_event_t
            elif None not in busy:
                own = min(busy)
        if own is not None:
            own -= self.lateness_s
        if own is None:
            return self.floor_t
        return own if self.floor_t is None else max(own, self.floor_t)

    # -- ledger and sweep index ---------------------------------------------------
    def load(self, s: CustomerState) -> None:
        """Add one customer read from the table (rebuilding after a rebalance)."""
        self.ledger.add(contributions(s, self.windows))
        deadline = next_deadline(s, self.rules)
        if deadline is not None:
            self.due.setdefault(day_of(deadline), set()).add(s.customer_id)
        if s.last_event_t is not None:
            self.observe(s.last_event_t)
            if s.is_customer:  # its daily score (snapshot, label expiry) resumes
                self.due.setdefault(day_of(s.last_event_t) + 1, set()).add(s.customer_id)

    def before(self, s: CustomerState) -> "Before":
        """Capture what the ledger knows of `s` before it is mutated in place."""
        key = account_key(s)
        return Before(key, AccountView.of(s), tuple(s.usage), next_deadline(s, self.rules))

    def after(self, before: "Before", s: CustomerState) -> None:
        """Swap the steps that changed since `before`; most events change none."""
        if account_key(s) != before.key:
            self.ledger.add(account_steps(before.account, self.windows), -1.0)
            self.ledger.add(account_steps(s, self.windows), 1.0)
        deadline = next_deadline(s, self.rules)
        if deadline is not None and deadline != before.deadline:
            self.due.setdefault(day_of(deadline), set()).add(s.customer_id)
        days = tuple(s.usage)
        if days != before.days:
            self.ledger.add(activity_steps(before.days), -1.0)
            self.ledger.add(activity_steps(days), 1.0)

    def pop_due(self, clock: float) -> list[str]:
        """Customer ids whose next transition may be due by `clock`.

        Stale entries (a deadline that moved since) are harmless: the caller
        re-checks `next_deadline` and `record` indexes the new one.
        """
        today = day_of(clock)
        ready = [d for d in self.due if d <= today]
        out: list[str] = []
        for d in sorted(ready):
            out.extend(self.due.pop(d))
        return out

    def fold(self) -> None:
        """Fold ledger steps the clock has left behind (keeps scrapes cheap)."""
        clock = self.clock
        if clock is not None:
            self.ledger.fold(day_of(clock) - 1)

    def day(self) -> int | None:
        clock = self.clock
        return None if clock is None else int(clock // DAY)
