"""Risk episodes: the latent causes of a subscription customer's churn.

An episode (a price problem, support trouble, a product that no longer fits,
...) ramps up over 10-45 days, plateaus, then resolves or persists. Its level
adds to the customer's latent risk and leaves the fingerprints the monitor can
see: usage falls (by the kind's share below), tickets, plan changes. The
dominant episode names the reason a customer states when cancelling.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

#: Episode kind -> the cancellation reason a customer states for it.
EPISODE_REASON = {
    "price": "price",
    "customer_service": "customer_service",
    "product_fit": "product_fit",
    "user_experience": "user_experience",
    "competitor": "competitor",
    "missing_features": "missing_features",
    "changing_needs": "changing_needs",
}
#: Episode kind -> share of its level that suppresses usage. Support and price
#: problems hurt usage less than a product that no longer fits: those customers
#: still need the tool.
EPISODE_USAGE = {
    "price": 0.3,
    "customer_service": 0.5,
    "product_fit": 1.0,
    "user_experience": 0.8,
    "competitor": 1.0,
    "missing_features": 0.8,
    "changing_needs": 1.0,
}
EPISODE_KINDS = tuple(EPISODE_REASON)


class Episode(NamedTuple):
    """One episode as drawn; its level on a day follows from these alone."""

    kind: str
    start: int  # day
    ramp: int  # days to the peak
    plateau: int  # days at the peak before resolving
    peak: float
    resolves: bool
    trigger: str | None  # a price episode's cause: price_increase, downgrade or price_rise


def start_rates(price_sens: float, support_trouble: float, eng: float,
                multipliers: Mapping[str, float]) -> tuple[float, ...]:
    """Daily start rate of each kind (EPISODE_KINDS order): the traits make
    price, support and product-fit trouble likelier for the customers prone to
    them; SimConfig.episode_rates re-weighs the kinds for a scenario."""
    ps, st = price_sens, support_trouble
    w = (
        0.00032 * (0.3 + 1.7 * ps),  # price
        0.00024 * (0.3 + 2.0 * st),  # customer_service
        0.00020 * (0.3 + 1.7 * (1.0 - eng)),  # product_fit
        0.00016,  # user_experience
        0.00012,  # competitor
        0.00012 * (0.5 + eng),  # missing_features
        0.00012,  # changing_needs
    )
    if multipliers:
        w = tuple(x * multipliers.get(k, 1.0) for x, k in zip(w, EPISODE_KINDS))
    return w


def levels_on(eps: list[Episode], day: int) -> tuple[dict[str, float], list[Episode]]:
    """Each kind's summed level on `day`, and the episodes still under way
    (a resolved one is dropped, so it costs nothing on later days).

    >>> ep = Episode("price", start=0, ramp=10, plateau=5, peak=0.5, resolves=True, trigger="downgrade")
    >>> [levels_on([ep], d)[0] for d in (5, 12, 20, 25)]
    [{'price': 0.25}, {'price': 0.5}, {'price': 0.25}, {}]
    """
    out: dict[str, float] = {}
    keep = []
    for ep in eps:
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
    return out, keep
