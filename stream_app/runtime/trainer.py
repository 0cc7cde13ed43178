"""The trainer, in a process of its own.

One worker of the group owns churn.training's one partition (Faust assigns
it); that worker starts this process, which reads the labelled examples,
learns them, and publishes versioned snapshots to churn.models. Every worker,
the owner too, follows churn.models and scores with the newest snapshot.

Why a process and not a task on the worker's event loop: with the candidate
set (`model_kind=select`: the rules, a logistic model and a Hoeffding tree,
each example scored by all three before any learns it) a label costs about
0.6 ms of learning and a snapshot ~25 ms to encode. On the simulator's
events that is ~40 us per *input* event, a quarter of what the worker spends
per event, taken from the loop that processes them (bench/throughput.py:
worker / bare Faust 0.65 before the candidates, 0.45 after). In a process of
its own the trainer uses the core the worker does not, and a slow learner
can never hold input events back.

Exactly-once per model lineage is unchanged: the process starts from the
newest snapshot the worker has read (its training offset inside, covered by
the MAC) and learns from the offset after it. When the worker loses the
partition, or stops, the process is told to stop and drops what it has not
published; the next owner resumes from the newest snapshot. The process
dies with the worker however the worker dies (PR_SET_PDEATHSIG:
`children.die_with`, what `children.die_with_parent` does for subprocesses).

What only the worker can export (its /metrics) comes back over a pipe as
small messages (`Report`): labels learnt, examples dead-lettered, the
quality report at each publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from ..config import Settings
from ..ingest import dead_letters as dl
from ..ingest.contract import Limits, Rejection, decode_example, format_ts
from ..risk import snapshots
from ..risk.model import ChurnModel, Quality
from . import topics
from .children import die_with
from .security import kafka_client_kwargs, signing_key

if TYPE_CHECKING:  # not imported at run time: the trainer process imports this module and needs no Faust
    from .metrics import Metrics
    from .model_feed import ModelFeed
    from .progress import Progress

log = logging.getLogger(__name__)

STOP = "stop"


@dataclass
class Report:
    """What the trainer tells its worker since the last report."""
    learnt: int = 0
    learnt_to: int = -1
    version: int = 0
    rejected: list[str] = field(default_factory=list)  # reasons of the dead-lettered examples (a metric label)
    quality: dict | None = None  # set when a snapshot was published
    dropped: int | None = None  # set by the last report: labels learnt and not published


class Trainer:
    """The learning loop without Kafka: examples in, snapshots out.

    >>> import orjson
    >>> from stream_app.risk.features import NEUTRAL
    >>> t = Trainer(Settings(min_labels=1, publish_every=2, model_kind="logreg"), latest=None)
    >>> ex = {"customer_id": "c1", "features": NEUTRAL, "label": 1, "snapshot_t": 0.0, "labelled_t": 86400.0, "score": None}
    >>> t.learn(0, b"c1", orjson.dumps(ex)) is None, t.due(), t.learnt_to
    (True, False, 0)
    >>> t.learn(1, b"c2", orjson.dumps(ex)).reason, t.due(), t.learnt_to   # refused, never learnt; the offset moves on
    ('key_mismatch', False, 1)
    >>> t.learn(2, b"c1", orjson.dumps(ex)) is None, t.due()
    (True, True)
    >>> snapshots.decode(t.snapshot()).training_offset, t.due()
    (2, False)
    """

    def __init__(self, settings: Settings, latest: snapshots.Snapshot | None) -> None:
        self.settings = settings
        self.key = signing_key(settings)
        self.limits = Limits(max_bytes=settings.max_event_bytes, max_future_s=settings.max_future_s)
        if latest is not None:
            self.model, self.learnt_to = latest.model, latest.training_offset
        else:
            self.model, self.learnt_to = ChurnModel(settings.model_kind, min_labels=settings.min_labels), -1
        self.quality = Quality()
        self.unpublished, self.first_unpublished = 0, 0.0

    def learn(self, offset: int, key: bytes | None, value: bytes | None) -> Rejection | None:
        """Learn one record of churn.training; a bad one is returned, never learnt
        (the offset moves past it all the same)."""
        self.learnt_to = offset
        ex = decode_example(key, value, now=time.time(), limits=self.limits)
        if isinstance(ex, Rejection):
            return ex
        if ex.get("score") is not None:
            self.quality.update(ex["label"], ex["score"], ex["labelled_t"])
        self.model.learn(ex["features"], ex["label"])
        self.unpublished += 1
        self.first_unpublished = self.first_unpublished or time.monotonic()
        return None

    def due(self) -> bool:
        """A snapshot is due: `publish_every` new labels, or `publish_interval_s`
        since the first unpublished one (so a quiet stream's last labels go out)."""
        if not self.unpublished:
            return False
        return (self.unpublished >= self.settings.publish_every
                or time.monotonic() - self.first_unpublished >= self.settings.publish_interval_s)

    def snapshot(self) -> bytes:
        self.unpublished, self.first_unpublished = 0, 0.0
        self.model.publish(created_at=time.time())
        return snapshots.encode(self.model, training_offset=self.learnt_to, key=self.key)


def main(settings: Settings, broker_url: str, latest_blob: bytes | None, conn: Connection, parent: int) -> None:
    """The process's entry point (`multiprocessing`, spawn)."""
    die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the worker stops us
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    asyncio.run(_run(settings, broker_url, latest_blob, conn))


async def _run(settings: Settings, broker_url: str, latest_blob: bytes | None, conn: Connection) -> None:
    from aiokafka import TopicPartition

    from . import kafka_io

    latest = snapshots.decode(latest_blob, key=signing_key(settings)) if latest_blob else None
    trainer = Trainer(settings, latest if isinstance(latest, snapshots.Snapshot) else None)
    log.info("trainer (pid %s): model version %s, learnt to offset %s of %s", os.getpid(), trainer.model.version,
             trainer.learnt_to, topics.TRAINING)
    bootstrap, client = topics.bootstrap_servers(broker_url), kafka_client_kwargs(settings)
    tp = TopicPartition(topics.TRAINING, 0)
    report = Report()
    stopped = asyncio.Event()  # SIGTERM (the worker's whole process group is being stopped) ends it as STOP does
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    try:
        async with kafka_io.consumer(bootstrap, auto_offset_reset="earliest", **client) as consumer, \
                kafka_io.producer(bootstrap, linger_ms=5, **client) as producer:
            scan = kafka_io.Scan(consumer, {tp: trainer.learnt_to + 1}, to=None, timeout_ms=int(settings.clock_tick_s * 1000),
                                 max_records=500, stop=lambda: stopped.is_set() or (conn.poll() and conn.recv() == STOP))
            async for batch in scan:
                for msg in batch.get(tp, []):
                    if msg.offset <= trainer.learnt_to:
                        continue
                    bad = trainer.learn(msg.offset, msg.key, msg.value)
                    if bad is None:
                        report.learnt += 1
                    else:
                        await _dead_letter(producer, msg, bad)
                        report.rejected.append(bad.reason)
                if trainer.due():
                    blob = trainer.snapshot()
                    await producer.send_and_wait(topics.MODELS, key=b"churn-model", value=blob, headers=[
                        ("version", str(trainer.model.version).encode()), ("training_offset", str(trainer.learnt_to).encode())])
                    report.quality = trainer.quality.report()
                if report.learnt or report.rejected or report.quality is not None:
                    report.learnt_to, report.version = trainer.learnt_to, trainer.model.version
                    conn.send(report)
                    report = Report()
    except (BrokenPipeError, EOFError):  # the worker is gone
        return
    log.info("trainer: stopped; the model was dropped with %s labels unpublished", trainer.unpublished)
    with contextlib.suppress(BrokenPipeError, OSError):
        conn.send(Report(learnt_to=trainer.learnt_to, version=trainer.model.version, dropped=trainer.unpublished))


async def _dead_letter(producer, msg, rejection: Rejection) -> None:
    headers = dl.from_topic(rejection.reason, rejection.detail, msg.topic, msg.partition, msg.offset, format_ts(time.time()))
    await producer.send_and_wait(topics.DLQ, key=msg.key, value=msg.value if msg.value is not None else b"", headers=headers)
    log.warning("dead-lettered %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, rejection.reason)


class TrainerProcess:
    """The worker's handle on the trainer process."""

    def __init__(self, settings: Settings, broker_url: str, latest_blob: bytes | None) -> None:
        ctx = multiprocessing.get_context("spawn")  # the worker has threads (Faust's consumer): never fork it
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=main, args=(settings, broker_url, latest_blob, child, os.getpid()),
                                   name="churnmon-trainer", daemon=True)
        self.process.start()
        child.close()

    def alive(self) -> bool:
        return self.process.is_alive()

    def reports(self) -> list[Report]:
        out = []
        try:
            while self.conn.poll():
                out.append(self.conn.recv())
        except (EOFError, OSError):  # the process ended: what it sent before is already read
            pass
        return out

    async def stop(self, timeout_s: float = 10.0) -> list[Report]:
        """Ask the process to stop, wait for it (without blocking the loop), and
        return its last reports; kill it if it does not stop in time."""
        try:
            self.conn.send(STOP)
        except (BrokenPipeError, OSError):
            pass
        deadline = time.monotonic() + timeout_s
        out = []
        while self.process.is_alive() and time.monotonic() < deadline:
            out += self.reports()
            await asyncio.sleep(0.05)
        out += self.reports()
        if self.process.is_alive():
            log.warning("trainer: did not stop in %.0f s; killed", timeout_s)
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()
        return out


class TrainerSupervisor:
    """The worker's side: run the trainer process while this worker owns
    churn.training, export what it reports, stop it when the partition moves.

    The `churn-train` agent on churn.training only acks its records unread
    (`drain`): its one partition makes one worker of the group the trainer
    (Faust assigns it to one member), and the process reads the records with
    a consumer of its own. Not from the agent's stream: Faust hands a
    consumer's records to its agents in fetch order, so while the input
    agent's buffer is full (any replay or backlog) the training records wait
    behind input records. Measured with bench/writes.py on the default
    population (1.28M events): the trainer had learnt 43,576 of 83,172
    labels when the last event was processed.
    """

    def __init__(self, settings: Settings, broker_url: str, metrics: Metrics, progress: Progress, feed: ModelFeed) -> None:
        self.settings = settings
        self.broker_url = broker_url
        self.metrics = metrics
        self.progress = progress
        self.feed = feed  # its newest snapshot is where the process resumes

    @staticmethod
    async def drain(stream) -> None:
        async for _ in stream.events():
            pass

    def owns_training(self) -> bool:
        return self.progress.owns(topics.TRAINING, 0)

    async def run(self) -> None:
        """On the worker that owns churn.training: learn every labelled example
        and publish versioned snapshots (`train_while_owner`); elsewhere,
        look again every clock tick."""
        await self.feed.seen.wait()
        while True:
            if self.owns_training():
                try:
                    await self.train_while_owner()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:  # the process could not start: try again at the next tick
                    log.exception("trainer: could not run the trainer process; trying again")
            await asyncio.sleep(self.settings.clock_tick_s)

    async def train_while_owner(self) -> None:
        """It resumes from the newest snapshot this worker has read, so every
        example is learnt once per model lineage; what it has not published
        when stopped is dropped, and the next owner learns it."""
        child = TrainerProcess(self.settings, self.broker_url, self.feed.latest_blob)
        log.info("trainer: started process %s for %s", child.process.pid, topics.TRAINING)
        try:
            while self.owns_training() and child.alive():
                self.export(child.reports())
                await asyncio.sleep(self.settings.trainer_report_s)
        finally:
            self.export(await child.stop())
        if child.process.exitcode not in (0, None):
            log.warning("trainer: process exited with %s; starting again from the newest snapshot", child.process.exitcode)

    def export(self, reports: list[Report]) -> None:
        m = self.metrics
        for r in reports:
            if r.learnt:
                m.model_labels.inc(r.learnt)
            for reason in r.rejected:
                m.rejected.labels(topic=topics.TRAINING, reason=reason).inc()
            if r.quality is not None:
                m.record_quality(r.quality)
            if r.dropped is not None:
                log.info("trainer: %s stopped at offset %s; %s labels unpublished were dropped", topics.TRAINING, r.learnt_to, r.dropped)
