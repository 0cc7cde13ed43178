"""Why a subscriber cancels on a given day, and what it says when it does.

The daily hazard is ``H_BASE + K_HAZARD * max(0, risk - R0)**2``, 4x higher in
the week before renewal (when customers decide), plus company closure,
which no behaviour announces. A risk-driven cancellation states the cause
weighing most that day, so the reason travels with the event as DOMAIN.md
asks; noise cancellations mostly say "other".
"""

from __future__ import annotations

import random

from .draws import pick
from .episodes import EPISODE_REASON

# Voluntary hazard: H_BASE (unpredictable noise) + K * max(0, risk - R0)**2 per day.
H_BASE = 0.00008
K_HAZARD = 0.07
R0 = 0.35
H_COMPANY = 0.00003  # company closure / merger per day (x2.5 for business plan)

REASON_TEXT = {
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


def hazards(risk: float, days_to_renewal: int, plan: str) -> tuple[float, float, float]:
    """(company closure, voluntary, renewal window factor) for one day.

    >>> [round(h, 6) for h in hazards(0.35, 30, "pro")]
    [3e-05, 4.4e-05, 0.55]
    """
    window = 2.2 if days_to_renewal <= 7 else 0.55
    h_vol = (H_BASE + K_HAZARD * max(0.0, risk - R0) ** 2) * window
    h_co = H_COMPANY * (2.5 if plan == "business" else 1.0)
    return h_co, h_vol, window


#: The highest day's hazard any subscriber can have (risk 1, renewal week,
#: business plan), from `hazards` itself so the two never part: the customer
#: draws its uniform every day, and a draw at or above this cancels nothing
#: whatever its risk, so most days need no hazard worked out.
H_MAX = sum(hazards(1.0, 0, "business")[:2])


def reason(rnd: random.Random, u: float, h_co: float, window: float,
           causes: list[tuple[str, float]]) -> tuple[str, bool, float]:
    """The stated reason of a cancellation drawn as `u` (below h_co + h_vol),
    whether the customer's risk drove it (then its risk signals are the truth's
    drivers), and the chance that it takes effect at once rather than at the
    end of the paid period. `causes`: (episode kind, onboarding or
    customer_service; today's weight)."""
    if u < h_co:
        return "company_closed", False, 0.6
    if u < h_co + H_BASE * window:
        return pick(rnd, ("other", "changing_needs", "competitor", "price"), (5, 2, 2, 1)), False, 0.2
    # squared, so that the dominant cause usually wins
    kind = pick(rnd, [c[0] for c in causes], [c[1] ** 2 for c in causes]) if causes else "other"
    if kind == "onboarding":
        stated = pick(rnd, ("onboarding", "product_fit", "user_experience"), (7, 1.5, 1.5))
    else:
        stated = EPISODE_REASON.get(kind, "other")
    if rnd.random() < 0.08:  # customers do not always say why
        stated = "other"
    return stated, True, 0.2


def payload(rnd: random.Random, stated: str) -> dict:
    """The ``subscription_cancelled`` fields: the reason, and for half of the
    customers a free-text comment (what a cancel form collects)."""
    out: dict = {"reason": stated}
    if rnd.random() < 0.5:
        texts = REASON_TEXT[stated]
        out["reason_text"] = texts[rnd.randrange(len(texts))]
    return out
