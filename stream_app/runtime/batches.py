"""How the agent takes its input: small batches when live, full ones when behind.

Faust's `Stream.take_events(max, within)` closes a batch when it holds `max`
events or `within` seconds after it started waiting. One `within` serves two
masters: live, a batch should close within a few milliseconds (every
millisecond waited is a millisecond of alert latency); behind (a backlog, a
restart, a replay), it should be as large as the budget allows, because the
per-batch work (the sweep, the ledger swap, one score and one write per
touched customer) is shared by more events. Measured with bench/throughput.py's
worker on 30,000 backlogged events (2 cores, embedded broker, 2026-11-30):
`within` 10 ms 4,284 and 4,496 events/s; 50 ms 6,316 and 5,982.

`take_batches` is Faust's `take_events` (faust-streaming 0.11 to 0.15, same
passive-drainer design) with one change: when `within` runs out while the
broker already holds enough records beyond the batch, on the partitions it
has read, to fill it (`backlog`, from the consumer's high-water marks), the
batch keeps filling, `within` at a time, until it is full or `catchup_s` has
passed since it started waiting. Filling it then waits for no producer,
only for Faust to hand over records that are there. Live, the few records
beyond the batch are those that arrived in the last milliseconds: the batch
closes after `within`, as before. (A first version kept filling while *any*
record lay beyond the batch; live at 1,500 events/s one always does, and
every batch waited its whole `catchup_s`.)

Acks are Faust's: the events of a batch are acked after the loop body
returns; the agent keeps its own reference on input events it holds back
(`Pipeline.release`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import faust
from mode.utils.futures import notify

Backlog = Callable[[Sequence[faust.EventT]], int]


def last_offsets(events: Sequence[faust.EventT]) -> dict[tuple[str, int], int]:
    """The newest offset per topic-partition among *events*."""
    out: dict[tuple[str, int], int] = {}
    for event in events:
        msg = event.message
        tp = (msg.topic, msg.partition)
        if out.get(tp, -1) < msg.offset:
            out[tp] = msg.offset
    return out


def backlog_by_highwater(highwater: Callable[[str, int], int | None]) -> Backlog:
    """`backlog` for a consumer: records beyond the batch's newest on each
    partition the batch has read, up to that partition's high-water mark
    (the broker's log end, as of the consumer's last fetch of it).

    >>> from types import SimpleNamespace as NS
    >>> ev = lambda t, p, o: NS(message=NS(topic=t, partition=p, offset=o))
    >>> backlog = backlog_by_highwater(lambda t, p: {("a", 0): 10, ("a", 1): 3}[(t, p)])
    >>> backlog([ev("a", 0, 9), ev("a", 1, 2)])
    0
    >>> backlog([ev("a", 0, 5), ev("a", 1, 0)])
    6
    """
    def backlog(events: Sequence[faust.EventT]) -> int:
        n = 0
        for (topic, partition), offset in last_offsets(events).items():
            end = highwater(topic, partition)
            if end is not None and end > offset + 1:
                n += end - offset - 1
        return n
    return backlog


async def take_batches(stream: faust.StreamT, max_events: int, within: float, catchup_s: float,
                       backlog: Backlog) -> AsyncIterator[list[faust.EventT]]:
    """Batches of at most *max_events* events from *stream* (see the module docstring)."""
    st: Any = stream  # Faust's Stream: the internals take_events itself uses
    events: list[faust.EventT] = []
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future | None = None
    enable_acks = st.enable_acks
    channel_it = st.channel.__aiter__()

    async def add_to_buffer(value):
        nonlocal buffer_consuming
        try:
            if buffer_consuming is not None:  # the agent is processing the last batch
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            event = st.current_event
            if event is None:
                raise RuntimeError("take_batches found current_event is None")
            events.append(event)
            if len(events) >= max_events:
                buffer_full.set()
                buffer_consumed.clear()
                await st.wait(buffer_consumed)  # never more than max_events in a batch
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            st.log.exception("Error adding to take buffer: %r", exc)
            await st.crash(exc)
        return value

    st.enable_acks = False  # the batch's events are acked below, after the agent is done with them
    st.add_processor(add_to_buffer)
    st._enable_passive(channel_it)
    try:
        while not st.should_stop:
            started = time.monotonic()
            await st.wait_for_stopped(buffer_full, timeout=within)
            while (events and not buffer_full.is_set() and not st.should_stop
                   and time.monotonic() - started < catchup_s and backlog(events) >= max_events - len(events)):
                await st.wait_for_stopped(buffer_full, timeout=within)
            if not events:
                continue
            buffer_consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                batch = list(events)
                events.clear()
                for event in batch:
                    await st.ack(event)
                notify(buffer_consuming)
                buffer_full.clear()
                buffer_consumed.set()
    finally:
        st.enable_acks = enable_acks
        st._processors.remove(add_to_buffer)
