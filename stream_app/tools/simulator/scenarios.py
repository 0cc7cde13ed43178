"""What population to simulate: its size and period, and the weights of its churn mechanisms.

`SimConfig` holds them; `SCENARIOS` names populations whose churn has
different causes, all built from the same customers by re-weighting the
mechanisms, so that the monitor can be judged on churn it was not tuned for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .clock import epoch
from .episodes import EPISODE_KINDS

PLANS = ("basic", "pro", "business")
PLAN_MRR = {"basic": 29.0, "pro": 99.0, "business": 299.0}
PLAN_WEIGHTS = (0.55, 0.33, 0.12)


@dataclass(frozen=True)
class SimConfig:
    """Simulation parameters (the package docstring says what the population is).

    The fields after ``max_purchases`` weigh the churn mechanisms against each
    other; their defaults are the ``default`` population's (byte-identical
    events for a seed), and `SCENARIOS` turns them to build populations whose
    churn has other causes. Each one acts through events the monitor reads.
    """

    customers: int = 2000  # initial population size at day 0 (more arrive over time)
    days: int = 365
    seed: int = 42
    start: str = "2025-01-01T00:00:00Z"
    new_per_day: float | None = None  # arrivals per day after day 0; default customers * 0.003
    purchase_only_share: float = 0.1  # non-contractual: only `purchase` events, churn = stop buying
    trial_share: float = 0.3  # share of new contractual customers starting with a 14-day trial
    grace_days: int = 14  # payment grace period (matches the monitor's default)
    # purchase-only customers make at most this many purchases each (a cap
    # drawn per customer, uniform in 1..max_purchases), then stop; None = no cap
    max_purchases: int | None = None

    # ---- weights of the churn mechanisms ------------------------------------
    #: multiplier of each risk-episode kind's start rate (keys: the episode kinds,
    #: "price", "customer_service", "product_fit", "user_experience", "competitor",
    #: "missing_features", "changing_needs"; a missing kind keeps 1.0)
    episode_rates: Mapping[str, float] = field(default_factory=dict)
    #: how much an episode suppresses usage, as a share of its default effect
    #: (1 = usage falls with every episode as today, 0 = only the episode's own
    #: traces: tickets, CSAT, plan changes)
    usage_damping: float = 1.0
    #: baseline risk of a customer who barely needs the product, times (1 - engagement)
    engagement_risk: float = 0.15
    #: scale of the risk a failed onboarding adds (the usage it suppresses is unchanged)
    onboarding_risk: float = 1.0
    #: scale of the everyday ticket rate (before any customer-service episode)
    ticket_rate: float = 1.0
    #: risk added by support trouble the customer lived through: 0.1 per ticket
    #: open more than 7 days (up to 3) plus a memory of bad ratings (0.15 per
    #: CSAT <= 2, 0.05 per CSAT 3, fading 3 % a day), times this weight; 0 = off
    support_frustration: float = 0.0
    #: Beta(a, b) of payment-method reliability: lower means more failed renewals
    #: and fewer recovered within the grace period (involuntary churn)
    reliability_beta: tuple[float, float] = (6.0, 1.3)
    #: scale of the reliability-driven chance that a renewal payment fails
    payment_fail_scale: float = 1.0
    #: a list-price rise on one plan: every paying customer of the plan gets a
    #: ``plan_changed`` (same plan, higher ``mrr``) on `price_rise_day`, new
    #: customers pay the new price, and price-sensitive customers react (a price
    #: episode, some a downgrade); None = no rise
    price_rise_plan: str | None = None
    price_rise_factor: float = 1.0  # new price = old price x this
    price_rise_day: int | None = None  # day of the rise; None = the middle of the period

    def __post_init__(self) -> None:
        unknown = sorted(set(self.episode_rates) - set(EPISODE_KINDS))
        if unknown:
            raise ValueError(f"episode_rates: unknown episode kind(s) {unknown}: one of {', '.join(EPISODE_KINDS)}")
        if any(v < 0 for v in self.episode_rates.values()):
            raise ValueError(f"episode_rates: multipliers must be >= 0, got {dict(self.episode_rates)}")
        if self.price_rise_plan is not None and self.price_rise_plan not in PLANS:
            raise ValueError(f"price_rise_plan {self.price_rise_plan!r}: one of {', '.join(PLANS)}")
        if len(self.reliability_beta) != 2 or min(self.reliability_beta) <= 0:
            raise ValueError(f"reliability_beta {self.reliability_beta!r}: two positive Beta parameters")
        try:
            epoch(self.start)
        except ValueError as exc:
            raise ValueError(f"start: {exc}") from None


#: Named populations for `churnmon simulate --scenario NAME`: SimConfig overrides.
#: Each documents what drives its churn; the mechanisms are the customers'
#: (subscriptions.py, purchases.py), weighted by the SimConfig fields above.
_QUIET_EPISODES = {k: 0.25 for k in ("product_fit", "user_experience", "competitor",
                                     "missing_features", "changing_needs")}
SCENARIOS: dict[str, dict] = {
    # subscriptions (90 %) whose churn follows usage decay, support trouble,
    # price shocks and failed payments, plus 10 % purchase-only customers
    "default": {},
    # the default mechanisms on subscriptions only: churn mostly follows
    # usage decay (product fit, competitors, failed onboarding, changing needs)
    "usage-decay": {"purchase_only_share": 0.0},
    # subscriptions whose churn is mostly support trouble: a product that
    # needs support twice as often, four times the customer-service episodes,
    # and customers who leave over tickets left open and bad ratings; usage
    # falls little before they go
    "support-trouble": {
        "purchase_only_share": 0.0,
        "episode_rates": {**_QUIET_EPISODES, "customer_service": 4.0, "price": 0.25},
        "usage_damping": 0.25,
        "engagement_risk": 0.05,
        "onboarding_risk": 0.3,
        "ticket_rate": 2.0,
        "support_frustration": 1.0,
    },
    # subscriptions whose churn is mostly money: unreliable payment methods
    # (failed renewals, dunning, involuntary churn after the grace period) and
    # a 30 % price rise on the pro plan midway that price-sensitive customers
    # leave over (reason price) or downgrade after; usage falls little
    "payment-price": {
        "purchase_only_share": 0.0,
        "episode_rates": dict(_QUIET_EPISODES),
        "usage_damping": 0.25,
        "engagement_risk": 0.05,
        "onboarding_risk": 0.3,
        "reliability_beta": (2.5, 1.5),
        "payment_fail_scale": 1.5,
        "price_rise_plan": "pro",
        "price_rise_factor": 1.3,
    },
    # a business that sells without subscriptions: every customer only buys,
    # 1 to 30 times, each with a rhythm of its own (mean gap 5-40 days)
    "purchase-only": {"purchase_only_share": 1.0, "max_purchases": 30, "new_per_day": 0.0},
}


def scenario(name: str, **overrides) -> "SimConfig":
    """The SimConfig of a named scenario, with explicit overrides on top."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}: one of {', '.join(SCENARIOS)}")
    return SimConfig(**{**SCENARIOS[name], **overrides})
