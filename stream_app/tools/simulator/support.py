"""A subscriber's support history: the tickets it opens, how they are
answered, how it rates them, and the frustration it keeps from them.

Support trouble is a cause of churn the monitor can see coming: tickets that
stay open, urgent ones, low CSAT. A customer in a customer-service episode
writes more, more urgent tickets that are resolved slowly or never, and rates
badly; with SimConfig.support_frustration on, what it lived through adds to
its risk by itself.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, NamedTuple

from .clock import DAY, WORK_HI, WORK_LO
from .draws import pick
from .scenarios import SimConfig

if TYPE_CHECKING:
    from .population import Simulation


class Ticket(NamedTuple):
    id: str
    due: int  # day it is resolved (far beyond the period: never)
    opened: int  # day


class SupportHistory:
    """One subscriber's tickets; draws from the customer's own generator."""

    __slots__ = ("rnd", "cid", "idx", "trouble", "open_tickets", "n_tickets", "frust", "frust_risk")

    def __init__(self, rnd: random.Random, cid: str, idx: int, support_trouble: float) -> None:
        self.rnd = rnd
        self.cid = cid
        self.idx = idx
        self.trouble = support_trouble  # the trait: how often it needs support anyway
        self.open_tickets: list[Ticket] = []
        self.n_tickets = 0
        self.frust = 0.0  # memory of bad ratings, fading
        self.frust_risk = 0.0  # the risk it added today

    def frustration(self, cfg: SimConfig, day: int) -> float:
        """Risk from support trouble the customer has lived through.

        Why: customers leave over a ticket nobody answers and over bad
        experiences they rated, not over a latent trait; both are events the
        monitor sees (``ticket_opened`` without ``ticket_resolved``, ``csat``).
        """
        self.frust *= 0.97
        overdue = sum(1 for t in self.open_tickets if day - t.opened > 7)
        self.frust_risk = cfg.support_frustration * (0.1 * min(3, overdue) + self.frust)
        return self.frust_risk

    def day(self, sim: "Simulation", day: int, lo: int, levels: dict[str, float], risk: float, leaving: bool) -> None:
        """Due tickets are resolved (and maybe rated), and a new one may open:
        likelier with support trouble, bugs or missing features, rarer once
        the customer is `leaving` (cancelled, or its payment lost). `lo`: the
        earliest second it may write."""
        cs = levels.get("customer_service", 0.0)
        if self.open_tickets:
            still = []
            for t in self.open_tickets:
                if t.due != day:
                    still.append(t)
                    continue
                sec = self.rnd.randrange(WORK_LO, WORK_HI)
                sim.emit(sec, self.cid, "ticket_resolved", {"ticket_id": t.id})
                self._rate(sim, sec, cs, risk)
            self.open_tickets = still
        p_ticket = (
            (0.008 + 0.03 * self.trouble) * sim.cfg.ticket_rate + 0.25 * cs
            + 0.05 * levels.get("user_experience", 0.0) + 0.03 * levels.get("missing_features", 0.0)
        )
        if leaving:
            p_ticket *= 0.4
        if lo < WORK_HI and self.rnd.random() < p_ticket:
            self._open(sim, day, lo, levels, cs, risk)

    def _open(self, sim: "Simulation", day: int, lo: int, levels: dict[str, float], cs: float, risk: float) -> None:
        """In support trouble (customer_service > 0.3) tickets are urgent and
        slow, some never resolved; otherwise mostly how-to, closed in 0-3 days."""
        r = self.rnd
        self.n_tickets += 1
        tid = f"tkt_{self.idx:06d}_{self.n_tickets:03d}"
        if cs > 0.3:
            prio = pick(r, ("low", "normal", "high", "urgent"), (0.1, 0.35, 0.35, 0.2))
            cat = pick(r, ("bug", "performance", "billing", "account", "how_to"), (3, 2, 2, 1, 1))
            delay = r.randint(2, 20) if r.random() < 0.85 else 10_000  # some never resolved
        else:
            prio = pick(r, ("low", "normal", "high", "urgent"), (0.35, 0.5, 0.13, 0.02))
            ux = levels.get("user_experience", 0.0) > 0.3
            mf = levels.get("missing_features", 0.0) > 0.3
            cat = pick(
                r,
                ("how_to", "billing", "account", "bug", "feature_request"),
                (3, 1.5, 1, 3 if ux else 1.5, 3 if mf else 1),
            )
            delay = r.randint(0, 3)
        sec = r.randrange(lo, WORK_HI)
        sim.emit(sec, self.cid, "ticket_opened", {"ticket_id": tid, "priority": prio, "category": cat})
        if delay == 0:
            rsec = min(DAY - 2, sec + r.randint(600, 14_400))
            sim.emit(rsec, self.cid, "ticket_resolved", {"ticket_id": tid})
            self._rate(sim, rsec, cs, risk)
        else:
            self.open_tickets.append(Ticket(tid, day + delay, day))

    def _rate(self, sim: "Simulation", sec: int, cs: float, risk: float) -> None:
        """About half rate a resolved ticket (CSAT 1-5), worse in support
        trouble or at high risk; a bad rating is remembered."""
        r = self.rnd
        if r.random() < 0.55:
            mean = 4.7 - 3.3 * cs - 1.5 * max(0.0, risk - cs - 0.2)
            score = int(round(r.gauss(mean, 0.6)))
            if score <= 3:  # remembered (SimConfig.support_frustration)
                self.frust += 0.15 if score <= 2 else 0.05
            sim.emit(min(DAY - 1, sec + r.randint(60, 7200)), self.cid, "csat", {"score": min(5, max(1, score))})
