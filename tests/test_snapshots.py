"""Model snapshots: the logistic model travels as data and comes back scoring
and learning bit for bit the same; pickled kinds load only when signed; and
nothing that reaches churn.models can run code or raise in the worker."""

from __future__ import annotations

import os
import pickle
import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.risk import snapshots
from stream_app.ingest.contract import Rejection
from stream_app.risk.features import FEATURES, NEUTRAL
from stream_app.risk.model import ChurnModel
from stream_app.risk.snapshots import MAGIC, REJECTION_REASONS, Snapshot, decode, encode, mac
from tests.test_model import sample, trained

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


@pytest.fixture(scope="module")
def logreg() -> ChurnModel:
    m = trained(n=600)
    m.publish(created_at=123.0)
    return m


@pytest.fixture(scope="module")
def forest() -> ChurnModel:
    m = trained("arf", n=300)
    m.publish(created_at=124.0)
    return m


class Marker:
    """A pickle that, if ever loaded, creates a file (a stand-in for any code)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def framed(kind: str, body: bytes, signature: bytes = b"-", body_kind: str | None = None, **meta) -> bytes:
    head = {"kind": kind, "body": body_kind or ("json" if kind == "logreg" else "pickle"),
            "meta": {"version": 99, "labels_seen": 10, "positives": 1, "min_labels": 1, "seed": 42,
                     "training_offset": 9, "created_at": 0.0, **meta}}
    return b"\n".join((MAGIC, signature, orjson.dumps(head), body))


# --------------------------------------------------------------------------- logreg as data


def test_logreg_round_trip_keeps_meta_and_offset(logreg):
    got = decode(encode(logreg, training_offset=41))
    assert isinstance(got, Snapshot) and got.training_offset == 41
    m = got.model
    assert (m.kind, m.version, m.labels_seen, m.positives, m.created_at, m.min_labels) == \
        ("logreg", 1, logreg.labels_seen, logreg.positives, 123.0, logreg.min_labels)


def test_logreg_body_is_plain_json_with_weights_scaler_and_feature_order(logreg):
    blob = encode(logreg, training_offset=0)
    assert blob.startswith(MAGIC + b"\n-\n")
    body = orjson.loads(blob.split(b"\n", 3)[3])
    assert set(body) == {"inputs", "weights", "intercept", "optimizer_steps", "scaler"}
    assert set(body["scaler"]["features"]) <= set(FEATURES) and len(body["inputs"]) == len(body["weights"])
    assert b"river" not in blob and b"\x80" not in blob  # no pickle anywhere


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_restored_logreg_scores_identically(logreg, data):
    restored = decode(encode(logreg, training_offset=0)).model
    x = dict(NEUTRAL)
    for name in data.draw(st.lists(st.sampled_from(FEATURES), max_size=12, unique=True)):
        x[name] = data.draw(st.floats(-1e6, 1e9, allow_nan=False))
    assert restored.score(x) == logreg.score(x)
    assert restored.contributions(x) == logreg.contributions(x)


def test_restored_logreg_goes_on_learning_bit_for_bit():
    a = trained(n=400)
    b = decode(encode(a, training_offset=0)).model
    rnd = random.Random(8)
    for _ in range(300):
        y = rnd.random() < 0.3
        x = sample(rnd, y)
        a.learn(x, y)
        b.learn(x, y)
    assert a.linear_state() == b.linear_state()
    probe = sample(random.Random(1), True)
    assert a.score(probe) == b.score(probe)


def test_a_fresh_model_round_trips(logreg):
    fresh = ChurnModel()
    got = decode(encode(fresh, training_offset=-1)).model
    x = sample(random.Random(3), True)
    assert got.version == 0 and got.score(x) == fresh.score(x)


# ----------------------------------------------------------------------------------- signing


def test_signed_logreg_verifies_with_the_key_only(logreg):
    blob = encode(logreg, training_offset=3, key=KEY)
    assert decode(blob, key=KEY).training_offset == 3
    assert decode(blob, key=OTHER_KEY).reason == "bad_signature"
    assert isinstance(decode(blob), Snapshot)  # data: a worker without a key may load it
    assert decode(encode(logreg, training_offset=3), key=KEY).reason == "unsigned"


def test_the_mac_covers_header_and_body(logreg):
    blob = encode(logreg, training_offset=3, key=KEY)
    magic, sig, header, body = blob.split(b"\n", 3)
    bumped = header.replace(b'"version":1', b'"version":1000')
    assert bumped != header
    assert decode(b"\n".join((magic, sig, bumped, body)), key=KEY).reason == "bad_signature"
    state = orjson.loads(body)
    state["weights"][0] += 1.0
    assert decode(b"\n".join((magic, sig, header, orjson.dumps(state))), key=KEY).reason == "bad_signature"


def test_forest_is_a_signed_pickle(forest):
    with pytest.raises(ValueError, match="must be signed"):
        encode(forest, training_offset=0)
    blob = encode(forest, training_offset=5, key=KEY)
    got = decode(blob, key=KEY)
    x = sample(random.Random(2), True)
    assert got.training_offset == 5 and got.model.kind == "arf" and got.model.score(x) == forest.score(x)
    assert decode(blob).reason == "no_key"
    assert decode(blob, key=OTHER_KEY).reason == "bad_signature"


def test_forged_pickles_run_no_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Marker(str(marker)))
    pickle.loads(pickle.dumps(Marker(str(tmp_path / "control"))))
    assert (tmp_path / "control").exists()  # the payload does work when unpickled
    forged = [
        evil,  # the old format: a bare pickle
        pickle.dumps({"meta": {"format": 1, "version": 10**6}, "pipeline": Marker(str(marker))}),
        framed("arf", evil),  # unsigned
        framed("arf", evil, signature=mac(OTHER_KEY, b"x", evil).encode()),  # signed with another key
        framed("logreg", evil),  # a pickle where data belongs
        framed("logreg", evil, body_kind="pickle"),
    ]
    for key in (None, KEY):
        outcomes = [decode(blob, key=key) for blob in forged]
        assert all(isinstance(o, Rejection) and o.reason in REJECTION_REASONS for o in outcomes), outcomes
    assert not marker.exists()


@pytest.mark.parametrize("change, reason", [
    (lambda s: s.update(inputs=s["inputs"][:-1] + ["__class__"]), "bad_value"),
    (lambda s: s["weights"].__setitem__(0, 1e300), "bad_value"),
    (lambda s: s.update(intercept="0"), "bad_value"),
    (lambda s: s["scaler"]["vars"].__setitem__(0, -1.0), "bad_value"),
    (lambda s: s["scaler"]["counts"].__setitem__(0, True), "bad_value"),
    (lambda s: s["scaler"]["features"].append("hf_csat"), "bad_value"),
    (lambda s: s.pop("scaler"), "bad_value"),
])
def test_bad_data_is_refused(logreg, change, reason):
    magic, sig, header, body = encode(logreg, training_offset=0).split(b"\n", 3)
    state = orjson.loads(body)
    change(state)
    assert decode(b"\n".join((magic, sig, header, orjson.dumps(state)))).reason == reason


@pytest.mark.parametrize("blob, reason", [
    (b"", "unknown_format"),
    (b"churnmon-model/1\n-\n{}\n{}", "unknown_format"),
    (MAGIC + b"\n-\nnot json\n{}", "not_a_snapshot"),
    (MAGIC + b"\n-\n[1]\n{}", "not_a_snapshot"),
    (framed("gbm", b"{}"), "unknown_kind"),
    (framed("logreg", b"{}", version=-1), "bad_value"),
    (framed("logreg", b"{}", version=True), "bad_value"),
    (framed("logreg", b"{}", positives=11), "bad_value"),
    (framed("logreg", b"{}", created_at=float("1e300")), "bad_value"),
    (framed("logreg", b"not json"), "bad_value"),
    (None, "unknown_format"),
])
def test_malformed_snapshots_name_the_problem(blob, reason):
    assert decode(blob).reason == reason


# -------------------------------------------------------------------------------------- fuzz

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


def _outcome_ok(out) -> None:
    if isinstance(out, Rejection):
        assert out.reason in REJECTION_REASONS, out
        assert isinstance(out.detail, str) and "\n" not in out.detail
    else:
        assert isinstance(out, Snapshot)
        p = out.model.score(dict(NEUTRAL))
        assert 0.0 <= p <= 1.0


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=400), key=st.sampled_from([None, KEY]))
def test_arbitrary_bytes_never_raise(blob, key):
    _outcome_ok(decode(blob, key=key))
    _outcome_ok(decode(MAGIC + b"\n" + blob, key=key))


_VALID = encode(trained(n=200), training_offset=7)


@settings(max_examples=300, deadline=None)
@given(part=st.sampled_from(["meta", "state", "scaler", "head"]), field=st.text(max_size=12) | st.sampled_from(
    ["version", "labels_seen", "positives", "created_at", "training_offset", "inputs", "weights", "intercept",
     "optimizer_steps", "features", "counts", "means", "vars", "kind", "body"]), new=json_values, remove=st.booleans())
def test_near_valid_snapshots_never_raise(part, field, new, remove):
    magic, sig, header, body = _VALID.split(b"\n", 3)
    head, state = orjson.loads(header), orjson.loads(body)
    target = {"meta": head["meta"], "head": head, "state": state, "scaler": state["scaler"]}[part]
    if remove:
        target.pop(field, None)
    else:
        target[field] = new
    try:
        blob = b"\n".join((magic, sig, orjson.dumps(head), orjson.dumps(state)))
    except TypeError:  # an integer orjson cannot write
        return
    _outcome_ok(decode(blob))


def test_no_pickle_is_loaded_from_an_unverified_body(monkeypatch, tmp_path):
    """Belt and braces: pickle.loads is never reached without a verified MAC."""
    calls = []
    monkeypatch.setattr(snapshots.pickle, "loads", lambda b: calls.append(b))
    evil = pickle.dumps(Marker(str(tmp_path / "x")))
    for blob in (framed("arf", evil), framed("arf", evil, signature=b"00" * 32)):
        decode(blob, key=KEY)
        decode(blob)
    assert calls == [] and not os.path.exists(tmp_path / "x")
