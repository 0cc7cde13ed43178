"""Model snapshots on churn.models: data that cannot run code, or signed.

Every worker reads churn.models from the start and scores with the newest
snapshot there, so whoever can produce to that topic decides what every
worker loads. Snapshots used to be pickles, and unpickling runs code. Now:

- the logistic models (`logreg`, `linear`) travel as data: their inputs in
  order, their weights, the intercept, the optimizer's step count and the
  scaler's statistics (`ChurnModel.linear_state`), as JSON. Decoding it runs
  no code and every field is checked (known inputs only, finite bounded
  numbers);
- the Hoeffding tree (`tree`) travels as data too: its object graph as
  tagged JSON (`plaindata`), rebuilt from an allowlist of river's tree
  classes without calling anything the data names, then checked node by
  node (`model.tree_problem`);
- the candidate set (`select`) is its candidates' data plus the selection's
  figures (which candidate serves, each one's score histogram), each part
  checked as above;
- a model kind that must stay a Python object (`arf`: river's forest) is a
  pickle signed with HMAC-SHA256 over header and body. The MAC is checked,
  in constant time, before anything is unpickled; without a key, or with a
  wrong one, it is refused;
- with a key configured (`model_signing_key`), every snapshot must be
  signed, data too: a forged logistic model cannot run code but could still
  change every score.

Wire format, one record value::

    churnmon-model/2\\n
    <mac>\\n       hex HMAC-SHA256(key, header + b"\\n" + body), or "-" (unsigned)
    <header>\\n    JSON: {"kind": ..., "body": "json" | "zjson" | "pickle", "meta": {...}}
    <body>        JSON (logistic kinds), zlib-compressed JSON (tree, select: a
                  tree's split statistics are ~1 MB of JSON, 13 times less
                  compressed; inflated with a bound), or a pickle (signed kinds)

`meta` carries the version and the training offset the snapshot has learnt
to, so both are covered by the MAC; the record headers of the same names
are for people and tools only. `kind` and the magic line's version leave
room for more model kinds and later formats: an unknown one is refused,
never guessed at.

`decode` never raises: a snapshot is a `Snapshot` or a `Rejection` whose
reason is one of `REJECTION_REASONS` (a bounded metric label).

>>> from stream_app.risk.model import ChurnModel
>>> m = ChurnModel(min_labels=1)
>>> m.learn({"tenure_days": 3.0}, True); m.publish(created_at=0.0)
>>> got = decode(encode(m, training_offset=0))
>>> got.model.version, got.training_offset, got.model.score({"tenure_days": 3.0}) == m.score({"tenure_days": 3.0})
(1, 0, True)
>>> decode(encode(m, training_offset=0), key=b"k" * 16).reason   # a key is configured: data must be signed too
'unsigned'
>>> decode(b"\\x80\\x04\\x95 a pickle").reason
'unknown_format'
"""

from __future__ import annotations

import hashlib
import hmac
import math
import pickle
import zlib
from typing import Any, NamedTuple

import orjson

from ..ingest.contract import Rejection
from .features import FEATURES
from .model import CANDIDATES, HF_INPUTS, MODEL_KINDS, SELECT_BINS, SELECT_LAG, ChurnModel

__all__ = ["MAGIC", "PICKLED_KINDS", "DATA_KINDS", "REJECTION_REASONS", "Snapshot", "encode", "decode", "mac"]

MAGIC = b"churnmon-model/2"
DATA_KINDS = ("logreg", "linear", "tree", "select")  # decoded as data: cannot run code
PICKLED_KINDS = ("arf",)  # Python objects: signed, verified before unpickling
assert set(DATA_KINDS) | set(PICKLED_KINDS) == set(MODEL_KINDS), "every model kind needs a snapshot rule"

REJECTION_REASONS: frozenset[str] = frozenset({
    "unknown_format",  # not this framing (an old pickle snapshot, anything else)
    "not_a_snapshot",  # the framing is there but the header is not a snapshot header
    "unknown_kind",  # a model kind this code does not know
    "unsigned",  # no MAC where one is required
    "no_key",  # a signed kind, and this worker has no key to verify it
    "bad_signature",  # a MAC that does not verify with this worker's key
    "bad_value",  # a field missing, of the wrong type, out of bounds, or an unknown input
    "unreadable",  # anything else that went wrong while decoding (defence in depth)
})

MODEL_INPUTS: frozenset[str] = frozenset(FEATURES) | frozenset(HF_INPUTS)
MAX_WEIGHT = 1e6  # a logit term is weight x (clipped) input: bounded weights keep the sum finite
MAX_STAT = 1e15  # scaler means; variances up to its square
MAX_INT = 2**53  # counters and versions stay exact as JSON numbers
MAX_INFLATED = 64 * 1024 * 1024  # a compressed body inflates to at most this (a zip bomb stops here)
ZJSON_KINDS = ("tree", "select")  # data kinds whose JSON body is compressed


class Snapshot(NamedTuple):
    model: ChurnModel
    training_offset: int  # the churn.training offset the model has learnt up to (-1 = none)


def mac(key: bytes, header: bytes, body: bytes) -> str:
    """HMAC-SHA256 over the header line and the body, hex."""
    return hmac.new(key, header + b"\n" + body, hashlib.sha256).hexdigest()


def encode(model: ChurnModel, *, training_offset: int, key: bytes | None = None) -> bytes:
    """The record value of `model`'s snapshot; signed when a key is given
    (always for a pickled kind: without a key that is a ValueError)."""
    if model.kind in ZJSON_KINDS:
        body_kind, body = "zjson", zlib.compress(orjson.dumps(model.state()), 6)
    elif model.kind in DATA_KINDS:
        body_kind, body = "json", orjson.dumps(model.state())
    elif model.kind in PICKLED_KINDS:
        if not key:
            raise ValueError(f"a {model.kind} snapshot is a pickle and must be signed: no model signing key")
        body_kind, body = "pickle", pickle.dumps(model.pipeline, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        raise ValueError(f"no snapshot rule for model kind {model.kind!r}")
    meta = {**model.meta(), "training_offset": int(training_offset)}
    header = orjson.dumps({"kind": model.kind, "body": body_kind, "meta": meta})
    signature = mac(key, header, body) if key else "-"
    return b"\n".join((MAGIC, signature.encode(), header, body))


def decode(blob: Any, *, key: bytes | None = None) -> Snapshot | Rejection:
    """The snapshot in a churn.models record value, or why it was refused.

    Never raises and never unpickles anything whose MAC did not verify.
    """
    try:
        return _decode(blob, key)
    except Exception as exc:  # every known failure is mapped below; this keeps the feed alive
        return Rejection("unreadable", f"unexpected {type(exc).__name__} while decoding a model snapshot")


def _decode(blob: Any, key: bytes | None) -> Snapshot | Rejection:
    if not isinstance(blob, (bytes, bytearray)):
        return Rejection("unknown_format", f"a snapshot is bytes, not {type(blob).__name__}")
    parts = bytes(blob).split(b"\n", 3)
    if len(parts) != 4 or parts[0] != MAGIC:
        return Rejection("unknown_format", f"does not start with {MAGIC.decode()!r} (an old pickle snapshot is refused unread)")
    _, signature, header, body = parts
    try:
        head = orjson.loads(header)
    except orjson.JSONDecodeError:
        return Rejection("not_a_snapshot", "the header line is not JSON")
    if not isinstance(head, dict) or not isinstance(head.get("meta"), dict):
        return Rejection("not_a_snapshot", "the header is not an object with a meta object")
    kind, body_kind = head.get("kind"), head.get("body")
    if kind not in DATA_KINDS and kind not in PICKLED_KINDS:
        return Rejection("unknown_kind", f"model kind {_short(kind)} is not one of {list(MODEL_KINDS)}")
    expected_body = "zjson" if kind in ZJSON_KINDS else ("json" if kind in DATA_KINDS else "pickle")
    if body_kind != expected_body:
        return Rejection("bad_value", f"a {kind} snapshot has a {expected_body} body, not {_short(body_kind)}")

    signed = signature != b"-"
    if kind in PICKLED_KINDS and not signed:
        return Rejection("unsigned", f"a {kind} snapshot is a pickle and is loaded only when signed")
    if kind in PICKLED_KINDS and not key:
        return Rejection("no_key", f"a {kind} snapshot is a pickle: this worker has no model signing key to verify it")
    if key:
        if not signed:
            return Rejection("unsigned", "a model signing key is configured: unsigned snapshots are refused")
        if not hmac.compare_digest(signature, mac(key, header, body).encode()):
            return Rejection("bad_signature", "the MAC does not verify with this worker's model signing key")

    meta = _meta(head["meta"], kind)
    if isinstance(meta, Rejection):
        return meta
    model = ChurnModel.from_meta(meta)
    if kind in DATA_KINDS:
        if body_kind == "zjson":
            body = _inflate(body)
            if body is None:
                return Rejection("bad_value", f"the body is not zlib data inflating to at most {MAX_INFLATED} bytes")
        try:
            state = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Rejection("bad_value", "the body is not JSON")
        problem = _state_problem(kind, state)
        if problem:
            return Rejection("bad_value", problem)
        try:
            model.load_state(state)
        except ValueError as exc:  # the tree's own checks (model.load_state)
            return Rejection("bad_value", str(exc)[:200])
    else:
        pipeline = pickle.loads(body)  # noqa: S301 - only after the MAC verified (above)
        if type(pipeline) is not type(model.pipeline):
            return Rejection("bad_value", f"the signed body is a {type(pipeline).__name__}, not a pipeline")
        model.pipeline = pipeline
    return Snapshot(model, meta["training_offset"])


def _inflate(body: bytes) -> bytes | None:
    """A zlib body inflated, or None if it is not zlib or inflates beyond the bound."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(body, MAX_INFLATED)
    except zlib.error:
        return None
    if d.unconsumed_tail or not d.eof:
        return None
    return out


def _meta(meta: dict, kind: str) -> dict | Rejection:
    ints = {"version": 0, "labels_seen": 0, "positives": 0, "min_labels": 0, "seed": -MAX_INT, "training_offset": -1}
    out: dict[str, Any] = {"kind": kind}
    for name, lowest in ints.items():
        v = meta.get(name)
        if not _is_int(v) or not lowest <= v <= MAX_INT:
            return Rejection("bad_value", f"meta.{name} must be an integer >= {lowest} (got {_short(v)})")
        out[name] = v
    if out["positives"] > out["labels_seen"]:
        return Rejection("bad_value", "meta.positives exceeds meta.labels_seen")
    created = meta.get("created_at")
    if created is not None and not (_is_number(created) and 0.0 <= created <= 1e11):
        return Rejection("bad_value", f"meta.created_at must be Unix seconds or null (got {_short(created)})")
    out["created_at"] = None if created is None else float(created)
    return out


def _state_problem(kind: str, state: Any) -> str | None:
    """What is wrong with a data kind's body before it is loaded (None = go on;
    a tree is checked while it is loaded)."""
    if kind in ("logreg", "linear"):
        return _linear_state_problem(state)
    if kind == "tree":
        return None
    return _candidates_problem(state)


def _candidates_problem(state: Any) -> str | None:
    """A `select` body: the selection's figures and one valid body per learnt candidate."""
    if not isinstance(state, dict) or not isinstance(state.get("selection"), dict) or not isinstance(state.get("members"), dict):
        return "a select body is an object with a selection and members"
    members = state["members"]
    learnt = [n for n in CANDIDATES if n != "rules"]
    if sorted(members) != sorted(learnt):
        return f"members must be exactly {learnt}"
    for name in learnt:
        body = members[name]
        if not isinstance(body, dict) or not isinstance(body.get("meta"), dict):
            return f"members.{name} must be an object with meta and state"
        meta = _meta(body["meta"] | {"training_offset": -1}, name)
        if isinstance(meta, Rejection):
            return f"members.{name}: {meta.detail}"
        body["meta"] = {k: v for k, v in meta.items() if k != "training_offset"}
        problem = _state_problem(name, body.get("state"))
        if problem:
            return f"members.{name}: {problem}"
    pending = state.get("pending")
    if not isinstance(pending, list) or len(pending) > SELECT_LAG:
        return f"pending must be a list of at most {SELECT_LAG} labels"
    for item in pending:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], bool):
            return "pending holds [features, label] pairs"
        problem = _numbers(item[0], len(FEATURES), MAX_STAT, "pending features")
        if problem:
            return problem
    sel = state["selection"]
    if sel.get("names") != list(CANDIDATES) or sel.get("serving") not in CANDIDATES:
        return f"selection.names must be {list(CANDIDATES)} and selection.serving one of them"
    for name in ("switches", "labels"):
        if not _is_int(sel.get(name)) or not 0 <= sel[name] <= MAX_INT:
            return f"selection.{name} must be a non-negative integer"
    if not _is_number(sel.get("weight")) or not 0.0 < sel["weight"] <= 1e101:
        return "selection.weight must be a positive number"
    for hist in ("pos", "neg"):
        rows = sel.get(hist)
        if not isinstance(rows, list) or len(rows) != len(CANDIDATES):
            return f"selection.{hist} must hold one histogram per candidate"
        for row in rows:
            problem = _numbers(row, SELECT_BINS, 1e120, f"selection.{hist}")
            if problem:
                return problem
            if any(v < 0 for v in row):
                return f"selection.{hist} must not be negative"
    return None


def _linear_state_problem(state: Any) -> str | None:
    """What is wrong with a logistic model's data (None = fine to load)."""
    if not isinstance(state, dict):
        return "the body must be an object"
    inputs, weights = state.get("inputs"), state.get("weights")
    problem = _names(inputs, MODEL_INPUTS, "inputs") or _numbers(weights, len(inputs), MAX_WEIGHT, "weights")
    if problem:
        return problem
    if not _is_number(state.get("intercept")) or abs(state["intercept"]) > MAX_WEIGHT:
        return f"intercept must be a number within +-{MAX_WEIGHT:g}"
    steps = state.get("optimizer_steps")
    if not _is_int(steps) or not 0 <= steps <= MAX_INT:
        return "optimizer_steps must be a non-negative integer"
    sc = state.get("scaler")
    if not isinstance(sc, dict):
        return "scaler must be an object"
    features = sc.get("features")
    problem = _names(features, frozenset(FEATURES), "scaler.features") or _numbers(sc.get("means"), len(features), MAX_STAT, "scaler.means") \
        or _numbers(sc.get("vars"), len(features), MAX_STAT**2, "scaler.vars")
    if problem:
        return problem
    counts = sc.get("counts")
    if not isinstance(counts, list) or len(counts) != len(features) or not all(_is_int(n) and 0 <= n <= MAX_INT for n in counts):
        return "scaler.counts must be one non-negative integer per feature"
    if any(v < 0 for v in sc["vars"]):
        return "scaler.vars must not be negative"
    return None


def _names(names: Any, allowed: frozenset[str], what: str) -> str | None:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f"{what} must be a list of names"
    unknown = [n for n in names if n not in allowed]
    if unknown:
        return f"{what} has {len(unknown)} names that are not model inputs, e.g. {_short(unknown[0])}"
    if len(set(names)) != len(names):
        return f"{what} names a feature twice"
    return None


def _numbers(values: Any, n: int, bound: float, what: str) -> str | None:
    if not isinstance(values, list) or len(values) != n:
        return f"{what} must be a list of {n} numbers"
    if not all(_is_number(v) and abs(v) <= bound for v in values):
        return f"{what} must be finite numbers within +-{bound:g}"
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short(v: Any, limit: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."

