"""Faust's table recovery, reading its changelog queue in bulk.

Faust's `Recovery._slurp_changelogs` handles one changelog record at a time:
an `asyncio.wait_for` around each queue read (a timer per record), and after
each record `need_recovery()`, which rebuilds a counter over every changelog
partition to see whether the restore is over. A worker restoring a million
customers (two records each) spends most of its restore there: about 100 µs
a record, 190 s for a million customers.

`Recovery` here does the same work per record (offsets, buffers, batches
applied to the table, the change hook), but takes every record already in the
queue in one go, waits with a timeout only when the queue is empty, and
checks for the end of the restore once per drained run instead of once per
record. What the table holds when recovery ends is the same.

Even so, Faust's way to the queue costs ~95 µs a record on this machine (a
message object, the conductor's lock, `wait_first`'s two tasks, an event and
a queue per record), where a plain aiokafka consumer reads the same
changelog at ~180,000 records/s. So a memory-store partition that is to be
read from its start (a cold start: nothing of it in memory) is first read
by a consumer of our own, applied to the store as Faust would apply it (in
offset order; a tombstone deletes), up to the high-water mark Faust has
just taken (`bulk_load`); Faust then reads only what was written since.
Standby partitions and RocksDB stores (which keep their own offsets) go
Faust's way.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic

from faust.serializers import codecs
from faust.stores import memory as faust_memory
from faust.tables import manager as faust_manager
from faust.tables import recovery as faust_recovery
from mode import Service

log = logging.getLogger(__name__)

DRAIN = 2000  # records taken from the queue before the end of the restore is checked again


class Recovery(faust_recovery.Recovery):
    async def _build_offsets(self, consumer, tps, destination, title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title == "active":
            await self.bulk_load(tps, destination)

    async def bulk_load(self, tps, offsets) -> None:
        """Read the memory-store changelog partitions that recovery would
        read from their start with a consumer of our own, apply them to the
        store, and move `offsets` (Faust's start of reading) to where we
        stopped. Bounded by half Faust's request timeout, which wraps this
        step; what is left then goes Faust's way."""
        from aiokafka import TopicPartition

        from . import kafka_io
        from .security import kafka_client_kwargs
        from .topics import bootstrap_servers

        highwaters = self.active_highwaters
        todo = {}
        for tp in tps:
            table = self.tp_to_table.get(tp)
            start, last = offsets.get(tp), highwaters.get(tp)
            if (table is None or not isinstance(table.data, faust_memory.Store) or last is None or last < 0
                    or start is None or start >= last):
                continue
            todo[tp] = (table, start, last)
        if not todo:
            return
        settings = self.app.churn_settings
        generation = self.app.consumer_generation_id
        budget = monotonic() + float(self.app.conf.broker_request_timeout) / 2
        bootstrap = ",".join(bootstrap_servers(str(url)) for url in self.app.conf.broker)
        parts = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
        done = {tp: todo[tp][1] for tp in todo}  # the last offset applied
        started, n = monotonic(), 0
        async with kafka_io.consumer(bootstrap, **(kafka_client_kwargs(settings) if settings is not None else {})) as reader:
            scan = kafka_io.Scan(reader, {kp: todo[tp][1] + 1 for kp, tp in parts.items()},
                                 to={kp: todo[tp][2] for kp, tp in parts.items()}, timeout_ms=500, max_records=20_000,
                                 stop=lambda: self.should_stop, deadline=budget)
            async for batch in scan:
                for kp, records in batch.items():
                    tp = parts[kp]
                    table = todo[tp][0]
                    store = table.data
                    data, key_partition = store.data, store._key_partition
                    loads = codecs.get_codec(table.changelog_topic.value_serializer).loads
                    for rec in records:  # up to the high-water mark Faust took (`to`)
                        key = table._to_key(rec.key.decode())
                        if rec.value is None:
                            data.pop(key, None)
                            key_partition.pop(key, None)
                        else:
                            data[key] = table._to_value(loads(rec.value))
                            key_partition[key] = tp.partition
                        done[tp] = rec.offset
                        n += 1
        waiting = scan.pending
        if self.app.consumer_generation_id != generation:
            return  # a rebalance meanwhile: what was read stays in the store, Faust reads it all again
        for tp, last_applied in done.items():
            offsets[tp] = last_applied
        log.info("recovery: read %s changelog records of %s partitions directly in %.1f s%s", n, len(todo),
                 monotonic() - started, "" if not waiting else f"; {len(waiting)} left to Faust's recovery (time budget)")

    @Service.task
    async def _slurp_changelogs(self) -> None:
        queue = self.tables.changelog_queue
        tp_to_table = self.tp_to_table
        active_tps, standby_tps = self.active_tps, self.standby_tps
        active_offsets, standby_offsets = self.active_offsets, self.standby_offsets
        buffers, buffer_sizes = self.buffers, self.buffer_sizes

        def maybe_end() -> None:
            if self.in_recovery and not self.need_recovery():
                self.flush_buffers()  # apply anything still buffered
                self._set_recovery_ended()
                self.signal_recovery_end.set()

        while not self.should_stop:
            self.signal_recovery_end.clear()
            try:
                first = await asyncio.wait_for(queue.get(), timeout=5.0)
            except asyncio.TimeoutError:
                if self.should_stop:
                    return
                maybe_end()
                continue
            events = [first]
            while len(events) < DRAIN:
                try:
                    events.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            now = monotonic()
            for event in events:
                message = event.message
                tp = message.tp
                offset = message.offset
                if tp in active_tps:
                    offsets, received, size_of = active_offsets, self._active_events_received_at, "recovery_buffer_size"
                elif tp in standby_tps:
                    offsets, received, size_of = standby_offsets, self._standby_events_received_at, "standby_buffer_size"
                else:  # Faust warns and (by a bug) applies it to the previous table; skip it
                    log.warning("recovery: record of a partition neither active nor standby: %s@%s", tp, offset)
                    continue
                table = tp_to_table[tp]
                bufsize = buffer_sizes.get(tp)
                if bufsize is None:
                    bufsize = buffer_sizes[tp] = getattr(table, size_of)
                received[tp] = now
                seen = offsets.get(tp)
                if seen is None or offset > seen:
                    offsets[tp] = offset
                    buf = buffers[table]
                    buf.append(event)
                    await table.on_changelog_event(event)
                    if len(buf) >= bufsize:
                        table.apply_changelog_batch(buf)
                        buf.clear()
                        self._last_flush_at = now
            self._last_active_event_processed_at = monotonic()
            maybe_end()


class TableManager(faust_manager.TableManager):
    """Faust's table manager, recovering with `Recovery` (the app's `TableManager` setting),
    and with a changelog queue that a rebalance does not empty.

    Faust creates the queue with `clear_on_resume=True`, so every time its
    flow control resumes (twice in each recovery) the changelog records read
    but not yet applied are thrown away, while the fetch has moved past them.
    An active partition is read to its end before that can matter; a
    standby reads on, so it lost the records that were in the queue and
    applied the ones after: its store held the changelog's end offset with
    keys missing, and, promoted to active, the RocksDB store started from
    that offset and never had them (docs/RELIABILITY.md, Scale-out: 8
    customers unknown to the group in 2 of 11 runs). Kept, the queue is
    applied in order: a record is applied only above the offset its
    partition has reached (`Recovery._slurp_changelogs`), so what a new
    recovery reads again after its seek is skipped, and a record of a
    partition this worker no longer has is dropped.
    """

    @property
    def changelog_queue(self):
        if self._changelog_queue is None:
            self._changelog_queue = self.app.FlowControlQueue(maxsize=self.app.conf.stream_buffer_maxsize,
                                                              clear_on_resume=False)
        return self._changelog_queue

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
