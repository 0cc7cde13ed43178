"""The population over time: who arrives, who is won back, and one day of
everyone's events after another, in time order.

Customers are numbered in arrival order and each draws from its own generator,
so adding customers (a larger population) leaves every existing life as it
was. A day's events are buffered, sorted by second and handed out before the
next day is simulated, so memory holds the customers and one day of events,
never the whole stream.
"""

from __future__ import annotations

import random
from typing import Iterator

from .clock import DAY, day_stamps, epoch
from .customer import Customer, Traits
from .draws import derive_seed, poisson
from .ground_truth import Truth
from .purchases import PurchaseCustomer
from .scenarios import PLAN_MRR, SimConfig
from .subscriptions import SubscriptionCustomer


class Simulation:
    """Runs the population day by day.

    ``events()`` yields the event dicts; after it is exhausted ``truth`` holds
    one :class:`Truth` per customer.  ``run()`` does the same without building
    event dicts (faster when only the truth is needed).  A Simulation can be
    iterated once.
    """

    def __init__(self, cfg: SimConfig | None = None) -> None:
        self.cfg = cfg or SimConfig()
        self.start_epoch = epoch(self.cfg.start)
        self.end_epoch = self.start_epoch + self.cfg.days * DAY
        self.truth: list[Truth] = []
        self.event_count = 0
        #: today's events: (second of the day, arrival order, customer, type, own
        #: fields); its length before a customer's day is that customer's mark
        #: for `seconds_since` and `drop_since` (read directly: every customer
        #: takes one every day, and a method call for it cost ~0.6 %)
        self.buf: list[tuple] = []
        self._used = False
        cfg = self.cfg
        #: the day of SimConfig's price rise (None: no rise)
        self.rise_day = None if cfg.price_rise_plan is None else (
            cfg.days // 2 if cfg.price_rise_day is None else cfg.price_rise_day)
        wd0 = (self.start_epoch // DAY + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
        #: usage by day of the week (day % 7): less at weekends
        self.weekday_mult = [0.55 if (wd0 + d) % 7 >= 5 else 1.1 for d in range(7)]

    def price(self, plan: str, day: int) -> float:
        """The plan's list price on `day` (after SimConfig's price rise, if any)."""
        p = PLAN_MRR[plan]
        if self.rise_day is not None and plan == self.cfg.price_rise_plan and day >= self.rise_day:
            return round(p * self.cfg.price_rise_factor, 2)
        return p

    # ---- today's events, as the customers make them -------------------------
    def emit(self, sec: int, cid: str, typ: str, payload: dict) -> None:
        buf = self.buf
        buf.append((sec, len(buf), cid, typ, payload))

    def seconds_since(self, mark: int) -> list[int]:
        return [e[0] for e in self.buf[mark:]]

    def drop_since(self, mark: int, sec: int) -> None:
        """Events emitted since `mark` at `sec` or later are dropped: a customer
        whose cancellation is effective at once does nothing after it."""
        buf = self.buf
        if len(buf) > mark:
            buf[mark:] = [e for e in buf[mark:] if e[0] < sec]

    # ---- the days -------------------------------------------------------------
    def _arrive(self, idx: int, day: int, initial: bool) -> Customer:
        """Customer number `idx` arrives on `day` (`initial`: in day 0's book);
        its traits decide its kind."""
        rnd = random.Random(derive_seed(self.cfg.seed, idx))
        traits = Traits.draw(rnd, self.cfg, initial)
        kind = SubscriptionCustomer if traits.contractual else PurchaseCustomer
        return kind(self, idx, rnd, traits, day)

    def _days(self) -> Iterator[int]:
        if self._used:
            raise RuntimeError("a Simulation can only be run once; create a new one")
        self._used = True
        cfg = self.cfg
        arr_rng = random.Random(derive_seed(cfg.seed, "arrivals"))
        per_day = cfg.customers * 0.003 if cfg.new_per_day is None else cfg.new_per_day
        customers = [self._arrive(i, 0, initial=True) for i in range(cfg.customers)]
        active = list(customers)
        dormant: dict[int, list[SubscriptionCustomer]] = {}  # day -> customers won back that day
        for day in range(cfg.days):
            if day > 0:
                for _ in range(poisson(arr_rng, per_day)):
                    c = self._arrive(len(customers), day, initial=False)
                    customers.append(c)
                    active.append(c)
            for c in dormant.pop(day, ()):
                c.reactivate(self, day)
                active.append(c)
            keep = []
            for c in active:
                if c.step(self, day):
                    keep.append(c)
                elif c.react_day is not None and c.reactivated_at is None:
                    dormant.setdefault(c.react_day, []).append(c)
            active = keep
            yield day
            self.buf = []
        self.truth = [c.to_truth(self) for c in customers]

    def events(self) -> Iterator[dict]:
        """Yield all events in non-decreasing ``ts`` order (one day buffered)."""
        seed = self.cfg.seed
        counter = 0
        for day in self._days():
            buf = self.buf
            buf.sort()  # (sec, arrival order) is unique: payload dicts are never compared
            stamp = day_stamps(self.start_epoch + day * DAY)
            for sec, _, cid, typ, payload in buf:
                counter += 1
                yield {"event_id": f"{seed}-{counter}", "customer_id": cid, "type": typ, "ts": stamp(sec), **payload}
            self.event_count = counter

    def run(self) -> list[Truth]:
        """Simulate without materialising events; return the truth."""
        n = 0
        for _ in self._days():
            n += len(self.buf)
        self.event_count = n
        return self.truth


def events(cfg: SimConfig) -> Iterator[dict]:
    """Yields all events in non-decreasing `ts` order, generated day by day so memory is O(customers), not O(events)."""
    return Simulation(cfg).events()


def truth(cfg: SimConfig) -> list[Truth]:
    """Ground truth for ``cfg``: runs the same deterministic simulation as :func:`events`."""
    return Simulation(cfg).run()
