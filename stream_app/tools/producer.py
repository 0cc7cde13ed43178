"""Putting events on the input topics: for `simulate` and `replay`.

Events are keyed by customer_id (so Kafka's default partitioner puts all of a
customer's events in one partition number on every input topic) and routed to
the topic that carries their type. Replay validates every line with the same
contract the worker uses; an invalid line is dead-lettered with its line
number, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from ..config import Settings
from ..ingest import dead_letters as dl
from ..ingest.contract import Rejection, decode, format_ts, parse_ts, topic_for_type
from ..runtime import kafka_io
from ..runtime.security import kafka_client_kwargs
from ..runtime.topics import DLQ, bootstrap_servers, ensure_topics

Invalid = tuple[int, Rejection, bytes]  # (line number, why, original bytes)


class ReplayError(Exception):
    """An invalid line in --strict mode."""


def check_line(raw: bytes, now: float) -> dict | Rejection:
    """One JSONL line -> the validated event, or why not (the worker's own gate)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("not_json", f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return Rejection("not_object", f"not a JSON object but {type(obj).__name__}")
    try:
        topic = topic_for_type(obj.get("type"))
    except (KeyError, TypeError):
        return Rejection("unknown_type", f"unknown event type {obj.get('type')!r}")
    return decode(topic, None, raw, now=now)


def read_replay_file(path: Path, *, strict: bool = False) -> tuple[list[dict], list[Invalid]]:
    """Valid events sorted by event time (stable for equal times), and the invalid lines."""
    now = time.time()
    events: list[dict] = []
    invalid: list[Invalid] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            raw = raw.strip()
            if not raw:
                continue
            result = check_line(raw, now)
            if isinstance(result, Rejection):
                if strict:
                    raise ReplayError(f"{path}:{number}: {result.reason}: {result.detail}")
                invalid.append((number, result, raw))
            else:
                events.append(result)
    events.sort(key=lambda e: e["_t"])
    return events, invalid


def _wire(event: dict) -> bytes:
    return orjson.dumps({k: v for k, v in event.items() if not k.startswith("_")})


async def produce_events(
    settings: Settings,
    events: Iterable[dict],
    *,
    rate: float = 0.0,
    speed: float = 0.0,
    invalid: list[Invalid] = (),
    source: str = "",
) -> int:
    """Send events (and dead-letter invalid lines); returns how many events were sent.

    `rate` caps events per wall second; `speed` compresses event time instead
    (86400 = one day of event time per wall second). 0 = as fast as possible.
    """
    sent = 0
    async with _producer(settings) as producer:
        for number, rejection, raw in invalid:
            where = {dl.SOURCE_FILE: source, dl.SOURCE_LINE: number}
            headers = dl.headers(rejection.reason, rejection.detail, where, format_ts(time.time()))
            await producer.send(DLQ, value=raw, headers=headers)
        started = time.monotonic()
        first_t: float | None = None
        for event in events:
            topic = topic_for_type(event["type"])
            await producer.send(topic, key=event["customer_id"].encode(), value=_wire(event) if "_t" in event else orjson.dumps(event))
            sent += 1
            if speed > 0:
                t = event["_t"] if "_t" in event else parse_ts(event["ts"])
                first_t = t if first_t is None else first_t
                ahead = (t - first_t) / speed - (time.monotonic() - started)
                if ahead > 0.005:
                    await asyncio.sleep(ahead)
            else:
                await _pace(sent, rate, started)
        await producer.flush()
    return sent


@contextlib.asynccontextmanager
async def _producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """The topics created (explicit partition counts), then a started producer."""
    assert settings.broker is not None
    await ensure_topics(settings, settings.broker)
    async with kafka_io.producer(bootstrap_servers(settings.broker), linger_ms=5, max_batch_size=262144,
                                 **kafka_client_kwargs(settings)) as producer:
        yield producer


async def _pace(sent: int, rate: float, started: float) -> None:
    """Hold `sent` messages to `rate` per wall second since `started` (checked every 50; 0 = no cap)."""
    if rate > 0 and sent % 50 == 0:
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)


async def produce_records(settings: Settings, topic: str, records: Iterable[tuple[str, dict]], *, rate: float = 0.0) -> int:
    """Source records (`simulate --format`) to their source topic, keyed by
    customer like the input topics, so a customer's records stay in order."""
    sent, started = 0, time.monotonic()
    async with _producer(settings) as producer:
        for key, record in records:
            await producer.send(topic, key=key.encode(), value=orjson.dumps(record))
            sent += 1
            await _pace(sent, rate, started)
        await producer.flush()
    return sent
