"""What the score step keeps per customer, and how its results leave the worker.

The customer's `RiskMemory` (its label book) lives in the `risk` table, next
to the customer table and co-partitioned with it. It is written only when it
changes: a snapshot kept or labelled, at most once per observation period
(`labels.py`). Everything that moves with each score (the current risk, the
model's score, when it was scored, the alert state) lives in the
`CustomerState`, which a score writes anyway: the at-risk gauges, the alert
decisions and the visit schedule need the customer table alone.

The orchestration (features, model, labels, alert decision, in which order
and when) is `process.Processor`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from ..config import DAY
from ..domain.packed import PackedCodec
from ..domain.state import CustomerState, day_of
from .alerts import risk_band
from .features import FEATURES
from .labels import Example, LabelBook, Policy, observe
from .model import Assessment


class RiskMemory(msgspec.Struct, array_like=True, gc=False):
    labels: LabelBook = msgspec.field(default_factory=LabelBook)

    def to_bytes(self) -> bytes:
        return _CODEC.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "RiskMemory":
        return _CODEC.decode(raw)


def _from_legacy(d: dict[str, Any]) -> RiskMemory:
    """A memory stored as JSON by an earlier release: its waiting snapshots are
    kept (one per day, at most the capacity of a daily book). Its alert state
    moved to the customer's state; an open alert of such a customer is
    raised again once (its id then differs)."""
    labels = d.get("labels") or {}
    keys = labels.get("keys") or []
    book = LabelBook(dropped=int(labels.get("dropped", 0)))
    daily = Policy(horizon_days=labels.get("horizon_days", 30.0), every_days=1)
    for t, vals, score in labels.get("snapshots", []):
        feats = dict(vals) if isinstance(vals, dict) else dict(zip(keys, vals))
        observe(book, day_of(float(t)), {k: v for k, v in feats.items() if k in FEATURES}, score, daily)
    return RiskMemory(book)


_CODEC = PackedCodec(RiskMemory, _from_legacy)


def update_risk(state: CustomerState, assessment: Assessment | None, resolution: float = 0.01) -> bool:
    """Keep the customer's current risk in its state (the at-risk gauges come
    from it through the ledger); small moves are ignored so that most scores
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


__all__ = ["RiskMemory", "update_risk", "example_message", "DAY"]
