"""Commit bookkeeping (stream_app.runtime.offsets): each acked offset counts once, and
nothing is committed past an event that is still being processed; and the rebalance
paths that threw records away (offsets.Consumer's seeks, recovery.TableManager's queue)."""

import asyncio
from types import SimpleNamespace

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from hypothesis import given, strategies as st

from faust.types import TP

from stream_app.runtime.app import build_app
from stream_app.config import Settings
from stream_app.runtime.offsets import SEEK_HOLD, CommitSafeBuffer, Consumer, advance


def test_offsets_acked_twice_do_not_stop_the_commit():
    # Faust filled 137..139 in as a gap, then the events themselves were acked
    assert advance([136, 137, 138, 138, 139, 139, 140], 136) == (141, [])


def test_an_unprocessed_event_holds_the_commit_back():
    assert advance([140, 141], 137) == (None, [140, 141])
    assert advance([137, 138, 141], 137) == (139, [141])


def test_an_event_held_at_the_committed_offset_is_not_committed_past():
    # 137 is held back for a slower topic (not acked); 138 and 139 were applied.
    # Committing 140 would lose 137 on the next rebalance or crash.
    assert advance([138, 139], 137) == (None, [138, 139])


def test_offsets_below_the_committed_one_no_longer_count():
    # acked before a seek moved the committed offset on (a handover)
    assert advance([130, 131, 137, 138], 137) == (139, [])


@given(st.integers(0, 1000), st.lists(st.integers(-5, 60), max_size=80))
def test_commit_is_one_past_the_unbroken_run(start, acked_rel):
    acked = [start + a for a in acked_rel]
    offset, pending = advance(acked, start)
    done = {o for o in acked if o >= start}
    if start in done:
        end = start
        while end + 1 in done:
            end += 1
        assert offset == end + 1
        assert pending == sorted(o for o in done if o > end)
    else:
        assert offset is None and pending == sorted(done)


def test_the_worker_commits_with_the_mended_consumer():
    app = build_app(Settings(), "kafka://127.0.0.1:1")
    assert app.transport.Consumer is Consumer


def test_the_worker_produces_through_the_commit_safe_buffer():
    app = build_app(Settings(), "kafka://127.0.0.1:1")
    assert isinstance(app.producer.buffer, CommitSafeBuffer)


class _SlowSend:
    """A send that takes longer than Faust's 0.1 s flush patience (a busy
    machine, aiokafka's accumulator full)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.sent = seconds, []

    async def __call__(self, fut) -> None:
        await asyncio.sleep(self.seconds)
        self.sent.append(fut)


async def _flush_with(buffer_cls, n: int) -> tuple[int, int]:
    buffer = buffer_cls()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    send = buffer._send_pending = _SlowSend(0.25)
    await buffer.start()
    try:
        for i in range(n):
            buffer.put(i)
        await buffer.flush()
        return len(send.sent), n
    finally:
        while len(send.sent) < n:  # let the sender finish before stopping
            await asyncio.sleep(0.05)
        await buffer.stop()


def test_a_commit_waits_for_every_queued_table_write():
    # Faust's buffer gives up after 0.1 s without a send: its commit would
    # overtake changelog writes (what a SIGKILL then lost)
    sent, queued = asyncio.run(_flush_with(ProducerBuffer, 3))
    assert sent < queued
    sent, queued = asyncio.run(_flush_with(CommitSafeBuffer, 3))
    assert sent == queued


def _consumer():
    app = build_app(Settings(), "kafka://127.0.0.1:1")
    consumer = app.consumer
    consumer.app.topics.acks_enabled_for = lambda topic: True  # (no agents declared in this app)
    return consumer


def test_a_record_the_stream_skipped_is_not_counted_as_processed():
    from faust.types.tuples import ConsumerMessage
    consumer = _consumer()
    tp = TP("churn.usage", 0)
    consumer._committed_offset[tp] = 5
    skipped = ConsumerMessage("churn.usage", 0, 5, 0.0, 0, [], b"k", b"v", None)
    assert not skipped.tracked  # a stream tracks a record as it takes it; this one it skipped
    assert consumer.ack(skipped) is False and skipped.acked
    taken = ConsumerMessage("churn.usage", 0, 6, 0.0, 0, [], b"k", b"v", None)
    taken.tracked = True
    assert consumer.ack(taken) is True
    assert consumer._new_offset(tp) is None  # 5 was never processed: nothing committable


def test_offsets_a_fetch_passed_over_are_committed_through():
    consumer = _consumer()
    tp = TP("churn.usage", 0)
    consumer._committed_offset[tp] = 5
    consumer._gap[tp].addi(5, 7)  # what _drain_messages records when a fetch from 5 returns 7 first
    consumer._acked[tp].extend([7, 8])
    consumer._acked_index[tp].update([7, 8])
    assert consumer._new_offset(tp) == 9


def test_a_seek_keeps_stream_partitions_out_of_the_fetch_until_the_flow_resumes():
    """Records handed on while the seek is in flight would be thrown away
    with the stream buffers when Faust resumes its flow, and not read again."""
    consumer = _consumer()
    consumer.app.topics.acks_enabled_for = lambda topic: not topic.endswith("-changelog")
    stream, changelog = TP("churn.usage", 3), TP("churnmon-customers-changelog", 3)
    consumer._set_active_tps({stream, changelog})
    consumer.assignment = lambda: {stream, changelog}
    during = []

    async def seek_to_committed():
        during.append(set(consumer._get_active_partitions()))
        return {stream: 40}

    consumer.seek_to_committed = seek_to_committed  # (Faust's perform_seek calls it; no broker here)
    asyncio.run(consumer.perform_seek())
    assert during == [{changelog, SEEK_HOLD}]  # a standby's changelog reads on
    consumer.resume_flow()
    assert consumer._get_active_partitions() == {stream, changelog}


def test_the_partitions_to_fetch_are_never_an_empty_set_while_held():
    """aiokafka's fetch reads an empty set as every partition: records of the
    held ones were consumed there and dropped by Faust as not active."""
    consumer = _consumer()
    stream = TP("churn.usage", 3)
    consumer._set_active_tps({stream})
    consumer.assignment = lambda: {stream}

    async def seek_to_committed():
        assert consumer._get_active_partitions() and stream not in consumer._get_active_partitions()
        return {stream: 40}

    consumer.seek_to_committed = seek_to_committed
    asyncio.run(consumer.perform_seek())
    consumer.resume_flow()
    assert consumer._get_active_partitions() == {stream}


def test_a_partition_with_nothing_committed_is_read_again_from_its_beginning(monkeypatch):
    consumer = _consumer()
    consumer.app.topics.acks_enabled_for = lambda topic: not topic.endswith("-changelog")
    fresh, committed, changelog = TP("churn.usage", 0), TP("churn.usage", 1), TP("churnmon-customers-changelog", 0)

    async def faust_seek(self):
        return {fresh: None, committed: 7, changelog: None}

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", faust_seek)
    rewound = []

    async def seek_to_beginning(*tps):
        rewound.extend(tps)

    consumer._thread = SimpleNamespace(seek_to_beginning=seek_to_beginning)
    assert asyncio.run(consumer.seek_to_committed()) == {fresh: None, committed: 7, changelog: None}
    assert rewound == [fresh]  # aiokafka leaves it where its fetch was; a changelog is the recovery's to seek
    assert consumer._expected == {committed: 7}


def test_a_resumed_flow_empties_stream_buffers_but_not_the_changelog_queue():
    """Faust empties both when its flow control resumes; a standby then lost
    the changelog records that were queued (stream records are sought again)."""
    app = build_app(Settings(), "kafka://127.0.0.1:1")
    changelog = app.tables.changelog_queue
    stream = app.FlowControlQueue(maxsize=10, clear_on_resume=True)  # as Faust makes a stream's buffer
    app.flow_control.resume()
    changelog.put_nowait("record")
    stream.put_nowait("record")
    app.flow_control.suspend()
    app.flow_control.resume()
    assert changelog.qsize() == 1 and stream.qsize() == 0
