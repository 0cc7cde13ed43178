"""The worker's processor without Kafka, with every effect kept for the tests that count them.

Unit tests and the KPI fixture use it to check the arithmetic in-process; the
integration tests check that the real worker produces the same figures. It is
`process.Replay` (the processor itself over plain dicts), not a copy of its logic.
"""

from __future__ import annotations

from stream_app.config import Settings
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.process import Replay
from stream_app.domain.state import Effects


class _Recording(Metrics):
    """Metrics that also keep every effect."""

    def __init__(self) -> None:
        super().__init__()
        self.effects: list[Effects] = []

    def record_effects(self, effects: Effects) -> None:
        self.effects.append(effects)
        super().record_effects(effects)


class PurePipeline(Replay):
    """One partition, one read order (the order `feed` is called in); see `Replay`."""

    def __init__(self, settings: Settings | None = None, batch: int = 1, caught_up: bool = False) -> None:
        self.metrics = _Recording()
        super().__init__(settings, batch=batch, caught_up=caught_up, metrics=self.metrics)

    @property
    def effects(self) -> list[Effects]:
        return self.metrics.effects
