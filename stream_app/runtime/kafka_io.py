"""Reading a range of a topic, and producing a list of records, outside Faust.

The CLI's dead letters, table recovery's bulk read, the probe for where a
partition truly ends, and the tests and benches that check what landed on a
topic all read the same way: a consumer without a group (nothing committed,
no rebalance to wait for), partitions assigned, a seek, fetches until each
partition is done, stop. It is written once here, so the embedded broker's
quirks (stream_app/tools/broker.py) are handled once:

- where a partition ends is read from a fetch (`end_of`): its ListOffsets
  answer lags a batch;
- a consumer knows only the topics its first metadata request saw; a topic
  created since is unknown until a refresh (`partitions`).

`Scan` is the loop; `read` collects a topic; `fetched_ends` and
`listed_ends` say where partitions end; `producer` and `send` are the
writing side, for lists of records known up front.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from time import monotonic
from typing import Any, NamedTuple, Union

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

BEGINNING = "beginning"  # a Scan start: the partition's first record
END = "end"  # a Scan start: the partition's end when the scan starts; a Scan end: the end a fetch reports

Start = Union[int, str]  # an offset, BEGINNING or END


@contextlib.asynccontextmanager
async def consumer(bootstrap: str, *topics: str, **client_kwargs: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a group (unless `group_id` is given), stopped
    on the way out, also when starting failed (aiokafka warns about an unclosed
    consumer otherwise). `topics`: subscribe to them instead of assigning."""
    c = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, **{"group_id": None, "enable_auto_commit": False, **client_kwargs})
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


@contextlib.asynccontextmanager
async def producer(bootstrap: str, **client_kwargs: Any) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer, stopped (what it buffered sent) on the way out."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, **client_kwargs)
    try:
        await p.start()
        yield p
    finally:
        await p.stop()


async def partitions(c: AIOKafkaConsumer, topic: str, numbers: Iterable[int] | None = None) -> list[TopicPartition]:
    """The topic's partitions, in order (or those `numbers`). A consumer's
    metadata is what it fetched at start: a topic created since (the dead
    letters of a worker started after it) needs a refresh to be seen."""
    if numbers is None:
        known = c.partitions_for_topic(topic) or set()
        if not known:
            await c._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
            known = c.partitions_for_topic(topic) or set()
        numbers = sorted(known)
    return [TopicPartition(topic, p) for p in numbers]


async def end_of(c: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """Where a partition ends, as the last fetch reported it (`end_offsets`
    can lag a batch on the embedded broker: see broker.py). Before any fetch
    has answered (an empty partition never returns records) it falls back to
    `end_offsets`, which is exact for an empty partition."""
    end = c.highwater(tp)
    if end is None:
        end = (await c.end_offsets([tp]))[tp]
    return end


class Scan:
    """Fetch batches from partitions, each from its start to its end.

    `start`: partition -> offset, BEGINNING or END (its end now, pinned before
    the first fetch). `to`: END, done when a partition's position reaches the
    end a fetch reports; a mapping partition -> last offset to read (records
    after it are dropped from the batches); or None, never done (a tail).
    The scan also ends when `stop()` is true or at `deadline` (time.monotonic);
    `pending` then holds the partitions not done.

    Iterating yields every fetch's `{partition: records}`, empty ones too (a
    tail counts its idle time by them)."""

    def __init__(self, c: AIOKafkaConsumer, start: Mapping[TopicPartition, Start], *,
                 to: str | Mapping[TopicPartition, int] | None = END, timeout_ms: int = 1000, max_records: int | None = None,
                 stop: Callable[[], bool] = lambda: False, deadline: float | None = None) -> None:
        self.consumer, self.start, self.to = c, dict(start), to
        self.timeout_ms, self.max_records, self.stop, self.deadline = timeout_ms, max_records, stop, deadline
        self.pending: set[TopicPartition] = set(self.start)
        self._sought = False

    async def at_end(self, tp: TopicPartition) -> bool:
        """The partition's position has reached the end a fetch reports."""
        return await self.consumer.position(tp) >= await end_of(self.consumer, tp)

    async def _done(self, tp: TopicPartition) -> bool:
        if self.to == END:
            return await self.at_end(tp)
        return await self.consumer.position(tp) > self.to[tp]

    async def seek(self) -> None:
        """Assign and position the partitions (iterating does it first if
        not done yet): a tail from END pins "now" here, before what it is to see is sent."""
        if self._sought:
            return
        self._sought = True
        c = self.consumer
        c.assign(list(self.start))
        for tp, at in self.start.items():
            if at == BEGINNING:
                await c.seek_to_beginning(tp)
            elif at == END:
                await c.seek_to_end(tp)
                await c.position(tp)  # pin "the end" now, not at the first fetch
            else:
                c.seek(tp, at)

    async def __aiter__(self) -> AsyncIterator[dict[TopicPartition, list]]:
        await self.seek()
        c, last = self.consumer, self.to if isinstance(self.to, Mapping) else None
        while self.pending and not self.stop() and (self.deadline is None or monotonic() < self.deadline):
            batch = await c.getmany(*self.pending, timeout_ms=self.timeout_ms, max_records=self.max_records)
            if last is not None:
                batch = {tp: [r for r in records if r.offset <= last[tp]] for tp, records in batch.items()}
            yield batch
            for tp in list(self.pending) if self.to is not None else ():
                if await self._done(tp):
                    self.pending.discard(tp)


async def read(bootstrap: str, topic: str, *, numbers: Iterable[int] | None = None, count: int | None = None,
               timeout_s: float | None = None, timeout_ms: int = 1000, **client_kwargs: Any) -> list:
    """The records of `topic` (or of its partitions `numbers`) from the
    beginning, partition after partition, each in offset order: to the end a
    fetch reports; or, given `count`, until at least that many have arrived,
    waiting for them at most `timeout_s` (then what came)."""
    async with consumer(bootstrap, **client_kwargs) as c:
        tps = await partitions(c, topic, numbers)
        got: dict[TopicPartition, list] = {tp: [] for tp in tps}
        n = 0
        scan = Scan(c, dict.fromkeys(tps, BEGINNING), to=END if count is None else None, timeout_ms=timeout_ms,
                    stop=lambda: count is not None and n >= count,
                    deadline=None if timeout_s is None else monotonic() + timeout_s)
        async for batch in scan:
            for tp, records in batch.items():
                got[tp].extend(records)
                n += len(records)
    return [r for tp in tps for r in got[tp]]


async def listed_ends(bootstrap: str, tps: Iterable[TopicPartition], **client_kwargs: Any) -> dict[TopicPartition, int]:
    """Each partition's end as ListOffsets answers it: what Faust's recovery
    uses on Kafka; a batch short on the embedded broker (`fetched_ends`)."""
    async with consumer(bootstrap, **client_kwargs) as c:
        return await c.end_offsets(list(tps))


async def fetched_ends(bootstrap: str, ends: dict, timeout_s: float = 10.0, **client_kwargs: Any) -> dict:
    """The true end of each partition, from fetch responses.

    The embedded broker answers ListOffsets(latest) with the base offset of a
    partition's last batch + 1 (broker.py); the high-water mark in a fetch
    response is right. A fetch from one before that answer returns the last
    batch, and with it the real end. Partitions whose answer is 0 are empty
    (an empty partition has no batch to misreport). Faust's table recovery
    reads its changelog up to these ends (offsets.Consumer.highwaters).
    """
    probe = {tp: end for tp, end in ends.items() if end}
    if not probe:
        return dict(ends)
    tps = {TopicPartition(tp.topic, tp.partition): tp for tp in probe}  # Faust's TP or aiokafka's
    last = {kp: probe[tp] - 1 for kp, tp in tps.items()}
    async with consumer(bootstrap, **client_kwargs) as c:
        scan = Scan(c, last, to=last, timeout_ms=200, deadline=monotonic() + timeout_s)
        async for _ in scan:
            pass
        if scan.pending:
            raise RuntimeError(f"no fetch answered for {sorted(str(tps[kp]) for kp in scan.pending)} within {timeout_s} s")
        out = dict(ends)
        for kp, tp in tps.items():
            out[tp] = max(c.highwater(kp) or 0, probe[tp])
        return out


class Record(NamedTuple):
    """One record to produce (a plain `(topic, key, value)` tuple will do)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


async def send(bootstrap: str, records: Iterable[Record | tuple], *, each_acked: bool = True, **client_kwargs: Any) -> int:
    """Produce `records` in order and return how many: each acknowledged
    before the next is sent (`each_acked`), or in producer batches (in order
    per partition), all acknowledged before this returns."""
    acks, n = [], 0
    async with producer(bootstrap, **client_kwargs) as p:
        for r in records:
            r = Record(*r)
            ack = await p.send(r.topic, key=r.key, value=r.value, partition=r.partition, headers=r.headers)
            n += 1
            if each_acked:
                await ack
            else:
                acks.append(ack)
        await asyncio.gather(*acks)
    return n
