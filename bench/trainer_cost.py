"""What the trainer costs, per label and per input event, by model kind.
(a script, not a test)

    python bench/trainer_cost.py [--events 30000] [--kinds logreg,select]

The events are throughput.py's (the simulator's first N events, seed 42),
run through the worker's processor in process (`process.Replay`) to get the
training examples it would send to churn.training. Each model kind then
learns them as the trainer process does (`trainer.Trainer`: decode and check
each record, learn, a snapshot every `publish_every` labels), and every
snapshot is decoded once more, as each worker does when it follows
churn.models. Printed per kind: microseconds per label to decode and to
learn, milliseconds per snapshot to encode and to decode, and all of it
spread over the input events. That last figure is what the trainer took
from the worker's event loop before it ran in a process of its own
(stream_app/runtime/trainer.py), and what it now takes from the machine's other core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import simulated_events, table, warn_if_busy  # noqa: E402

import orjson  # noqa: E402

from stream_app.risk import snapshots  # noqa: E402
from stream_app.config import Settings  # noqa: E402
from stream_app.runtime.process import Replay  # noqa: E402
from stream_app.runtime.trainer import Trainer  # noqa: E402


def examples(n: int) -> list[tuple[bytes, bytes]]:
    """The churn.training records the worker would send for these events, as (key, value)."""
    replay = Replay(batch=2000, caught_up=True)
    for event in simulated_events(n, seed=42):
        replay.feed(event)
    replay.finish()
    return [(ex["customer_id"].encode(), orjson.dumps(ex)) for ex in replay.examples]


def cost(kind: str, records: list[tuple[bytes, bytes]], n_events: int) -> list[str]:
    settings = Settings(model_kind=kind)
    trainer = Trainer(settings, latest=None)
    learn = encode = decode = 0.0
    snaps = 0
    for offset, (key, value) in enumerate(records):
        a = time.perf_counter()
        trainer.learn(offset, key, value)
        b = time.perf_counter()
        learn += b - a
        if trainer.unpublished >= settings.publish_every:
            blob = trainer.snapshot()
            c = time.perf_counter()
            snapshots.decode(blob, key=None)
            decode += time.perf_counter() - c
            encode += c - b
            snaps += 1
    labels = len(records)
    per_event = (learn + encode + decode) / n_events * 1e6
    return [kind, f"{labels:,}", f"{learn / labels * 1e6:.0f}", str(snaps), f"{encode / max(snaps, 1) * 1e3:.1f}",
            f"{decode / max(snaps, 1) * 1e3:.1f}", f"{per_event:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--kinds", default="logreg,select", help="comma-separated model kinds (stream_app.config.MODEL_KINDS)")
    args = parser.parse_args()
    warn_if_busy()
    records = examples(args.events)
    rows = [cost(kind, records, args.events) for kind in args.kinds.split(",")]
    print(f"\n{args.events:,} simulated events -> {len(records):,} training examples; publish_every {Settings().publish_every}")
    print(table(["model kind", "labels", "us/label (decode + learn)", "snapshots", "ms/snapshot encode",
                 "ms/snapshot decode", "us per input event"], rows))


if __name__ == "__main__":
    main()
