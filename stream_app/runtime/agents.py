"""Faust wiring: which agent, task, timer and page runs what.

Every piece it wires is a module of its own, in the order the data flows:

- adapters.py: one agent per `churn.source.*` topic, mapping Stripe,
  Segment and Zendesk records to contract events on the input topics;
- processing.py: the `churn-process` agent on the input topics and the
  clock topic, batches handed to `process.Processor` (no Faust there);
- clock.py: the timer that moves quiet partitions to the worker's clock;
- model_feed.py: the task that follows churn.models and hot-swaps the model;
- trainer.py: the `churn-train` agent and the task that runs the trainer
  process on the worker that owns churn.training;
- web.py: /metrics, the customer lookup, /healthz.

Shared between them: the tables (tables.py), what this worker owns and has
processed (progress.py), the dead-letter sink (rejects.py) and the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from ..config import Settings
from . import topics
from .adapters import Adapters
from .clock import Ticks
from .metrics import Metrics
from .model_feed import ModelFeed
from .process import Processor
from .processing import Processing
from .progress import Progress
from .rejects import DeadLetterSink
from .tables import customer_table
from .trainer import TrainerSupervisor
from .web import register_pages


@dataclass
class Pipeline:
    """What `register` built, for the CLI, tests and benches to reach."""
    customers: faust.Table
    risk: faust.Table
    metrics: Metrics
    processing: Processing
    ticks: Ticks
    feed: ModelFeed
    trainer: TrainerSupervisor
    adapters: Adapters
    agent: faust.types.AgentT


def register(app: faust.App, settings: Settings, broker_url: str, metrics: Metrics | None = None) -> Pipeline:
    """Attach the pipeline's agents, timer, tasks and web views to `app`."""
    metrics = metrics or Metrics()
    n = settings.partitions
    customers = customer_table(app, settings, topics.CUSTOMERS_TABLE, "customer_state")
    risk = customer_table(app, settings, topics.RISK_TABLE, "risk_memory")
    clock_name = topics.clock_topic(settings)
    progress = Progress(app, clock_name)
    rejects = DeadLetterSink(app, settings, metrics)
    processor = Processor(settings, customers, risk, metrics=metrics, clock_topic=clock_name, caught_up=progress.read_to_end)
    processing = Processing(app, settings, metrics, processor, progress, rejects)
    metrics.watch_ledgers(processing.ledger_values)
    feed = ModelFeed(settings, broker_url, processor, metrics)
    supervisor = TrainerSupervisor(settings, broker_url, metrics, progress, feed)
    adapters = Adapters(app, settings, metrics, progress, rejects)
    clock = Ticks(app, settings, processing, progress, clock_name)
    inputs = app.topic(*topics.INPUT_TOPICS, clock_name, key_serializer="raw", value_serializer="raw", partitions=n)

    @app.agent(processing.training, name="churn-train")
    async def train(stream):
        await supervisor.drain(stream)

    @app.task
    async def models():
        await feed.follow()

    @app.task
    async def trainer():
        await supervisor.run()

    @app.agent(inputs, name="churn-process")
    async def process(stream):
        await processing.process(stream)

    adapters.register()

    @app.timer(settings.clock_tick_s)
    async def ticks():
        await clock.send()

    def on_rebalance() -> None:
        processing.on_rebalance()
        clock.forget()
        progress.forget()

    @app.on_partitions_assigned.connect
    async def assigned(sender, assigned, **kwargs):
        on_rebalance()

    @app.on_partitions_revoked.connect
    async def revoked(sender, revoked, **kwargs):
        on_rebalance()

    register_pages(app, settings, metrics, processing, customers, risk)
    return Pipeline(customers, risk, metrics, processing, clock, feed, supervisor, adapters, process)
