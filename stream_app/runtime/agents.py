"""Faust wiring: topics and tables in, the processor's results out.

One agent reads all three input topics (and the internal clock topic) as one
stream, partitioned by customer_id, so a customer's events are processed in
order by one worker and its state lives in the same partition number of the
`customers` table changelog. It reads them in batches and hands each
partition's records to `process.Processor`, which holds all the per-partition
logic and is tested without Kafka; here are only the Faust-specific parts
(batches, acks, backpressure, the partition of table writes), the trainer,
the model feed, the clock ticks and the web views.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import weakref

import faust
import orjson
from faust.serializers import codecs
from faust.streams import _current_event
from faust.types import TP
from prometheus_client import generate_latest

from ..config import Settings
from ..domain.kpis import merge
from ..domain.partition import PartitionBook
from ..domain.state import CustomerState, day_of
from ..ingest import dead_letters as dl
from ..ingest import sources
from ..ingest.contract import Rejection, format_ts, topic_for_type
from ..risk import snapshots
from ..risk.model import ChurnModel
from ..risk.scoring import RiskMemory
from . import topics
from .batches import backlog_by_highwater, take_batches
from .metrics import Metrics
from .process import Output, Processor, Record
from .security import kafka_client_kwargs, lookup_denied, signing_key
from .trainer import TrainerProcess
from .views import customer_view, raw_view, risk_view

log = logging.getLogger(__name__)


class _Utf8(codecs.Codec):
    def _dumps(self, s: str) -> bytes:
        return s.encode()

    def _loads(self, b: bytes) -> str:
        return b.decode()


class _StateCodec(codecs.Codec):
    def _dumps(self, s: CustomerState) -> bytes:
        return s.to_bytes()

    def _loads(self, b: bytes) -> CustomerState:
        return CustomerState.from_bytes(b)


class _RiskCodec(codecs.Codec):
    def _dumps(self, m: RiskMemory) -> bytes:
        return m.to_bytes()

    def _loads(self, b: bytes) -> RiskMemory:
        return RiskMemory.from_bytes(b)


codecs.register("utf8", _Utf8())
codecs.register("customer_state", _StateCodec())
codecs.register("risk_memory", _RiskCodec())


def _table(app: faust.App, settings: Settings, name: str, value_serializer: str) -> faust.Table:
    """A customer-keyed table whose changelog uses our codecs on both paths.

    Faust derives a table's serializers from key_type/value_type and falls
    back to JSON, ignoring its schema; it writes the changelog with the
    table's serializers and recovers with the changelog topic's. Both are set
    here, or a restarted worker recovers '"cus_1"' keys and dict values.
    """
    n = settings.partitions
    changelog = app.topic(
        topics.changelog_topic(settings, name), key_serializer="utf8", value_serializer=value_serializer,
        partitions=n, compacting=True, internal=True,
    )
    table = app.Table(name, partitions=n, changelog_topic=changelog, options=_store_options(settings),
                      schema=faust.Schema(key_serializer="utf8", value_serializer=value_serializer))
    table.key_serializer = "utf8"
    table.value_serializer = value_serializer
    return table


def _writes_for(event: faust.EventT) -> None:
    """Table writes from now on belong to `event`'s partition.

    A Faust table picks the changelog partition of a write (and the RocksDB
    store its database) from the current event, a context variable that
    Faust sets per event while a stream iterates. A batch is processed after
    that, so it is set here, in this task's context only. Not through
    `Stream._set_current_event`: that also rewrites the stream's own
    `current_event`, which `take_batches` reads for the next event it buffers
    (it then buffered one event twice and dropped the next).
    """
    _current_event.set(weakref.ref(event))


def _store_options(settings: Settings) -> dict | None:
    """RocksDB memory bounds: every table partition is a database of its own."""
    if not settings.store.startswith("rocksdb"):
        return None
    mb = 1024 * 1024
    return {"write_buffer_size": settings.rocksdb_write_buffer_mb * mb, "max_write_buffer_number": 2,
            "block_cache_size": settings.rocksdb_block_cache_mb * mb, "block_cache_compressed_size": 0}


class Pipeline:
    """The per-worker runtime: tables, the processor and metrics shared by agents, timer and views."""

    def __init__(self, app: faust.App, settings: Settings, metrics: Metrics | None = None) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.last_tick: dict[int, float] = {}
        self.processed: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset processed
        self.source_topics = frozenset(src.topic for src in sources.SOURCES.values())
        self.generation = 0  # bumped on every rebalance: a rebuild that spans one is thrown away
        self.holding: dict[tuple[str, int, int], faust.EventT] = {}  # events read, not applied yet
        n = settings.partitions
        self.customers = _table(app, settings, topics.CUSTOMERS_TABLE, "customer_state")
        self.risk = _table(app, settings, topics.RISK_TABLE, "risk_memory")
        self.alerts_topic = app.topic(topics.ALERTS, key_serializer="raw", value_serializer="raw", partitions=n)
        self.training = app.topic(topics.TRAINING, key_serializer="raw", value_serializer="raw", partitions=1)
        self.models_topic = app.topic(topics.MODELS, key_serializer="raw", value_serializer="raw", partitions=1)
        self.signing_key = signing_key(settings)  # signs published snapshots, verifies followed ones
        self.models_seen = asyncio.Event()  # set once the model feed has read churn.models to its end
        self.clock_name = topics.clock_topic(settings)
        self.source = app.topic(*topics.INPUT_TOPICS, self.clock_name, key_serializer="raw", value_serializer="raw", partitions=n)
        self.dlq = app.topic(topics.DLQ, key_serializer="raw", value_serializer="raw", partitions=n)
        # the adapters produce here, one topic object per input topic (keyed by customer, like producer.py)
        self.inputs = {t: app.topic(t, key_serializer="raw", value_serializer="raw", partitions=n) for t in topics.INPUT_TOPICS}
        self.clock_topic = app.topic(self.clock_name, key_serializer="raw", value_serializer="raw", partitions=n, internal=True)
        self.processor = Processor(settings, self.customers, self.risk, metrics=self.metrics, clock_topic=self.clock_name,
                                   caught_up=self.read_to_end)
        self.rules = self.processor.rules
        self.metrics.watch_ledgers(self.ledger_values)

    @property
    def model(self) -> ChurnModel:
        """The model this worker scores with (hot-swapped by the model feed)."""
        return self.processor.model

    @property
    def books(self) -> dict[int, PartitionBook]:
        return self.processor.books

    # -- the agent -------------------------------------------------------------
    async def process(self, stream: faust.StreamT) -> None:
        """Batches, not events: each batch is split by partition and handed to
        the processor, which writes each touched customer once.

        Faust acks a batch's events after this loop body returns, so the
        table writes of a batch are queued before its offsets can be
        committed (Faust flushes the producer before each commit):
        at-least-once, made exact by the state's source offsets and event ids.
        Writes to a table outside Faust's per-event iteration need the event
        whose partition they belong to: `_writes_for` names one of that
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
        backlog = backlog_by_highwater(self._highwater)
        async for events in take_batches(stream, s.batch_max_events, s.batch_within_s, s.batch_catchup_s, backlog):
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
                        self.processed[(msg.topic, partition)] = msg.offset
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

    async def apply(self, stream: faust.StreamT, partition: int, records, anchor: faust.EventT) -> None:
        """One processor step on one partition, and what follows from it:
        alerts and examples sent, applied events acked, rejected ones
        dead-lettered. Table writes need an event of the partition they
        belong to (`_writes_for`): *anchor*, one of this batch's."""
        out = Output()
        _writes_for(anchor)
        self.processor.process(partition, records, out, sweep_limit=self.settings.sweep_max_visits)
        await self.send(out)
        await self.release(stream, out)
        for rec, rejection in out.rejected:
            await self.dead_letter(rec, rejection)

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
        if partition in self.assigned_partitions():
            fresh = [e for e in group if e.message.generation_id == generation]
            if len(fresh) == len(group):
                return group
        else:
            fresh = []
        for event in group:
            if event.message.generation_id != generation or not fresh:
                event.message.incref()  # Faust acks the batch's events: this reference is never released
        log.info("partition %s: %s events fetched before the last rebalance left to be read again",
                 partition, len(group) - len(fresh))
        return fresh

    async def ensure_book(self, partition: int) -> None:
        """Rebuild the books of every owned partition that has none, from the
        (recovered) customer table, yielding to the event loop between chunks."""
        if partition in self.processor.books:
            return
        generation = self.generation
        wanted = self.assigned_partitions()
        if partition not in wanted:  # revoked: its events go to the new owner (`current`)
            return
        started = time.perf_counter()
        for _ in self.processor.rebuild(wanted, self.customers.items(), chunk=self.settings.rebuild_chunk):
            await asyncio.sleep(0)
        if generation != self.generation:  # a rebalance came in between: rebuild again
            self.processor.books.clear()
            return await self.ensure_book(partition)
        log.info("rebuilt books of partitions %s in %.3f s", sorted(wanted), time.perf_counter() - started)

    async def dead_letter(self, rec: Record, rejection: Rejection) -> None:
        source = {dl.SOURCE_TOPIC: rec.topic, dl.SOURCE_PARTITION: rec.partition, dl.SOURCE_OFFSET: rec.offset}
        headers = dl.headers(rejection.reason, rejection.detail, source, format_ts(time.time()))
        # a re-published record that is still wrong says where it was re-sent from
        headers += [(k, v) for k, v in (rec.headers or ()) if k == dl.REPUBLISHED_FROM]
        await self.dlq.send(key=rec.key, value=rec.value if rec.value is not None else b"", headers=headers)
        self.metrics.rejected.labels(topic=rec.topic, reason=rejection.reason).inc()
        # the reason and where, never the detail: it may quote customer data
        log.warning("dead-lettered %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset, rejection.reason)

    # -- the source adapters ----------------------------------------------------------
    async def adapt(self, source: sources.Source, stream: faust.StreamT) -> None:
        """One source topic: each record mapped (`sources.run`, pure) to
        contract events, produced to the input topics keyed by customer; what
        cannot be mapped is dead-lettered with the source topic. The record
        is acked after its events are sent, and Faust flushes the producer
        before it commits: at-least-once, and a record read twice produces
        the same event ids, which the worker drops as duplicates."""
        config = source.config(self.settings)
        counted = self.metrics.source_records
        for outcome in sources.OUTCOMES:
            counted.labels(source=source.name, outcome=outcome)
        async for event in stream.events():
            msg = event.message
            result = sources.run(source, event.value, config, self.settings.max_event_bytes)
            if isinstance(result, Rejection):
                rec = Record(msg.topic, msg.partition, msg.offset, event.key, event.value, msg.headers or ())
                await self.dead_letter(rec, result)
                counted.labels(source=source.name, outcome="dead_lettered").inc()
                self.processed[(msg.topic, msg.partition)] = msg.offset
                continue
            for ev in result.events:
                await self.inputs[topic_for_type(ev["type"])].send(key=ev["customer_id"].encode(), value=orjson.dumps(ev))
            self.processed[(msg.topic, msg.partition)] = msg.offset  # see `sources_read`
            counted.labels(source=source.name, outcome="mapped" if result.events else "ignored").inc()
            if not result.events:
                log.debug("%s[%s]@%s ignored: %s", msg.topic, msg.partition, msg.offset, result.ignored)

    # -- the trainer and the model feed ---------------------------------------------
    async def train(self, stream: faust.StreamT) -> None:
        """The agent on churn.training. Its one partition makes one worker of
        the group the trainer (Faust assigns it to one member); the records
        themselves are acked unread here and learnt by `run_trainer`, which
        reads them with a consumer of its own.

        Why not from this stream: Faust hands a consumer's records to its
        agents in fetch order, so while the input agent's buffer is full
        (any replay or backlog) the training records wait behind input
        records. Measured with bench/writes.py on the default population
        (1.28M events): the trainer had learnt 43,576 of 83,172 labels when
        the last event was processed."""
        async for _ in stream.events():
            pass

    def owns_training(self) -> bool:
        """This worker is assigned churn.training's one partition."""
        try:
            return TP(topics.TRAINING, 0) in self.app.consumer.assignment()
        except Exception:  # consumer not started yet
            return False

    async def run_trainer(self) -> None:
        """On the worker that owns churn.training: learn every labelled example
        and publish versioned snapshots (`train_while_owner`); elsewhere,
        look again every clock tick."""
        await self.models_seen.wait()
        while True:
            if self.owns_training():
                try:
                    await self.train_while_owner()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:  # the process could not start: try again at the next tick
                    log.exception("trainer: could not run the trainer process; trying again")
            await asyncio.sleep(self.settings.clock_tick_s)

    async def train_while_owner(self) -> None:
        """Run the trainer process (`stream_app.runtime.trainer`) while this worker owns
        churn.training, exporting what it reports; stop it when the partition
        moves away. It resumes from the newest snapshot this worker has read,
        so every example is learnt once per model lineage; what it has not
        published when stopped is dropped, and the next owner learns it."""
        child = TrainerProcess(self.settings, self.broker_url, self.latest_blob)
        log.info("trainer: started process %s for %s", child.process.pid, topics.TRAINING)
        try:
            while self.owns_training() and child.alive():
                self._trainer_reports(child.reports())
                await asyncio.sleep(self.settings.trainer_report_s)
        finally:
            self._trainer_reports(await child.stop())
        if child.process.exitcode not in (0, None):
            log.warning("trainer: process exited with %s; starting again from the newest snapshot", child.process.exitcode)

    def _trainer_reports(self, reports) -> None:
        m = self.metrics
        for r in reports:
            if r.learnt:
                m.model_labels.inc(r.learnt)
            for reason in r.rejected:
                m.rejected.labels(topic=topics.TRAINING, reason=reason).inc()
            if r.quality is not None:
                m.record_quality(r.quality)
            if r.dropped is not None:
                log.info("trainer: %s stopped at offset %s; %s labels unpublished were dropped", topics.TRAINING, r.learnt_to, r.dropped)

    latest_blob: bytes | None = None

    async def follow_models(self) -> None:
        """Every worker reads churn.models from the start (it is compacted) and
        scores with the newest snapshot; a hot swap is one assignment.

        Each record is decoded and checked (`snapshots.decode`: data, or a
        signed pickle verified before it is loaded); its version is the one
        inside the snapshot, not the record header. A refused record is
        logged, counted and skipped: scoring goes on with the model it has."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=topics.bootstrap_servers(self.broker_url), group_id=None, enable_auto_commit=False,
                                    **kafka_client_kwargs(self.settings))
        await consumer.start()
        try:
            tp = TopicPartition(topics.MODELS, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                end = await topics.end_of(consumer, tp)
                for msg in batch.get(tp, []):
                    got = snapshots.decode(msg.value, key=self.signing_key)
                    if isinstance(got, Rejection):
                        self.metrics.snapshots_rejected.labels(reason=got.reason).inc()
                        log.warning("refused the model snapshot at %s@%s: %s (%s); scoring goes on with version %s",
                                    topics.MODELS, msg.offset, got.reason, got.detail, self.model.version)
                        continue
                    if got.model.version > self.model.version:
                        self.processor.model = got.model
                        self.latest_blob = msg.value
                        self.metrics.model_version.set(self.model.version)
                        self.metrics.model_created.set(self.model.created_at or 0.0)
                        self.metrics.model_ready.set(1.0 if self.model.ready else 0.0)
                        candidates = self.model.candidates()
                        if candidates:
                            self.metrics.record_candidates(candidates, self.model.meta().get("switches", 0))
                if not self.models_seen.is_set() and await consumer.position(tp) >= end:
                    self.models_seen.set()
        finally:
            await consumer.stop()

    # -- partition books ---------------------------------------------------------
    def assigned_partitions(self) -> set[int]:
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # consumer not started yet
            return set()
        inputs = set(topics.INPUT_TOPICS) | {self.clock_name}
        return {tp.partition for tp in assignment if tp.topic in inputs}

    def on_rebalance(self) -> None:
        """Ownership changed: drop every book; the next batch rebuilds it from the table."""
        self.generation += 1
        self.processor.books.clear()
        # held events are dropped unacked: Faust seeks back to the committed
        # offset, which is before them, and redelivers them
        self.holding.clear()
        self.last_tick.clear()
        self.processed.clear()

    def describe(self) -> dict:
        """Per owned partition: its clock, which inputs are idle, what was processed (for /healthz)."""
        out = {}
        for p in sorted(self.assigned_partitions()):
            book = self.books.get(p)
            out[str(p)] = None if book is None else {
                "clock": None if book.clock is None else format_ts(book.clock),
                "idle_inputs": sorted(book.idle),
                "processed_offsets": {t: self.processed.get((t, p)) for t in topics.INPUT_TOPICS},
                "highwaters": {t: self._highwater(t, p) for t in topics.INPUT_TOPICS},
                "pending_visits": book.pending_visits(),
                "held_events": book.held_events(),
            }
        return out

    def _highwater(self, topic: str, partition: int) -> int | None:
        return self.app.consumer.highwater(TP(topic, partition))

    def worker_clock(self) -> float | None:
        clocks = [b.clock for b in self.books.values() if b.clock is not None]
        return max(clocks) if clocks else None

    def ledger_values(self):
        owned = self.assigned_partitions()
        books = [b for p, b in self.books.items() if p in owned]
        clocks = [b.clock for b in books if b.clock is not None]
        if not clocks:
            return {}, None, len(owned), None
        clock = max(clocks)
        newest = [b.max_event_t for b in books if b.max_event_t is not None]
        return merge(b.ledger.values(day_of(clock)) for b in books), clock, len(owned), min(newest) if newest else None

    # -- the clock timer ---------------------------------------------------------
    def read_to_end(self, topic: str, partition: int) -> bool:
        """This input topic-partition has been *processed* up to its high-water mark.

        Not the consumer's fetch position: records prefetched into the buffer
        are not processed yet, and counting them would let the clock run
        ahead of state. With nothing processed since assignment, the offset
        committed before (Faust keeps it; no public accessor) tells whether
        anything is left to read.
        """
        consumer = self.app.consumer
        tp = TP(topic, partition)
        highwater = self._highwater(topic, partition)
        if highwater is None:
            return False
        if highwater == 0:
            return True
        done = self.processed.get((topic, partition))
        if done is not None:
            return done + 1 >= highwater
        committed = getattr(consumer, "_committed_offset", {}).get(tp)
        return committed is not None and committed >= highwater

    async def send_ticks(self) -> None:
        """Move every owned partition to the worker's clock, through Kafka.

        Only partitions idle for `idle_partition_s` are moved: one that is
        still working through a backlog must keep its own clock, or its
        customers would lapse before their pending events are read (the
        watermark idleness rule of Flink and Kafka Streams).
        The tick is a message on the partition's own number of `<app_id>-clock`,
        so the sweep it triggers runs inside the stream, in order with that
        partition's events, and its table writes go to the right changelog
        partition. A missing book is rebuilt the same way after a rebalance.
        """
        idle_since = time.monotonic() - self.settings.idle_partition_s
        upstream_read = self.sources_read()
        owned = sorted(self.assigned_partitions())
        changed: set[int] = set()
        for p in owned:
            book = self.books.get(p)
            if book is not None and self.processor.mark_caught_up(p):
                changed.add(p)
        clock = self.worker_clock()
        for p in owned:
            book = self.books.get(p)
            everything_read = upstream_read and book is not None and len(book.idle) == len(book.inputs)
            if book is not None and p not in changed:
                if book.last_event_wall > idle_since or len(book.idle) < len(book.inputs):
                    continue
                # an idle partition with visits its last sweep's budget left
                # due is ticked again, at the same clock: else they wait for
                # its next event (the end of a replay left 530 CDNOW lapses
                # unapplied at a clock past them)
                if not book.has_due():
                    if not everything_read or clock is None or (book.clock is not None and book.clock >= clock):
                        continue
                    if self.last_tick.get(p) == clock:
                        continue
            if everything_read:
                self.last_tick[p] = clock
            await self.clock_topic.send(value=orjson.dumps({"t": clock if everything_read else None}), partition=p)

    def sources_read(self) -> bool:
        """Every source topic partition this worker owns is mapped to its end.

        An adapter's events reach an input partition only after the adapter
        has read them, so an input partition read to its end can still have
        events waiting upstream. Moved to the worker's clock then, its due
        visits ran before those events: in one CI run a customer whose
        `invoice.paid` was still on churn.source.stripe churned for the
        failed payment before it (`test_sources_e2e`, 1 of 720 tests).
        """
        source_topics = self.source_topics
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # consumer not started yet
            return False
        return all(self.read_to_end(tp.topic, tp.partition) for tp in assignment if tp.topic in source_topics)


def _adapter(app: faust.App, pipeline: Pipeline, source: sources.Source) -> None:
    """The agent of one source topic (a function per source: the agent's name and topic are its own)."""
    topic = app.topic(source.topic, key_serializer="raw", value_serializer="raw", partitions=pipeline.settings.partitions)

    async def adapt(stream):
        await pipeline.adapt(source, stream)

    app.agent(topic, name=f"churn-source-{source.name}")(adapt)


def register(app: faust.App, settings: Settings, broker_url: str, metrics: Metrics | None = None) -> Pipeline:
    """Attach the pipeline's agents, timer, tasks and web views to `app`."""
    pipeline = Pipeline(app, settings, metrics)
    pipeline.broker_url = broker_url

    @app.agent(pipeline.training, name="churn-train")
    async def train(stream):
        await pipeline.train(stream)

    @app.task
    async def models():
        await pipeline.follow_models()

    @app.task
    async def trainer():
        await pipeline.run_trainer()

    @app.agent(pipeline.source, name="churn-process")
    async def process(stream):
        await pipeline.process(stream)

    for source in sources.SOURCES.values():
        _adapter(app, pipeline, source)

    @app.timer(settings.clock_tick_s)
    async def ticks():
        await pipeline.send_ticks()

    @app.on_partitions_assigned.connect
    async def assigned(sender, assigned, **kwargs):
        pipeline.on_rebalance()

    @app.on_partitions_revoked.connect
    async def revoked(sender, revoked, **kwargs):
        pipeline.on_rebalance()

    @app.page("/metrics")
    async def metrics_page(web, request):
        body = generate_latest(pipeline.metrics.registry)
        return web.bytes(body, content_type="text/plain", headers={"X-Content-Format": "prometheus-text-0.0.4"})

    def require_token(view):
        """Checked before the request is forwarded to the owning worker (which checks again)."""
        async def guarded(web, request, *args, **kwargs):
            denied = lookup_denied(settings.lookup_token, request.headers.get("Authorization"), raw=bool(request.query.get("raw")))
            if denied is not None:
                status, message = denied
                return web.json({"error": message}, status=status, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
            return await view(web, request, *args, **kwargs)
        return guarded

    @app.page("/customers/{customer_id}")
    @require_token
    @app.table_route(table=pipeline.customers, match_info="customer_id")
    async def lookup(web, request, customer_id):
        st = pipeline.customers.get(customer_id)
        if st is None:
            return web.json({"error": f"unknown customer {customer_id!r}"}, status=404)
        if request.query.get("raw"):  # the table value itself, for debugging a fingerprint mismatch
            return web.bytes(raw_view(st), content_type="application/json")
        view = customer_view(st, pipeline.worker_clock(), pipeline.rules)
        memory = pipeline.risk.get(customer_id)
        now = pipeline.worker_clock() or st.last_event_t or 0.0
        if st.watched(now, pipeline.rules):
            view.update(risk_view(pipeline.processor, st, now))
        if memory is not None:
            view["label_snapshots_waiting"] = memory.labels.size
        return web.json(view)

    @app.page("/healthz")
    async def health(web, request):
        return web.json({"ok": True, "partitions": pipeline.describe()})

    pipeline.agent = process
    return pipeline
