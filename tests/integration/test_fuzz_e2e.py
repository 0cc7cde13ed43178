"""Fuzz every topic the worker reads, end to end: the three inputs, its clock
topic, churn.training and churn.models get seeded random bytes and near-valid
mutations of real messages, mixed with a real history. The worker keeps
processing, loses nothing (every valid event processed, every training record
learnt or dead-lettered), and dead-letters or skips each bad message with the
reason the pure decoders give for it (the oracle: `contract.decode`,
`decode_tick`, `decode_example`, `snapshots.decode`; their own hypothesis
tests are in tests/test_contract.py and tests/test_snapshots.py)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter

import orjson
import pytest

from stream_app.runtime import kafka_io
from stream_app.risk import snapshots
from stream_app.ingest.contract import Limits, Rejection, decode, decode_example, decode_tick, topic_for_type
from stream_app.tools.dlq import read
from stream_app.risk.features import NEUTRAL
from stream_app.risk.model import ChurnModel
from stream_app.runtime.topics import INPUT_TOPICS, MODELS, TRAINING, bootstrap_servers
from tests.integration.conftest import processed, replay, simulate, wait_for
from tests.integration.conftest import read_all

pytestmark = pytest.mark.integration

SEED = 20251130
PER_INPUT, TICKS, EXAMPLES, SNAPSHOTS = 300, 150, 200, 80


def rand_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**40, -(2**62), rng.randint(-1000, 10**6)])
    if kind == 3:
        return rng.choice([0.0, -0.5, 1e300, -1e300, 1e-300, rng.uniform(-1e7, 1e7)])
    if kind == 4:
        return rng.choice(["", "x", "2025-01-01T00:00:00Z", "2025-02-30T00:00:00Z", "\u2603", "purchase", "a" * 200])
    if kind == 5:
        return rng.uniform(0, 2e9)
    if kind == 6:
        return [rand_json(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(["t", "a", "type", ""]): rand_json(rng, depth + 1) for _ in range(rng.randrange(3))}


def mutate_bytes(rng: random.Random, raw: bytes) -> bytes | None:
    how = rng.randrange(5)
    if how == 0:
        return raw[: rng.randrange(len(raw))]  # truncated
    if how == 1:
        b = bytearray(raw)
        b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if how == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
    if how == 3:
        return None  # a tombstone
    return b"[" + raw + b"]"


def mutate_object(rng: random.Random, obj: dict, fields: list[str]) -> dict:
    out = json.loads(json.dumps(obj))
    target, name = out, rng.choice(fields)
    if isinstance(out.get("features"), dict) and rng.random() < 0.5:
        target, name = out["features"], rng.choice(sorted(NEUTRAL) + ["shoe_size"])
    if rng.random() < 0.3:
        target.pop(name, None)
    else:
        target[name] = rand_json(rng)
    return out


def dumps(obj) -> bytes | None:
    try:
        return json.dumps(obj).encode()
    except (ValueError, UnicodeEncodeError):
        return None


def fuzz_inputs(rng: random.Random, valid: list[dict], now: float) -> list[tuple[str, bytes | None, bytes | None]]:
    out = []
    for i in range(PER_INPUT * len(INPUT_TOPICS)):
        ev = dict(rng.choice(valid), event_id=f"fz-{i}")
        topic = topic_for_type(ev["type"]) if rng.random() < 0.9 else rng.choice(INPUT_TOPICS)
        key = ev["customer_id"].encode() if rng.random() < 0.8 else rng.choice([None, b"someone-else"])
        if rng.random() < 0.3:
            value = mutate_bytes(rng, orjson.dumps(ev))
        else:
            value = dumps(mutate_object(rng, ev, sorted(ev) + ["_t", "amount", "mrr"]))
        out.append((topic, key, value))
    return out


def fuzz_ticks(rng: random.Random) -> list[bytes | None]:
    out = []
    for _ in range(TICKS):
        how = rng.randrange(4)
        if how == 0:
            out.append(mutate_bytes(rng, b'{"t": 1735689600.0}'))
        elif how == 1:
            out.append(dumps({"t": rand_json(rng)}))
        elif how == 2:
            out.append(dumps({"t": rng.choice([time.time(), time.time() + 3600, 1e300, 1.0])}))
        else:
            out.append(dumps(rand_json(rng)))
    return out


def fuzz_examples(rng: random.Random) -> list[tuple[bytes | None, bytes | None]]:
    good = {"customer_id": "cus_000001", "features": dict(NEUTRAL), "label": True, "snapshot_t": 1735689600.0,
            "labelled_t": 1738281600.0, "score": 0.2}
    out = []
    for _ in range(EXAMPLES):
        if rng.random() < 0.3:
            out.append((b"cus_000001", mutate_bytes(rng, orjson.dumps(good))))
        else:
            out.append((rng.choice([b"cus_000001", None, b"cus_x"]), dumps(mutate_object(rng, good, sorted(good)))))
    return out


def fuzz_snapshots(rng: random.Random) -> list[bytes | None]:
    """Snapshots the oracle refuses (an accepted one would change the model: not the point here)."""
    m = ChurnModel(min_labels=1)
    m.learn(dict(NEUTRAL), True)
    m.publish(created_at=0.0)
    genuine = snapshots.encode(m, training_offset=0)
    magic, sig, header, body = genuine.split(b"\n", 3)
    out = []
    while len(out) < SNAPSHOTS:
        how = rng.randrange(4)
        if how == 0:
            blob = mutate_bytes(rng, genuine)
        elif how == 1:
            head = mutate_object(rng, orjson.loads(header), ["kind", "body", "meta"])
            blob = b"\n".join((magic, sig, dumps(head) or b"", body))
        elif how == 2:
            meta = orjson.loads(header)
            meta["meta"] = mutate_object(rng, meta["meta"], sorted(meta["meta"]))
            blob = b"\n".join((magic, sig, dumps(meta) or b"", body))
        else:
            state = mutate_object(rng, orjson.loads(body), ["inputs", "weights", "intercept", "optimizer_steps", "scaler"])
            blob = b"\n".join((magic, rng.choice([sig, b"00ff"]), header, dumps(state) or b""))
        if isinstance(snapshots.decode(blob), Rejection):
            out.append(blob)
    return out


async def produce(url: str, records: list[tuple[str, bytes | None, bytes | None, int | None]]) -> None:
    # Kafka needs a key or a value; a null value is rejected whatever the key
    await kafka_io.send(bootstrap_servers(url), [(topic, b"tombstone" if key is None and value is None else key, value, partition)
                                                 for topic, key, value, partition in records], each_acked=False, linger_ms=5)


def counters(w, name: str) -> Counter:
    out = Counter()
    for k, v in w.metrics().items():
        if k.startswith(name + "{") and v:
            labels = dict(part.split("=", 1) for part in k[len(name) + 1:-1].split(","))
            out[tuple(labels[x].strip('"') for x in sorted(labels))] += v
    return out


def test_every_topic_the_worker_reads_survives_fuzzing(broker, workers, app_id, tmp_path):
    rng = random.Random(SEED)
    path = tmp_path / "sim.jsonl"
    n_sim = simulate(path, 60, 45, 9)
    valid = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert replay(broker, path).returncode == 0
    w = workers(app_id, CHURNMON_MIN_LABELS="50", CHURNMON_PUBLISH_EVERY="50")
    clock = f"{app_id}-clock"
    now = time.time()

    inputs = fuzz_inputs(rng, valid, now)
    ticks = fuzz_ticks(rng)
    examples = fuzz_examples(rng)
    models = fuzz_snapshots(rng)
    half = len(inputs) // 2
    records = [(t, k, v, None) for t, k, v in inputs[:half]]
    records += [(clock, None, v, rng.randrange(8)) for v in ticks]
    records += [(TRAINING, k, v, 0) for k, v in examples]
    records += [(MODELS, b"churn-model", v, 0) for v in models]
    records += [(t, k, v, None) for t, k, v in inputs[half:]]
    asyncio.run(produce(broker.url, records))
    # and valid events after all of it: the worker must still take them
    tail = [dict(ev, event_id=f"tail-{i}", customer_id=f"tail_{i % 7}") for i, ev in enumerate(valid[-40:])]
    asyncio.run(produce(broker.url, [(topic_for_type(ev["type"]), ev["customer_id"].encode(), orjson.dumps(ev), None) for ev in tail]))

    # the oracle: what the pure decoders say about each message
    want_rejected: Counter = Counter()
    valid_fuzz = 0
    for topic, key, value in inputs:
        out = decode(topic, key, value, now=now, limits=Limits())
        if isinstance(out, Rejection):
            want_rejected[(out.reason, topic)] += 1
        else:
            valid_fuzz += 1
    for value in ticks:
        out = decode_tick(value, now=now, ceiling=0.0)
        if isinstance(out, Rejection):
            want_rejected[(out.reason, clock)] += 1
    bad_examples = 0
    for key, value in examples:
        out = decode_example(key, value, now=now)
        if isinstance(out, Rejection):
            want_rejected[(out.reason, TRAINING)] += 1
            bad_examples += 1
    want_snapshots = Counter((snapshots.decode(v).reason,) for v in models)
    n_valid = n_sim + valid_fuzz + len(tail)
    print(f"fuzz: {len(inputs)} input messages ({valid_fuzz} still valid), {len(ticks)} ticks, {len(examples)} examples "
          f"({bad_examples} bad), {len(models)} snapshots; {n_valid} valid events in all")

    def taken(m: dict) -> float:  # processed, or dropped as a redelivery of an event id already applied
        return processed(m) + sum(v for k, v in m.items() if k.startswith("churn_events_duplicate_total"))
    wait_for(lambda: taken(w.metrics()) >= n_valid, 300, f"all {n_valid} valid events processed", w, every=1)
    wait_for(lambda: counters(w, "churn_events_rejected_total") == want_rejected, 60, "every bad message dead-lettered with its reason", w)
    wait_for(lambda: counters(w, "churn_model_snapshots_rejected_total") == want_snapshots, 60, "every bad snapshot skipped with its reason", w)
    assert taken(w.metrics()) == n_valid
    assert w.proc.poll() is None and "Traceback" not in w.log.read_text()

    # churn.training: every record learnt or dead-lettered, none lost (the worker's own examples included)
    def training_accounted():
        total = len(read_all(broker.url, TRAINING))
        learnt = w.metrics().get("churn_model_labels_total", 0)
        return learnt + bad_examples == total and (learnt, total)
    learnt, total = wait_for(training_accounted, 120, "every training record learnt or dead-lettered", w, every=1)
    assert learnt > len(examples) - bad_examples  # the worker's own examples too

    # churn.dlq holds every dead-lettered message, bytes intact
    letters = asyncio.run(read(bootstrap_servers(broker.url)))
    assert len(letters) == sum(want_rejected.values())
    assert Counter((d.reason, d.source_topic) for d in letters) == want_rejected
    sent = Counter((t, v or b"") for t, _, v in inputs) + Counter((clock, v or b"") for v in ticks) + Counter((TRAINING, v or b"") for _, v in examples)
    assert all(sent[(d.source_topic, d.value)] for d in letters)
