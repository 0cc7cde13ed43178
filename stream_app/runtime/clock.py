"""The worker's clock ticks: partitions that have gone quiet move to the
worker's clock, so silent customers lapse, labels come due and KPI windows
roll even when no event of theirs arrives.

The tick is a message on the partition's own number of `<app_id>-clock`, so
the sweep it triggers runs inside the stream, in order with that
partition's events, and its table writes go to the right changelog
partition. A missing book is rebuilt the same way after a rebalance.
Whether a partition gets a tick, and at what time, is `tick_for` (pure).
"""

from __future__ import annotations

import time
from typing import NamedTuple, Protocol

import faust
import orjson

from ..config import Settings
from .processing import Processing
from .progress import Progress


class Tick(NamedTuple):
    """A tick to send: `t` is the clock to move the partition to, or None
    for a tick that only makes the partition rebuild its book or run its
    due visits at its own clock."""
    t: float | None


class _Book(Protocol):
    clock: float | None
    idle: set[str]
    inputs: tuple[str, ...]
    last_event_wall: float

    def has_due(self) -> bool: ...


def tick_for(book: _Book | None, *, caught_up_now: bool, upstream_read: bool, clock: float | None,
             idle_since: float, last_tick: float | None) -> Tick | None:
    """The tick one owned partition gets now, or None.

    Only a partition idle since `idle_since` (every input read to its end,
    no event for `idle_partition_s`) is moved: one still working through a
    backlog must keep its own clock, or its customers would lapse before
    their pending events are read (the watermark idleness rule of Flink and
    Kafka Streams). Nor is one moved while events wait upstream on the
    source topics (`upstream_read` false). A partition without a book gets a
    tick so the agent rebuilds it; one that has just caught up, so its held
    events are released; an idle one with visits its last sweep's budget left
    due is ticked again at the same clock, else they wait for its next event
    (the end of a replay left 530 CDNOW lapses unapplied at a clock past them).

    >>> from types import SimpleNamespace
    >>> quiet = SimpleNamespace(clock=10.0, idle={"a"}, inputs=("a",), last_event_wall=0.0, has_due=lambda: False)
    >>> tick_for(quiet, caught_up_now=False, upstream_read=True, clock=20.0, idle_since=5.0, last_tick=None)
    Tick(t=20.0)
    >>> tick_for(quiet, caught_up_now=False, upstream_read=True, clock=20.0, idle_since=5.0, last_tick=20.0) is None
    True
    >>> tick_for(quiet, caught_up_now=False, upstream_read=False, clock=20.0, idle_since=5.0, last_tick=None) is None
    True
    >>> tick_for(None, caught_up_now=False, upstream_read=False, clock=20.0, idle_since=5.0, last_tick=None)
    Tick(t=None)
    """
    everything_read = upstream_read and book is not None and len(book.idle) == len(book.inputs)
    if book is not None and not caught_up_now:
        if book.last_event_wall > idle_since or len(book.idle) < len(book.inputs):
            return None
        if not book.has_due():
            if not everything_read or clock is None or (book.clock is not None and book.clock >= clock):
                return None
            if last_tick == clock:
                return None
    return Tick(clock if everything_read else None)


class Ticks:
    """Sends the ticks `tick_for` decides, every `clock_tick_s`."""

    def __init__(self, app: faust.App, settings: Settings, processing: Processing, progress: Progress, clock_name: str) -> None:
        self.settings = settings
        self.processing = processing
        self.progress = progress
        self.topic = app.topic(clock_name, key_serializer="raw", value_serializer="raw", partitions=settings.partitions, internal=True)
        self.last_tick: dict[int, float | None] = {}

    async def send(self) -> None:
        """Move every owned partition that `tick_for` says to the worker's clock, through Kafka."""
        idle_since = time.monotonic() - self.settings.idle_partition_s
        upstream_read = self.progress.sources_read()
        owned = sorted(self.progress.assigned_partitions())
        processor = self.processing.processor
        books = processor.books
        changed = {p for p in owned if p in books and processor.mark_caught_up(p)}
        clock = self.processing.worker_clock()
        for p in owned:
            tick = tick_for(books.get(p), caught_up_now=p in changed, upstream_read=upstream_read, clock=clock,
                            idle_since=idle_since, last_tick=self.last_tick.get(p))
            if tick is None:
                continue
            if tick.t is not None:
                self.last_tick[p] = tick.t
            await self.topic.send(value=orjson.dumps({"t": tick.t}), partition=p)

    def forget(self) -> None:
        self.last_tick.clear()
