"""`churnmon dlq`'s Kafka side: read churn.dlq back and re-publish what a
fix made acceptable (the records and their headers: ingest/dead_letters.py)."""

from __future__ import annotations

from collections.abc import Iterable

from ..ingest.dead_letters import DeadLetter


async def read(bootstrap: str, *, partitions: int | None = None, client_kwargs: dict | None = None) -> list[DeadLetter]:
    """Every record on churn.dlq, partition by partition, to the end a fetch reports."""
    from ..runtime import kafka_io
    from ..runtime.topics import DLQ

    records = await kafka_io.read(bootstrap, DLQ, numbers=None if partitions is None else range(partitions), **(client_kwargs or {}))
    return [DeadLetter.of(m.partition, m.offset, m.key, m.value, m.headers) for m in records]


async def republish(bootstrap: str, letters: Iterable[DeadLetter], *, client_kwargs: dict | None = None) -> int:
    """Send each record's original key and bytes back to its source topic."""
    from ..runtime import kafka_io

    sent = 0
    async with kafka_io.producer(bootstrap, linger_ms=5, **(client_kwargs or {})) as producer:
        for d in letters:
            if d.republishable:
                await producer.send(d.source_topic, key=d.key, value=d.value, headers=d.republish_headers())
                sent += 1
        await producer.flush()
    return sent
