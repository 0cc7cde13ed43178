"""What every simulated customer has, whatever its kind: latent traits drawn
once from its own generator, a lifecycle state, and the truth it leaves.

The traits are drawn in one fixed order before the customer's kind is known
(`Traits.draw`), so a customer's traits, and with them its whole life, do not
depend on the configured shares of kinds. Subscription customers
(subscriptions.py) and purchase-only customers (purchases.py) build on them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .clock import DAY, format_ts
from .draws import pick
from .ground_truth import Truth
from .scenarios import PLAN_WEIGHTS, PLANS, SimConfig

if TYPE_CHECKING:  # the population runs the customers and passes itself in
    from .population import Simulation

#: Own fields of every event type, with their Python types (for validators/tests).
EVENT_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "subscription_started": {"plan": (str,), "mrr": (float, int)},
    "plan_changed": {"plan": (str,), "mrr": (float, int)},
    "subscription_renewed": {},
    "subscription_cancelled": {"reason": (str,)},  # + optional reason_text, effective_at
    "payment_failed": {"amount": (float, int)},
    "payment_succeeded": {"amount": (float, int)},
    "trial_started": {"plan": (str,)},
    "trial_converted": {"plan": (str,), "mrr": (float, int)},
    "session": {"duration_s": (int,)},
    "feature_used": {"feature": (str,)},
    "purchase": {"amount": (float, int)},
    "ticket_opened": {"ticket_id": (str,), "priority": (str,), "category": (str,)},
    "ticket_resolved": {"ticket_id": (str,)},
    "csat": {"score": (int,)},
    "nps": {"score": (int,)},
}
USAGE_TYPES = frozenset({"session", "feature_used", "purchase"})

FEATURES = (
    "dashboard", "reports", "export", "api", "integrations", "alerts",
    "automation", "sharing", "mobile_app", "search", "templates", "sso",
)

# Lifecycle states: in a trial, paying, cancelled but not yet churned, a failed
# payment being recovered, a failed payment that will not be, gone.
TRIAL, ACTIVE, PENDING, DUNNING, LOST, GONE = range(6)


@dataclass(frozen=True, slots=True)
class Traits:
    """A customer's latent traits (all drawn once from its own generator).

    * ``eng`` (engagement, Beta(2.2, 2)): how much the customer needs the
      product.  Sets the baseline session rate (0.25-1.85 sessions/day) and the
      number of features used; low engagement raises baseline risk and the rate
      of product-fit episodes.  Models "value realised".
    * ``price_sens`` (Beta(2, 3)): how strongly the customer reacts to price.
      Drives the rate of price episodes (price increase or downgrade, then
      possibly a ``price`` cancellation).
    * ``onboard_ok`` (bool, P = 0.6 + 0.35 * eng for new customers): whether
      onboarding succeeds.  A failure shows as very few sessions in the first
      weeks and a high risk during days 7-100 of life -> early-life churn,
      concentrated at the 30/60/90-day renewals (trials mostly fail to convert).
    * ``support_trouble`` (Beta(1.5, 5)): propensity to hit problems that need
      support.  Raises the baseline ticket rate and the rate of
      customer-service episodes (urgent tickets, slow resolution, low CSAT).
    * ``reliability`` (Beta(6, 1.3)): payment-method reliability.  Sets the
      chance that a renewal payment fails and that a failure is recovered within
      the grace period (involuntary churn).
    """

    contractual: bool  # a subscription customer (else it only buys)
    is_new: bool  # arrives during the period, or one of the ~8 % new customers of day 0
    trial_draw: float  # uniform: a new subscription starts with a trial below SimConfig.trial_share
    eng: float
    price_sens: float
    support_trouble: float
    reliability: float
    onboard_ok: bool
    plan: str  # the plan it starts on
    features: tuple[str, ...]  # the features it uses, favourite first
    nps_phase: int  # day of its 90-day cycle on which it may answer the NPS survey
    tenure0: int  # days it had been a customer before day 0 (0 when new)
    base_rate: float  # sessions per day with nothing wrong
    kmax: int  # how many of its features it uses with nothing wrong
    dur_mu: float  # log mean session length

    @classmethod
    def draw(cls, rnd: random.Random, cfg: SimConfig, initial: bool) -> "Traits":
        """`initial`: one of day 0's customers (most of them established ones)."""
        u_kind = rnd.random()
        u_trial = rnd.random()
        u_new = rnd.random()
        eng = rnd.betavariate(2.2, 2.0)
        price_sens = rnd.betavariate(2.0, 3.0)
        support_trouble = rnd.betavariate(1.5, 5.0)
        reliability = rnd.betavariate(*cfg.reliability_beta)
        u_onboard = rnd.random()
        plan = pick(rnd, PLANS, PLAN_WEIGHTS)
        feats = list(FEATURES)
        rnd.shuffle(feats)
        # a draw no customer uses any more (a subscriber draws its own time of
        # day later); kept so that every later draw, and so every event, stays
        rnd.randrange(0, DAY)
        nps_phase = rnd.randrange(90)
        tenure0 = rnd.randint(30, 900)
        is_new = (not initial) or u_new < 0.08
        return cls(
            contractual=u_kind >= cfg.purchase_only_share,
            is_new=is_new,
            trial_draw=u_trial,
            eng=eng,
            price_sens=price_sens,
            support_trouble=support_trouble,
            reliability=reliability,
            # established customers survived onboarding
            onboard_ok=u_onboard < 0.6 + 0.35 * eng if is_new else True,
            plan=plan,
            features=tuple(feats),
            nps_phase=nps_phase,
            tenure0=0 if is_new else tenure0,
            base_rate=0.25 + 1.6 * eng,
            kmax=3 + round(9 * eng),
            dur_mu=math.log(240.0 + 900.0 * eng),
        )


class Customer:
    """The part of a customer the population loop and the truth file read."""

    contractual: bool  # set by each kind

    __slots__ = ("idx", "cid", "rnd", "traits", "start_day", "plan", "mrr", "state",
                 "started_at", "converted_at", "reactivated_at", "react_day", "drivers",
                 "risk_sum", "risk_days")

    def __init__(self, sim: "Simulation", idx: int, rnd: random.Random, traits: Traits, start_day: int) -> None:
        self.idx = idx
        self.cid = f"cus_{idx:06d}"
        self.rnd = rnd
        self.traits = traits
        self.start_day = start_day
        self.plan = traits.plan
        self.mrr = sim.price(traits.plan, start_day)
        self.state = ACTIVE
        self.started_at: str | None = None
        self.converted_at: str | None = None
        self.reactivated_at: str | None = None
        self.react_day: int | None = None  # day it comes back after churning (won back)
        self.drivers: list[str] = []
        self.risk_sum = 0.0  # latent risk summed over the days it counts (Truth.latent_risk)
        self.risk_days = 0

    def step(self, sim: "Simulation", day: int) -> bool:
        """Advance one day, emitting the day's events; False once gone for good
        (or until a win-back on `react_day`)."""
        raise NotImplementedError

    def to_truth(self, sim: "Simulation") -> Truth:
        raise NotImplementedError

    def _truth(self, sim: "Simulation", drivers: list[str], risk_sum: float, risk_days: int, *,
               churned_epoch: int | None = None, kind: str | None = None, reason: str | None = None) -> Truth:
        """The truth once the kind has said when (if ever) the churn takes
        effect: inside the period it is churn, after the end only pending."""
        churned = churned_epoch is not None and churned_epoch <= sim.end_epoch
        pending = None if churned_epoch is None or churned else format_ts(churned_epoch)
        latent = risk_sum / risk_days if risk_days else 0.0
        return Truth(
            customer_id=self.cid,
            started_at=self.started_at or format_ts(sim.start_epoch + self.start_day * DAY),
            plan=self.plan,
            contractual=self.contractual,
            churned=churned,
            churned_at=format_ts(churned_epoch) if churned else None,
            churn_kind=kind if churned else None,
            reason=reason if churned else None,
            latent_risk=round(latent, 4),
            drivers=drivers,
            converted_at=self.converted_at,
            reactivated_at=self.reactivated_at,
            pending_churn_at=pending,
        )
