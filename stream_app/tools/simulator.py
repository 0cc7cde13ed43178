"""Deterministic synthetic customer population for the churn monitor.

Why this exists
---------------
An online risk model only learns something if churn in its training stream is
*caused* by observable behaviour.  This module simulates a SaaS customer base
whose churn is driven by the risk signals listed in ``DOMAIN.md`` (usage decay,
failed onboarding, support trouble, price increases / downgrades, failed
payments, lengthening purchase gaps), with those signals appearing days to
weeks *before* the churn takes effect.  Some churn is deliberately unpredictable
(company closure, "other"), because real churn is.

Model in one paragraph
----------------------
Every customer gets latent traits from its own RNG (seeded from ``(seed,
customer index)``, so a customer's life does not change when the population
size changes).  Each day a customer's *latent risk* is ``base + sum(episode
levels) + onboarding component``.  Risk *episodes* (``price``,
``customer_service``, ``product_fit``, ``user_experience``, ``competitor``,
``missing_features``, ``changing_needs``) start at trait-dependent rates, ramp
up over 10-45 days, plateau, and then either resolve or persist.  While an
episode is active it leaves fingerprints: usage falls and feature breadth
shrinks, support episodes open urgent tickets that are resolved slowly and
rated CSAT 1-2, price episodes start with a ``plan_changed`` (price increase or
downgrade), and NPS answers drop.  The daily voluntary cancellation hazard is
``H_BASE + K * max(0, risk - 0.35)**2``, higher in the week before renewal; the
stated reason is the dominant episode's reason.  Payments fail at renewal with a
probability set by *payment reliability*; failures are recovered within the
grace period or become involuntary churn.

Scenarios
---------
`SCENARIOS` names populations whose churn has different causes, built from
the same customer by re-weighting its mechanisms (`SimConfig`'s fields after
``max_purchases``): ``default`` and ``usage-decay`` (the mechanisms above),
``support-trouble`` (a product that needs support more often; customers leave
over tickets left open and bad CSAT, usage falls little), ``payment-price``
(unreliable payment methods, dunning and involuntary churn, and a list-price
rise on the pro plan midway: a ``plan_changed`` with the same plan and a
higher ``mrr``, after which price-sensitive customers downgrade or leave over
price) and ``purchase-only``. Every mechanism acts through events the monitor
reads; the default weights reproduce the default population byte for byte.

Event stream
------------
Events are plain dicts (``event_id``, ``customer_id``, ``type``, ``ts`` plus the
type's own fields, see ``EVENT_FIELDS``) yielded in non-decreasing ``ts`` order,
generated one day at a time (memory O(customers + events of one day)).

* Day 0 opens the book: every initial customer emits ``subscription_started``
  during the first hour of day 0 (established customers have a hidden tenure of
  30-900 days, so their renewals and early-life effects are not synchronised;
  their first renewal falls 1-30 days later and is not preceded by a
  ``payment_succeeded`` on day 0).  About 8 % of the initial customers and all
  arrivals are genuinely new (trials possible, onboarding can fail).
* Cancellations: ~80 % carry ``effective_at`` = end of the current paid period
  (the customer is "cancelled, not yet churned" until then and keeps using the
  product a little); the rest are immediate.  Once churn has taken effect a
  customer emits nothing more, except the few who are won back: they emit a new
  ``subscription_started`` (reactivation) 20-150 days later and are then
  modelled as loyal (they do not churn a second time within the simulation).
* Trials last 14 days and end with ``trial_converted`` (+ first
  ``payment_succeeded``) or silence.  A trial that never converts is *not* paid
  churn: truth ``churned=False``, ``drivers=["trial_not_converted"]``.
* Purchase-only (non-contractual) customers emit only ``purchase`` events with
  a customer-specific gamma rhythm (mean gap 5-40 days, gaps capped at 75
  days).  Lapsing customers make 0-3 more purchases with gaps growing x1.6
  (capped at 85 days) and then stop.  Churn is inactivity: ``churned_at`` = last
  purchase + 90 days when that lies inside the simulated period.

Truth
-----
One :class:`Truth` per customer, in customer-index order.  ``churned`` is True
only when the churn took effect inside the simulated period (``churned_at`` <=
start + days).  A cancellation or unrecovered payment failure whose effect lies
after the end is reported as ``churned=False`` with ``pending_churn_at`` set.
``latent_risk`` is the **mean daily latent risk over the customer's observed
life** (from start until churn took effect, or the end of the period; for a
reactivated customer only the first life counts).  ``drivers`` lists the
signals behind the churn; for customers that did not churn it lists the risk
signals still active at the end of the period (at risk but censored).

>>> cfg = SimConfig(customers=30, days=20, seed=7)
>>> evs = list(events(cfg))
>>> evs == list(events(cfg))
True
>>> evs[0]["type"], sorted(evs[0])
('subscription_started', ['customer_id', 'event_id', 'mrr', 'plan', 'ts', 'type'])
>>> all(a["ts"] <= b["ts"] for a, b in zip(evs, evs[1:]))
True
>>> len(truth(cfg)) >= 30
True
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Iterator, Mapping

__all__ = [
    "SimConfig",
    "SCENARIOS",
    "scenario",
    "Truth",
    "Simulation",
    "events",
    "truth",
    "write_jsonl",
    "churn_summary",
    "PLANS",
    "PLAN_MRR",
    "REASONS",
    "EVENT_FIELDS",
]

DAY = 86_400

PLANS = ("basic", "pro", "business")
PLAN_MRR = {"basic": 29.0, "pro": 99.0, "business": 299.0}
PLAN_WEIGHTS = (0.55, 0.33, 0.12)

REASONS = (
    "price",
    "product_fit",
    "user_experience",
    "customer_service",
    "competitor",
    "onboarding",
    "missing_features",
    "company_closed",
    "changing_needs",
    "other",
)

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

# Risk-episode kinds -> (stated cancellation reason, share of the episode level
# that suppresses usage).  Support and price problems hurt usage less than a
# product that no longer fits: those customers still need the tool.
_EP_REASON = {
    "price": "price",
    "customer_service": "customer_service",
    "product_fit": "product_fit",
    "user_experience": "user_experience",
    "competitor": "competitor",
    "missing_features": "missing_features",
    "changing_needs": "changing_needs",
}
_EP_USAGE = {
    "price": 0.3,
    "customer_service": 0.5,
    "product_fit": 1.0,
    "user_experience": 0.8,
    "competitor": 1.0,
    "missing_features": 0.8,
    "changing_needs": 1.0,
}
_EP_KINDS = tuple(_EP_REASON)

_REASON_TEXT = {
    "price": ("too expensive for what we use", "budget cuts", "price went up"),
    "product_fit": ("not what we needed", "does not fit our workflow"),
    "user_experience": ("too buggy", "hard to use", "too slow"),
    "customer_service": ("support never answered", "tickets took weeks"),
    "competitor": ("moved to another tool", "found a cheaper alternative"),
    "onboarding": ("could not get it to work", "never finished setup"),
    "missing_features": ("missing integration we need", "no reporting we need"),
    "company_closed": ("company closed", "we were acquired"),
    "changing_needs": ("project ended", "our needs changed"),
    "other": ("no reason given",),
}

# Voluntary hazard: H_BASE (unpredictable noise) + K * max(0, risk - R0)**2 per day.
H_BASE = 0.00008
K_HAZARD = 0.07
R0 = 0.35
H_COMPANY = 0.00003  # company closure / merger per day (x2.5 for business plan)

_TRIAL, _ACTIVE, _PENDING, _DUNNING, _LOST, _GONE = range(6)
_WORK_LO, _WORK_HI = 6 * 3600, 23 * 3600


@dataclass(frozen=True)
class SimConfig:
    """Simulation parameters (see module docstring for what each population means).

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
        unknown = sorted(set(self.episode_rates) - set(_EP_KINDS))
        if unknown:
            raise ValueError(f"episode_rates: unknown episode kind(s) {unknown}: one of {', '.join(_EP_KINDS)}")
        if any(v < 0 for v in self.episode_rates.values()):
            raise ValueError(f"episode_rates: multipliers must be >= 0, got {dict(self.episode_rates)}")
        if self.price_rise_plan is not None and self.price_rise_plan not in PLANS:
            raise ValueError(f"price_rise_plan {self.price_rise_plan!r}: one of {', '.join(PLANS)}")
        if len(self.reliability_beta) != 2 or min(self.reliability_beta) <= 0:
            raise ValueError(f"reliability_beta {self.reliability_beta!r}: two positive Beta parameters")


#: Named populations for `churnmon simulate --scenario NAME`: SimConfig overrides.
#: Each documents what drives its churn; the mechanisms are the `_Customer`'s,
#: weighted by the SimConfig fields above.
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


@dataclass
class Truth:
    """Ground truth for one customer (see module docstring for exact semantics)."""

    customer_id: str
    started_at: str
    plan: str
    contractual: bool
    churned: bool
    churned_at: str | None
    churn_kind: str | None  # "voluntary" | "involuntary" | "inactivity"
    reason: str | None
    latent_risk: float  # mean daily latent risk over the observed (first) life
    drivers: list[str]
    # Extras (defaults, so code written against the fields above is unaffected):
    converted_at: str | None = None  # trial_converted time (paying customer from then on)
    reactivated_at: str | None = None  # won back after churn (new subscription_started)
    pending_churn_at: str | None = None  # churn decided but takes effect after the period end


# --------------------------------------------------------------------------- helpers


def _parse_ts(s: str) -> int:
    """RFC 3339 string -> epoch seconds (naive strings are taken as UTC).

    >>> _parse_ts("1970-01-02T00:00:01Z")
    86401
    """
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


_DATE_CACHE: dict[int, str] = {}


def _fmt_ts(epoch: int) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SSZ`` (cached date part, fast).

    >>> _fmt_ts(86401)
    '1970-01-02T00:00:01Z'
    """
    d, s = divmod(epoch, DAY)
    date = _DATE_CACHE.get(d)
    if date is None:
        date = datetime.fromtimestamp(d * DAY, tz=timezone.utc).strftime("%Y-%m-%dT")
        _DATE_CACHE[d] = date
    return f"{date}{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}Z"


def _derive_seed(seed: int, key: object) -> int:
    """Stable 64-bit seed for a sub-stream (independent of PYTHONHASHSEED)."""
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def _poisson(rnd: random.Random, lam: float) -> int:
    """Poisson draw (Knuth for small means, normal approximation above 30)."""
    if lam <= 0.0:
        return 0
    if lam > 30.0:
        return max(0, int(rnd.gauss(lam, math.sqrt(lam)) + 0.5))
    limit = math.exp(-lam)
    k = 0
    p = rnd.random()
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


def _pick(rnd: random.Random, items, weights):
    u = rnd.random() * sum(weights)
    for it, w in zip(items, weights):
        u -= w
        if u < 0:
            return it
    return items[-1]


# --------------------------------------------------------------------------- customer


class _Customer:
    """One simulated customer: latent traits + mutable lifecycle state.

    Latent traits (all drawn once from the customer's own RNG):

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

    __slots__ = (
        "idx", "cid", "rnd", "contractual", "plan", "mrr", "start_day", "tenure0",
        "eng", "price_sens", "onboard_ok", "support_trouble", "reliability",
        "base_rate", "kmax", "features", "dur_mu", "nps_phase", "anchor",
        "state", "next_renewal", "trial_end", "end_day", "fail_day", "recover_day",
        "eps", "ep_weights", "ep_total", "open_tickets", "n_tickets", "immortal",
        "started_at", "converted_at", "churn_epoch", "churn_kind", "reason",
        "drivers", "react_day", "reactivated_at", "risk_sum", "risk_days",
        "counting", "trial_failed", "pending_epoch", "is_trial",
        "frust", "frust_risk",  # support trouble lived through (SimConfig.support_frustration)
        # purchase-only
        "gap_mean", "spend", "next_purchase", "lapsing", "lapse_left", "growth",
        "last_purchase", "p_lapse", "n_lapse_purchases", "purchases_left",
    )

    def __init__(self, sim: "Simulation", idx: int, start_day: int, initial: bool) -> None:
        cfg = sim.cfg
        r = random.Random(_derive_seed(cfg.seed, idx))
        self.idx = idx
        self.cid = f"cus_{idx:06d}"
        self.rnd = r
        self.start_day = start_day
        # Traits are drawn in a fixed order whatever the customer's kind, so a
        # customer's traits do not depend on configuration shares.
        u_kind = r.random()
        u_trial = r.random()
        u_new = r.random()
        self.eng = r.betavariate(2.2, 2.0)
        self.price_sens = r.betavariate(2.0, 3.0)
        self.support_trouble = r.betavariate(1.5, 5.0)
        self.reliability = r.betavariate(*cfg.reliability_beta)
        u_onboard = r.random()
        self.plan = _pick(r, PLANS, PLAN_WEIGHTS)
        self.mrr = sim.price(self.plan, start_day)
        feats = list(FEATURES)
        r.shuffle(feats)
        self.features = feats
        self.anchor = r.randrange(0, DAY)
        self.nps_phase = r.randrange(90)
        self.tenure0 = r.randint(30, 900)
        self.base_rate = 0.25 + 1.6 * self.eng
        self.kmax = 3 + round(9 * self.eng)
        self.dur_mu = math.log(240.0 + 900.0 * self.eng)

        self.contractual = u_kind >= cfg.purchase_only_share
        is_new = (not initial) or u_new < 0.08
        if not is_new:
            self.onboard_ok = True  # established customers survived onboarding
        else:
            self.onboard_ok = u_onboard < 0.6 + 0.35 * self.eng
            self.tenure0 = 0

        ps, st, eng = self.price_sens, self.support_trouble, self.eng
        w = (
            0.00032 * (0.3 + 1.7 * ps),  # price
            0.00024 * (0.3 + 2.0 * st),  # customer_service
            0.00020 * (0.3 + 1.7 * (1.0 - eng)),  # product_fit
            0.00016,  # user_experience
            0.00012,  # competitor
            0.00012 * (0.5 + eng),  # missing_features
            0.00012,  # changing_needs
        )
        if cfg.episode_rates:
            w = tuple(x * cfg.episode_rates.get(k, 1.0) for x, k in zip(w, _EP_KINDS))
        self.ep_weights = w
        self.ep_total = sum(w)
        self.eps: list[list] = []
        self.open_tickets: list[list] = []
        self.n_tickets = 0
        self.frust = self.frust_risk = 0.0
        self.immortal = False
        self.converted_at = None
        self.churn_epoch = None
        self.churn_kind = None
        self.reason = None
        self.drivers: list[str] = []
        self.react_day = None
        self.reactivated_at = None
        self.risk_sum = 0.0
        self.risk_days = 0
        self.counting = True
        self.trial_failed = False
        self.pending_epoch = None
        self.end_day = None
        self.fail_day = None
        self.recover_day = None
        self.is_trial = False
        self.started_at = None

        if not self.contractual:
            self.plan = "none"
            self.mrr = 0.0
            self.gap_mean = 5.0 + 35.0 * r.random()
            self.spend = math.exp(r.gauss(math.log(40.0), 0.6))
            self.p_lapse = 0.002 * (0.4 + 1.2 * (1.0 - eng))  # per day of gap
            self.lapsing = False
            self.lapse_left = 0
            self.growth = 1.0
            self.last_purchase = None
            self.n_lapse_purchases = 0
            self.purchases_left = None
            if cfg.max_purchases is not None:  # its own RNG: the traits above do not move
                self.purchases_left = random.Random(_derive_seed(cfg.seed, ("purchases", idx))).randint(1, cfg.max_purchases)
            self.state = _ACTIVE
            self.next_purchase = start_day + (r.randrange(0, int(self.gap_mean) + 1) if not is_new else 0)
            return

        self.gap_mean = self.spend = self.next_purchase = self.purchases_left = None
        self.lapsing = self.lapse_left = self.growth = None
        self.last_purchase = self.p_lapse = self.n_lapse_purchases = None

        base = sim.start_epoch + start_day * DAY
        if not is_new:
            # Opening book: announced in the first hour of day 0; hidden tenure.
            self.anchor = r.randrange(0, 3600)
            self.state = _ACTIVE
            self.next_renewal = start_day + r.randint(1, 30)
            self.started_at = _fmt_ts(base + self.anchor)
            if r.random() < 0.15:  # a risk episode already under way at day 0 (its
                # plan change, if any, happened before the stream: not emitted)
                self._new_episode(start_day - r.randint(0, 90), emit=False, sim=sim)
            sim._emit(self.anchor, self.cid, "subscription_started", {"plan": self.plan, "mrr": self.mrr})
            return

        self.anchor = r.randrange(_WORK_LO, 21 * 3600)
        self.started_at = _fmt_ts(base + self.anchor)
        self.tenure0 = 0
        if u_trial < cfg.trial_share:
            self.is_trial = True
            self.state = _TRIAL
            self.trial_end = start_day + 14
            self.next_renewal = None
            sim._emit(self.anchor, self.cid, "trial_started", {"plan": self.plan})
        else:
            self.state = _ACTIVE
            self.next_renewal = start_day + 30
            sim._emit(self.anchor, self.cid, "subscription_started", {"plan": self.plan, "mrr": self.mrr})
            sim._emit(self.anchor + 1, self.cid, "payment_succeeded", {"amount": self.mrr})

    # ------------------------------------------------------------------ episodes
    def _new_episode(self, day: int, emit: bool, sim: "Simulation | None" = None, sec: int = 0) -> None:
        r = self.rnd
        kind = _pick(r, _EP_KINDS, self.ep_weights)
        ramp = r.randint(10, 45)
        plateau = r.randint(10, 60)
        peak = 0.25 + 0.65 * r.random()
        resolves = r.random() < (0.75 if peak < 0.5 else 0.3)
        trigger = None
        if kind == "price":
            if self.plan == "basic" or r.random() < 0.5:
                trigger = "price_increase"
                self.mrr = round(self.mrr * (1.12 + 0.18 * r.random()), 2)
            else:
                trigger = "downgrade"
                self.plan = PLANS[PLANS.index(self.plan) - 1]
                self.mrr = sim.price(self.plan, day)
            if emit:
                sim._emit(sec, self.cid, "plan_changed", {"plan": self.plan, "mrr": self.mrr})
        self.eps.append([kind, day, ramp, plateau, peak, resolves, trigger])

    def _levels(self, day: int) -> dict[str, float]:
        out: dict[str, float] = {}
        keep = []
        for ep in self.eps:
            kind, start, ramp, plateau, peak, resolves, _ = ep
            t = day - start
            if t < ramp:
                lvl = peak * t / ramp
            elif t < ramp + plateau or not resolves:
                lvl = peak
            else:
                lvl = peak * (1.0 - (t - ramp - plateau) / ramp)
                if lvl <= 0.0:
                    continue
            keep.append(ep)
            out[kind] = out.get(kind, 0.0) + lvl
        if len(keep) != len(self.eps):
            self.eps = keep
        return out

    def _onboard_level(self, age: int) -> float:
        if self.onboard_ok or self.immortal:
            return 0.0
        if age < 7:
            return 0.2
        if age < 100:
            return 0.55
        return 0.12

    def _signals(self, levels: dict[str, float], age: int) -> list[str]:
        sig: list[str] = []
        if self._onboard_level(age) >= 0.5:
            sig.append("onboarding_failed")
        for ep in self.eps:
            kind = ep[0]
            if levels.get(kind, 0.0) < 0.15:
                continue
            if kind == "price":
                s = [ep[6]]
            elif kind == "customer_service":
                s = ["support_trouble", "usage_decay"]
            else:
                s = ["usage_decay"]
            for x in s:
                if x not in sig:
                    sig.append(x)
        if self.frust_risk >= 0.15 and "support_trouble" not in sig:
            sig.append("support_trouble")
        return sig

    def _frustration(self, cfg: SimConfig, day: int) -> float:
        """Risk from support trouble the customer has lived through.

        Why: customers leave over a ticket nobody answers and over bad
        experiences they rated, not over a latent trait; both are events the
        monitor sees (``ticket_opened`` without ``ticket_resolved``, ``csat``).
        """
        self.frust *= 0.97
        overdue = sum(1 for t in self.open_tickets if day - t[2] > 7)
        self.frust_risk = cfg.support_frustration * (0.1 * min(3, overdue) + self.frust)
        return self.frust_risk

    def _price_rise(self, sim: "Simulation", day: int) -> None:
        """The plan's list price rises today: a ``plan_changed`` at midnight
        (same plan, new ``mrr``), then the customer's reaction.

        Why a reaction per customer: price-sensitive customers either move to
        the cheaper plan (contraction, they stay) or start a price episode that
        may end in a ``price`` cancellation weeks later; the others accept it.
        Drawn from a stream of its own so the rest of the customer's life is
        only changed by the reaction, not by the draws.
        """
        cfg = sim.cfg
        rr = random.Random(_derive_seed(cfg.seed, ("price_rise", self.idx)))
        self.mrr = round(self.mrr * cfg.price_rise_factor, 2)
        sim._emit(0, self.cid, "plan_changed", {"plan": self.plan, "mrr": self.mrr})
        if self.immortal or rr.random() >= 0.1 + 0.8 * self.price_sens:
            return
        if self.plan != PLANS[0] and rr.random() < 0.25:
            self.plan = PLANS[PLANS.index(self.plan) - 1]
            self.mrr = sim.price(self.plan, day)
            sim._emit(1, self.cid, "plan_changed", {"plan": self.plan, "mrr": self.mrr})
            return
        peak = 0.3 + 0.6 * self.price_sens
        self.eps.append(["price", day, rr.randint(3, 20), rr.randint(20, 60), peak, rr.random() < 0.3, "price_rise"])

    # ------------------------------------------------------------------ daily step
    def step(self, sim: "Simulation", day: int) -> bool:
        """Advance one day; emit the day's events; return False once gone."""
        if self.contractual:
            return self._step_contract(sim, day)
        return self._step_purchase(sim, day)

    def _step_purchase(self, sim: "Simulation", day: int) -> bool:
        if self.last_purchase is not None:
            risk = 0.05 + (min(0.9, 0.45 + 0.15 * self.n_lapse_purchases) if self.lapsing else 0.0)
            self.risk_sum += risk
            self.risk_days += 1
        if day != self.next_purchase:
            return True
        r = self.rnd
        base = sim.start_epoch + day * DAY
        sec = r.randrange(_WORK_LO, _WORK_HI)
        amount = round(self.spend * math.exp(r.gauss(0.0, 0.3)), 2)
        sim._emit(sec, self.cid, "purchase", {"amount": amount})
        if self.last_purchase is None:
            self.started_at = _fmt_ts(base + sec)
        self.last_purchase = base + sec
        if self.purchases_left is not None:
            self.purchases_left -= 1
            if self.purchases_left <= 0:  # bought all it will: silent from now on
                self.state = _GONE
                return False
        gap = r.gammavariate(4.0, self.gap_mean / 4.0)
        if not self.lapsing and r.random() < self.p_lapse * self.gap_mean:
            self.lapsing = True
            self.lapse_left = r.randint(0, 3)
            self.growth = 1.0
        if self.lapsing:
            if self.lapse_left == 0:
                self.state = _GONE
                return False
            self.lapse_left -= 1
            self.growth *= 1.6
            self.n_lapse_purchases += 1
            gap = min(85.0, gap * self.growth)
        else:
            gap = min(75.0, gap)
        self.next_purchase = day + max(1, int(round(gap)))
        return True

    def _step_contract(self, sim: "Simulation", day: int) -> bool:
        if self.end_day is not None and day >= self.end_day:
            self.state = _GONE
            return False
        r = self.rnd
        cfg = sim.cfg
        cid = self.cid
        emit = sim._emit
        base = sim.start_epoch + day * DAY
        age = day - self.start_day + self.tenure0
        levels = self._levels(day) if self.eps else {}
        ep_sum = sum(levels.values())
        onb = self._onboard_level(age)
        onb_risk = onb * cfg.onboarding_risk
        raw = 0.05 + cfg.engagement_risk * (1.0 - self.eng) + ep_sum + onb_risk
        if cfg.support_frustration:
            raw += self._frustration(cfg, day)
        risk = min(1.0, raw)
        if self.immortal:
            risk = 0.05
        if self.counting:
            self.risk_sum += risk
            self.risk_days += 1
        mark = len(sim._buf)
        lo = _WORK_LO
        fresh = (day == self.start_day and self.tenure0 == 0) or day == self.react_day
        if fresh:  # nothing before today's subscription_started / trial_started
            lo = max(lo, self.anchor + 60)
        state = self.state
        if day == sim.rise_day and self.plan == cfg.price_rise_plan and (state == _ACTIVE or state == _DUNNING) and not fresh:
            self._price_rise(sim, day)

        # ---- billing -----------------------------------------------------
        if state == _TRIAL:
            if day == self.trial_end:
                p_conv = 0.12 + 0.6 * self.onboard_ok + 0.25 * self.eng
                if r.random() < p_conv:
                    self.mrr = sim.price(self.plan, day)  # a price rise during the trial applies
                    emit(self.anchor, cid, "trial_converted", {"plan": self.plan, "mrr": self.mrr})
                    emit(self.anchor + 1, cid, "payment_succeeded", {"amount": self.mrr})
                    self.converted_at = _fmt_ts(base + self.anchor)
                    self.state = state = _ACTIVE
                    self.next_renewal = day + 30
                else:
                    self.trial_failed = True
                    self.counting = False
                    self.drivers = ["trial_not_converted"]
                    self.state = _GONE
                    return False
        elif state == _ACTIVE and day == self.next_renewal:
            p_fail = 0.0 if self.immortal else (
                0.02 + cfg.payment_fail_scale * 0.3 * (1.0 - self.reliability) ** 2 + 0.04 * risk)
            if r.random() >= p_fail:
                emit(self.anchor, cid, "subscription_renewed", {})
                emit(self.anchor + 1, cid, "payment_succeeded", {"amount": self.mrr})
            else:
                emit(self.anchor, cid, "payment_failed", {"amount": self.mrr})
                self.fail_day = day
                p_rec = min(0.97, max(0.05, 0.4 + 0.55 * self.reliability - 0.35 * risk))
                if r.random() < p_rec:
                    self.state = state = _DUNNING
                    self.recover_day = day + r.randint(1, max(1, min(cfg.grace_days - 1, 29)))
                else:
                    self.state = state = _LOST
                    self.end_day = day + cfg.grace_days
                    self.churn_epoch = base + self.anchor + cfg.grace_days * DAY
                    self.churn_kind = "involuntary"
                    self.reason = None
                    self.drivers = ["payment_failed"] + [
                        s for s in self._signals(levels, age) if s != "payment_failed"
                    ]
                    self._maybe_reactivate(sim, self.end_day, 0.12)
            self.next_renewal += 30
        elif state == _DUNNING and day == self.recover_day:
            sec = r.randrange(_WORK_LO, _WORK_HI)
            emit(sec, cid, "payment_succeeded", {"amount": self.mrr})
            emit(sec + 1, cid, "subscription_renewed", {})
            self.state = state = _ACTIVE

        # ---- plan changes, episodes, churn decision (active customers) -----
        cancel_sec = None
        if state == _ACTIVE and not self.immortal and not fresh:
            if len(self.eps) < 2 and r.random() < self.ep_total:
                self._new_episode(day, emit=True, sim=sim, sec=r.randrange(_WORK_LO, _WORK_HI))
            elif (
                risk < 0.25 and self.plan != "business" and r.random() < 0.0012 * self.eng
            ):  # expansion
                self.plan = PLANS[PLANS.index(self.plan) + 1]
                self.mrr = sim.price(self.plan, day)
                emit(r.randrange(_WORK_LO, _WORK_HI), cid, "plan_changed", {"plan": self.plan, "mrr": self.mrr})
            to_renewal = self.next_renewal - day
            window = 2.2 if to_renewal <= 7 else 0.55
            h_vol = (H_BASE + K_HAZARD * max(0.0, risk - R0) ** 2) * window
            h_co = H_COMPANY * (2.5 if self.plan == "business" else 1.0)
            u = r.random()
            if u < h_co + h_vol:
                # after anything this customer already did today (billing, plan change)
                first = max([max(7 * 3600, lo)] + [e[0] + 1 for e in sim._buf[mark:]])
                cancel_sec = r.randrange(first, 22 * 3600) if first < 22 * 3600 else min(first, DAY - 1)
                if u < h_co:
                    reason, drivers, immediate_p = "company_closed", [], 0.6
                elif u < h_co + H_BASE * window:
                    reason = _pick(r, ("other", "changing_needs", "competitor", "price"), (5, 2, 2, 1))
                    drivers, immediate_p = [], 0.2
                else:
                    comps = list(levels.items())
                    if onb_risk > 0:
                        comps.append(("onboarding", onb_risk))
                    if self.frust_risk > 0:  # tickets left open, bad ratings
                        comps.append(("customer_service", self.frust_risk))
                    kind = _pick(r, [c[0] for c in comps], [c[1] ** 2 for c in comps]) if comps else "other"
                    if kind == "onboarding":
                        reason = _pick(r, ("onboarding", "product_fit", "user_experience"), (7, 1.5, 1.5))
                    else:
                        reason = _EP_REASON.get(kind, "other")
                    if r.random() < 0.08:  # customers do not always say why
                        reason = "other"
                    drivers, immediate_p = self._signals(levels, age), 0.2
                payload: dict = {"reason": reason}
                if r.random() < 0.5:
                    texts = _REASON_TEXT[reason]
                    payload["reason_text"] = texts[r.randrange(len(texts))]
                if r.random() < immediate_p:
                    self.churn_epoch = base + cancel_sec
                    self.end_day = day + 1
                else:
                    self.end_day = self.next_renewal
                    self.churn_epoch = sim.start_epoch + self.next_renewal * DAY + self.anchor
                    payload["effective_at"] = _fmt_ts(self.churn_epoch)
                    self.state = _PENDING  # cancelled, not yet churned: still uses the product a little
                    emit(cancel_sec, cid, "subscription_cancelled", payload)
                    cancel_sec = None
                self.churn_kind = "voluntary"
                self.reason = reason
                self.drivers = drivers
                self._maybe_reactivate(sim, self.end_day, 0.04)
                if cancel_sec is not None:
                    self._usage(sim, day, levels, onb, lo, risk, age)
                    buf = sim._buf
                    if len(buf) > mark:
                        buf[mark:] = [e for e in buf[mark:] if e[0] < cancel_sec]
                    emit(cancel_sec, cid, "subscription_cancelled", payload)
                    return True
        self._usage(sim, day, levels, onb, lo, risk, age)
        return True

    def _maybe_reactivate(self, sim: "Simulation", churn_day: int, p: float) -> None:
        r = self.rnd
        if r.random() < p:
            d = churn_day + r.randint(20, 150)
            if d < sim.cfg.days:
                self.react_day = d

    def reactivate(self, sim: "Simulation", day: int) -> None:
        """Won-back customer: new subscription, modelled as loyal from now on."""
        r = self.rnd
        self.immortal = True
        self.counting = False
        self.eps = []
        self.open_tickets = []
        self.end_day = None
        self.state = _ACTIVE
        self.anchor = r.randrange(_WORK_LO, 21 * 3600)
        self.plan = _pick(r, PLANS, PLAN_WEIGHTS)
        self.mrr = sim.price(self.plan, day)
        self.next_renewal = day + 30
        base = sim.start_epoch + day * DAY
        self.reactivated_at = _fmt_ts(base + self.anchor)
        sim._emit(self.anchor, self.cid, "subscription_started", {"plan": self.plan, "mrr": self.mrr})
        sim._emit(self.anchor + 1, self.cid, "payment_succeeded", {"amount": self.mrr})

    def _usage(self, sim, day, levels, onb, lo, risk, age) -> None:
        """Sessions, feature use, add-on purchases and support for one day."""
        r = self.rnd
        cid = self.cid
        emit = sim._emit
        state = self.state
        damp = 0.0
        scale = sim.cfg.usage_damping
        for kind, lvl in levels.items():
            damp += lvl * _EP_USAGE[kind] * scale
        if damp > 0.92:
            damp = 0.92
        mult = sim._weekday_mult[day % 7]
        if state == _PENDING:
            mult *= 0.35
        elif state == _LOST:
            mult *= max(0.0, 0.6 * (1.0 - (day - self.fail_day) / sim.cfg.grace_days))
        if onb:
            mult *= 0.2 if age < 100 else 0.5
        hi = _WORK_HI
        lam = self.base_rate * (1.0 - damp) * mult
        n = _poisson(r, lam)
        if n and lo < hi:
            k = max(1, int(round(self.kmax * (1.0 - 0.85 * damp) * (0.5 if onb else 1.0))))
            feats = self.features
            durf = 1.0 - 0.5 * damp
            for _ in range(n):
                sec = r.randrange(lo, hi)
                dur = max(10, int(math.exp(r.gauss(self.dur_mu, 0.7)) * durf))
                emit(sec, cid, "session", {"duration_s": dur})
                if r.random() < 0.45:
                    fsec = min(DAY - 1, sec + r.randrange(0, dur + 1))
                    emit(fsec, cid, "feature_used", {"feature": feats[r.randrange(k)]})
            if r.random() < 0.003 * (1.0 - damp):
                emit(r.randrange(lo, hi), cid, "purchase", {"amount": float((19, 49, 99, 149)[r.randrange(4)])})

        # ---- support -------------------------------------------------------
        cs = levels.get("customer_service", 0.0)
        if self.open_tickets:
            still = []
            for t in self.open_tickets:
                if t[1] != day:
                    still.append(t)
                    continue
                sec = r.randrange(_WORK_LO, _WORK_HI)
                emit(sec, cid, "ticket_resolved", {"ticket_id": t[0]})
                self._csat(sim, sec, cs, risk)
            self.open_tickets = still
        p_ticket = (
            (0.008 + 0.03 * self.support_trouble) * sim.cfg.ticket_rate + 0.25 * cs
            + 0.05 * levels.get("user_experience", 0.0) + 0.03 * levels.get("missing_features", 0.0)
        )
        if state == _PENDING or state == _LOST:
            p_ticket *= 0.4
        if lo < hi and r.random() < p_ticket:
            self.n_tickets += 1
            tid = f"tkt_{self.idx:06d}_{self.n_tickets:03d}"
            trouble = cs > 0.3
            if trouble:
                prio = _pick(r, ("low", "normal", "high", "urgent"), (0.1, 0.35, 0.35, 0.2))
                cat = _pick(r, ("bug", "performance", "billing", "account", "how_to"), (3, 2, 2, 1, 1))
                delay = r.randint(2, 20) if r.random() < 0.85 else 10_000  # some never resolved
            else:
                prio = _pick(r, ("low", "normal", "high", "urgent"), (0.35, 0.5, 0.13, 0.02))
                ux = levels.get("user_experience", 0.0) > 0.3
                mf = levels.get("missing_features", 0.0) > 0.3
                cat = _pick(
                    r,
                    ("how_to", "billing", "account", "bug", "feature_request"),
                    (3, 1.5, 1, 3 if ux else 1.5, 3 if mf else 1),
                )
                delay = r.randint(0, 3)
            sec = r.randrange(lo, hi)
            emit(sec, cid, "ticket_opened", {"ticket_id": tid, "priority": prio, "category": cat})
            if delay == 0:
                rsec = min(DAY - 2, sec + r.randint(600, 14_400))
                emit(rsec, cid, "ticket_resolved", {"ticket_id": tid})
                self._csat(sim, rsec, cs, risk)
            else:
                self.open_tickets.append([tid, day + delay, day])

        if (age % 90) == self.nps_phase and lo < hi and r.random() < 0.45:
            score = int(round(r.gauss(9.9 - 9.0 * risk, 1.1)))
            emit(r.randrange(lo, hi), cid, "nps", {"score": min(10, max(0, score))})

    def _csat(self, sim, sec: int, cs: float, risk: float) -> None:
        r = self.rnd
        if r.random() < 0.55:
            mean = 4.7 - 3.3 * cs - 1.5 * max(0.0, risk - cs - 0.2)
            score = int(round(r.gauss(mean, 0.6)))
            if score <= 3:  # remembered (SimConfig.support_frustration)
                self.frust += 0.15 if score <= 2 else 0.05
            sim._emit(min(DAY - 1, sec + r.randint(60, 7200)), self.cid, "csat", {"score": min(5, max(1, score))})

    # ------------------------------------------------------------------ truth
    def to_truth(self, sim: "Simulation") -> Truth:
        end_epoch = sim.end_epoch
        churned = False
        churned_at = kind = reason = pending = None
        drivers = list(self.drivers)
        risk_sum, risk_days = self.risk_sum, self.risk_days
        if not self.contractual:
            if self.state == _GONE and self.last_purchase is not None:
                ce = self.last_purchase + 90 * DAY
                # days after the last purchase: the customer has already left
                tail_end = min(ce, end_epoch)
                extra = max(0, (tail_end - self.last_purchase) // DAY)
                risk_sum += 0.95 * extra
                risk_days += extra
                drivers = ["purchase_gaps_lengthening"] if self.n_lapse_purchases else ["purchase_stopped"]
                if ce <= end_epoch:
                    churned, churned_at, kind = True, _fmt_ts(ce), "inactivity"
                else:
                    pending = _fmt_ts(ce)
            elif self.lapsing:
                drivers = ["purchase_gaps_lengthening"]
        elif self.churn_epoch is not None:
            if self.churn_epoch <= end_epoch:
                churned, churned_at = True, _fmt_ts(self.churn_epoch)
                kind, reason = self.churn_kind, self.reason
            else:
                pending = _fmt_ts(self.churn_epoch)
        elif not self.trial_failed:
            drivers = self._signals(self._levels(sim.cfg.days - 1), sim.cfg.days - 1 - self.start_day + self.tenure0)
        latent = risk_sum / risk_days if risk_days else 0.0
        started = self.started_at or _fmt_ts(sim.start_epoch + self.start_day * DAY)
        return Truth(
            customer_id=self.cid,
            started_at=started,
            plan=self.plan,
            contractual=self.contractual,
            churned=churned,
            churned_at=churned_at,
            churn_kind=kind,
            reason=reason,
            latent_risk=round(latent, 4),
            drivers=drivers,
            converted_at=self.converted_at,
            reactivated_at=self.reactivated_at,
            pending_churn_at=pending,
        )


# --------------------------------------------------------------------------- simulation


class Simulation:
    """Runs the population day by day.

    ``events()`` yields the event dicts; after it is exhausted ``truth`` holds
    one :class:`Truth` per customer.  ``run()`` does the same without building
    event dicts (faster when only the truth is needed).  A Simulation can be
    iterated once.
    """

    def __init__(self, cfg: SimConfig | None = None) -> None:
        self.cfg = cfg or SimConfig()
        self.start_epoch = _parse_ts(self.cfg.start)
        self.end_epoch = self.start_epoch + self.cfg.days * DAY
        self.truth: list[Truth] = []
        self.event_count = 0
        self._buf: list[tuple] = []
        self._used = False
        cfg = self.cfg
        #: the day of SimConfig's price rise (None: no rise)
        self.rise_day = None if cfg.price_rise_plan is None else (
            cfg.days // 2 if cfg.price_rise_day is None else cfg.price_rise_day)
        wd0 = (self.start_epoch // DAY + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
        self._weekday_mult = [0.55 if (wd0 + d) % 7 >= 5 else 1.1 for d in range(7)]

    def price(self, plan: str, day: int) -> float:
        """The plan's list price on `day` (after SimConfig's price rise, if any)."""
        p = PLAN_MRR[plan]
        if self.rise_day is not None and plan == self.cfg.price_rise_plan and day >= self.rise_day:
            return round(p * self.cfg.price_rise_factor, 2)
        return p

    def _emit(self, sec: int, cid: str, typ: str, payload: dict) -> None:
        buf = self._buf
        buf.append((sec, len(buf), cid, typ, payload))

    def _days(self) -> Iterator[int]:
        if self._used:
            raise RuntimeError("a Simulation can only be run once; create a new one")
        self._used = True
        cfg = self.cfg
        arr_rng = random.Random(_derive_seed(cfg.seed, "arrivals"))
        per_day = cfg.customers * 0.003 if cfg.new_per_day is None else cfg.new_per_day
        customers: list[_Customer] = []
        active: list[_Customer] = []
        dormant: dict[int, list[_Customer]] = {}
        for i in range(cfg.customers):
            c = _Customer(self, i, 0, initial=True)
            customers.append(c)
            active.append(c)
        next_idx = cfg.customers
        for day in range(cfg.days):
            if day > 0:
                for _ in range(_poisson(arr_rng, per_day)):
                    c = _Customer(self, next_idx, day, initial=False)
                    next_idx += 1
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
            self._buf = []
        self.truth = [c.to_truth(self) for c in customers]

    def events(self) -> Iterator[dict]:
        """Yield all events in non-decreasing ``ts`` order (one day buffered)."""
        seed = self.cfg.seed
        counter = 0
        for day in self._days():
            buf = self._buf
            buf.sort()  # (sec, arrival order) is unique: payload dicts are never compared
            base = self.start_epoch + day * DAY
            for sec, _, cid, typ, payload in buf:
                counter += 1
                ev = {"event_id": f"{seed}-{counter}", "customer_id": cid, "type": typ, "ts": _fmt_ts(base + sec)}
                if payload:
                    ev.update(payload)
                yield ev
            self.event_count = counter

    def run(self) -> list[Truth]:
        """Simulate without materialising events; return the truth."""
        n = 0
        for _ in self._days():
            n += len(self._buf)
        self.event_count = n
        return self.truth


def events(cfg: SimConfig) -> Iterator[dict]:
    """Yields all events in non-decreasing `ts` order, generated day by day so memory is O(customers), not O(events)."""
    return Simulation(cfg).events()


def truth(cfg: SimConfig) -> list[Truth]:
    """Ground truth for ``cfg``: runs the same deterministic simulation as :func:`events`."""
    return Simulation(cfg).run()


def write_jsonl(cfg: SimConfig, out_path, truth_path=None) -> int:
    """Write events (orjson, one per line) and optionally the truth as JSONL; return the event count."""
    import orjson

    sim = Simulation(cfg)
    n = 0
    dumps = orjson.dumps
    with open(out_path, "wb", buffering=1 << 20) as f:
        chunk: list[bytes] = []
        for ev in sim.events():
            chunk.append(dumps(ev))
            n += 1
            if len(chunk) >= 10_000:
                f.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            f.write(b"\n".join(chunk) + b"\n")
    if truth_path is not None:
        write_truth(sim.truth, truth_path)
    return n


def write_truth(truths: list[Truth], path) -> None:
    """The ground truth as JSONL, one customer per line (after the simulation has run)."""
    import orjson

    with open(path, "wb") as f:
        for t in truths:
            f.write(orjson.dumps(asdict(t)) + b"\n")


def churn_summary(truths: list[Truth], cfg: SimConfig) -> dict:
    """Churn counts by kind/reason and the mean monthly (30-day) customer churn rate.

    The rate follows the ChartMogul B2B formula: customers churned in the
    window / paying customers at the window start (customers who join during
    the window are left out).  Paying = contractual customers from their start
    (trials from ``converted_at``) and purchase-only customers from their first
    purchase; trials that never converted are not customers.
    """
    start = _parse_ts(cfg.start)
    rows = []
    for t in truths:
        if "trial_not_converted" in t.drivers and not t.converted_at:
            continue
        paid_from = _parse_ts(t.converted_at or t.started_at)
        if paid_from < start + 3600:  # opening book (announced in the first hour of day 0)
            paid_from = start
        ch = _parse_ts(t.churned_at) if t.churned_at else None
        rows.append((paid_from, ch))
    months = []
    for m in range(cfg.days // 30):
        ws, we = start + m * 30 * DAY, start + (m + 1) * 30 * DAY
        base = [ch for pf, ch in rows if pf <= ws and (ch is None or ch > ws)]
        lost = sum(1 for ch in base if ch is not None and ch <= we)
        months.append(lost / len(base) if base else 0.0)
    churned = [t for t in truths if t.churned]
    return {
        "customers": len(truths),
        "churned": len(churned),
        "by_kind": dict(Counter(t.churn_kind for t in churned)),
        "by_reason": dict(Counter(t.reason for t in churned if t.reason)),
        "trial_not_converted": sum(1 for t in truths if "trial_not_converted" in t.drivers),
        "reactivated": sum(1 for t in truths if t.reactivated_at),
        "monthly_churn_rate": sum(months) / len(months) if months else 0.0,
        "monthly_rates": months,
    }
