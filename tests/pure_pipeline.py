"""The worker's processor without Kafka: one partition, records in the order given.

Unit tests and the KPI fixture use it to check the arithmetic in-process; the
integration tests check that the real worker produces the same figures. It is
`process.Processor` itself over plain dicts, not a copy of its logic.
"""

from __future__ import annotations

import orjson

from stream_app.config import Settings
from stream_app.contract import TOPICS, topic_for_type
from stream_app.kpis import merge
from stream_app.metrics import Metrics
from stream_app.process import Output, Processor, Record
from stream_app.state import Effects, day_of


class _Recording(Metrics):
    """Metrics that also keep every effect, for tests that count them."""

    def __init__(self) -> None:
        super().__init__()
        self.effects: list[Effects] = []

    def record_effects(self, effects: Effects) -> None:
        self.effects.append(effects)
        super().record_effects(effects)


class PurePipeline:
    """One partition, one read order (the order `feed` is called in).

    `caught_up`: every input counts as read up to what was fed after each
    batch, as the worker's ticks mark an input caught up with its topic (the
    right model for a feed in event-time order, which is how events arrive
    live). Without it the clock waits for the slowest input, as in a backlog
    where one topic is read far ahead of another, until `finish`.
    """

    def __init__(self, settings: Settings | None = None, batch: int = 1, caught_up: bool = False) -> None:
        self.settings = settings or Settings()
        self.metrics = _Recording()
        self.customers: dict = {}
        self.risk: dict = {}
        self.processor = Processor(self.settings, self.customers, self.risk, metrics=self.metrics, wall=lambda: 4e9)
        self.processor.ensure_books([0])
        self.book = self.processor.books[0]
        self.offsets = dict.fromkeys(TOPICS, 0)
        self.pending: list[Record] = []
        self.batch = batch
        self.caught_up = caught_up
        self.alerts: list[dict] = []
        self.examples: list[dict] = []

    @property
    def effects(self) -> list[Effects]:
        return self.metrics.effects

    def feed(self, event: dict) -> None:
        topic = topic_for_type(event["type"])
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        self.pending.append(Record(topic, 0, offset, event["customer_id"].encode(), orjson.dumps(event)))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        out = self.processor.process(0, self.pending)
        self.pending = []
        if self.caught_up:
            self.book.idle.update(TOPICS)
        self.collect(out)

    def collect(self, out: Output) -> None:
        assert not out.rejected, out.rejected
        self.alerts += [orjson.loads(v) for _, v in out.alerts]
        self.examples += [orjson.loads(v) for _, v in out.examples]

    def finish(self) -> None:
        """Everything read: no input holds the clock back any more (what the worker's ticks do)."""
        self.flush()
        self.book.idle.update(TOPICS)
        self.collect(self.processor.tick(0, self.book.clock))

    def values(self):
        return merge([self.book.ledger.values(day_of(self.book.clock))])
