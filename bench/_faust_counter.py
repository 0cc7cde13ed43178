"""A minimal Faust app for bench/throughput.py (started by it; not a benchmark itself).

One agent reads the three input topics as raw bytes and, per event, decodes
the JSON value (the same per-event work as the raw aiokafka floor) and counts:

- mode `bare`:  count only;
- mode `table`: also `counts[key] = counts.get(key, 0) + 1` in a Faust Table
  (in-memory store, changelog of the same partition count), the naive way to
  keep per-customer state.

It times from the first event processed to the N-th (`_counter.Tally`),
writes {"count", "seconds", "rate", ...} as JSON to BENCH_RESULT and stops
itself. Configured by environment variables (see `_counter.Config.from_env`).
"""

from __future__ import annotations

import os
import signal

from _counter import Config, Tally, write_result


def changelog(app_id: str) -> str:
    """The table's changelog topic (the parent creates it with explicit partitions)."""
    return f"{app_id}-counts-changelog"


def build(cfg: Config):
    import faust
    import orjson

    app = faust.App(
        cfg.app_id, broker=cfg.broker, store="memory://", datadir=cfg.datadir, topic_partitions=cfg.partitions,
        web_enabled=False, autodiscover=False,
        # the project worker's group timings (stream_app/config.py): quick joins
        broker_rebalance_timeout=5.0, broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
    )
    source = app.topic(*cfg.topics, key_serializer="raw", value_serializer="raw")
    counts = app.Table("counts", partitions=cfg.partitions) if cfg.mode == "table" else None
    loads = orjson.loads
    tally = Tally(cfg.events)

    @app.agent(source)
    async def count(stream):
        async for key, value in stream.items():
            loads(value)
            if counts is not None:
                counts[key] = counts.get(key, 0) + 1
            if tally.add():
                write_result(cfg, {**tally.result(), "mode": cfg.mode, "uvloop": cfg.uvloop})
                os.kill(os.getpid(), signal.SIGTERM)  # a clean Faust shutdown

    return app


def main() -> None:
    cfg = Config.from_env()
    if cfg.uvloop:
        import mode.loop

        mode.loop.use("uvloop")
    import faust

    faust.Worker(build(cfg), loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
