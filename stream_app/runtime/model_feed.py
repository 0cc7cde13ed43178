"""The model feed: every worker follows churn.models and scores with the
newest snapshot it can verify.

churn.models is compacted and read from the start; a hot swap is one
assignment (`Processor.model`). Each record is decoded and checked
(`snapshots.decode`: data, or a signed pickle verified before it is
loaded); its version is the one inside the snapshot, not the record header.
A refused record is logged, counted and skipped: scoring goes on with the
model it has. The trainer (trainer.py) starts from the newest snapshot read
here, so it waits until the feed has read the topic to its end (`seen`).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition

from ..config import Settings
from ..ingest.contract import Rejection
from ..risk import snapshots
from ..risk.model import ChurnModel
from . import kafka_io, topics
from .metrics import Metrics
from .process import Processor
from .security import kafka_client_kwargs, signing_key

log = logging.getLogger(__name__)


class ModelFeed:
    def __init__(self, settings: Settings, broker_url: str, processor: Processor, metrics: Metrics) -> None:
        self.settings = settings
        self.broker_url = broker_url
        self.processor = processor
        self.metrics = metrics
        self.signing_key = signing_key(settings)  # verifies followed snapshots
        self.seen = asyncio.Event()  # set once churn.models has been read to its end
        self.latest_blob: bytes | None = None  # the newest snapshot taken, as published

    @property
    def model(self) -> ChurnModel:
        return self.processor.model

    async def follow(self) -> None:
        tp = TopicPartition(topics.MODELS, 0)
        async with kafka_io.consumer(topics.bootstrap_servers(self.broker_url), **kafka_client_kwargs(self.settings)) as c:
            scan = kafka_io.Scan(c, {tp: kafka_io.BEGINNING}, to=None, timeout_ms=1000)
            async for batch in scan:
                for msg in batch.get(tp, []):
                    self.take(msg.offset, msg.value)
                if not self.seen.is_set() and await scan.at_end(tp):
                    self.seen.set()

    def take(self, offset: int, value: bytes) -> None:
        """Score with the snapshot in this record if it verifies and is newer."""
        got = snapshots.decode(value, key=self.signing_key)
        if isinstance(got, Rejection):
            self.metrics.snapshots_rejected.labels(reason=got.reason).inc()
            log.warning("refused the model snapshot at %s@%s: %s (%s); scoring goes on with version %s",
                        topics.MODELS, offset, got.reason, got.detail, self.model.version)
            return
        if got.model.version <= self.model.version:
            return
        self.processor.model = got.model
        self.latest_blob = value
        m, model = self.metrics, got.model
        m.model_version.set(model.version)
        m.model_created.set(model.created_at or 0.0)
        m.model_ready.set(1.0 if model.ready else 0.0)
        candidates = model.candidates()
        if candidates:
            m.record_candidates(candidates, model.meta().get("switches", 0))
