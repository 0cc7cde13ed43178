"""Counts per day for the last N days, packed: the customer state's day buckets.

Why not a `dict[int, int]`: a customer keeps up to 92 daily usage buckets, and
as a dict they cost ~3.5 KB of Python objects per customer (an int object per
day and per count, plus the hash table); a million customers would spend
gigabytes on them. A ring of unsigned 16-bit counters in one `bytearray`
costs two bytes a day, serialises as one binary blob and is not tracked by
the garbage collector.

Day `d` lives in slot `d % size`; the ring covers the `size` days ending at
`end` (the newest day counted). Counting a newer day clears the slots of the
days it skips; a day older than the ring is not counted (the caller's pruning
would drop it anyway). Counts saturate at 65,535 a day, far above any human's
sessions and harmless for the features that read them (usage in 7 or 30 days).

>>> r = DayRing.new(4)
>>> for d in (10, 10, 12, 15): r.add(d)
>>> r.items()
[(12, 1), (15, 1)]
>>> r.window(15, 4), r.window(15, 1), r.days()
(2, 1, (12, 15))
"""

from __future__ import annotations

import msgspec

MAX_COUNT = 0xFFFF


class DayRing(msgspec.Struct, array_like=True, gc=False):
    end: int = -1  # newest day counted; -1 = nothing yet
    counts: bytearray = msgspec.field(default_factory=bytearray)  # uint16 little-endian per slot

    @classmethod
    def new(cls, size: int) -> "DayRing":
        return cls(-1, bytearray(2 * size))

    @property
    def size(self) -> int:
        return len(self.counts) >> 1

    def add(self, day: int, n: int = 1) -> None:
        counts = self.counts
        size = len(counts) >> 1
        end = self.end
        if end < 0 or day - end >= size:  # new, or every day it holds is over
            counts[:] = bytes(len(counts))
            self.end = day
        elif day <= end - size:
            return  # older than the ring: already pruned
        elif day > end:  # clear the days skipped since the newest
            view = memoryview(counts).cast("H")
            for d in range(end + 1, day + 1):
                view[d % size] = 0
            view.release()
            self.end = day
        view = memoryview(counts).cast("H")
        i = day % size
        view[i] = min(MAX_COUNT, view[i] + n)

    def get(self, day: int) -> int:
        size = len(self.counts) >> 1
        if self.end < 0 or day > self.end or day <= self.end - size:
            return 0
        return memoryview(self.counts).cast("H")[day % size]

    def items(self) -> list[tuple[int, int]]:
        """(day, count) of every day with a count, oldest first."""
        end = self.end
        if end < 0:
            return []
        size = len(self.counts) >> 1
        start = end - size + 1
        values = memoryview(self.counts).cast("H").tolist()
        i = start % size
        return [(start + k, v) for k, v in enumerate(values[i:] + values[:i]) if v]

    def days(self) -> tuple[int, ...]:
        """The days with a count, oldest first (what the activity ledger steps need)."""
        return tuple(d for d, _ in self.items())

    def window(self, today: int, days: int) -> int:
        """Sum of the counts of the `days` days ending on `today`."""
        end = self.end
        if end < 0:
            return 0
        size = len(self.counts) >> 1
        view = memoryview(self.counts).cast("H")
        lo = max(today - days + 1, end - size + 1)
        return sum(view[d % size] for d in range(lo, min(today, end) + 1))

    def prune(self, horizon: int) -> None:
        """Forget the days before `horizon`."""
        end = self.end
        if end < 0:
            return
        size = len(self.counts) >> 1
        start = end - size + 1
        if horizon <= start:
            return
        if horizon > end:
            self.counts[:] = bytes(len(self.counts))
            return
        view = memoryview(self.counts).cast("H")
        for d in range(start, horizon):
            view[d % size] = 0

    def resized(self, size: int) -> "DayRing":
        """The same counts in a ring of `size` days (the newest `size` days kept).

        >>> r = DayRing.new(2); r.add(5); r.add(6, 3)
        >>> r.resized(4).items(), r.resized(4).size
        ([(5, 1), (6, 3)], 4)
        """
        out = DayRing.new(size)
        for d, v in self.items():
            out.add(d, v)
        return out

    def total(self) -> int:
        return sum(memoryview(self.counts).cast("H"))
