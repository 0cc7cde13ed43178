"""The processing agent's bookkeeping that needs no broker."""

from types import SimpleNamespace

from stream_app.config import Settings
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.processing import Processing
from stream_app.runtime.progress import Progress


def test_an_offset_that_skips_ahead_is_counted_and_a_read_again_is_not():
    metrics = Metrics()
    app = SimpleNamespace(topic=lambda *a, **k: None, consumer_generation_id=1)
    progress = Progress(app, "clock")
    p = Processing(app, Settings(), metrics, processor=SimpleNamespace(books={}), progress=progress, rejects=None)
    for offset in (0, 1, 2, 5, 3, 4, 5, 6):  # 3, 4 missed; then read again from 3 (a seek back)
        p.check_gap("churn.usage", 0, offset)
    p.check_gap("churn.usage", 1, 10)  # the first offset seen of a partition is no gap
    gaps = metrics.registry.get_sample_value("churn_input_offset_gaps_total", {"topic": "churn.usage"})
    assert gaps == 2
    p.on_rebalance(); progress.forget()  # as agents.register's rebalance handler; Faust seeks to the committed offset: an earlier one next, then on from there
    p.check_gap("churn.usage", 0, 1)
    p.check_gap("churn.usage", 0, 2)
    assert metrics.registry.get_sample_value("churn_input_offset_gaps_total", {"topic": "churn.usage"}) == 2
