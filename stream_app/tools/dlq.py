"""`churnmon dlq`'s Kafka side: read churn.dlq back and re-publish what a
fix made acceptable (the records and their headers: ingest/dead_letters.py)."""

from __future__ import annotations

from collections.abc import Iterable

from ..ingest.dead_letters import DeadLetter


async def read(bootstrap: str, *, partitions: int | None = None, client_kwargs: dict | None = None) -> list[DeadLetter]:
    """Every record on churn.dlq, partition by partition, to the end a fetch reports."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ..runtime.topics import DLQ, end_of

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **(client_kwargs or {}))
    await consumer.start()
    try:
        known = consumer.partitions_for_topic(DLQ) or set()
        if not known:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
            known = consumer.partitions_for_topic(DLQ) or set()
        tps = [TopicPartition(DLQ, p) for p in sorted(known if partitions is None else range(partitions))]
        out: list[DeadLetter] = []
        for tp in tps:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                out.extend(DeadLetter.of(m.partition, m.offset, m.key, m.value, m.headers) for m in batch.get(tp, []))
                if await consumer.position(tp) >= await end_of(consumer, tp):
                    break
        return out
    finally:
        await consumer.stop()


async def republish(bootstrap: str, letters: Iterable[DeadLetter], *, client_kwargs: dict | None = None) -> int:
    """Send each record's original key and bytes back to its source topic."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **(client_kwargs or {}))
    await producer.start()
    sent = 0
    try:
        for d in letters:
            if d.republishable:
                await producer.send(d.source_topic, key=d.key, value=d.value, headers=d.republish_headers())
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent
