"""The event contract: raw Kafka bytes in, a trusted event dict (or a counted Rejection) out.

The JSON Schema files in ``SCHEMA_DIR`` are the single source of truth; this
module only compiles them (once, at import) and turns validation failures into a
small, bounded set of reason codes that can be used as a Prometheus label. It
imports neither Kafka nor Faust so that replay, tests and tools share exactly the
same gate as the live worker.

Why per-type validators: the schemas express "each type has its own required
fields" as ``allOf`` of ``if``/``then`` branches. fastjsonschema evaluates every
``if`` by raising and catching an exception, which costs ~20 µs per event on the
subscription topic. Because the ``if`` conditions only test ``type``, the schema
restricted to one known ``type`` is exactly the envelope plus that type's
``then``; we compile that restriction per type (~4 µs) and fall back to the full
schema validator only when ``type`` is absent or unknown, so the error reported
is still the schema's own. Tests check both agree.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, NamedTuple

import fastjsonschema
import orjson
from fastjsonschema import JsonSchemaValueException

__all__ = [
    "TOPICS",
    "TOPIC_TYPES",
    "REASONS",
    "SCHEMA_DIR",
    "SCHEMAS",
    "REJECTION_REASONS",
    "Limits",
    "Rejection",
    "decode",
    "parse_ts",
    "format_ts",
    "validate_event",
    "topic_for_type",
    "TRAINING_TOPIC",
    "decode_example",
    "decode_tick",
    "json_object",
]

TOPICS: tuple[str, ...] = ("churn.subscription", "churn.usage", "churn.support")

_env_dir = os.environ.get("CHURNMON_SCHEMA_DIR")
SCHEMA_DIR: Path = (
    Path(_env_dir) if _env_dir else Path(__file__).resolve().parents[2] / "schemas"
)

REJECTION_REASONS: frozenset[str] = frozenset(
    {
        "too_large",
        "not_json",
        "not_object",
        "unknown_type",
        "missing_field",
        "wrong_type",
        "bad_value",
        "bad_timestamp",
        "future_timestamp",
        "ancient_timestamp",
        "key_mismatch",
        "unknown_topic",
    }
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Transport-level sanity bounds; kept out of the schema because they depend on
    deployment (message size) or on the wall clock (future timestamps)."""

    max_bytes: int = 65536
    max_future_s: float = 86400.0
    min_ts: float = 0.0


class Rejection(NamedTuple):
    """Why an event was dropped. ``reason`` is a code from ``REJECTION_REASONS``
    (bounded, so it is safe as a metric label); ``detail`` is for humans and logs."""

    reason: str
    detail: str


_DEFAULT_LIMITS = Limits()
_CANCELLED = "subscription_cancelled"
_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_fromiso = datetime.fromisoformat


# --------------------------------------------------------------------------- schemas


def _load(topic: str) -> dict[str, Any]:
    return orjson.loads((SCHEMA_DIR / f"{topic}.json").read_bytes())


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``#/...`` refs so facts (like the reason enum) are read from
    wherever the schema author chose to define them."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref supported, got {ref!r}")
        node = schema
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _type_const(cond: Any) -> str | None:
    """The ``type`` value an ``if`` tests for, when the ``if`` tests nothing else."""
    if not isinstance(cond, dict) or set(cond) - {"required", "properties"}:
        return None
    if cond.get("required", ["type"]) != ["type"]:
        return None
    props = cond.get("properties")
    if not isinstance(props, dict) or set(props) != {"type"}:
        return None
    t = props["type"]
    if isinstance(t, dict) and set(t) == {"const"} and isinstance(t["const"], str):
        return t["const"]
    if isinstance(t, dict) and set(t) == {"enum"} and len(t["enum"]) == 1:
        return t["enum"][0]
    return None


def _inline(schema: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """Replace local ``$ref`` by its target so the compiled schema has no refs and no
    ``$id``: fastjsonschema resolves refs through a store shared by every compile (and
    may urlopen() unknown ones), which would make validators depend on compile order."""
    if depth > 32:
        raise ValueError("$ref nesting too deep (recursive schema?)")
    if isinstance(node, list):
        return [_inline(schema, v, depth) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(schema, _resolve(schema, node), depth + 1)
    return {k: _inline(schema, v, depth) for k, v in node.items()}


def _compilable(schema: dict[str, Any]) -> dict[str, Any]:
    out = _inline(schema, schema)
    for k in ("$id", "definitions", "$defs", "examples"):  # resolved, or annotation only
        out.pop(k, None)
    return out


def _restrict(schema: dict[str, Any], event_type: str) -> dict[str, Any]:
    """The (inlined) schema as it applies to events whose ``type`` is ``event_type``:
    type-only ``if`` branches are resolved statically (``then`` kept on a match,
    ``else`` otherwise); every other keyword is kept untouched."""
    out = dict(schema)
    kept = []
    for entry in out.get("allOf", []):
        c = _type_const(entry.get("if")) if isinstance(entry, dict) else None
        if c is None:
            kept.append(entry)
            continue
        branch = entry.get("then" if c == event_type else "else")
        if branch is not None:
            kept.append(branch)
        extra = {k: v for k, v in entry.items() if k not in ("if", "then", "else")}
        if extra:
            kept.append(extra)
    out["allOf"] = kept or [{}]
    out["properties"] = dict(out.get("properties", {}))
    out["properties"]["type"] = {"const": event_type}
    return out


def _no_remote(uri: str) -> Any:
    raise ValueError(f"schemas must be self-contained; remote $ref {uri!r} is not fetched")


# Belt and braces: after _inline nothing should be resolved, let alone fetched.
_HANDLERS = {"http": _no_remote, "https": _no_remote, "file": _no_remote, "": _no_remote}


def _compile(schema: dict[str, Any]) -> Callable[[Any], Any]:
    return fastjsonschema.compile(schema, handlers=_HANDLERS, use_formats=True)


SCHEMAS: dict[str, dict[str, Any]] = {t: _load(t) for t in TOPICS}

TOPIC_TYPES: dict[str, frozenset[str]] = {
    t: frozenset(_resolve(s, s["properties"]["type"])["enum"]) for t, s in SCHEMAS.items()
}

_TYPE_TOPIC: dict[str, str] = {}
for _topic, _types in TOPIC_TYPES.items():
    for _t in _types:
        if _t in _TYPE_TOPIC:
            raise ValueError(f"event type {_t!r} is declared on both {_TYPE_TOPIC[_t]} and {_topic}")
        _TYPE_TOPIC[_t] = _topic


def _reasons() -> tuple[str, ...]:
    s = SCHEMAS["churn.subscription"]
    for entry in s.get("allOf", []):
        if _type_const(entry.get("if")) == _CANCELLED:
            return tuple(_resolve(s, entry["then"]["properties"]["reason"])["enum"])
    raise ValueError("churn.subscription schema defines no subscription_cancelled.reason")


REASONS: tuple[str, ...] = _reasons()

_Validator = Callable[[Any], Any]
# Full schema: used for errors about `type` itself and as the reference in tests.
_INLINED: dict[str, dict[str, Any]] = {t: _compilable(s) for t, s in SCHEMAS.items()}
_FULL: dict[str, _Validator] = {t: _compile(s) for t, s in _INLINED.items()}
# (topic, type) -> validator of the schema restricted to that type: the hot path.
_BY_TYPE: dict[str, dict[str, _Validator]] = {
    t: {et: _compile(_restrict(s, et)) for et in TOPIC_TYPES[t]}
    for t, s in _INLINED.items()
}


def topic_for_type(event_type: str) -> str:
    """Producers and replay route by type; a KeyError means the type is not in any schema."""
    return _TYPE_TOPIC[event_type]


# ------------------------------------------------------------------------ timestamps

# RFC 3339 section 5.6 shape, exactly as strict as the schemas' "date-time" format
# (so parse_ts and decode agree); calendar validity is left to datetime.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt](?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d+)?"
    r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):?[0-5]\d)\Z",
    re.ASCII,
)
_FRACTION = re.compile(r"(\.\d{6})\d+")


def _epoch(s: str) -> float:
    """fromisoformat handles the common shapes; the slow path covers the RFC 3339
    corners it does not (lower-case t/z, leap second 60). Caller checked the shape."""
    try:
        dt = _fromiso(s)
    except ValueError:
        s2 = s.upper()
        leap = s2[17:19] == "60"
        if leap:
            s2 = s2[:17] + "59" + s2[19:]
        dt = _fromiso(_FRACTION.sub(r"\1", s2))
        if leap:
            dt += timedelta(seconds=1)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp has no UTC offset: {s!r}")
    return dt.timestamp()


def parse_ts(s: str) -> float:
    """Event time must be unambiguous across producers in different time zones, so an
    explicit offset is mandatory and every offset is normalised to epoch seconds.

    >>> parse_ts("2025-01-01T00:00:00Z")
    1735689600.0
    >>> parse_ts("2025-01-01T01:00:00.5+01:00")
    1735689600.5
    >>> parse_ts("2025-01-01T00:00:00")
    Traceback (most recent call last):
    ...
    ValueError: not an RFC 3339 timestamp with offset: '2025-01-01T00:00:00'
    """
    if not isinstance(s, str) or _RFC3339.match(s) is None:
        raise ValueError(f"not an RFC 3339 timestamp with offset: {s!r}")
    try:
        return _epoch(s)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"invalid RFC 3339 timestamp {s!r}: {exc}") from None


def format_ts(t: float) -> str:
    """One canonical rendering (UTC, 'Z') so timestamps we emit compare and sort as
    strings; sub-second digits appear only when there are any.

    >>> format_ts(1735689600)
    '2025-01-01T00:00:00Z'
    >>> format_ts(1735689600.25)
    '2025-01-01T00:00:00.250000Z'
    >>> parse_ts(format_ts(1735689600.25))
    1735689600.25
    """
    # EPOCH + timedelta instead of fromtimestamp: no platform limits on negative t.
    return (_EPOCH + timedelta(seconds=t)).replace(tzinfo=None).isoformat() + "Z"


# -------------------------------------------------------------------------- rejection


def _short(v: Any, limit: int = 80) -> str:
    """Details end up in logs: keep them one line and bounded even for a 64 KiB value."""
    if isinstance(v, str) and len(v) > limit:
        v = v[:limit]
    elif isinstance(v, (dict, list)):
        return f"{type(v).__name__} of {len(v)}"
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _rejection(topic: str, exc: JsonSchemaValueException) -> Rejection:
    rule = exc.rule
    name = exc.name or "data"
    value = exc.value
    if rule == "required":
        required = exc.rule_definition or ()
        have = value.keys() if isinstance(value, dict) else ()
        missing = [f"{name}.{f}" for f in required if f not in have]
        etype = value.get("type") if isinstance(value, dict) else None
        for_type = f" (required for {etype})" if isinstance(etype, str) and etype in TOPIC_TYPES.get(topic, ()) else ""
        return Rejection("missing_field", f"missing required field {', '.join(missing) or name}{for_type}")
    if rule == "type":
        if name == "data":
            return Rejection("not_object", f"event must be a JSON object (got {type(value).__name__})")
        return Rejection(
            "wrong_type", f"{exc.message} (got {type(value).__name__} {_short(value)})"
        )
    if name == "data.type" and rule in ("enum", "const"):
        other = _TYPE_TOPIC.get(value) if isinstance(value, str) else None
        hint = f", it belongs on {other}" if other else ""
        return Rejection(
            "unknown_type",
            f"data.type {_short(value)} is not a {topic} event type{hint}; "
            f"expected one of {sorted(TOPIC_TYPES[topic])}",
        )
    if rule == "format":
        return Rejection(
            "bad_timestamp",
            f"{name} must be an RFC 3339 timestamp with offset (got {_short(value)})",
        )
    return Rejection("bad_value", f"{exc.message} (got {_short(value)})")


def _schema_check(topic: str, event: Any) -> Rejection | None:
    by_type = _BY_TYPE.get(topic)
    if by_type is None:
        return Rejection("unknown_topic", f"topic {_short(topic)} is not one of {list(TOPICS)}")
    if event.__class__ is not dict and not isinstance(event, dict):
        return Rejection("not_object", f"event must be a JSON object (got {type(event).__name__})")
    et = event.get("type")
    validator = by_type.get(et) if et.__class__ is str else None
    try:
        if validator is not None:
            validator(event)
        else:
            _FULL[topic](event)
            # Unreachable while `type` is required with an enum; fail closed regardless.
            return Rejection("unknown_type", f"data.type {_short(et)} is not a {topic} event type")
    except JsonSchemaValueException as exc:
        return _rejection(topic, exc)
    return None


def _when(t: float) -> str:
    try:
        return format_ts(t)
    except (ValueError, OverflowError, TypeError):
        return repr(t)


def _bad_ts(field: str, s: Any, exc: Exception) -> Rejection:
    return Rejection("bad_timestamp", f"data.{field} is not a valid RFC 3339 timestamp (got {_short(s)}: {exc})")


def validate_event(topic: str, event: dict) -> Rejection | None:
    """The transport-independent part of ``decode`` (no size, key or clock checks), so
    replayed JSONL is held to the same contract. After ``None``, ``parse_ts`` of
    ``ts`` and ``effective_at`` will not raise."""
    try:
        rej = _schema_check(topic, event)
        if rej is not None:
            return rej
        for k, v in event.items():
            # JSON Schema cannot say "not NaN"; orjson never produces one, but Python's
            # json module (which a replay file may have been written with) does.
            if v.__class__ is float and v != v:
                return Rejection("bad_value", f"data.{_short(k)} must be a number, not NaN")
        for field in ("ts", "effective_at") if event["type"] == _CANCELLED else ("ts",):
            if field in event:
                try:
                    _epoch(event[field])
                except (ValueError, OverflowError) as exc:
                    return _bad_ts(field, event[field], exc)
        return None
    except Exception as exc:  # a contract check must not take the caller down
        return Rejection("bad_value", f"unexpected {type(exc).__name__} while validating: {_short(str(exc))}")


# ----------------------------------------------------------------------------- decode


def decode(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    *,
    now: float,
    limits: Limits = _DEFAULT_LIMITS,
) -> dict | Rejection:
    """One gate for everything the worker consumes: whatever a producer sends, the
    worker gets either a dict it can trust (schema-valid, ``_t`` = event time in epoch
    seconds, ``_effective_t`` for cancellations with ``effective_at``) or a Rejection
    to count. Never raises, so a poison message cannot stall a partition."""
    try:
        return _decode(topic, key, value, now, limits)
    except Exception as exc:  # defence in depth; every known failure is mapped below
        return Rejection("bad_value", f"unexpected {type(exc).__name__} while decoding: {_short(str(exc))}")


def json_object(value: Any, max_bytes: int, what: str = "message") -> dict | Rejection:
    """Bytes -> a JSON object, or the rejection every input gets for not being one."""
    if value is None:
        return Rejection("not_json", "message value is null (tombstone), expected a JSON object")
    if len(value) > max_bytes:
        return Rejection("too_large", f"message value is {len(value)} bytes, limit is {max_bytes}")
    try:
        obj = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError) as exc:
        return Rejection("not_json", f"message value is not valid UTF-8 JSON: {str(exc)[:120]}")
    if obj.__class__ is not dict:
        return Rejection("not_object", f"{what} must be a JSON object (got {type(obj).__name__})")
    return obj


def _decode(topic: str, key: Any, value: Any, now: float, limits: Limits) -> dict | Rejection:
    if topic not in _BY_TYPE:
        return Rejection("unknown_topic", f"topic {_short(topic)} is not one of {list(TOPICS)}")
    event = json_object(value, limits.max_bytes, "event")
    if event.__class__ is Rejection:
        return event

    rej = _schema_check(topic, event)
    if rej is not None:
        return rej

    cid = event["customer_id"]
    if key is not None:
        if key.__class__ is not bytes:
            key = key.encode() if isinstance(key, str) else bytes(key)
        if key != cid.encode():
            return Rejection(
                "key_mismatch",
                f"message key {_short(key)} does not match data.customer_id {_short(cid)}",
            )

    ts = event["ts"]
    try:
        t = _epoch(ts)
    except (ValueError, OverflowError) as exc:
        return _bad_ts("ts", ts, exc)
    if t < limits.min_ts:
        return Rejection("ancient_timestamp", f"data.ts {_short(ts)} is before the minimum {_when(limits.min_ts)}")
    if t > now + limits.max_future_s:
        return Rejection(
            "future_timestamp",
            f"data.ts {_short(ts)} is more than {limits.max_future_s:g}s ahead of now ({_when(now)})",
        )
    event["_t"] = t

    eff = event.get("effective_at") if event["type"] == _CANCELLED else None
    if eff is not None:
        try:
            te = _epoch(eff)
        except (ValueError, OverflowError) as exc:
            return _bad_ts("effective_at", eff, exc)
        if te < limits.min_ts:
            return Rejection(
                "ancient_timestamp",
                f"data.effective_at {_short(eff)} is before the minimum {_when(limits.min_ts)}",
            )
        # Not bounded in the future: the end of an annual paid period is legitimately far off.
        event["_effective_t"] = te
    elif "_effective_t" in event:
        del event["_effective_t"]  # derived keys are ours; a producer must not forge them
    return event


# ------------------------------------------------------------- the worker's other inputs

TRAINING_TOPIC = "churn.training"
_EXAMPLE_SCHEMA: dict[str, Any] = _load(TRAINING_TOPIC)
_EXAMPLE = _compile(_compilable(_EXAMPLE_SCHEMA))
EXAMPLE_FEATURES: tuple[str, ...] = tuple(_EXAMPLE_SCHEMA["properties"]["features"]["required"])


def _seconds(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def decode_tick(
    value: bytes | None,
    *,
    now: float,
    limits: Limits = _DEFAULT_LIMITS,
    ceiling: float | None,
) -> float | None | Rejection:
    """A clock tick -> the time it may move its partition's clock to, None
    (a tick that moves nothing and only asks for a sweep), or a Rejection
    to dead-letter.

    A tick is ``{"t": <Unix seconds> | null}`` on ``<app_id>-clock``. The
    worker's own ticks carry its clock, which follows its input events; a
    tick from anywhere else is held to the same rule: ``t`` a finite number,
    not before 1970, at most ``max_future_s`` ahead of the wall clock, and
    then capped at ``ceiling``: the highest clock the input events allow
    here (the receiving worker's clock; None when nothing allows a move,
    e.g. a partition that has not read all its inputs yet). So a tick never
    moves a clock past what the input events allow.

    >>> decode_tick(b'{"t": 3000.5}', now=1e9, ceiling=4000.0), decode_tick(b'{"t": 9e8}', now=1e9, ceiling=4000.0)
    (3000.5, 4000.0)
    >>> decode_tick(b'{"t": null}', now=1e9, ceiling=4000.0) is None, decode_tick(b'{"t": 3000.5}', now=1e9, ceiling=None) is None
    (True, True)
    >>> [decode_tick(v, now=1e9, ceiling=4000.0).reason for v in (b'[1]', b'{"t": 1e300}', b'{"t": "soon"}', b'{}')]
    ['not_object', 'future_timestamp', 'wrong_type', 'missing_field']
    """
    try:
        tick = json_object(value, limits.max_bytes)
        if isinstance(tick, Rejection):
            return tick
        if "t" not in tick:
            return Rejection("missing_field", "missing required field data.t")
        t = tick["t"]
        if t is None:
            return None
        if not _seconds(t):
            return Rejection("wrong_type", f"data.t must be a number or null (got {type(t).__name__} {_short(t)})")
        if t < limits.min_ts:
            return Rejection("ancient_timestamp", f"data.t {t!r} is before the minimum {_when(limits.min_ts)}")
        if t > now + limits.max_future_s:
            return Rejection("future_timestamp", f"data.t {t!r} is more than {limits.max_future_s:g}s ahead of now ({_when(now)})")
        return None if ceiling is None else min(float(t), ceiling)
    except Exception as exc:  # a tick must not take the agent down
        return Rejection("bad_value", f"unexpected {type(exc).__name__} while decoding a tick: {_short(str(exc))}")


def decode_example(
    key: bytes | None,
    value: bytes | None,
    *,
    now: float,
    limits: Limits = _DEFAULT_LIMITS,
) -> dict | Rejection:
    """A churn.training record -> an example the learner may take, or a Rejection.

    Checked against ``schemas/churn.training.json``: a customer id, exactly the
    fixed feature names, each a finite number within bounds, a label of 0 or
    1, event times not ahead of the wall clock by more than ``max_future_s``.
    The key, when present, must be the customer id. ``label`` comes back a
    bool. Never raises.

    >>> from stream_app.risk.features import NEUTRAL
    >>> ok = {"customer_id": "c1", "features": NEUTRAL, "label": 1, "snapshot_t": 0.0, "labelled_t": 86400.0, "score": None}
    >>> decode_example(b"c1", orjson.dumps(ok), now=1e9)["label"]
    True
    >>> decode_example(None, orjson.dumps({**ok, "features": {**NEUTRAL, "shoe_size": 44.0}}), now=1e9).reason
    'bad_value'
    >>> decode_example(None, orjson.dumps({**ok, "label": 2}), now=1e9).reason
    'bad_value'
    """
    try:
        ex = json_object(value, limits.max_bytes)
        if isinstance(ex, Rejection):
            return ex
        try:
            _EXAMPLE(ex)
        except JsonSchemaValueException as exc:
            return _rejection(TRAINING_TOPIC, exc)
        cid = ex["customer_id"]
        if key is not None and bytes(key) != cid.encode():
            return Rejection("key_mismatch", f"message key {_short(bytes(key))} does not match data.customer_id {_short(cid)}")
        for field in ("snapshot_t", "labelled_t"):
            if ex[field] > now + limits.max_future_s:
                return Rejection("future_timestamp", f"data.{field} {ex[field]!r} is more than {limits.max_future_s:g}s ahead of now ({_when(now)})")
        ex["label"] = bool(ex["label"])
        return ex
    except Exception as exc:  # the learner must never see an exception from here
        return Rejection("bad_value", f"unexpected {type(exc).__name__} while decoding an example: {_short(str(exc))}")
