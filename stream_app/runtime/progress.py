"""What this worker owns and how far it has processed each of its inputs.

The clock may move a partition to the worker's clock only once everything
before that clock has been processed (`clock.py`), so it asks here; the
processing agent and the source adapters record what they processed.
"""

from __future__ import annotations

import faust
from faust.types import TP

from ..ingest import sources
from . import topics


class Progress:
    """Ownership (the consumer's assignment) and processed offsets, per topic-partition."""

    def __init__(self, app: faust.App, clock_name: str) -> None:
        self.app = app
        self.inputs = frozenset(topics.INPUT_TOPICS) | {clock_name}
        self.source_topics = frozenset(src.topic for src in sources.SOURCES.values())
        self.processed: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset processed

    def assignment(self) -> set[TP]:
        try:
            return self.app.consumer.assignment()
        except Exception:  # consumer not started yet
            return set()

    def assigned_partitions(self) -> set[int]:
        """The partition numbers of the input topics this worker owns."""
        inputs = self.inputs
        return {tp.partition for tp in self.assignment() if tp.topic in inputs}

    def owns(self, topic: str, partition: int) -> bool:
        return TP(topic, partition) in self.assignment()

    def highwater(self, topic: str, partition: int) -> int | None:
        return self.app.consumer.highwater(TP(topic, partition))

    def read_to_end(self, topic: str, partition: int) -> bool:
        """This topic-partition has been *processed* up to its high-water mark.

        Not the consumer's fetch position: records prefetched into the buffer
        are not processed yet, and counting them would let the clock run
        ahead of state. With nothing processed since assignment, the offset
        committed before (Faust keeps it; no public accessor) tells whether
        anything is left to read.
        """
        highwater = self.highwater(topic, partition)
        if highwater is None:
            return False
        if highwater == 0:
            return True
        done = self.processed.get((topic, partition))
        if done is not None:
            return done + 1 >= highwater
        committed = getattr(self.app.consumer, "_committed_offset", {}).get(TP(topic, partition))
        return committed is not None and committed >= highwater

    def sources_read(self) -> bool:
        """Every source topic partition this worker owns is mapped to its end.

        An adapter's events reach an input partition only after the adapter
        has read them, so an input partition read to its end can still have
        events waiting upstream. Moved to the worker's clock then, its due
        visits ran before those events: in one CI run a customer whose
        `invoice.paid` was still on churn.source.stripe churned for the
        failed payment before it (`test_sources_e2e`, 1 of 720 tests).
        """
        source_topics = self.source_topics
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # consumer not started yet
            return False
        return all(self.read_to_end(tp.topic, tp.partition) for tp in assignment if tp.topic in source_topics)

    def forget(self) -> None:
        """Ownership changed: what was processed is known again from the committed offsets."""
        self.processed.clear()
