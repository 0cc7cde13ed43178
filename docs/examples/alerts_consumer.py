"""A downstream service reading churn.alerts, written as users write one: confluent-kafka.

    pip install confluent-kafka jsonschema
    python docs/examples/alerts_consumer.py --broker localhost:9092 --group crm-sync [--embedded]

Prints each alert as one JSON line on stdout, after checking it against
schemas/churn.alerts.json and that its Kafka key is its customer id; an alert
that fails either check is reported on stderr (with the partition, offset and
what is wrong) and skipped, and the exit status is 1. Stops after
`--idle-timeout` seconds without a message (default: never).

Why `--embedded`: librdkafka (the C client under confluent-kafka, and under
most non-Java Kafka clients) sends `max.poll.interval.ms` (default 300 s) as
the group's rebalance timeout. The embedded broker (Tansu, `churnmon demo`)
may hold a JoinGroup up to the rebalance timeout before it answers: with the
defaults a consumer of a running demo received nothing for minutes, and one
on a fresh broker its first message after ~24 s; with 10 s it joins within a
few seconds. Apache Kafka answers as soon as the group's members have
joined: on Kafka, leave the defaults (`--embedded` only shortens the join).

Deliveries are at least once: the same `alert_id` can come twice (a worker
restarted before its commit), so a consumer that acts on alerts keeps the ids
it has acted on. Alerts of one customer are in order (keyed by customer id).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Message
from jsonschema import Draft7Validator

TOPIC = "churn.alerts"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "churn.alerts.json"

# Only for the embedded broker (see the module docstring); Kafka needs none of it.
EMBEDDED_BROKER_SETTINGS = {
    "max.poll.interval.ms": 10_000,  # the rebalance timeout librdkafka sends with JoinGroup
    "session.timeout.ms": 6_000,  # librdkafka requires it <= max.poll.interval.ms
}


def consumer_config(bootstrap: str, group: str, *, embedded: bool, from_beginning: bool = True) -> dict:
    """The consumer's settings: a group, offsets committed by librdkafka, and
    the embedded broker's two timeouts when asked for."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": True,
    }
    if embedded:
        config.update(EMBEDDED_BROKER_SETTINGS)
    return config


def load_validator(path: Path = SCHEMA_PATH) -> Draft7Validator:
    schema = json.loads(path.read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def check(msg: Message, validator: Draft7Validator) -> dict:
    """The alert in `msg`, or ValueError naming what is wrong with it."""
    where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
    try:
        alert = json.loads(msg.value())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None
    problems = sorted(validator.iter_errors(alert), key=lambda e: list(e.path))
    if problems:
        detail = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in problems)
        raise ValueError(f"{where}: does not match {SCHEMA_PATH.name}: {detail}")
    key = msg.key().decode() if msg.key() is not None else None
    if key != alert["customer_id"]:
        raise ValueError(f"{where}: keyed by {key!r}, not by its customer {alert['customer_id']!r}")
    return alert


def consume(consumer: Consumer, on_alert: Callable[[dict], None], on_invalid: Callable[[str], None], *,
            idle_timeout: float | None = None, stop: Callable[[], bool] = lambda: False) -> tuple[int, int]:
    """Read until `stop()` or `idle_timeout` s without a message while
    partitions are assigned; returns (valid, invalid).

    The time without partitions does not count: during a group rebalance
    (another member joins or leaves, or a slow machine misses a heartbeat)
    nothing can arrive, and stopping then would leave partitions unread."""
    validator = load_validator()
    consumer.subscribe([TOPIC])
    valid = invalid = 0
    last = time.monotonic()
    while not stop():
        msg = consumer.poll(0.5)
        if msg is None:
            if not consumer.assignment():
                last = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                break
            continue
        last = time.monotonic()
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise RuntimeError(f"consumer error: {msg.error()}")
        try:
            alert = check(msg, validator)
        except ValueError as exc:
            invalid += 1
            on_invalid(str(exc))
            continue
        valid += 1
        on_alert(alert)
    return valid, invalid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", default="localhost:9092", help="bootstrap servers, host:port[,host:port]")
    ap.add_argument("--group", default="churn-alerts-example", help="consumer group id")
    ap.add_argument("--embedded", action="store_true", help="the embedded broker's timeouts (churnmon demo); not for Kafka")
    ap.add_argument("--latest", action="store_true", help="only alerts published from now on (a new group starts at the beginning otherwise)")
    ap.add_argument("--idle-timeout", type=float, default=None, help="stop after this many seconds without a message")
    args = ap.parse_args(argv)

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    consumer = Consumer(consumer_config(args.broker, args.group, embedded=args.embedded, from_beginning=not args.latest))
    try:
        valid, invalid = consume(
            consumer,
            lambda a: print(json.dumps(a, sort_keys=True), flush=True),
            lambda problem: print(problem, file=sys.stderr, flush=True),
            idle_timeout=args.idle_timeout, stop=lambda: bool(stopping),
        )
    except KeyboardInterrupt:
        return 130
    finally:
        consumer.close()  # commits the offsets and leaves the group
    print(f"{valid} alerts valid, {invalid} invalid", file=sys.stderr)
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
