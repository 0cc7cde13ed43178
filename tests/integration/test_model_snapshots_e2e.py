"""churn.models is a trust boundary: a forged snapshot produced to it, with a
version header that beats every real one, runs no code in the worker, leaves
its scores unchanged, and is counted with a reason; the worker keeps running,
and so does every restart that reads the topic from the start again."""

from __future__ import annotations

import asyncio
import pickle
import signal

import pytest

from stream_app.runtime import kafka_io
from stream_app.risk.model import ChurnModel
from stream_app.risk.snapshots import MAGIC, encode, mac
from stream_app.runtime.topics import MODELS, bootstrap_servers
from tests.integration.conftest import lookup, processed, replay, send, simulate, wait_for
from tests.test_model import sample

pytestmark = pytest.mark.integration

KEY = "e2e-signing-key-" + "0" * 16
WRONG = b"someone-else-s-key-0123456789"
HUGE = str(10**9).encode()


class Marker:
    """Unpickling this creates a file: a stand-in for whatever code a forger would run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def framed(kind: str, body: bytes, signature: bytes = b"-") -> bytes:
    import orjson

    head = orjson.dumps({"kind": kind, "body": "pickle" if kind == "arf" else "json",
                         "meta": {"version": 10**9, "labels_seen": 1, "positives": 1, "min_labels": 1, "seed": 1,
                                  "training_offset": 10**9, "created_at": 0.0}})
    return b"\n".join((MAGIC, signature, head, body))


def forged_logreg(key: bytes | None) -> bytes:
    """A well-formed logistic model with absurd weights and a version that beats every real one."""
    import random

    m = ChurnModel(min_labels=1)
    rnd = random.Random(1)
    for _ in range(20):
        m.learn(sample(rnd, True), True)
        m.learn(sample(rnd, False), False)
    state = m.linear_state()
    state["weights"] = [999_999.0 if i % 2 else -999_999.0 for i, _ in enumerate(state["weights"])]
    m.load_linear_state(state)
    m.version = 10**9
    return encode(m, training_offset=10**9, key=key)


def forgeries(marker: str) -> list[tuple[bytes | None, str]]:
    """(record value, the reason a keyed worker refuses it)."""
    evil = pickle.dumps(Marker(marker))
    return [
        (evil, "unknown_format"),  # the old format: a bare pickle
        (pickle.dumps({"meta": {"format": 1, "version": 10**9}, "pipeline": Marker(marker)}), "unknown_format"),
        (framed("arf", evil), "unsigned"),
        (framed("arf", evil, mac(WRONG, b"header", evil).encode()), "bad_signature"),
        (forged_logreg(None), "unsigned"),
        (forged_logreg(WRONG), "bad_signature"),
        (b"", "unknown_format"),
        (None, "unknown_format"),  # a tombstone on the compacted topic
        (b"\x00\xff" * 50, "unknown_format"),
    ]


async def _produce(url: str, values: list[bytes | None]) -> None:
    headers = [("version", HUGE), ("training_offset", HUGE)]
    await kafka_io.send(bootstrap_servers(url), [(MODELS, b"churn-model", value, None, headers) for value in values])


def rejected(w) -> dict[str, float]:
    return {k.split('reason="')[1].rstrip('"}'): v for k, v in w.metrics().items()
            if k.startswith("churn_model_snapshots_rejected_total") and v}


def risks(w, ids: list[str]) -> dict[str, tuple]:
    out = {}
    for cid in ids:
        view = lookup(w, cid)
        if "risk_now" in view:
            out[cid] = (view["risk_now"], view["scored_by"], view["model_version"])
    return out


def stable_version(w, seconds: float = 6.0):
    """The model version once it stopped moving (the trainer has published its last labels)."""
    first = (w.metrics().get("churn_model_version"), w.metrics().get("churn_model_labels_total"))
    import time

    time.sleep(seconds)
    m = w.metrics()
    return (m.get("churn_model_version"), m.get("churn_model_labels_total")) == first and first[0]


def test_forged_snapshots_run_no_code_and_change_no_score(broker, workers, app_id, tmp_path):
    path = tmp_path / "sim.jsonl"
    n_events = simulate(path, 150, 90, 5)
    assert replay(broker, path).returncode == 0
    # one learnt model alone (logreg): this test needs scores that come from a
    # snapshot; with the candidate set the rules may rightly keep serving on
    # 150 customers (test_candidates.py covers crafted candidate-set bodies)
    env = dict(CHURNMON_MODEL_SIGNING_KEY=KEY, CHURNMON_MIN_LABELS="100", CHURNMON_PUBLISH_EVERY="100",
               CHURNMON_MODEL_KIND="logreg")
    w = workers(app_id, **env)
    wait_for(lambda: processed(w.metrics()) >= n_events, 240, "every event processed", w, every=1)
    wait_for(lambda: w.metrics().get("churn_model_ready") == 1.0, 120, "the model to be ready", w, every=1)
    version = wait_for(lambda: stable_version(w), 120, "the model version to settle", w)
    ids = [f"cus_{i:06d}" for i in range(3, 150, 3)]
    before = risks(w, ids)
    assert before and {v[1] for v in before.values()} == {"model"}, before

    marker = tmp_path / "forged-snapshot-ran-code"
    forged = forgeries(str(marker))
    asyncio.run(_produce(broker.url, [value for value, _ in forged]))
    expected: dict[str, float] = {}
    for _, reason in forged:
        expected[reason] = expected.get(reason, 0) + 1
    wait_for(lambda: rejected(w) == expected, 60, f"{len(forged)} snapshots refused, by reason", w)

    assert not marker.exists(), "a forged snapshot ran code in the worker"
    assert w.proc.poll() is None
    assert w.metrics()["churn_model_version"] == version
    assert risks(w, ids) == before
    send(broker.url, [("churn.usage", b"cus_000000", b'{"event_id": "after-1", "customer_id": "cus_000000", "type": "session", "ts": "2025-01-15T00:00:00Z"}')])
    wait_for(lambda: processed(w.metrics()) >= n_events + 1, 60, "the worker to keep processing", w)

    # every restart reads the compacted topic from the start, forgeries included: still no code, same model
    w.stop(signal.SIGKILL)
    again = workers(app_id, **env)
    wait_for(lambda: rejected(again) == expected, 60, "the restarted worker to refuse them again", again)
    assert again.metrics()["churn_model_version"] == version
    wait_for(lambda: risks(again, ids) == before, 60, "the restarted worker to score as before", again)
    assert not marker.exists()
    assert "Traceback" not in again.log.read_text()


def test_a_worker_without_a_key_refuses_every_pickle(broker, workers, app_id, tmp_path):
    """The default configuration (no signing key): the logistic model's data is
    accepted from anyone who can write the topic (ACLs guard that), pickles from nobody."""
    w = workers(app_id)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Marker(str(marker)))
    asyncio.run(_produce(broker.url, [evil, framed("arf", evil), framed("arf", evil, mac(WRONG, b"h", evil).encode())]))
    wait_for(lambda: rejected(w) == {"unknown_format": 1, "unsigned": 1, "no_key": 1}, 60, "three pickles refused", w)
    assert not marker.exists() and w.proc.poll() is None
    assert w.metrics().get("churn_model_version", 0.0) == 0.0
    send(broker.url, [("churn.usage", b"c1", b'{"event_id": "e1", "customer_id": "c1", "type": "session", "ts": "2025-03-01T00:00:00Z"}')])
    wait_for(lambda: processed(w.metrics()) == 1, 60, "the worker to keep processing", w)
