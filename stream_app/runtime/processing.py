"""The churn-process agent: batches from Faust to the processor and back.

One agent reads all three input topics (and the internal clock topic) as one
stream, partitioned by customer_id, so a customer's events are processed in
order by one worker and its state lives in the same partition number of the
`customers` table changelog. It reads them in batches and hands each
partition's records to `process.Processor`, which holds all the per-partition
logic and is tested without Kafka. Here are only the Faust-specific parts:
batches, acks and held events, backpressure, the partition of table writes,
rebalances.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import faust

from ..config import Settings
from ..domain.kpis import merge
from ..domain.partition import PartitionBook
from ..domain.state import day_of
from ..ingest.contract import format_ts
from . import topics
from .batches import backlog_by_highwater, take_batches
from .metrics import Metrics
from .process import Output, Processor, Record
from .progress import Progress
from .rejects import DeadLetterSink
from .tables import writes_for

log = logging.getLogger(__name__)


def leave_unacked(events: Iterable[faust.EventT]) -> None:
    """Keep `events` from ever counting as processed, for whoever reads their
    partition next: Faust acks a batch's events once the agent's loop body
    returns, and an extra reference that is never released keeps that ack
    from counting. The committed offset stays before them, and after the
    next rebalance (or restart) Faust's seek to it delivers them again."""
    for event in events:
        event.message.incref()


@dataclass(eq=False)
class Processing:
    app: faust.App
    settings: Settings
    metrics: Metrics
    processor: Processor
    progress: Progress
    rejects: DeadLetterSink

    def __post_init__(self) -> None:
        self.generation = 0  # bumped on every rebalance: a rebuild that spans one is thrown away
        self.holding: dict[tuple[str, int, int], faust.EventT] = {}  # events read, not applied yet
        n = self.settings.partitions
        self.alerts_topic = self.app.topic(topics.ALERTS, key_serializer="raw", value_serializer="raw", partitions=n)
        self.training = self.app.topic(topics.TRAINING, key_serializer="raw", value_serializer="raw", partitions=1)

    @property
    def books(self) -> dict[int, PartitionBook]:
        return self.processor.books

    async def process(self, stream: faust.StreamT) -> None:
        """Batches, not events: each batch is split by partition and handed to
        the processor, which writes each touched customer once.

        Faust acks a batch's events after this loop body returns, so the
        table writes of a batch are queued before its offsets can be
        committed (Faust flushes the producer before each commit):
        at-least-once, made exact by the state's source offsets and event ids.
        Writes to a table outside Faust's per-event iteration need the event
        whose partition they belong to: `writes_for` names one of that
        partition's events while its records are processed.
        """
        s = self.settings
        inputs = frozenset(topics.INPUT_TOPICS)
        # Faust's own check (before each message it hands to a stream) waits
        # and warns above 100 records. `backpressure` keeps the buffer under
        # our bound between batches; one batch adds at most two table writes
        # per event and visit (examples and alerts go in drained chunks), so
        # Faust's check sits above that and warns only if the bound breaks
        self.app.producer.buffer.max_messages = s.producer_buffer_max + 4 * (s.batch_max_events + max(s.sweep_max_visits, s.sweep_idle_visits))
        holding = self.holding
        backlog = backlog_by_highwater(self.progress.highwater)
        async for events in take_batches(stream, s.batch_max_events, s.batch_within_s, s.batch_catchup_s, backlog):
            if self.stopping(events):
                continue
            started = time.perf_counter()
            by_partition: dict[int, list[faust.EventT]] = {}
            for event in events:
                by_partition.setdefault(event.message.partition, []).append(event)
            n_events = 0
            for partition, group in by_partition.items():
                await self.ensure_book(partition)
                group = self.current(partition, group)
                if not group:
                    continue
                records = []
                for event in group:
                    msg = event.message
                    records.append(Record(msg.topic, partition, msg.offset, event.key, event.value, msg.headers or ()))
                    if msg.topic in inputs:
                        self.check_gap(msg.topic, partition, msg.offset)  # records it in `processed`
                        n_events += 1
                        # held until applied (see `release`): not committable before
                        msg.incref()
                        holding[(msg.topic, partition, msg.offset)] = event
                await self.apply(stream, partition, records, group[-1])
            # a slow input that caught up can release more than a batch of held
            # events: apply them a batch at a time, draining the producer between
            for partition, group in by_partition.items():
                while partition in self.processor.books and self.processor.more(partition):
                    await self.backpressure()
                    await self.apply(stream, partition, (), group[-1])
            if n_events:
                self.metrics.observe_processing(time.perf_counter() - started, n_events)
            await self.backpressure()

    def stopping(self, events: list[faust.EventT]) -> bool:
        """The worker is shutting down: leave `events` unapplied and never
        committable, for whoever reads the partition next.

        Faust stops the agents last: after the fetcher, after the tables
        (their stores closed) and after the producer buffer's flush, so a
        batch taken in that window was applied to closed stores with its
        changelog writes queued behind the flush. A leave by SIGTERM has
        twice ended with a committed offset past a state the changelog never
        got (docs/RELIABILITY.md, Scale-out); applying nothing once the stop
        has begun takes that window away. At-least-once as before: the
        batch is read again from the committed offset.
        """
        if not self.app.should_stop:
            return False
        leave_unacked(events)
        return True

    def check_gap(self, topic: str, partition: int, offset: int) -> None:
        """Count and log an input offset that skips ahead of the one before it.

        A partition's records reach the agent in offset order, and a
        rebalance starts the count again (Faust seeks to the committed
        offset, so the next record may be an earlier one: read again, not
        lost). A skip ahead means records that never reached this agent.
        Seen on 2026-12-01 where Faust emptied the stream buffers after the
        fetch had read past them (fixed in `offsets.Consumer`), and where two
        workers owned a partition at once on the embedded broker (the new
        owner's seek jumped over records the old owner had committed; open):
        docs/RELIABILITY.md, Scale-out. The warning carries the consumer's
        account of the partition (`offsets.Consumer.account`).
        """
        processed = self.progress.processed  # cleared on a rebalance (`Progress.forget`)
        last = processed.get((topic, partition))
        if last is not None and offset > last + 1:
            self.metrics.offset_gaps.labels(topic=topic).inc(offset - last - 1)
            account = getattr(getattr(self.app, "consumer", None), "account", None)  # (offsets.Consumer: where the records went)
            log.warning("%s[%s]: offsets %s..%s never reached the agent (consumer generation %s; fetch state %s)",
                        topic, partition, last + 1, offset - 1, self.app.consumer_generation_id,
                        account(faust.types.TP(topic, partition)) if account else "unknown")
        processed[(topic, partition)] = offset

    async def apply(self, stream: faust.StreamT, partition: int, records, anchor: faust.EventT) -> None:
        """One processor step on one partition, and what follows from it:
        alerts and examples sent, applied events acked, rejected ones
        dead-lettered. Table writes need an event of the partition they
        belong to (`writes_for`): *anchor*, one of this batch's."""
        out = Output()
        writes_for(anchor)
        self.processor.process(partition, records, out, sweep_limit=self.settings.sweep_max_visits)
        await self.send(out)
        await self.release(stream, out)
        for rec, rejection in out.rejected:
            await self.rejects.send(rec, rejection)

    async def release(self, stream: faust.StreamT, out: Output) -> None:
        """Ack the events the processor applied (and those it rejected).

        The processor applies events in event-time order across the input
        topics, so it may hold an event back until a slower topic catches
        up (`PartitionBook.release`). Every input event is referenced once
        more when it arrives, so Faust's ack of the batch does not make it
        committable; this ack, once it is applied, does. A held event is
        therefore never committed before it is applied: a crash or a
        rebalance redelivers it.
        """
        holding = self.holding
        for rec in itertools.chain(out.applied, (rec for rec, _ in out.rejected)):
            event = holding.pop((rec.topic, rec.partition, rec.offset), None)
            if event is not None:
                await stream.ack(event)

    async def send(self, out: Output) -> None:
        """Alerts and training examples to their topics; a long silence labels
        many snapshots at once, so they go in chunks, the producer drained
        between them (`backpressure`).

        Alerts go straight to the Kafka client (`force`: not attached to the
        batch's ack, not queued in Faust's producer buffer behind the
        batch's table writes), which took 110 ms off their p99 at 1,500
        events/s (bench/latency.py). They are at-least-once like the rest:
        a crash before the commit decides them again, and the alert rules
        (`alerts.decide`) keep the repeat to the same alert."""
        for key, value in out.alerts:
            await self.alerts_topic.send(key=key, value=value, force=True)
        chunk = self.settings.batch_max_events
        examples = out.examples
        for i in range(0, len(examples), chunk):
            if i:
                await self.backpressure()
            for key, value in examples[i:i + chunk]:
                self.training.send_soon(key=key, value=value)

    async def backpressure(self) -> None:
        """Take no more input while Faust's producer buffer holds more than a
        batch's worth of records: wait for it to drain instead of queueing
        without bound (a backlog replay would otherwise fill memory)."""
        buffer = self.app.producer.buffer
        limit = self.settings.producer_buffer_max
        while buffer.size > limit:
            await buffer.flush_atmost(buffer.size - limit)

    def current(self, partition: int, group: list[faust.EventT]) -> list[faust.EventT]:
        """The events of `group` fetched in the consumer's current generation,
        for a partition this worker owns; the others are left unapplied and
        unacked: after a rebalance Faust seeks every partition it assigns to
        its committed offset, so its owner, this worker or another, reads them
        again.

        A batch fills while a rebalance comes and goes. Applied, its events
        from before it broke exactness two ways: for a partition that moved,
        they wrote stale customer states to the changelog after the new owner
        had restored from it; for one that stayed, they ran ahead of the
        events the rebalance had dropped from the book unapplied (held for a
        slower topic), which then came again from the committed offset and
        were taken for redeliveries (a customer's offset for their topic was
        already past them). Seen in the scale-out test: a support ticket
        applied by neither owner (docs/RELIABILITY.md, Scale-out).
        """
        generation = self.app.consumer_generation_id
        if partition in self.progress.assigned_partitions():
            fresh = [e for e in group if e.message.generation_id == generation]
            if len(fresh) == len(group):
                return group
        else:
            fresh = []
        leave_unacked(e for e in group if e.message.generation_id != generation or not fresh)
        log.info("partition %s: %s events fetched before the last rebalance left to be read again",
                 partition, len(group) - len(fresh))
        return fresh

    async def ensure_book(self, partition: int) -> None:
        """Rebuild the books of every owned partition that has none, from the
        (recovered) customer table, yielding to the event loop between chunks."""
        if partition in self.processor.books:
            return
        generation = self.generation
        wanted = self.progress.assigned_partitions()
        if partition not in wanted:  # revoked: its events go to the new owner (`current`)
            return
        started = time.perf_counter()
        for _ in self.processor.rebuild(wanted, self.processor.customers.items(), chunk=self.settings.rebuild_chunk):
            await asyncio.sleep(0)
        if generation != self.generation:  # a rebalance came in between: rebuild again
            self.processor.books.clear()
            return await self.ensure_book(partition)
        log.info("rebuilt books of partitions %s in %.3f s", sorted(wanted), time.perf_counter() - started)

    def on_rebalance(self) -> None:
        """Ownership changed: drop every book; the next batch rebuilds it from the table."""
        self.generation += 1
        self.processor.books.clear()
        # held events are dropped unacked: Faust seeks back to the committed
        # offset, which is before them, and redelivers them
        self.holding.clear()

    # -- what the books say, for the clock, /metrics and /healthz --------------
    def worker_clock(self) -> float | None:
        clocks = [b.clock for b in self.books.values() if b.clock is not None]
        return max(clocks) if clocks else None

    def ledger_values(self):
        owned = self.progress.assigned_partitions()
        books = [b for p, b in self.books.items() if p in owned]
        clocks = [b.clock for b in books if b.clock is not None]
        if not clocks:
            return {}, None, len(owned), None
        clock = max(clocks)
        newest = [b.max_event_t for b in books if b.max_event_t is not None]
        return merge(b.ledger.values(day_of(clock)) for b in books), clock, len(owned), min(newest) if newest else None

    def describe(self) -> dict:
        """Per owned partition: its clock, which inputs are idle, what was processed (for /healthz)."""
        out = {}
        progress = self.progress
        for p in sorted(progress.assigned_partitions()):
            book = self.books.get(p)
            out[str(p)] = None if book is None else {
                "clock": None if book.clock is None else format_ts(book.clock),
                "idle_inputs": sorted(book.idle),
                "processed_offsets": {t: progress.processed.get((t, p)) for t in topics.INPUT_TOPICS},
                "highwaters": {t: progress.highwater(t, p) for t in topics.INPUT_TOPICS},
                "pending_visits": book.pending_visits(),
                "held_events": book.held_events(),
            }
        return out
