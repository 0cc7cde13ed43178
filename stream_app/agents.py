"""Thin Faust wiring: input topics -> contract -> state -> ledger and metrics.

One agent reads all three input topics (and the internal clock topic) as one
stream, partitioned by customer_id, so a customer's events are processed in
order by one worker and its state lives in the same partition number of the
`customers` table changelog. Everything here only moves data between the pure
steps (`contract.decode`, `state.apply`, `state.advance`, `PartitionBook`) and
Kafka; the logic is in those modules and tested without Kafka.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import faust
import orjson
from faust.serializers import codecs
from prometheus_client import generate_latest

from . import topics
from .config import Settings
from .contract import Limits, Rejection, decode, format_ts
from .kpis import merge
from .metrics import Metrics
from .partition import PartitionBook
from .state import CustomerState, advance, apply, day_of, new_state, next_deadline, prune
from .state import Rules
from .views import customer_view

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


codecs.register("utf8", _Utf8())
codecs.register("customer_state", _StateCodec())


class Pipeline:
    """The per-worker runtime: tables, books and metrics shared by agent, timer and views."""

    def __init__(self, app: faust.App, settings: Settings, metrics: Metrics | None = None) -> None:
        self.app = app
        self.settings = settings
        self.rules = Rules.from_settings(settings)
        self.windows = tuple(settings.windows_days)
        self.limits = Limits(max_bytes=settings.max_event_bytes, max_future_s=settings.max_future_s)
        self.metrics = metrics or Metrics()
        self.books: dict[int, PartitionBook] = {}
        self.last_tick: dict[int, float] = {}
        self.processed: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset processed
        n = settings.partitions
        # Faust derives a table's serializers from key_type/value_type and falls
        # back to JSON, ignoring its schema; it writes the changelog with the
        # table's serializers and recovers with the changelog topic's. Both are
        # set here, or a restarted worker recovers '"cus_1"' keys and dict values.
        changelog = app.topic(
            topics.changelog_topic(settings, topics.CUSTOMERS_TABLE),
            key_serializer="utf8", value_serializer="customer_state",
            partitions=n, compacting=True, internal=True,
        )
        self.customers = app.Table(
            topics.CUSTOMERS_TABLE, partitions=n, changelog_topic=changelog,
            schema=faust.Schema(key_serializer="utf8", value_serializer="customer_state"),
        )
        self.customers.key_serializer = "utf8"
        self.customers.value_serializer = "customer_state"
        self.clock_name = topics.clock_topic(settings)
        self.source = app.topic(*topics.INPUT_TOPICS, self.clock_name, key_serializer="raw", value_serializer="raw", partitions=n)
        self.dlq = app.topic(topics.DLQ, key_serializer="raw", value_serializer="raw", partitions=n)
        self.clock_topic = app.topic(self.clock_name, key_serializer="raw", value_serializer="raw", partitions=n, internal=True)
        self.metrics.watch_ledgers(self.ledger_values)

    # -- the agent -------------------------------------------------------------
    async def process(self, stream: faust.StreamT) -> None:
        metrics = self.metrics
        async for event in stream.events():
            msg = event.message
            if msg.topic == self.clock_name:
                self.on_tick(msg.partition, event.value)
                continue
            started = time.perf_counter()
            self.processed[(msg.topic, msg.partition)] = msg.offset
            result = decode(msg.topic, event.key, event.value, now=time.time(), limits=self.limits)
            if isinstance(result, Rejection):
                await self.dead_letter(event, result)
                continue
            effects = self.on_event(msg.topic, msg.partition, result)
            metrics.record(msg.topic, effects)
            metrics.latency.observe(time.perf_counter() - started)

    def on_event(self, topic: str, partition: int, ev: dict):
        book = self.book(partition)
        book.observe(ev["_t"], topic)
        book.last_event_wall = time.monotonic()
        self.sweep(book)
        cid = ev["customer_id"]
        st = self.customers.get(cid)
        if st is None:
            st = new_state(cid, partition)
        before = book.before(st)
        st.partition = partition
        st, effects = apply(st, ev, self.rules, book.clock)
        if not effects.duplicate:
            self.customers[cid] = st
            book.after(before, st)
        self.metrics.lag.set(time.time() - (book.max_event_t or ev["_t"]))
        return effects

    def sweep(self, book: PartitionBook) -> None:
        """Apply time-driven transitions (cancellations taking effect, grace
        periods ending, customers lapsing) for the customers due by the clock."""
        clock = book.clock
        if clock is None:
            return
        for cid in book.pop_due(clock):
            st = self.customers.get(cid)
            if st is None or st.partition != book.partition:
                continue
            deadline = next_deadline(st, self.rules)
            if deadline is None:
                continue
            if deadline > clock:
                book.due.setdefault(day_of(deadline), set()).add(cid)
                continue
            before = book.before(st)
            st, effects = advance(st, clock, self.rules)
            prune(st, clock, self.rules)
            self.customers[cid] = st
            book.after(before, st)
            self.metrics.record_effects(effects)

    def on_tick(self, partition: int, payload: bytes) -> None:
        book = self.book(partition)
        try:
            t = orjson.loads(payload).get("t")
        except orjson.JSONDecodeError:
            return
        if isinstance(t, (int, float)):
            book.raise_to(float(t))
        self.sweep(book)
        book.fold()

    async def dead_letter(self, event: faust.EventT, rejection: Rejection) -> None:
        msg = event.message
        headers = [
            ("churnmon.error.reason", rejection.reason.encode()),
            ("churnmon.error.detail", rejection.detail.encode()[:1000]),
            ("churnmon.source.topic", msg.topic.encode()),
            ("churnmon.source.partition", str(msg.partition).encode()),
            ("churnmon.source.offset", str(msg.offset).encode()),
            ("churnmon.error.at", format_ts(time.time()).encode()),
        ]
        await self.dlq.send(key=event.key, value=event.value if event.value is not None else b"", headers=headers)
        self.metrics.rejected.labels(topic=msg.topic, reason=rejection.reason).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, rejection.detail)

    # -- partition books ---------------------------------------------------------
    def assigned_partitions(self) -> set[int]:
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # consumer not started yet
            return set()
        inputs = set(topics.INPUT_TOPICS) | {self.clock_name}
        return {tp.partition for tp in assignment if tp.topic in inputs}

    def book(self, partition: int) -> PartitionBook:
        book = self.books.get(partition)
        if book is None:
            self.rebuild(self.assigned_partitions() | {partition})
            book = self.books[partition]
        return book

    def rebuild(self, partitions: Iterable[int]) -> None:
        """Derive the books of `partitions` from the (recovered) customer table, in one scan."""
        wanted = [p for p in partitions if p not in self.books]
        if not wanted:
            return
        started = time.perf_counter()
        fresh = {p: PartitionBook(p, self.rules, self.windows, self.settings.allowed_lateness_s, topics.INPUT_TOPICS) for p in wanted}
        for _, st in self.customers.items():
            book = fresh.get(st.partition)
            if book is not None:
                book.load(st)
        self.books.update(fresh)
        log.info("rebuilt books of partitions %s in %.3f s", sorted(wanted), time.perf_counter() - started)

    def on_rebalance(self) -> None:
        """Ownership changed: drop every book; the next event or tick rebuilds it from the table."""
        self.books.clear()
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
                "due_days": len(book.due),
            }
        return out

    def _highwater(self, topic: str, partition: int) -> int | None:
        from faust.types import TP

        return self.app.consumer.highwater(TP(topic, partition))

    def worker_clock(self) -> float | None:
        clocks = [b.clock for b in self.books.values() if b.clock is not None]
        return max(clocks) if clocks else None

    def ledger_values(self):
        owned = self.assigned_partitions()
        books = [b for p, b in self.books.items() if p in owned]
        clocks = [b.clock for b in books if b.clock is not None]
        if not clocks:
            return {}, None, len(owned)
        clock = max(clocks)
        return merge(b.ledger.values(day_of(clock)) for b in books), clock, len(owned)

    # -- the clock timer ---------------------------------------------------------
    async def caught_up(self, topic: str, partition: int) -> bool:
        """This input topic-partition has been *processed* up to its high-water mark.

        Not the consumer's fetch position: records prefetched into the buffer
        are not processed yet, and counting them would let the clock run
        ahead of state. With nothing processed since assignment, the offset
        committed before (Faust keeps it; no public accessor) tells whether
        anything is left to read.
        """
        from faust.types import TP

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
        owned = sorted(self.assigned_partitions())
        changed: set[int] = set()
        for p in owned:
            book = self.books.get(p)
            if book is None:
                continue
            for topic in book.inputs:
                if topic not in book.idle and await self.caught_up(topic, p):
                    book.idle.add(topic)
                    changed.add(p)
        clock = self.worker_clock()
        for p in owned:
            book = self.books.get(p)
            if book is not None and p not in changed:
                if clock is None or (book.clock is not None and book.clock >= clock):
                    continue
                if book.last_event_wall > idle_since or len(book.idle) < len(book.inputs):
                    continue
                if self.last_tick.get(p) == clock:
                    continue
            self.last_tick[p] = clock
            everything_read = book is not None and len(book.idle) == len(book.inputs)
            await self.clock_topic.send(value=orjson.dumps({"t": clock if everything_read else None}), partition=p)


def register(app: faust.App, settings: Settings, metrics: Metrics | None = None) -> Pipeline:
    """Attach the pipeline's agent, timer and web views to `app`."""
    pipeline = Pipeline(app, settings, metrics)

    @app.agent(pipeline.source, name="churn-process")
    async def process(stream):
        await pipeline.process(stream)

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

    @app.page("/customers/{customer_id}")
    @app.table_route(table=pipeline.customers, match_info="customer_id")
    async def lookup(web, request, customer_id):
        st = pipeline.customers.get(customer_id)
        if st is None:
            return web.json({"error": f"unknown customer {customer_id!r}"}, status=404)
        return web.json(customer_view(st, pipeline.worker_clock(), pipeline.rules))

    @app.page("/healthz")
    async def health(web, request):
        return web.json({"ok": True, "partitions": pipeline.describe()})

    pipeline.agent = process
    return pipeline
