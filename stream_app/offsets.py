"""Which input offsets are safe to commit: Faust's consumer with its ack
bookkeeping mended.

Faust commits, per topic-partition, the end of the run of consecutive acked
offsets that starts at the committed one. Offsets it believes were skipped
by the broker (a "gap": compaction, transaction markers) are filled in as if
acked. When a fetch from before a seek lands after it (a restart or a
rebalance while tables recover: faust-streaming #596), Faust records a gap
for offsets that are in fact delivered and processed a moment later; each is
then acked a second time and the list of acked offsets holds duplicates.
Faust's run-finder stops at the first duplicate, so the committed offset
creeps forward by one or two per commit while the worker processes
thousands: seen here as a worker that processed a partition to its end with
the group's committed offset stuck near where it restarted, and every later
restart replaying the whole backlog (harmless to the figures, since state
updates are idempotent, but a restart that should take seconds takes as long
as the backlog). `advance` counts each acked offset once.

Before it commits, Faust flushes its producer so that the table writes of
the acked events reach their changelogs first. Its buffer's flush gives up
after 0.1 s without a send (`ProducerBuffer.flush_atmost`) and cannot see
the message its sender task has taken but not yet handed to aiokafka; on a
busy machine the commit then overtook changelog writes, and a SIGKILL right
after it lost them: the restarted worker restored a customer's older state
and read on past the events that made the newer one (four customers of one
partition in the crash test, 1 run in ~4). `CommitSafeBuffer.flush` waits
until every message queued before it was handed to aiokafka, whose own
flush then waits for delivery.

A clean stop (SIGTERM) also commits once more after the agents have stopped:
Faust's stop-time commit is skipped when a timer commit is in flight, and
that commit was computed before the last events were acked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from faust.transport import producer as faust_producer
from mode import Service
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.utils.functional import consecutive_numbers

log = logging.getLogger(__name__)


def advance(acked: Iterable[int], committed: int | None) -> tuple[int | None, list[int]]:
    """The offset to commit next (one past the last processed), and the acked
    offsets that must wait for an earlier one.

    `committed` is the offset committed before (the next one to read). An
    offset acked twice counts once; one missing offset right at the head is
    taken as a gap in the log, as Faust does; more than one missing means an
    earlier event is still being processed, so nothing is committed.

    >>> advance([5, 6, 6, 7, 9], 5)
    (8, [9])
    >>> advance([7, 8], 5)
    (None, [7, 8])
    >>> advance([], 5)
    (None, [])
    """
    pending = sorted(set(acked))
    if not pending or (committed is not None and pending[0] - committed > 1):
        return None, pending
    run = next(consecutive_numbers(pending))
    return run[-1] + 1, pending[len(run):]


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, committing with `advance`."""

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        gaps = self._gap[tp]
        if gaps:
            # offsets the broker skipped, up to the newest acked, count as acked
            top = max(acked)
            filled = [o for iv in sorted(gaps.overlap(0, top), key=lambda iv: iv.begin) for o in range(iv.begin, iv.end)]
            if filled:
                acked.extend(filled)
                gaps.chop(0, max(filled[-1], top + 1))
        offset, pending = advance(acked, self._committed_offset[tp])
        acked[:] = pending
        self._acked_index[tp] = set(pending)
        return offset

    async def highwaters(self, *partitions: TP) -> dict[TP, int]:
        """Where each partition ends (Faust's table recovery reads its
        changelogs up to here): from fetch responses on a broker whose
        ListOffsets answer lags a batch (`Settings.end_offsets_from_fetch`,
        on for the embedded broker: topics.fetched_ends)."""
        ends = dict(await super().highwaters(*partitions))
        settings = getattr(self.app, "churn_settings", None)
        if settings is None or not settings.end_offsets_from_fetch:
            return ends
        from .security import kafka_client_kwargs
        from .topics import fetched_ends

        bootstrap = ",".join(f"{url.host}:{url.port}" for url in self.app.conf.broker)
        return await fetched_ends(bootstrap, ends, **kafka_client_kwargs(settings))

    async def on_stop(self) -> None:
        await super().on_stop()
        # the commit above returns early if a timer commit was in flight; this
        # one starts after it and covers the last acked events
        await self.commit(start_new_transaction=False)


class CommitSafeBuffer(faust_producer.ProducerBuffer):
    """Faust's producer buffer, with a flush that a commit can rely on."""

    STALL_S = 60.0  # no progress for this long: give up waiting, loudly

    def __post_init__(self) -> None:
        super().__post_init__()
        self.queued = 0  # messages put, ever
        self.handed = 0  # of those, handed to aiokafka (in order: the queue is FIFO)

    def put(self, fut) -> None:
        super().put(fut)
        self.queued += 1

    @Service.task
    async def _handle_pending(self) -> None:
        get_pending = self.pending.get
        send_pending = self._send_pending
        while not self.should_stop:
            msg = await get_pending()
            await send_pending(msg)
            self.handed += 1
            self.message_sent.set()

    async def flush(self) -> None:
        """Return once every message queued before the call is in aiokafka's
        hands (messages queued meanwhile belong to events not acked yet)."""
        target = self.queued
        handed, since = self.handed, asyncio.get_running_loop().time()
        while self.handed < target:
            if self.should_stop:  # the sender task is gone: Faust's own way out
                await super().flush()
                return
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            now = asyncio.get_running_loop().time()
            if self.handed != handed:
                handed, since = self.handed, now
            elif now - since > self.STALL_S:  # a sender stuck this long is a broken producer, not a busy one
                log.error("producer buffer: no message handed to aiokafka for %.0f s (%d waiting); "
                          "committing without them", now - since, target - self.handed)
                return


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with `CommitSafeBuffer`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.app.conf.producer_threaded:  # (the threaded producer queues elsewhere)
            buffer = CommitSafeBuffer(loop=self.loop, beacon=self.beacon)
            buffer.app = self.app
            self.buffer = buffer


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer
