"""A minimal quixstreams app for bench/throughput.py (started by it; not a benchmark itself).

quixstreams is the stream library a Python user would most likely pick
instead of Faust, so throughput.py runs it as a peer, on the same events and
broker. One Application reads the three input topics as one StreamingDataFrame
(`concat` of one per topic), with the library's own JSON deserializer (it
decodes with orjson, as the Faust agents and the raw floor do), and counts:

- mode `count`: count only (like the bare Faust agent);
- mode `state`: also `state.set("count", state.get("count", 0) + 1)` in the
  library's per-key state (RocksDB, one store per partition, with a
  changelog topic), keyed by the message key: the customer id, as the
  producer writes it (like the naive Faust Table agent).

What a user gets with the library's defaults, but for four settings (see
`build`): the group timings and the topic admin, for this broker; the state
directory, in the run's work directory; and the poll timeout, which the
parent sets (BENCH_POLL_TIMEOUT; throughput.py's --quix-poll-timeout,
0.01 s unless told). Why the poll timeout: reading several topics as one
dataframe, quixstreams aligns them by timestamp and so reads with
confluent-kafka's `Consumer.consume(num_messages=10000, timeout)`, which
returns when it has 10,000 messages or when the timeout runs out, even if
it holds fewer messages already. At the end of a backlog every such call
waits out the whole timeout: with the library's 1.0 s, counting 30,000
events took 2.3 s, 2.0 s of which were two such waits before the last
thousand events (2026-11-30). That is a latency of the end of the input,
not a cost per event; 10 ms keeps it out of the figure, as the worker's
10 ms fetch wait does for the embedded broker's fetches.

Two defaults shape the figures and are kept on purpose:

- concatenated topics are read in timestamp order per partition number
  (quixstreams buffers and aligns them), much as the project's worker holds
  events to apply them in event-time order;
- state is committed per checkpoint (`commit_interval`, 5 s): writes go to a
  per-checkpoint transaction and reach RocksDB and the changelog, one record
  per changed key, when the checkpoint commits.

Timed like the Faust agents: from the 1st event processed to the N-th
(`_counter.Tally`). The N-th stops the app, whose last act is a forced
checkpoint commit (state flushed to RocksDB, changelog produced and flushed,
offsets committed); the result also says how long the stop took
(`stop_seconds`: N-th event -> `Application.run` returned, the consumer's
close included), because in a run shorter than the commit interval the
state's writes happen only then, off the clock.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models.topics import TopicAdmin, TopicManager

from _counter import Config, Tally, write_result
from stream_app.runtime.topics import bootstrap_servers

# librdkafka joins a group on this broker only when its rebalance timeout,
# which is max.poll.interval.ms (300 s by default), runs out; the session
# timeout may not exceed it. Quick joins, as the Faust agents have.
GROUP_TIMINGS = {"max.poll.interval.ms": 6000, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}

# What Apache Kafka reports for a topic created without these (its broker
# defaults log.retention.ms, 7 days, and log.retention.bytes, unbounded).
KAFKA_RETENTION_DEFAULTS = {"retention.ms": str(7 * 24 * 3600 * 1000), "retention.bytes": "-1"}


class KafkaDefaultsTopicAdmin(TopicAdmin):
    """quixstreams' TopicAdmin, completing the embedded broker's topic configs.

    A stateful StreamingDataFrame derives its changelog topic's config from
    its input topics' "retention.ms" (required: KeyError without it) and
    "retention.bytes" (TopicManager.derive_topic_config), which it reads with
    DescribeConfigs (TopicAdmin.inspect_topics). Kafka answers with every
    config, its broker defaults included; the embedded broker (Tansu) answers
    only with the configs a topic was created with, and the input topics are
    created with none. This admin fills in Kafka's defaults where the broker
    said nothing, so the library derives what it would on Kafka, and leaves
    whatever the broker does report as it is. It reaches the Application
    through its public `topic_manager` parameter: no patching of the library.
    """

    def inspect_topics(self, topic_names, timeout=30):
        return {
            name: config and dataclasses.replace(config, extra_config={**KAFKA_RETENTION_DEFAULTS, **config.extra_config})
            for name, config in super().inspect_topics(topic_names, timeout=timeout).items()
        }


def build(cfg: Config) -> tuple[Application, Tally]:
    """The Application and its dataframe; `tally` counts, `app.stop()` at the N-th."""
    servers = bootstrap_servers(cfg.broker)
    app = Application(
        broker_address=servers, consumer_group=cfg.app_id, auto_offset_reset="earliest", loglevel="WARNING",
        consumer_extra_config=GROUP_TIMINGS, consumer_poll_timeout=float(os.environ["BENCH_POLL_TIMEOUT"]),
        state_dir=cfg.datadir,
        # what the Application would build itself (same timeouts), but for the admin
        topic_manager=TopicManager(topic_admin=KafkaDefaultsTopicAdmin(broker_address=servers), consumer_group=cfg.app_id),
    )
    # the input topics exist (the producer created them with the bench's
    # partition count); the changelog topic is created by the library with an
    # explicit partition count, that of its input topics
    frames = [app.dataframe(app.topic(name, key_deserializer="bytes", value_deserializer="json")) for name in cfg.topics]
    sdf = functools.reduce(StreamingDataFrame.concat, frames)
    tally = Tally(cfg.events)

    if cfg.mode == "state":
        def count(value, state) -> None:
            state.set("count", state.get("count", 0) + 1)
            if tally.add():
                app.stop()

        sdf.update(count, stateful=True)
    else:
        def count(value) -> None:
            if tally.add():
                app.stop()

        sdf.update(count)
    return app, tally


def main() -> None:
    cfg = Config.from_env()
    app, tally = build(cfg)
    app.run()
    stopped = time.perf_counter()
    if tally.count < cfg.events:  # stopped from outside (SIGTERM, Ctrl-C)
        raise SystemExit(f"stopped after {tally.count:,} of {cfg.events:,} events")
    write_result(cfg, {**tally.result(), "mode": cfg.mode, "stop_seconds": stopped - tally.last})


if __name__ == "__main__":
    main()
