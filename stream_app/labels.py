"""Delayed labels, live: daily feature snapshots in, labelled examples out.

The target is "churns within H days" (default 30). Its answer for a snapshot
taken at time s is known only when the customer churns (at c, positive if
c - s <= H) or when H days have passed without churn (negative). Until then
the snapshot waits in the customer's `LabelBook`; this is river's delayed-label
protocol (`river.evaluate.progressive_val_score` with a delay) done per
customer inside the stream instead of over a replayed dataset.

Why per customer and per day: the book is stored next to the customer's state
(same table, same partition), so it survives restarts and rebalances with it,
and one snapshot a day keeps it bounded (at most H + 1) and stops very active
customers from outweighing quiet ones in training.

Never learn from the future: `on_churn` and `expire` only label what is known
at the time they are called. The caller must therefore run `state.advance` to
`now` *before* `expire(book, now)`, so a churn that is already due turns its
snapshots into positives instead of being missed and mislabelled negative.

Lead time (fight-churn): with `lead_days = L`, snapshots taken less than L days
before the churn are dropped instead of labelled positive: by then the
customer has usually already decided, and a model trained on them learns to
recognise churn that can no longer be prevented.

>>> book = LabelBook(horizon_days=30)
>>> observe(book, 0.0, {"x": 1.0}); observe(book, 3600.0, {"x": 2.0})  # same day: kept once
>>> len(book.snapshots)
1
>>> [ex.label for ex in on_churn(book, 10 * DAY)]
[True]
>>> book.snapshots
[]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .config import DAY
from .state import day_of

__all__ = ["Example", "LabelBook", "observe", "on_churn", "expire", "DEFAULT_HORIZON_DAYS"]

DEFAULT_HORIZON_DAYS = 30


class Example(NamedTuple):
    """A labelled snapshot: what the model may learn from.

    `score` is the model's risk at snapshot time (when the caller stored one),
    so progressive validation compares a label with the prediction made
    *before* the label existed, never with a re-score by a model that has
    since learnt more.
    """

    features: dict[str, float]
    label: bool
    snapshot_t: float
    labelled_t: float
    score: float | None = None


@dataclass(slots=True)
class LabelBook:
    """One customer's snapshots waiting for their label, oldest first.

    Each snapshot is ``[t, features, score]``. `dropped` counts snapshots that
    left without a label (lead-time window, or evicted because `expire` was not
    called in time), so their loss is visible.
    """

    horizon_days: float = DEFAULT_HORIZON_DAYS
    lead_days: float = 0.0
    snapshots: list[list[Any]] = field(default_factory=list)
    dropped: int = 0

    @property
    def capacity(self) -> int:
        """Most snapshots that can be waiting: one per day of the horizon, plus today."""
        return int(self.horizon_days) + 1

    # -- serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; feature names are stored once, not per snapshot.

        >>> b = LabelBook(); observe(b, 0.0, {"a": 1.0, "b": 0.5}, score=0.2)
        >>> d = b.to_dict(); d["keys"], d["snapshots"]
        (['a', 'b'], [[0.0, [1.0, 0.5], 0.2]])
        >>> LabelBook.from_dict(d) == b
        True
        """
        keys: list[str] = list(self.snapshots[0][1]) if self.snapshots else []
        rows = []
        for t, feats, score in self.snapshots:
            if list(feats) == keys:
                rows.append([t, [feats[k] for k in keys], score])
            else:  # a feature set changed mid-book (new release): keep it as a dict
                rows.append([t, dict(feats), score])
        return {
            "horizon_days": self.horizon_days,
            "lead_days": self.lead_days,
            "keys": keys,
            "snapshots": rows,
            "dropped": self.dropped,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LabelBook":
        keys = d.get("keys") or []
        snaps = []
        for t, vals, score in d.get("snapshots", []):
            feats = dict(vals) if isinstance(vals, dict) else dict(zip(keys, vals))
            snaps.append([float(t), feats, score])
        return cls(
            horizon_days=d.get("horizon_days", DEFAULT_HORIZON_DAYS),
            lead_days=d.get("lead_days", 0.0),
            snapshots=snaps,
            dropped=int(d.get("dropped", 0)),
        )


def observe(book: LabelBook, now: float, feats: dict[str, float], score: float | None = None) -> None:
    """Keep today's snapshot, unless the book already holds one for this day.

    The first snapshot of a day wins, so redelivered or repeated events cannot
    change what the model will learn. If the caller never expired old
    snapshots, the oldest are evicted (and counted in `dropped`) to keep the
    book within `capacity`.

    >>> b = LabelBook(horizon_days=2)
    >>> for d in range(5): observe(b, d * DAY, {"d": float(d)})
    >>> [s[1]["d"] for s in b.snapshots], b.dropped
    ([2.0, 3.0, 4.0], 2)
    """
    snaps = book.snapshots
    day = day_of(now)
    if snaps and day_of(snaps[-1][0]) >= day:
        return
    snaps.append([float(now), dict(feats), score])
    excess = len(snaps) - book.capacity
    if excess > 0:
        del snaps[:excess]
        book.dropped += excess


def on_churn(book: LabelBook, churn_t: float) -> list[Example]:
    """Label every waiting snapshot now that the customer has churned at `churn_t`.

    Snapshots from the H days before churn are positives; older ones (whose
    horizon ended before the churn, if `expire` had not yet run) are
    negatives; those inside the lead-time window or taken at or after the
    churn are dropped. The book is empty afterwards: a customer who comes back
    starts a new life with new snapshots.

    >>> b = LabelBook(horizon_days=30, lead_days=2)
    >>> for d in (0, 15, 39, 40): observe(b, d * DAY, {"d": float(d)})
    >>> [(ex.features["d"], ex.label) for ex in on_churn(b, 40.5 * DAY)]
    [(0.0, False), (15.0, True)]
    >>> b.dropped
    2
    """
    out: list[Example] = []
    h = book.horizon_days * DAY
    lead = book.lead_days * DAY
    for t, feats, score in book.snapshots:
        gap = churn_t - t
        if gap <= 0 or gap < lead:
            book.dropped += 1
        elif gap <= h:
            out.append(Example(feats, True, t, churn_t, score))
        else:
            out.append(Example(feats, False, t, churn_t, score))
    book.snapshots = []
    return out


def expire(book: LabelBook, now: float) -> list[Example]:
    """Negatives: snapshots whose horizon has fully passed by `now` without churn.

    Run `state.advance(state, now)` first (module docstring): a churn already
    due at `now` must reach `on_churn` before its snapshots can expire.

    >>> b = LabelBook(horizon_days=30)
    >>> observe(b, 0.0, {}); observe(b, DAY, {})
    >>> expire(b, 29 * DAY)
    []
    >>> [(ex.label, ex.snapshot_t / DAY) for ex in expire(b, 30 * DAY)]
    [(False, 0.0)]
    >>> len(b.snapshots)
    1
    """
    h = book.horizon_days * DAY
    snaps = book.snapshots
    n = 0
    while n < len(snaps) and snaps[n][0] + h <= now:
        n += 1
    if not n:
        return []
    out = [Example(feats, False, t, now, score) for t, feats, score in snaps[:n]]
    del snaps[:n]
    return out
