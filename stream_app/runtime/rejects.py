"""Rejected records to churn.dlq: the original bytes, why and where in headers
(`ingest.dead_letters`), counted by topic and reason. Nothing is dropped."""

from __future__ import annotations

import logging
import time

import faust

from ..config import Settings
from ..ingest import dead_letters as dl
from ..ingest.contract import Rejection, format_ts
from . import topics
from .metrics import Metrics
from .process import Record

log = logging.getLogger(__name__)


class DeadLetterSink:
    def __init__(self, app: faust.App, settings: Settings, metrics: Metrics) -> None:
        self.topic = app.topic(topics.DLQ, key_serializer="raw", value_serializer="raw", partitions=settings.partitions)
        self.metrics = metrics

    async def send(self, rec: Record, rejection: Rejection) -> None:
        headers = dl.from_topic(rejection.reason, rejection.detail, rec.topic, rec.partition, rec.offset,
                                format_ts(time.time()), rec.headers or ())
        await self.topic.send(key=rec.key, value=rec.value if rec.value is not None else b"", headers=headers)
        self.metrics.rejected.labels(topic=rec.topic, reason=rejection.reason).inc()
        # the reason and where, never the detail: it may quote customer data
        log.warning("dead-lettered %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset, rejection.reason)
