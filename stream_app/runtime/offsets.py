"""Which input offsets are safe to commit: Faust's consumer with its ack
bookkeeping mended.

Faust commits, per topic-partition, the end of the run of consecutive acked
offsets that starts at the committed one. Offsets it believes were skipped
by the broker (a "gap": compaction, transaction markers) are filled in as if
acked. When a fetch from before a seek lands after it (a restart or a
rebalance while tables recover: faust-streaming #596), Faust records a gap
for offsets that are in fact delivered and processed a moment later; each is
then acked a second time and the list of acked offsets holds duplicates.
Faust's run-finder stops at the first duplicate, so the committed offset
creeps forward by one or two per commit while the worker processes
thousands: seen here as a worker that processed a partition to its end with
the group's committed offset stuck near where it restarted, and every later
restart replaying the whole backlog (harmless to the figures, since state
updates are idempotent, but a restart that should take seconds takes as long
as the backlog). `advance` counts each acked offset once.

Before it commits, Faust flushes its producer so that the table writes of
the acked events reach their changelogs first. Its buffer's flush gives up
after 0.1 s without a send (`ProducerBuffer.flush_atmost`) and cannot see
the message its sender task has taken but not yet handed to aiokafka; on a
busy machine the commit then overtook changelog writes, and a SIGKILL right
after it lost them: the restarted worker restored a customer's older state
and read on past the events that made the newer one (four customers of one
partition in the crash test, 1 run in ~4). `CommitSafeBuffer.flush` waits
until every message queued before it was handed to aiokafka, whose own
flush then waits for delivery.

A clean stop (SIGTERM) also commits once more after the agents have stopped:
Faust's stop-time commit is skipped when a timer commit is in flight, and
that commit was computed before the last events were acked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from faust.transport import producer as faust_producer
from faust.transport.consumer import CONSUMER_FETCHING, ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.utils.functional import consecutive_numbers
from mode import Service

log = logging.getLogger(__name__)

# a partition no broker has: keeps the set of partitions to fetch from being
# empty while the stream partitions are held out of it (`Consumer.perform_seek`)
SEEK_HOLD = TP("__churnmon-seek-hold", 0)


def advance(acked: Iterable[int], committed: int | None) -> tuple[int | None, list[int]]:
    """The offset to commit next (one past the last processed), and the acked
    offsets that must wait for an earlier one.

    `committed` is the offset committed before (the next one to read). An
    offset acked twice counts once, and one below `committed` (acked before a
    seek moved it on) no longer counts. The run must start *at* `committed`:
    an offset there that is not acked is an event still being processed or
    held back for a slower topic, and committing past it would lose it on the
    next rebalance or crash. Offsets the broker does not have (transaction
    markers, compaction) are known from the fetches and added as acked before
    this is called (`Consumer._new_offset`).

    >>> advance([5, 6, 6, 7, 9], 5)
    (8, [9])
    >>> advance([6, 7], 5)
    (None, [6, 7])
    >>> advance([3, 4, 5], 5)
    (6, [])
    >>> advance([], 5)
    (None, [])
    """
    pending = sorted({o for o in acked if committed is None or o >= committed})
    if not pending or (committed is not None and pending[0] != committed):
        return None, pending
    run = next(consecutive_numbers(pending))
    return run[-1] + 1, pending[len(run):]


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread with the fetch wait as a setting.

    Faust hard-codes `fetch_max_wait_ms=1500` for the worker's consumer. On
    Kafka a fetch returns as soon as `fetch_min_bytes` (1) arrives, so the
    wait only bounds idle fetches; a broker that answers a fetch only when
    the wait runs out (the embedded broker does) adds up to the whole wait
    to every event's latency. `Settings.fetch_max_wait_ms` sets it: each
    idle partition leader is then asked again that often (cheap requests,
    answered empty).
    """

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        settings = getattr(self.app, "churn_settings", None)
        if settings is not None:
            # read once, by AIOKafkaConsumer.start(), to build its Fetcher
            consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, committing with `advance`, and counting as
    processed only what a stream took and offsets the log does not have.

    Faust's own bookkeeping lets a commit pass events nobody processed, in
    three ways found by reading it while chasing single events lost at
    handovers in the scale-out test (docs/RELIABILITY.md, Scale-out; that
    test has not shown which, if any, of them it hit):
    - a record a stream skips because the flow is suspended for a rebalance,
      or because it was fetched in an older generation, is acked as if
      processed (faust/streams.py); the next commit covers it, and the new
      owner starts after it. Here it is not counted (`ack`): whoever owns
      the partition next reads it again from the committed offset.
    - an offset gap between two reads is recorded with the record that
      follows it included (`_add_gap(tp, last + 1, offset)`), so that record
      counted as acked while it was still held back for a slower topic.
      Here a gap is exactly the offsets a fetch passed over (`_drain_messages`).
    - `_new_offset` let one missing offset at the head of the run through (to
      get past a transaction marker right at the committed offset); an event
      held back there was committed unprocessed. Here the head must be acked
      or known absent (`advance`), and the first record after a seek tells
      which offsets before it are absent.

    With the head held strictly, a record that never reaches the agent stops
    the partition's commits instead of being committed past, so two ways
    Faust lost records at a rebalance showed (2026-12-01, the scale-out
    test's gap warnings): records handed on during the end-of-recovery seek
    and then emptied from the stream buffers (`perform_seek`), and records of
    a partition with nothing committed, which no seek brought again
    (`seek_to_committed`).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # per partition, the next offset the log should deliver: set by a seek,
        # then one past each record read; a record beyond it means the offsets
        # in between are not in the log
        self._expected: dict[TP, int] = {}
        # per partition, records fetched and not handed on, by why: `skipped`
        # by a stream (flow suspended, or an older generation; only streams
        # that ack per event report it: the processing agent's batches turn
        # Faust's acks off, so its skips show as gaps), `abandoned`
        # by the fetch loop (the flow was suspended while its hand-over
        # waited), `below_read` (older than the read offset: fetched before a
        # seek), `stale` (fetched before a seek, handed on after it: not).
        # Each is (count, lowest offset, highest offset) since the
        # worker started: /healthz and the agent's gap warning show them, to
        # tell a partition fetched and thrown away from one not fetched
        self.dropped: dict[str, dict[TP, tuple[int, int, int]]] = {"skipped": {}, "abandoned": {}, "below_read": {}, "stale": {}}
        # bumped by every seek of the assignment: what a fetch returned before
        # it is stale and is not handed on (`_drain_messages`)
        self._seek_epoch = 0
        # partitions taken out of the fetch while a seek moves them, put back
        # by the `resume_flow` that follows it (`perform_seek`)
        self._held_for_seek: set[TP] = set()

    def ack(self, message) -> bool:
        if not message.tracked:  # skipped by the stream (rebalance), never processed
            message.acked = True
            self._note("skipped", message.tp, message.offset)
            return False
        return super().ack(message)

    def _note(self, why: str, tp: TP, offset: int) -> None:
        count, low, high = self.dropped[why].get(tp, (0, offset, offset))
        self.dropped[why][tp] = (count + 1, min(low, offset), max(high, offset))

    def account(self, tp: TP) -> dict:
        """One partition's fetch state (see `describe`)."""
        try:
            st = self._thread._consumer._subscription.subscription.assignment.state_value(tp)
        except Exception:  # (consumer not started, or the partition no longer assigned to aiokafka)
            st = None
        state = None if st is None else {"paused": st.paused, "position": st.position if st.has_valid_position else None}
        return {
            "committed": self._committed_offset.get(tp),
            "read_offset": self._read_offset.get(tp),
            "next_fetched": self._expected.get(tp),  # one past the last record handed on (or where a seek starts)
            "active": tp in (self._active_partitions or ()),
            "paused": tp in self._paused_partitions,
            "buffer_full": tp in self._buffered_partitions,
            **{why: list(seen[tp]) for why, seen in self.dropped.items() if tp in seen},
            "aiokafka": state,
        }

    def describe(self, topics: Iterable[str]) -> dict:
        """Why a partition this worker owns is or is not read, for /healthz.

        A partition is fetched only while it is in Faust's active set (not
        paused for a recovery, not dropped because a stream's buffer is
        full) and aiokafka holds a position for it; what is fetched reaches
        a stream only from the read offset on, and while the flow is on.
        Each of those has stopped a worker from reading a partition it
        owned in some Faust release; this shows which one, while it happens.
        """
        wanted = set(topics)
        app = self.app
        parts = {f"{tp.topic}[{tp.partition}]": self.account(tp)
                 for tp in sorted(t for t in self.assignment() if t.topic in wanted)}
        return {
            "generation": app.consumer_generation_id,
            "rebalancing": bool(app.rebalancing),
            "in_recovery": bool(app.in_recovery),
            "flow_control_active": app.flow_control.is_active(),
            "fetch_flow_active": not self.suspend_flow.is_set(),
            "partitions": parts,
        }

    async def perform_seek(self) -> None:
        """Faust's seek of every assigned partition to its committed offset,
        with nothing handed on from those partitions until the flow resumes.

        At the end of a recovery Faust resumes the stream partitions, then
        awaits this seek, then resumes its flow control, which empties every
        stream buffer (`FlowControlQueue(clear_on_resume=True)`). Records
        fetched while the seek was in flight were handed on and then thrown
        away with the buffers, though the fetch loop had read past them: if
        they came after the seek, no later seek brings them again (seen in the
        scale-out test as one record at the head of a newly assigned
        partition that never reached the agent: the committed offset stuck
        there and the records after it applied, or with Faust's own
        bookkeeping committed unprocessed). Here the partitions leave the
        fetch for the seek and come back with `resume_flow`, after the
        buffers are emptied; and a fetch returned before the seek is not
        handed on after it (`_seek_epoch`).
        """
        self._seek_epoch += 1
        active = self._get_active_partitions()
        streams = {tp for tp in active if self.app.topics.acks_enabled_for(tp.topic)}  # (not changelogs: a standby reads on)
        self._held_for_seek |= streams
        active.difference_update(streams)
        # Faust hands this very set to aiokafka's fetch, which reads an empty
        # one as "every partition": it then consumed records of the held
        # partitions that Faust dropped as not active (a worker with no
        # standby lost the rest of a partition that way, 2026-12-01)
        active.add(SEEK_HOLD)
        await super().perform_seek()

    def resume_flow(self) -> None:
        super().resume_flow()
        held, self._held_for_seek = self._held_for_seek, set()
        active = self._get_active_partitions()
        active.discard(SEEK_HOLD)
        if held:
            assigned = self.assignment()
            active.update(tp for tp in held if tp in assigned and tp not in self._paused_partitions)

    async def seek_to_committed(self) -> dict:
        """Faust's seek to the committed offsets (`perform_seek` calls it),
        noting where each partition's reads now start; a partition with
        nothing committed goes back to its beginning.

        aiokafka seeks only partitions with a committed offset above 0, and
        leaves the others where their fetch was. Records of such a partition
        that a rebalance threw away from the stream buffers (Faust empties
        them when the flow resumes) were then never read again: a worker that
        joins before the group's first commit (a fresh deployment, or one
        that held its first event for a slower topic) lost them silently.
        With `consumer_auto_offset_reset` "earliest" (Faust's default, kept by
        the worker) nothing committed means "start from the beginning", and the state's
        source offsets drop what was applied already.
        """
        committed = await super().seek_to_committed()
        if self.app.conf.consumer_auto_offset_reset == "earliest":
            acks_enabled_for = self.app.topics.acks_enabled_for  # (changelogs commit nothing: the recovery seeks them)
            uncommitted = [tp for tp, o in committed.items() if (not o or o < 0) and acks_enabled_for(tp.topic)]
            if uncommitted:
                await self._thread.seek_to_beginning(*uncommitted)
        self._expected.clear()  # (in place: the drain loop holds it)
        self._expected.update({ensure_TP(tp): o for tp, o in committed.items() if o is not None and o >= 0})
        return committed

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._expected[ensure_TP(partition)] = offset

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        gaps = self._gap[tp]
        if gaps:
            # offsets the broker skipped, up to the newest acked, count as acked
            top = max(acked)
            filled = [o for iv in sorted(gaps.overlap(0, top), key=lambda iv: iv.begin) for o in range(iv.begin, iv.end)]
            if filled:
                acked.extend(filled)
                gaps.chop(0, max(filled[-1], top + 1))
        offset, pending = advance(acked, self._committed_offset[tp])
        acked[:] = pending
        self._acked_index[tp] = set(pending)
        return offset

    async def _drain_messages(self, fetcher) -> None:  # pragma: no cover (the worker's inner loop; e2e tests run it)
        """Faust's loop from fetched records to the conductor, with its
        per-message wait made cheap.

        Faust awaits each message's callback through `wait_first(callback,
        suspend_flow.wait())`, so that a rebalance can abandon a callback
        that blocks on a full stream buffer: two tasks and an `asyncio.wait`
        per message, ~20 µs, paid by every input event and every changelog
        record a restore reads. Here the callback runs as one task and gets
        one turn of the loop; only if it has not finished by then (it
        blocks) does the loop wait for it or for the suspension, exactly as
        Faust does. The gaps it records are the offsets a fetch passed over
        (see the class). Everything else is Faust's (faust-streaming 0.11,
        `Consumer._drain_messages`).
        """
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspend_flow = self.suspend_flow
        create_task = asyncio.get_running_loop().create_task
        sleep = asyncio.sleep
        expected = self._expected
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await sleep(0)  # (Faust: getmany may loop without yielding)
                if not self.should_stop:
                    epoch = None
                    async for tp, message in ait:
                        if epoch is None:  # the fetch has just returned
                            epoch = self._seek_epoch
                        elif epoch != self._seek_epoch and acks_enabled_for(message.topic):
                            # a seek of the stream partitions came since: fetched before it, read again after it
                            self._note("stale", tp, message.offset)
                            continue
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            nxt = expected.get(tp)
                            if nxt is not None and offset > nxt and acks_enabled_for(message.topic):
                                self._gap[tp].addi(nxt, offset)  # passed over by the fetch: not in the log
                            expected[tp] = offset + 1
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            task = create_task(callback(message))
                            await sleep(0)  # its turn (this also yields, as Faust's loop does every 100)
                            if task.done():
                                task.result()  # (an exception propagates, as from wait_first)
                            else:
                                await self.wait_first(task, suspend_flow.wait())
                                if task.cancelled():  # a rebalance began while it waited: Faust's seek brings it again
                                    self._note("abandoned", tp, offset)
                            set_read_offset(tp, offset)
                        else:
                            self._note("below_read", tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def highwaters(self, *partitions: TP) -> dict[TP, int]:
        """Where each partition ends (Faust's table recovery reads its
        changelogs up to here): from fetch responses on a broker whose
        ListOffsets answer lags a batch (`Settings.end_offsets_from_fetch`,
        on for the embedded broker: kafka_io.fetched_ends)."""
        ends = dict(await super().highwaters(*partitions))
        settings = getattr(self.app, "churn_settings", None)
        if settings is None or not settings.end_offsets_from_fetch:
            return ends
        from .kafka_io import fetched_ends
        from .security import kafka_client_kwargs

        bootstrap = ",".join(f"{url.host}:{url.port}" for url in self.app.conf.broker)
        return await fetched_ends(bootstrap, ends, **kafka_client_kwargs(settings))

    async def on_stop(self) -> None:
        await super().on_stop()
        # the commit above returns early if a timer commit was in flight; this
        # one starts after it and covers the last acked events
        await self.commit(start_new_transaction=False)


class CommitSafeBuffer(faust_producer.ProducerBuffer):
    """Faust's producer buffer, with a flush that a commit can rely on."""

    STALL_S = 60.0  # no progress for this long: give up waiting, loudly

    def __post_init__(self) -> None:
        super().__post_init__()
        self.queued = 0  # messages put, ever
        self.handed = 0  # of those, handed to aiokafka (in order: the queue is FIFO)

    def put(self, fut) -> None:
        super().put(fut)
        self.queued += 1

    @Service.task
    async def _handle_pending(self) -> None:
        get_pending = self.pending.get
        send_pending = self._send_pending
        while not self.should_stop:
            msg = await get_pending()
            await send_pending(msg)
            self.handed += 1
            self.message_sent.set()

    async def flush(self) -> None:
        """Return once every message queued before the call is in aiokafka's
        hands (messages queued meanwhile belong to events not acked yet)."""
        target = self.queued
        handed, since = self.handed, asyncio.get_running_loop().time()
        while self.handed < target:
            if self.should_stop:  # the sender task is gone: Faust's own way out
                await super().flush()
                return
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            now = asyncio.get_running_loop().time()
            if self.handed != handed:
                handed, since = self.handed, now
            elif now - since > self.STALL_S:  # a sender stuck this long is a broken producer, not a busy one
                log.error("producer buffer: no message handed to aiokafka for %.0f s (%d waiting); "
                          "committing without them", now - since, target - self.handed)
                return


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with `CommitSafeBuffer`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.app.conf.producer_threaded:  # (the threaded producer queues elsewhere)
            buffer = CommitSafeBuffer(loop=self.loop, beacon=self.beacon)
            buffer.app = self.app
            self.buffer = buffer


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer
