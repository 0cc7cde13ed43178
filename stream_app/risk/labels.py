"""Delayed labels, live: observation-day snapshots in, labelled examples out.

The target is "churns within H days" (default 30). Its answer for a snapshot
taken at time s is known only when the customer churns (at c, positive if
c - s <= H) or when H days have passed without churn (negative). Until then
the snapshot waits in the customer's `LabelBook`; this is river's delayed-label
protocol (`river.evaluate.progressive_val_score` with a delay) done per
customer inside the stream instead of over a replayed dataset.

What is observed, and when (fight-churn's observation dates):

- a live customer is observed on its **observation days**, one every
  `every_days` (`Settings.snapshot_every_days`, default 10), on a phase of
  its own (a hash of its id), so a partition's observations are spread over
  the period instead of all falling on one day. Every live customer is observed on its days, active or silent:
  the training set is a sample of customer-days, not of events, so a quiet
  customer counts as much as a busy one;
- the snapshot of day d is the customer **at the end of day d**: features at
  that moment, from everything applied before the first event after day d.
  It is taken lazily, when the customer's state is next about to change (an
  event of a later day, a transition) or at the customer's next visit
  (`process.py`): a silent customer's state does not change, so its end-of-day
  snapshot can be computed days later from the same state. Nothing is written
  for the days in between; a replay and a live run give the same snapshots
  whatever the batch boundaries;
- the snapshot's score is the model's latest score of the customer before the
  day closed: the risk the monitor was showing then. Progressive validation
  compares each label with it, never with a re-score by a model that has
  since learnt more.

Why not one a day: a daily snapshot changes the book, and so writes the `risk`
table, once per customer per active day; an observation every 10 days cuts
the writes (and the book: three snapshots wait per 30-day horizon) by that
factor, and consecutive days of one customer are nearly the same example
anyway. bench/model_quality.py compares `--every 10` with `--every 1`.

Snapshots are float32 vectors in `features.FEATURES` order, packed in bytes,
sparse: a bit mask of the features away from their neutral value, then those
values. A subscriber's purchase features and a buyer's subscription features
are all neutral, so a snapshot costs what the customer's kind has, not what
the feature set has: a full book of a 30-day horizon is about 1 KB, and it is
decoded without building a dict per snapshot. A book written under another
feature set or layout (`FEATURE_SET` differs) is dropped, counted, on its
next use.

Never learn from the future: `on_churn` and `expire` only label what is known
at the time they are called. The caller runs `state.advance` to `now` before
`expire(book, now)`, so a churn that is already due turns its snapshots into
positives instead of being missed and mislabelled negative.

Lead time (fight-churn): with `lead_days = L`, snapshots taken less than L days
before the churn are dropped instead of labelled positive: by then the
customer has usually already decided, and a model trained on them learns to
recognise churn that can no longer be prevented.

>>> policy = Policy(horizon_days=30, every_days=1)
>>> book = LabelBook()
>>> observe(book, 0, {"usage_7d": 1.0}, 0.25, policy); observe(book, 1, {"usage_7d": 2.0}, None, policy)
>>> [(ex.label, ex.features["usage_7d"], ex.score) for ex in on_churn(book, 10 * DAY, policy)]
[(True, 1.0, 0.25), (True, 2.0, None)]
>>> book.size
0
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
import numpy as np

from ..config import DAY
from .features import FEATURES, NEUTRAL

__all__ = ["Example", "LabelBook", "Policy", "as_stored", "observe", "on_churn", "on_purchase", "expire", "is_observation_day",
           "next_observation_day", "snapshot_time", "FEATURE_SET", "DEFAULT_HORIZON_DAYS"]

DEFAULT_HORIZON_DAYS = 30
#: identifies the feature order and the row layout the vectors are packed in
FEATURE_SET = zlib.crc32(("sparse:" + ",".join(FEATURES)).encode())
_WIDTH = len(FEATURES)
_ROW = struct.Struct(f"<{_WIDTH}f")  # a dense row: float32 rounding of every feature
_MASK_BYTES = (_WIDTH + 7) // 8
_NEUTRAL_ROW = _ROW.unpack(_ROW.pack(*[NEUTRAL[k] for k in FEATURES]))
_NEUTRAL_F32 = np.array(_NEUTRAL_ROW, dtype=np.float32)
_NEUTRAL_NAN = np.isnan(_NEUTRAL_F32)
_NAN = float("nan")


def _pack(feats: dict[str, float]) -> bytes:
    """One sparse row: the mask of non-neutral features, then their float32 values."""
    dense = np.array([feats.get(k, NEUTRAL[k]) for k in FEATURES], dtype=np.float32)
    keep = (dense != _NEUTRAL_F32) & ~(np.isnan(dense) & _NEUTRAL_NAN)
    return np.packbits(keep, bitorder="little").tobytes() + dense[keep].tobytes()


def _row_end(values: bytes, start: int) -> int:
    mask = int.from_bytes(values[start:start + _MASK_BYTES], "little")
    return start + _MASK_BYTES + 4 * mask.bit_count()


def _unpack(values: bytes, start: int) -> dict[str, float]:
    keep = np.unpackbits(np.frombuffer(values, np.uint8, _MASK_BYTES, start), count=_WIDTH, bitorder="little").astype(bool)
    dense = _NEUTRAL_F32.copy()
    dense[keep] = np.frombuffer(values, np.float32, int(keep.sum()), start + _MASK_BYTES)
    return dict(zip(FEATURES, dense.tolist()))


@dataclass(frozen=True, slots=True)
class Policy:
    """The label protocol's settings (Settings.horizon_days, snapshot_every_days)."""

    horizon_days: float = DEFAULT_HORIZON_DAYS
    lead_days: float = 0.0
    every_days: int = 10

    @property
    def capacity(self) -> int:
        """Most snapshots that can be waiting: the observations of one horizon,
        plus those of the period their expiry may wait for (it is processed
        when the book is written anyway, at most `every_days` late)."""
        return int((self.horizon_days + self.every_days) // self.every_days) + 1


class Example(NamedTuple):
    """A labelled snapshot: what the model may learn from.

    `score` is the model's risk shown at snapshot time (None if it had not
    scored the customer yet), so progressive validation compares a label with
    the prediction made *before* the label existed.
    """

    features: dict[str, float]
    label: bool
    snapshot_t: float
    labelled_t: float
    score: float | None = None


class LabelBook(msgspec.Struct, array_like=True, gc=False):
    """One customer's snapshots waiting for their label, oldest first (the `risk` table's label part)."""

    days: bytes = b""  # int32 observation day per snapshot
    scores: bytes = b""  # float32 per snapshot; NaN = not scored
    values: bytes = b""  # a sparse row per snapshot (`_pack`)
    fset: int = FEATURE_SET
    dropped: int = 0  # snapshots that left without a label (lead time, eviction, feature-set change)

    @property
    def size(self) -> int:
        return len(self.days) >> 2

    def day_list(self) -> list[int]:
        return list(memoryview(self.days).cast("i"))

    def _offset(self, i: int) -> int:
        at = 0
        for _ in range(i):
            at = _row_end(self.values, at)
        return at

    def features_of(self, i: int) -> dict[str, float]:
        return _unpack(self.values, self._offset(i))

    def _take(self, n: int) -> None:
        """Drop the oldest n snapshots."""
        self.values = self.values[self._offset(n):]
        self.days = self.days[4 * n:]
        self.scores = self.scores[4 * n:]

    def _example(self, i: int, label: bool, labelled_t: float) -> Example:
        day = memoryview(self.days).cast("i")[i]
        score = memoryview(self.scores).cast("f")[i]
        return Example(self.features_of(i), label, snapshot_time(day), labelled_t, None if math.isnan(score) else score)

    def _check(self) -> None:
        if self.fset != FEATURE_SET:  # written by a release with other features
            self.dropped += self.size
            self.days = self.scores = self.values = b""
            self.fset = FEATURE_SET

    def forget_through(self, day: int) -> None:
        """Drop the snapshots of days up to `day`: labelled already.

        The label cursor (`CustomerState.labelled_through`) is written with
        the customer's state at every visit; the book only when it gains a
        snapshot. So a book read back may still hold snapshots the cursor
        says were labelled: they are dropped here, never labelled twice.
        """
        days = memoryview(self.days).cast("i")
        n = 0
        while n < len(days) and days[n] <= day:
            n += 1
        days.release()
        if n:
            self._take(n)


def _phase(customer_id: str, every: int) -> int:
    return zlib.crc32(customer_id.encode()) % every


def is_observation_day(customer_id: str, day: int, every: int) -> bool:
    """Whether `day` is one of the customer's observation days.

    >>> [d for d in range(14) if is_observation_day("c1", d, 7)]
    [1, 8]
    """
    return (day + _phase(customer_id, every)) % every == 0


def next_observation_day(customer_id: str, after: int, every: int) -> int:
    """The customer's first observation day after day `after`.

    >>> next_observation_day("c1", 1, 7), next_observation_day("c1", 0, 7)
    (8, 1)
    """
    d = after + 1
    return d + (-(d + _phase(customer_id, every))) % every


def snapshot_time(day: int) -> float:
    """When the snapshot of observation day `day` is taken: the end of that day."""
    return (day + 1) * DAY


def as_stored(feats: dict[str, float]) -> dict[str, float]:
    """The features as a book keeps them (every name of `FEATURES`, float32
    precision): an example labelled at once reads exactly like one that
    waited in a book."""
    return dict(zip(FEATURES, _ROW.unpack(_ROW.pack(*[feats.get(k, NEUTRAL[k]) for k in FEATURES]))))


def observe(book: LabelBook, day: int, feats: dict[str, float], score: float | None, policy: Policy) -> None:
    """Keep the snapshot of observation day `day`: features in `FEATURES` order
    (missing ones at their neutral value) and the score shown then.

    A day already in the book is kept once (the first wins). The oldest are
    evicted, and counted in `dropped`, beyond the policy's capacity.

    >>> p = Policy(horizon_days=2, every_days=1); b = LabelBook()
    >>> for d in range(6): observe(b, d, {}, None, p)
    >>> b.day_list(), b.dropped
    ([2, 3, 4, 5], 2)
    """
    book._check()
    n = book.size
    if n and memoryview(book.days).cast("i")[n - 1] >= day:
        return
    row = _pack(feats)
    book.days += struct.pack("<i", day)
    book.scores += struct.pack("<f", _NAN if score is None else score)
    book.values += row
    excess = book.size - policy.capacity
    if excess > 0:
        book._take(excess)
        book.dropped += excess


def on_churn(book: LabelBook, churn_t: float, policy: Policy) -> list[Example]:
    """Label every waiting snapshot now that the customer has churned at `churn_t`.

    Snapshots from the H days before churn are positives; older ones (whose
    horizon ended before the churn, if `expire` had not yet run) are
    negatives; those inside the lead-time window or taken at or after the
    churn are dropped. The book is empty afterwards: a customer who comes back
    starts a new life with new snapshots.

    >>> p = Policy(horizon_days=30, lead_days=2, every_days=1); b = LabelBook()
    >>> for d in (0, 15, 38, 40): observe(b, d, {}, None, p)
    >>> [(ex.snapshot_t / DAY, ex.label) for ex in on_churn(b, 40.5 * DAY, p)]
    [(1.0, False), (16.0, True)]
    >>> b.dropped
    2
    """
    book._check()
    out: list[Example] = []
    h = policy.horizon_days * DAY
    lead = policy.lead_days * DAY
    days = memoryview(book.days).cast("i")
    for i in range(book.size):
        gap = churn_t - snapshot_time(days[i])
        if gap <= 0 or gap < lead:
            book.dropped += 1
        else:
            out.append(book._example(i, gap <= h, churn_t))
    days.release()
    book.days = book.scores = book.values = b""
    return out


def on_purchase(book: LabelBook, purchase_t: float, policy: Policy) -> list[Example]:
    """A purchase-only customer bought at `purchase_t`: every snapshot taken
    before it is decided. Their question is "no purchase within H days"
    (the risk such a customer is scored with: `purchases.p_no_purchase`),
    not "lapses within H days": the monitor's lapse is a fixed 90-day rule,
    so a lapse label would only restate the recency the rule is made of.
    Snapshots within H before the purchase are negatives; older ones (whose
    expiry has not run yet) positives; later ones keep waiting.

    >>> p = Policy(horizon_days=30, every_days=1); b = LabelBook()
    >>> for d in (0, 20, 50): observe(b, d, {}, None, p)
    >>> [(ex.snapshot_t / DAY, ex.label) for ex in on_purchase(b, 40.5 * DAY, p)]
    [(1.0, True), (21.0, False)]
    >>> b.day_list()
    [50]
    """
    book._check()
    h = policy.horizon_days * DAY
    days = memoryview(book.days).cast("i")
    n = 0
    while n < len(days) and snapshot_time(days[n]) < purchase_t:
        n += 1
    days.release()
    if not n:
        return []
    taken = book.day_list()[:n]
    out = [book._example(i, purchase_t - snapshot_time(day) > h, purchase_t) for i, day in enumerate(taken)]
    book._take(n)
    return out


def expire(book: LabelBook, now: float, policy: Policy, label: bool = False) -> list[Example]:
    """Snapshots whose horizon has fully passed by `now` without churn:
    negatives (`label` True for a purchase-only customer's, whose question
    is "no purchase within H days": `on_purchase`).

    Run `state.advance(state, now)` first (module docstring): a churn already
    due at `now` must reach `on_churn` before its snapshots can expire.

    >>> p = Policy(horizon_days=30, every_days=1); b = LabelBook()
    >>> observe(b, 0, {}, None, p); observe(b, 1, {}, None, p)
    >>> expire(b, 30 * DAY, p)
    []
    >>> [(ex.label, ex.snapshot_t / DAY) for ex in expire(b, 31 * DAY, p)]
    [(False, 1.0)]
    >>> b.size
    1
    """
    book._check()
    h = policy.horizon_days * DAY
    days = memoryview(book.days).cast("i")
    n = 0
    while n < len(days) and snapshot_time(days[n]) + h <= now:
        n += 1
    days.release()
    if not n:
        return []
    out = [book._example(i, label, now) for i in range(n)]
    book._take(n)
    return out


def oldest_expiry(book: LabelBook, policy: Policy) -> float | None:
    """When the oldest waiting snapshot's horizon passes (None if none waits)."""
    if not book.days:
        return None
    return snapshot_time(memoryview(book.days).cast("i")[0]) + policy.horizon_days * DAY
