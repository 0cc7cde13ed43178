"""The source adapters' agents: Stripe, Segment-spec and Zendesk records on
`churn.source.*` mapped to contract events on the input topics.

One agent per source topic. Each record is mapped by the pure
`sources.run`, its events produced keyed by customer; what cannot be
mapped is dead-lettered with the source topic. The record is acked after
its events are sent, and Faust flushes the producer before it commits:
at-least-once, and a record read twice produces the same event ids, which
the worker drops as duplicates.
"""

from __future__ import annotations

import logging

import faust
import orjson

from ..config import Settings
from ..ingest import sources
from ..ingest.contract import Rejection, topic_for_type
from . import topics
from .metrics import Metrics
from .process import Record
from .progress import Progress
from .rejects import DeadLetterSink

log = logging.getLogger(__name__)


class Adapters:
    def __init__(self, app: faust.App, settings: Settings, metrics: Metrics, progress: Progress, rejects: DeadLetterSink) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.progress = progress
        self.rejects = rejects
        n = settings.partitions
        # one topic object per input topic (keyed by customer, like producer.py)
        self.inputs = {t: app.topic(t, key_serializer="raw", value_serializer="raw", partitions=n) for t in topics.INPUT_TOPICS}

    def register(self) -> None:
        for source in sources.SOURCES.values():
            self._agent(source)

    def _agent(self, source: sources.Source) -> None:
        """The agent of one source topic (a function per source: the agent's name and topic are its own)."""
        topic = self.app.topic(source.topic, key_serializer="raw", value_serializer="raw", partitions=self.settings.partitions)

        async def adapt(stream):
            await self.adapt(source, stream)

        self.app.agent(topic, name=f"churn-source-{source.name}")(adapt)

    async def adapt(self, source: sources.Source, stream: faust.StreamT) -> None:
        """One source topic, record by record (see the module's docstring)."""
        config = source.config(self.settings)
        counted = self.metrics.source_records
        processed = self.progress.processed
        for outcome in sources.OUTCOMES:
            counted.labels(source=source.name, outcome=outcome)
        async for event in stream.events():
            msg = event.message
            result = sources.run(source, event.value, config, self.settings.max_event_bytes)
            if isinstance(result, Rejection):
                rec = Record(msg.topic, msg.partition, msg.offset, event.key, event.value, msg.headers or ())
                await self.rejects.send(rec, result)
                counted.labels(source=source.name, outcome="dead_lettered").inc()
                processed[(msg.topic, msg.partition)] = msg.offset
                continue
            for ev in result.events:
                await self.inputs[topic_for_type(ev["type"])].send(key=ev["customer_id"].encode(), value=orjson.dumps(ev))
            processed[(msg.topic, msg.partition)] = msg.offset  # see `Progress.sources_read`
            counted.labels(source=source.name, outcome="mapped" if result.events else "ignored").inc()
            if not result.events:
                log.debug("%s[%s]@%s ignored: %s", msg.topic, msg.partition, msg.offset, result.ignored)
