"""Purchase-only (non-contractual) customers: no subscription to cancel, so
churn is only ever inferred from silence.

Each buys on a rhythm of its own: gamma-distributed gaps of shape 4 around a
mean of 5-40 days, capped at 75. A lapsing customer makes 0-3 more purchases
with gaps growing x1.6 (capped at 85 days) and then stops. The truth calls it
churn 90 days after the last purchase: what the monitor can only learn from
the lengthening gaps, never from an event that says so.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from .clock import DAY, WORK_HI, WORK_LO, format_ts
from .customer import GONE, Customer, Traits
from .draws import derive_seed
from .ground_truth import Truth

if TYPE_CHECKING:
    from .population import Simulation

INACTIVITY_DAYS = 90  # silence after which the truth calls a buyer churned


class PurchaseCustomer(Customer):
    """A buyer whose churn is inactivity."""

    contractual = False

    __slots__ = ("gap_mean", "spend", "p_lapse", "purchases_left", "next_purchase",
                 "last_purchase", "lapsing", "lapse_left", "growth", "n_lapse_purchases")

    def __init__(self, sim: "Simulation", idx: int, rnd: random.Random, traits: Traits, start_day: int) -> None:
        super().__init__(sim, idx, rnd, traits, start_day)
        cfg = sim.cfg
        self.plan = "none"
        self.mrr = 0.0
        self.gap_mean = 5.0 + 35.0 * rnd.random()
        self.spend = math.exp(rnd.gauss(math.log(40.0), 0.6))
        self.p_lapse = 0.002 * (0.4 + 1.2 * (1.0 - traits.eng))  # per day of gap
        self.lapsing = False
        self.lapse_left = 0
        self.growth = 1.0
        self.last_purchase: int | None = None
        self.n_lapse_purchases = 0
        self.purchases_left: int | None = None
        if cfg.max_purchases is not None:  # its own generator: the draws above and below do not move
            self.purchases_left = random.Random(derive_seed(cfg.seed, ("purchases", idx))).randint(1, cfg.max_purchases)
        # an established buyer's next purchase falls anywhere in its first gap
        self.next_purchase = start_day + (rnd.randrange(0, int(self.gap_mean) + 1) if not traits.is_new else 0)

    def step(self, sim: "Simulation", day: int) -> bool:
        if self.last_purchase is not None:
            risk = 0.05 + (min(0.9, 0.45 + 0.15 * self.n_lapse_purchases) if self.lapsing else 0.0)
            self.risk_sum += risk
            self.risk_days += 1
        if day != self.next_purchase:
            return True
        r = self.rnd
        base = sim.start_epoch + day * DAY
        sec = r.randrange(WORK_LO, WORK_HI)
        amount = round(self.spend * math.exp(r.gauss(0.0, 0.3)), 2)
        sim.emit(sec, self.cid, "purchase", {"amount": amount})
        if self.last_purchase is None:
            self.started_at = format_ts(base + sec)
        self.last_purchase = base + sec
        if self.purchases_left is not None:
            self.purchases_left -= 1
            if self.purchases_left <= 0:  # bought all it will: silent from now on
                self.state = GONE
                return False
        gap = self._next_gap(r)
        if gap is None:
            self.state = GONE
            return False
        self.next_purchase = day + max(1, int(round(gap)))
        return True

    def _next_gap(self, r: random.Random) -> float | None:
        """Days to the next purchase; None when a lapse has run out (no more
        purchases). A lapse may start after any purchase, likelier the longer
        the customer's gaps are (`p_lapse` is per day of gap)."""
        gap = r.gammavariate(4.0, self.gap_mean / 4.0)
        if not self.lapsing and r.random() < self.p_lapse * self.gap_mean:
            self.lapsing = True
            self.lapse_left = r.randint(0, 3)
            self.growth = 1.0
        if not self.lapsing:
            return min(75.0, gap)
        if self.lapse_left == 0:
            return None
        self.lapse_left -= 1
        self.growth *= 1.6
        self.n_lapse_purchases += 1
        return min(85.0, gap * self.growth)

    def to_truth(self, sim: "Simulation") -> Truth:
        drivers = list(self.drivers)
        risk_sum, risk_days = self.risk_sum, self.risk_days
        churned_epoch = None
        if self.state == GONE and self.last_purchase is not None:
            churned_epoch = self.last_purchase + INACTIVITY_DAYS * DAY
            # days after the last purchase: the customer has already left
            tail_end = min(churned_epoch, sim.end_epoch)
            extra = max(0, (tail_end - self.last_purchase) // DAY)
            risk_sum += 0.95 * extra
            risk_days += extra
            drivers = ["purchase_gaps_lengthening"] if self.n_lapse_purchases else ["purchase_stopped"]
        elif self.lapsing:
            drivers = ["purchase_gaps_lengthening"]
        return self._truth(sim, drivers, risk_sum, risk_days, churned_epoch=churned_epoch, kind="inactivity")
