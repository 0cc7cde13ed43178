"""At-risk alerts: threshold, hysteresis, cooldown, value filter, priority and play.

Pure: `decide(prev, risk, mrr, now, reasons, cfg, ...)` takes the customer's
previous `AlertState` and a fresh risk score and returns the new state and
the alert to publish, if any. No clock but the event time it is given, so a
replay raises the same alerts with the same ids as the live run did.

Why each rule exists (DOMAIN.md, "What the business does with a risk score"):

- hysteresis (raise at `upper`, resolve below `lower`): a score wobbling
  around one threshold must not page a success manager every hour;
- escalate only on a `step` rise above the last *alerted* risk: an alert is a
  promise that someone looks; repeating it says nothing new;
- cooldown (event time) on raise/escalate: at most one push per customer a day;
- value filter: prioritise by value, not probability; an alert whose expected
  loss (risk x MRR) is below a floor, or below what the suggested play costs,
  is not worth anybody's time (the play would cost more than it saves);
- the play follows the top reason's category (discount for price, dunning
  for failed payments, ...), because 15-30 % of churn is solvable if the right
  team hears of it with the reason attached.

Risk bands (cut points on the 0-1 risk): low < 0.4 <= medium < 0.6 <= high
< 0.8 <= critical; the defaults put `lower` and `upper` on band edges.
Priority by expected monthly loss (risk x MRR, account currency):
P1 >= 200, P2 >= 75, P3 >= 25, else P4.

>>> cfg = AlertConfig()
>>> st, a = decide(None, 0.7, 299.0, 0.0, [("failed_payments", 0.5)], cfg, customer_id="c1")
>>> a["state"], a["risk_band"], a["priority"], a["recommended_play"]
('raised', 'high', 'P1', 'dunning')
>>> st, a = decide(st, 0.65, 299.0, 3600.0, [], cfg, customer_id="c1")
>>> a is None  # no new information: no alert
True
>>> st, a = decide(st, 0.3, 299.0, 7200.0, [], cfg, customer_id="c1")
>>> a["state"]
'resolved'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..domain.state import ESCALATED, NONE, RAISED, RESOLVED, AlertState  # noqa: F401 (NONE, AlertState: re-exported)
from ..ingest.contract import format_ts
from .reasons import CATEGORIES, REASON_CATEGORY

__all__ = [
    "CATEGORIES",
    "REASON_CATEGORY",
    "PLAYS",
    "DEFAULT_PLAY",
    "PLAY_COST",
    "CANCEL_REASON_CATEGORY",
    "RISK_BANDS",
    "PRIORITIES",
    "ALERT_STATES",
    "AlertConfig",
    "AlertState",
    "decide",
    "risk_band",
    "priority",
    "normalise_reasons",
    "alert_id",
]

#: Reason category -> the play that answers it (DOMAIN.md: match the play to the reason).
PLAYS: dict[str, str] = {
    "price": "discount_or_payment_plan",
    "product_fit": "feature_nudge",
    "inactivity": "feature_nudge",
    "user_experience": "success_manager_call",
    "customer_service": "success_manager_call",
    "onboarding": "re_onboarding",
    "payment": "dunning",
    "cancellation": "save_offer",
    "renewal": "success_manager_call",
    "account": "success_manager_call",
}
DEFAULT_PLAY = "success_manager_call"
NO_PLAY = "none"  # resolved alerts

#: What a play costs (account currency), for the value filter. Defaults are
#: placeholders to be set per business: automated nudges and dunning are
#: nearly free, a human call or a discount is not.
PLAY_COST: dict[str, float] = {
    "feature_nudge": 0.5,
    "dunning": 0.5,
    "re_onboarding": 10.0,
    "success_manager_call": 20.0,
    "discount_or_payment_plan": 15.0,
    "save_offer": 25.0,
}

#: The stated cancellation reason (contract.REASONS) -> category, for callers
#: that know why a pending cancellation was made and want the play to match.
CANCEL_REASON_CATEGORY: dict[str, str] = {
    "price": "price",
    "product_fit": "product_fit",
    "user_experience": "user_experience",
    "customer_service": "customer_service",
    "competitor": "price",
    "onboarding": "onboarding",
    "missing_features": "product_fit",
    "company_closed": "cancellation",
    "changing_needs": "product_fit",
    "other": "cancellation",
}

#: (lower bound, band), highest first.
RISK_BANDS: tuple[tuple[float, str], ...] = ((0.8, "critical"), (0.6, "high"), (0.4, "medium"), (0.0, "low"))
#: (lower bound of expected monthly loss, priority), highest first.
PRIORITIES: tuple[tuple[float, str], ...] = ((200.0, "P1"), (75.0, "P2"), (25.0, "P3"), (0.0, "P4"))

ALERT_STATES = (RAISED, ESCALATED, RESOLVED)


def risk_band(risk: float, bands: tuple[tuple[float, str], ...] = RISK_BANDS) -> str:
    """The band of a risk (cut points in `RISK_BANDS`), for dashboards and routing.

    >>> [risk_band(r) for r in (0.0, 0.39, 0.4, 0.6, 0.8, 1.0)]
    ['low', 'low', 'medium', 'high', 'critical', 'critical']
    """
    for lo, name in bands:
        if risk >= lo:
            return name
    return bands[-1][1]


def priority(expected_loss: float, cuts: tuple[tuple[float, str], ...] = PRIORITIES) -> str:
    """Priority by expected monthly loss, not by probability (DOMAIN.md).

    >>> [priority(x) for x in (0, 24.9, 25, 75, 200)]
    ['P4', 'P4', 'P3', 'P2', 'P1']
    """
    for lo, name in cuts:
        if expected_loss >= lo:
            return name
    return cuts[-1][1]


@dataclass(frozen=True)
class AlertConfig:
    """Thresholds of the alert policy; the defaults are the documented ones."""

    upper: float = 0.6  # raise at or above
    lower: float = 0.4  # resolve below
    step: float = 0.1  # escalate when risk >= last alerted risk + step
    cooldown_s: float = 86400.0  # event time between two raise/escalate of one customer
    min_expected_loss: float = 10.0  # risk x MRR below this is not alerted
    play_cost: Mapping[str, float] = field(default_factory=lambda: dict(PLAY_COST))
    max_reasons: int = 3
    bands: tuple[tuple[float, str], ...] = RISK_BANDS
    priorities: tuple[tuple[float, str], ...] = PRIORITIES

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower <= self.upper <= 1.0:
            raise ValueError(f"need 0 <= lower <= upper <= 1 (got {self.lower}, {self.upper})")
        if self.step <= 0 or self.cooldown_s < 0:
            raise ValueError("step must be > 0 and cooldown_s >= 0")


SWEEP_PREFIX = "sweep-"  # trigger ids of the daily sweep (event time passing), not of an input event


def sweep_trigger(day: int) -> str:
    """The trigger id of the sweep of event day `day` (deterministic, so a
    replayed sweep gives the same alert_id and consumers can drop it)."""
    return f"{SWEEP_PREFIX}{day}"


def alert_id(customer_id: str, state: str, trigger: str) -> str:
    """Deterministic id, so an event delivered twice yields the same alert id
    and consumers can drop the duplicate.

    >>> alert_id("c1", "raised", "ev-9") == alert_id("c1", "raised", "ev-9")
    True
    >>> alert_id("c1", "raised", "ev-9") != alert_id("c1", "escalated", "ev-9")
    True
    """
    h = hashlib.blake2b(f"{customer_id}\x1f{state}\x1f{trigger}".encode(), digest_size=16)
    return h.hexdigest()


def normalise_reasons(reasons: Iterable[Any], k: int = 3) -> list[dict[str, Any]]:
    """Top-k risk-raising reasons as ``{feature, contribution, category}``.

    Accepts ``(feature, contribution)`` pairs (model contributions) or
    ``(feature, contribution, category)`` triples (health factors) or dicts;
    drops those that lower the risk, since an alert explains why risk is high.

    >>> normalise_reasons([("usage_trend", 0.2), ("csat", -0.1), ("open_tickets", 0.3, "customer_service")])
    [{'feature': 'open_tickets', 'contribution': 0.3, 'category': 'customer_service'}, {'feature': 'usage_trend', 'contribution': 0.2, 'category': 'product_fit'}]
    """
    out = []
    for r in reasons:
        if isinstance(r, Mapping):
            feat, contrib, cat = r["feature"], r["contribution"], r.get("category")
        elif len(r) >= 3:
            feat, contrib, cat = r[0], r[1], r[2]
        else:
            feat, contrib, cat = r[0], r[1], None
        contrib = float(contrib)
        if not contrib > 0.0:
            continue
        cat = cat or REASON_CATEGORY.get(feat, "account")
        out.append({"feature": str(feat), "contribution": round(contrib, 6), "category": cat})
    out.sort(key=lambda d: -d["contribution"])
    return out[:k]


def _play(reasons: list[dict[str, Any]]) -> str:
    """The play of the strongest reason that is a problem to fix (not a profile fact)."""
    for r in reasons:
        if r["category"] != "account":
            return PLAYS.get(r["category"], DEFAULT_PLAY)
    return DEFAULT_PLAY


def decide(
    prev: AlertState | None,
    risk: float,
    mrr: float,
    now: float,
    reasons: Iterable[Any],
    cfg: AlertConfig | None = None,
    *,
    customer_id: str,
    event_id: str | None = None,
    model_version: int = 0,
    scored_by: str = "rules",
    emitted_at: float | None = None,
) -> tuple[AlertState, dict[str, Any] | None]:
    """Fold one risk score into the customer's alert state; maybe emit an alert.

    `now` is the event time of the triggering event (or sweep), `event_id` its
    id (used in `alert_id`; without it the event time is used), `emitted_at`
    the wall-clock time of publishing (defaults to `now`, keeping this pure).
    A resolve is always emitted when an open alert's risk falls below
    `lower`: cooldown and value filter only hold back raise and escalate,
    because closing an open loop is never noise. `prev` is not modified.
    """
    cfg = cfg or AlertConfig()
    risk = min(1.0, max(0.0, float(risk)))
    mrr = max(0.0, float(mrr))
    p = prev if prev is not None else AlertState()
    new = AlertState(p.state, risk, p.alerted_risk, p.last_emitted_t, p.last_alert_id)

    if p.open:
        if risk < cfg.lower:
            kind = RESOLVED
        elif risk >= p.alerted_risk + cfg.step - 1e-12:
            kind = ESCALATED
        else:
            return new, None
    elif risk >= cfg.upper:
        kind = RAISED
    else:
        return new, None

    why = normalise_reasons(reasons, cfg.max_reasons) if kind != RESOLVED else []
    play = _play(why) if kind != RESOLVED else NO_PLAY
    loss = risk * mrr
    if kind != RESOLVED:
        if p.last_emitted_t is not None and now - p.last_emitted_t < cfg.cooldown_s:
            return new, None
        if loss < cfg.min_expected_loss or loss < cfg.play_cost.get(play, 0.0):
            return new, None

    aid = alert_id(customer_id, kind, event_id if event_id is not None else format_ts(now))
    alert = {
        "alert_id": aid,
        "customer_id": customer_id,
        "ts": format_ts(now),
        "emitted_at": format_ts(now if emitted_at is None else emitted_at),
        "trigger_event_id": None if event_id is None or event_id.startswith(SWEEP_PREFIX) else event_id,
        "state": kind,
        "risk": round(risk, 4),
        "risk_band": risk_band(risk, cfg.bands),
        "mrr": round(mrr, 2),
        "expected_mrr_loss": round(loss, 2),
        "priority": priority(loss, cfg.priorities),
        "reasons": why,
        "recommended_play": play,
        "model_version": int(model_version),
        "scored_by": scored_by,
    }
    new.state = kind
    new.alerted_risk = risk if kind != RESOLVED else 0.0
    new.last_emitted_t = now
    new.last_alert_id = aid
    return new, alert
