"""The score step: one customer's state at event time -> risk, labels, alert.

What happens to a customer after their state changed (pure; the agent only
moves the results to Kafka):

1. features at event time (`features.features`);
2. if they just churned, their waiting snapshots become positive examples;
   snapshots whose horizon has passed become negatives (`labels`): river's
   delayed-label protocol, live. Score first, learn only when the answer is
   known, never from the future;
3. if they are a live customer: risk from the model once it has seen enough
   labels, else from the transparent rules (`model.ChurnModel.assess`), one
   snapshot a day with the score it had *then* (for progressive validation);
4. the alert decision with hysteresis, cooldown and value filter (`alerts.decide`).

The customer's `RiskMemory` (label book + alert state) lives in its own table,
next to the customer table and co-partitioned with it: it is written at most
once a day per customer plus once per alert, while the customer state is
written on every event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from .alerts import AlertConfig, AlertState, decide, risk_band
from .features import features, monthly_value
from .labels import Example, LabelBook, expire, observe, on_churn
from .model import Assessment, ChurnModel
from .state import CustomerState


@dataclass(slots=True)
class RiskMemory:
    labels: LabelBook = field(default_factory=LabelBook)
    alert: AlertState = field(default_factory=AlertState)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"labels": self.labels.to_dict(), "alert": self.alert.to_dict()})

    @classmethod
    def from_bytes(cls, raw: bytes) -> "RiskMemory":
        d = orjson.loads(raw)
        return cls(LabelBook.from_dict(d["labels"]), AlertState.from_dict(d["alert"]))

    def key(self) -> tuple:
        """What must be persisted when it changes (not the last risk seen)."""
        a = self.alert
        return (len(self.labels.snapshots), self.labels.snapshots[-1][0] if self.labels.snapshots else None,
                self.labels.dropped, a.state, a.alerted_risk, a.last_emitted_t, a.last_alert_id)


class Scored(NamedTuple):
    assessment: Assessment | None
    alert: dict[str, Any] | None
    examples: list[Example]
    changed: bool  # RiskMemory must be written back


def score_customer(
    state: CustomerState,
    memory: RiskMemory,
    model: ChurnModel,
    now: float,
    *,
    churned_at: float | None = None,
    event_id: str | None = None,
    cfg: AlertConfig | None = None,
    inactivity_days: float = 90.0,
    emitted_at: float | None = None,
) -> Scored:
    before = memory.key()
    examples: list[Example] = []
    if churned_at is not None:
        examples.extend(on_churn(memory.labels, churned_at))
        # the alert was right; a "resolved" would read as a recovery
        memory.alert = AlertState()
    examples.extend(expire(memory.labels, now))
    assessment = None
    alert = None
    if state.is_customer:
        x = features(state, now, inactivity_days=inactivity_days)
        assessment = model.assess(x)
        # the label book keeps the *model's* score, so model quality is the
        # model's even while the rules are still the ones alerting
        observe(memory.labels, now, x, model.score(x))
        memory.alert, alert = decide(
            memory.alert, assessment.risk, monthly_value(state, now), now, assessment.reasons, cfg,
            customer_id=state.customer_id, event_id=event_id, model_version=model.version,
            scored_by=assessment.scored_by, emitted_at=emitted_at,
        )
    return Scored(assessment, alert, examples, memory.key() != before)


def update_risk(state: CustomerState, assessment: Assessment | None, resolution: float = 0.01) -> bool:
    """Keep the customer's current risk in its state (the at-risk gauges come
    from it through the ledger); small moves are ignored so that most events
    do not touch the ledger. Returns whether the state changed."""
    if assessment is None:
        if state.risk is None:
            return False
        state.risk = state.risk_band = None
        return True
    risk = round(assessment.risk, 2)
    band = risk_band(assessment.risk)
    if state.risk is not None and abs(state.risk - risk) < resolution and state.risk_band == band:
        return False
    state.risk, state.risk_band = risk, band
    return True


def example_message(customer_id: str, ex: Example) -> bytes:
    return orjson.dumps({
        "customer_id": customer_id, "features": ex.features, "label": ex.label,
        "snapshot_t": ex.snapshot_t, "labelled_t": ex.labelled_t, "score": ex.score,
    })
