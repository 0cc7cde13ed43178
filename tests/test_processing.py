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


def test_a_batch_taken_while_the_worker_stops_is_neither_applied_nor_committable():
    from faust.types.tuples import ConsumerMessage

    app = SimpleNamespace(topic=lambda *a, **k: None, consumer_generation_id=1, should_stop=False)
    p = Processing(app, Settings(), Metrics(), processor=SimpleNamespace(books={}), progress=Progress(app, "clock"), rejects=None)
    events = [SimpleNamespace(message=ConsumerMessage("churn.usage", 0, o, 0.0, 0, [], b"k", b"v", None)) for o in (7, 8)]
    for e in events:
        e.message.incref()  # as the conductor does when it hands the message to the stream
    assert p.stopping(events) is False and [e.message.refcount for e in events] == [1, 1]
    app.should_stop = True
    assert p.stopping(events) is True
    for e in events:  # Faust's ack of the batch: one reference is left, so the offset never becomes committable
        assert e.message.ack(SimpleNamespace(ack=lambda m: True)) is False and not e.message.acked
