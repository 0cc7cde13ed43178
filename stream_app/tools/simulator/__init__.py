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
the same customers by re-weighting their mechanisms (`SimConfig`'s fields after
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

Modules, in the order the data flows
------------------------------------
``scenarios`` (SimConfig, SCENARIOS: what population) -> ``customer`` (the
traits every customer draws, in a fixed order) -> ``subscriptions`` (the
subscription lifecycle: billing, win-back, use of the product), with its
risk ``episodes``, its ``support`` history and its ``cancellation`` (why and
what it says), and ``purchases`` (purchase-only buyers) -> ``population``
(arrivals, win-backs, the day loop: `Simulation`) -> ``writers`` (JSONL
files). ``ground_truth`` is the answer key each customer leaves; ``draws``
the seeded draws and ``clock`` the integer-second view of the package's day
and timestamps (`stream_app.config.DAY`, `stream_app.ingest.contract`) that
all of them share.

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

from ...ingest.contract import REASONS
from .customer import EVENT_FIELDS, FEATURES, USAGE_TYPES
from .ground_truth import Truth, churn_summary
from .population import Simulation, events, truth
from .scenarios import PLAN_MRR, PLAN_WEIGHTS, PLANS, SCENARIOS, SimConfig, scenario
from .writers import write_jsonl, write_truth

__all__ = [
    "SimConfig",
    "SCENARIOS",
    "scenario",
    "Truth",
    "Simulation",
    "events",
    "truth",
    "write_jsonl",
    "write_truth",
    "churn_summary",
    "PLANS",
    "PLAN_MRR",
    "PLAN_WEIGHTS",
    "REASONS",
    "EVENT_FIELDS",
    "FEATURES",
    "USAGE_TYPES",
]
