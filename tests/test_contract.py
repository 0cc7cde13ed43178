"""The event contract is a public interface: these tests pin what producers may send
and what the worker may rely on, and check that the schema files (not the code) decide.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stream_app.ingest import contract as c
from stream_app.ingest.contract import (
    REASONS,
    REJECTION_REASONS,
    SCHEMA_DIR,
    TOPIC_TYPES,
    TOPICS,
    Limits,
    Rejection,
    decode,
    format_ts,
    parse_ts,
    topic_for_type,
    validate_event,
)

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "valid_events.jsonl"
NOW = parse_ts("2025-06-01T00:00:00Z")

RAW_LINES: list[bytes] = [ln for ln in DATA.read_bytes().splitlines() if ln.strip()]
EXAMPLES: list[dict] = [orjson.loads(ln) for ln in RAW_LINES]


def _schema(topic: str) -> dict:
    return json.loads((REPO / "schemas" / f"{topic}.json").read_text())


def _example(event_type: str) -> dict:
    return dict(next(e for e in EXAMPLES if e["type"] == event_type))


def _dec(topic: str, event: dict | bytes, key: bytes | None = None, **kw):
    raw = event if isinstance(event, bytes) else orjson.dumps(event)
    return decode(topic, key, raw, now=kw.pop("now", NOW), **kw)


# ----------------------------------------------------------------- valid examples


@pytest.mark.parametrize("raw", RAW_LINES, ids=[e["event_id"] for e in EXAMPLES])
def test_every_example_decodes_on_its_topic(raw: bytes) -> None:
    ev = orjson.loads(raw)
    topic = topic_for_type(ev["type"])
    out = decode(topic, ev["customer_id"].encode(), raw, now=NOW)
    assert isinstance(out, dict), out
    assert out["_t"] == parse_ts(ev["ts"]) and isinstance(out["_t"], float)
    assert out["ts"] == ev["ts"], "ts is stored as given, not normalised"
    if "effective_at" in ev:
        assert out["_effective_t"] == parse_ts(ev["effective_at"])
    assert validate_event(topic, ev) is None
    # keyless messages are accepted too (the key is checked only when present)
    assert isinstance(decode(topic, None, raw, now=NOW), dict)


def test_every_schema_type_has_an_example() -> None:
    have = {e["type"] for e in EXAMPLES}
    missing = {t for types in TOPIC_TYPES.values() for t in types} - have
    assert not missing, f"add an example to {DATA.name} for: {sorted(missing)}"


@pytest.mark.parametrize("topic", TOPICS)
def test_schema_embedded_examples_are_valid(topic: str) -> None:
    for ex in _schema(topic).get("examples", []):
        assert isinstance(_dec(topic, ex), dict), ex


def test_a_purchase_of_nothing_is_a_purchase() -> None:
    """A free item or a fully discounted order (the CDNOW sample has eight)."""
    out = _dec("churn.usage", dict(_example("purchase"), amount=0))
    assert isinstance(out, dict) and out["amount"] == 0
    assert isinstance(_dec("churn.usage", dict(_example("purchase"), amount=0.0)), dict)


def test_examples_on_the_wrong_topic_are_unknown_type() -> None:
    for ev in EXAMPLES:
        for topic in TOPICS:
            if topic != topic_for_type(ev["type"]):
                r = _dec(topic, ev)
                assert r.reason == "unknown_type" and "data.type" in r.detail


def test_readme_examples_are_valid_and_cover_every_type() -> None:
    block = re.search(r"```jsonl\n(.*?)```", (REPO / "schemas" / "README.md").read_text(), re.S)
    assert block, "schemas/README.md lost its jsonl example block"
    seen = set()
    for line in block.group(1).strip().splitlines():
        ev = orjson.loads(line)
        seen.add(ev["type"])
        assert isinstance(decode(topic_for_type(ev["type"]), None, line.encode(), now=NOW), dict), line
    assert seen == {t for types in TOPIC_TYPES.values() for t in types}


# ------------------------------------------------------------ one test per reason

_OK = {"event_id": "e-1", "customer_id": "c-1", "type": "plan_changed", "ts": "2025-01-01T00:00:00Z", "plan": "pro", "mrr": 10}
_SUB = "churn.subscription"


def _with(**kw) -> bytes:
    ev = dict(_OK)
    for k, v in kw.items():
        if v is ...:
            ev.pop(k)
        else:
            ev[k] = v
    return orjson.dumps(ev)


# (code, topic, key, value, limits, words the detail must contain)
REJECTIONS = [
    ("too_large", _SUB, None, b"{" + b" " * 100 + b"}", Limits(max_bytes=100), ["102 bytes", "limit is 100"]),
    ("not_json", _SUB, None, b"{not json", None, ["JSON"]),
    ("not_json", _SUB, None, b"\xff\xfe", None, ["JSON"]),
    ("not_json", _SUB, None, None, None, ["null"]),
    ("not_object", _SUB, None, b"[1, 2]", None, ["object", "list"]),
    ("unknown_type", _SUB, None, _with(type="teleported"), None, ["data.type", "teleported"]),
    ("unknown_type", _SUB, None, _with(type="session"), None, ["data.type", "churn.usage"]),
    ("missing_field", _SUB, None, _with(mrr=...), None, ["data.mrr"]),
    ("missing_field", _SUB, None, _with(customer_id=...), None, ["data.customer_id"]),
    ("missing_field", _SUB, None, _with(type=...), None, ["data.type"]),
    ("wrong_type", _SUB, None, _with(mrr="10"), None, ["data.mrr", "number", "'10'"]),
    ("wrong_type", _SUB, None, _with(mrr=True), None, ["data.mrr"]),
    ("wrong_type", _SUB, None, _with(customer_id=42), None, ["data.customer_id"]),
    ("bad_value", _SUB, None, _with(mrr=-5), None, ["data.mrr", "-5"]),
    ("bad_value", _SUB, None, _with(mrr=2e7), None, ["data.mrr"]),
    ("bad_value", _SUB, None, _with(plan=""), None, ["data.plan"]),
    ("bad_value", _SUB, None, _with(type="subscription_cancelled", reason="bored"), None, ["data.reason", "bored"]),
    ("bad_value", "churn.usage", None, orjson.dumps(dict(_example("purchase"), amount=-0.01)), None, ["data.amount"]),  # refunds: not in the contract yet
    ("bad_value", "churn.support", None, orjson.dumps(dict(_example("csat"), score=6)), None, ["data.score"]),
    ("bad_value", "churn.support", None, orjson.dumps(dict(_example("nps"), score=-1)), None, ["data.score"]),
    ("wrong_type", "churn.support", None, orjson.dumps(dict(_example("nps"), score=7.5)), None, ["data.score"]),
    ("bad_timestamp", _SUB, None, _with(ts="2025-01-01T00:00:00"), None, ["data.ts"]),
    ("bad_timestamp", _SUB, None, _with(ts="yesterday"), None, ["data.ts"]),
    ("bad_timestamp", _SUB, None, _with(ts="0000-01-01T00:00:00Z"), None, ["data.ts"]),
    ("bad_timestamp", _SUB, None, _with(type="subscription_cancelled", reason="price", effective_at="2025-02-30T00:00:00Z"), None, ["data.effective_at"]),
    ("future_timestamp", _SUB, None, _with(ts="2025-06-02T00:00:01Z"), None, ["data.ts", "2025-06-02"]),
    ("ancient_timestamp", _SUB, None, _with(ts="1969-12-31T23:59:59Z"), None, ["data.ts"]),
    ("ancient_timestamp", _SUB, None, _with(type="subscription_cancelled", reason="price", effective_at="1960-01-01T00:00:00Z"), None, ["data.effective_at"]),
    ("key_mismatch", _SUB, b"c-2", _with(), None, ["key", "data.customer_id", "c-1", "c-2"]),
    ("key_mismatch", _SUB, b"", _with(), None, ["data.customer_id"]),
    ("unknown_topic", "churn.billing", None, _with(), None, ["churn.billing"]),
]


@pytest.mark.parametrize(("code", "topic", "key", "value", "limits", "words"), REJECTIONS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(REJECTIONS)])
def test_rejection_reason(code, topic, key, value, limits, words) -> None:
    r = decode(topic, key, value, now=NOW, **({"limits": limits} if limits else {}))
    assert isinstance(r, Rejection), r
    assert r.reason == code, r
    assert r.reason in REJECTION_REASONS
    assert "\n" not in r.detail and len(r.detail) < 500
    for w in words:
        assert w in r.detail, (w, r.detail)


def test_rejection_table_covers_every_reason() -> None:
    assert {r[0] for r in REJECTIONS} == REJECTION_REASONS


def test_limits_are_inclusive_bounds() -> None:
    raw = _with()
    assert isinstance(decode(_SUB, None, raw, now=NOW, limits=Limits(max_bytes=len(raw))), dict)
    assert decode(_SUB, None, raw, now=NOW, limits=Limits(max_bytes=len(raw) - 1)).reason == "too_large"
    t = parse_ts(_OK["ts"])
    assert isinstance(decode(_SUB, None, raw, now=t - 60, limits=Limits(max_future_s=60)), dict)
    assert decode(_SUB, None, raw, now=t - 61, limits=Limits(max_future_s=60)).reason == "future_timestamp"
    assert isinstance(decode(_SUB, None, raw, now=NOW, limits=Limits(min_ts=t)), dict)
    assert decode(_SUB, None, raw, now=NOW, limits=Limits(min_ts=t + 1)).reason == "ancient_timestamp"


def test_size_is_checked_before_parsing() -> None:
    # not even valid JSON: a too-large message must not cost a parse
    assert decode(_SUB, None, b"x" * 70_000, now=NOW).reason == "too_large"


def test_effective_at_may_be_far_ahead() -> None:
    # the end of an annual paid period is not a clock error
    ev = _with(type="subscription_cancelled", reason="price", effective_at="2026-05-31T00:00:00Z")
    assert isinstance(decode(_SUB, None, ev, now=NOW), dict)


def test_derived_keys_cannot_be_forged() -> None:
    ev = dict(_example("subscription_renewed"), _t="soon", _effective_t=1.0)
    out = _dec(_SUB, ev)
    assert out["_t"] == parse_ts(ev["ts"]) and "_effective_t" not in out


def test_unknown_properties_are_allowed() -> None:
    out = _dec(_SUB, dict(_OK, campaign="spring", nested={"a": [1, 2]}))
    assert out["campaign"] == "spring"


def test_offsets_are_converted() -> None:
    a = _dec(_SUB, dict(_OK, ts="2025-01-01T01:30:00+01:30"))
    b = _dec(_SUB, dict(_OK, ts="2024-12-31T19:00:00-05:00"))
    assert a["_t"] == b["_t"] == parse_ts("2025-01-01T00:00:00Z")


def test_validate_event_rejects_nan_and_non_objects() -> None:
    assert validate_event(_SUB, dict(_OK, mrr=float("nan"))).reason == "bad_value"
    assert validate_event(_SUB, [1]).reason == "not_object"  # type: ignore[arg-type]
    assert validate_event("nope", dict(_OK)).reason == "unknown_topic"
    assert validate_event(_SUB, dict(_OK, ts="2025-02-30T00:00:00Z")).reason == "bad_timestamp"


def test_topic_for_type() -> None:
    assert topic_for_type("csat") == "churn.support"
    with pytest.raises(KeyError):
        topic_for_type("teleported")


# ------------------------------------------------------ the schema is the source


@pytest.mark.parametrize("topic", TOPICS)
def test_type_enum_comes_from_the_schema_file(topic: str) -> None:
    schema = _schema(topic)
    assert TOPIC_TYPES[topic] == frozenset(schema["properties"]["type"]["enum"])
    assert (SCHEMA_DIR / f"{topic}.json").resolve() == (REPO / "schemas" / f"{topic}.json").resolve()


def test_reasons_come_from_the_schema_file() -> None:
    assert REASONS == tuple(_schema(_SUB)["definitions"]["reason"]["enum"])


def test_envelope_is_identical_on_every_topic() -> None:
    def env(topic: str) -> tuple:
        s = _schema(topic)
        props = {k: v for k, v in s["properties"].items() if k != "type"}
        return (s["required"], props, s["definitions"]["id"], s["definitions"]["timestamp"], s.get("additionalProperties", True))

    assert env(TOPICS[0]) == env(TOPICS[1]) == env(TOPICS[2])


def _branches(topic: str):
    """(type, then) for every per-type branch of the schema file."""
    for entry in _schema(topic)["allOf"]:
        yield entry["if"]["properties"]["type"]["const"], entry["then"]


@pytest.mark.parametrize("topic", TOPICS)
def test_each_types_required_fields_are_enforced(topic: str) -> None:
    seen = set()
    for etype, then in _branches(topic):
        seen.add(etype)
        good = _example(etype)
        assert isinstance(_dec(topic, good), dict)
        for field in then.get("required", []):
            bad = {k: v for k, v in good.items() if k != field}
            r = _dec(topic, bad)
            assert r.reason == "missing_field" and f"data.{field}" in r.detail, (etype, field, r)
            r = _dec(topic, dict(good, **{field: [field]}))
            assert r.reason == "wrong_type" and f"data.{field}" in r.detail, (etype, field, r)
        for field in ("event_id", "customer_id", "type", "ts"):
            r = _dec(topic, {k: v for k, v in good.items() if k != field})
            assert r.reason == "missing_field" and f"data.{field}" in r.detail, (etype, field, r)
    assert seen == TOPIC_TYPES[topic], "every type in the enum has an if/then branch"


def test_schema_dir_override_drives_the_code(tmp_path: Path) -> None:
    """Adding a type to a schema file (and nothing else) makes the code accept it."""
    for topic in TOPICS + ("churn.training",):
        s = _schema(topic)
        if topic == "churn.usage":
            s["properties"]["type"]["enum"].append("seat_added")
            s["allOf"].append({"if": {"required": ["type"], "properties": {"type": {"const": "seat_added"}}},
                               "then": {"required": ["seats"], "properties": {"seats": {"type": "integer", "minimum": 1}}}})
        (tmp_path / f"{topic}.json").write_text(json.dumps(s))
    code = (
        "from stream_app.ingest.contract import *\n"
        "assert 'seat_added' in TOPIC_TYPES['churn.usage'] and topic_for_type('seat_added') == 'churn.usage'\n"
        "ev = b'{\"event_id\":\"x\",\"customer_id\":\"c\",\"type\":\"seat_added\",\"ts\":\"2025-01-01T00:00:00Z\"'\n"
        "assert decode('churn.usage', None, ev + b',\"seats\":3}', now=2e9)['seats'] == 3\n"
        "r = decode('churn.usage', None, ev + b'}', now=2e9)\n"
        "assert r.reason == 'missing_field' and 'data.seats' in r.detail, r\n"
        "print(SCHEMA_DIR)\n"
    )
    env = dict(os.environ, CHURNMON_SCHEMA_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path)


# -------------------------------------------------------------------- properties

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELDS = sorted({k for e in EXAMPLES for k in e} | {"_t", "_effective_t", "effective_at", "reason_text", "duration_s", "score"})


def _check_outcome(out, topic: str) -> None:
    if isinstance(out, Rejection):
        assert out.reason in REJECTION_REASONS, out
        assert isinstance(out.detail, str) and "\n" not in out.detail
    else:
        assert isinstance(out, dict)
        assert isinstance(out["_t"], float) and math.isfinite(out["_t"])
        assert isinstance(out["customer_id"], str) and out["customer_id"]
        assert out["type"] in TOPIC_TYPES[topic]
        if "_effective_t" in out:
            assert out["type"] == "subscription_cancelled" and isinstance(out["_effective_t"], float)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS + ("churn.other",)), key=st.none() | st.binary(max_size=8), value=st.none() | st.binary(max_size=300))
def test_decode_never_raises_on_arbitrary_bytes(topic, key, value) -> None:
    _check_outcome(decode(topic, key, value, now=NOW), topic)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(idx=st.integers(0, len(EXAMPLES) - 1), field=st.sampled_from(FIELDS), new=json_values, remove=st.booleans(), use_key=st.booleans())
def test_near_valid_events(idx, field, new, remove, use_key) -> None:
    ev = dict(EXAMPLES[idx])
    topic = topic_for_type(ev["type"])
    if remove:
        ev.pop(field, None)
    else:
        ev[field] = new
    try:
        raw = json.dumps(ev).encode()  # stdlib: big ints survive, lone surrogates get escaped
    except UnicodeEncodeError:
        assume(False)
    key = ev["customer_id"].encode() if use_key and isinstance(ev.get("customer_id"), str) else None
    out = decode(topic, key, raw, now=NOW)
    _check_outcome(out, topic)
    # the per-type fast path must agree with the full schema validator
    parsed = orjson.loads(raw) if not isinstance(out, Rejection) or out.reason != "not_json" else None
    if isinstance(parsed, dict):
        full_ok = True
        try:
            c._FULL[topic](dict(parsed))
        except Exception:
            full_ok = False
        assert (c._schema_check(topic, dict(parsed)) is None) == full_ok
        if isinstance(out, dict):
            assert validate_event(topic, parsed) is None


_offsets = st.sampled_from(["Z", "z", "+00:00", "+01:00", "-05:30", "+14:00", "-12:00", "+0530"])


@given(
    dt=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    off=_offsets,
)
def test_parse_ts_format_ts_round_trip(dt, off) -> None:
    s = dt.isoformat(timespec="microseconds") + off
    t = parse_ts(s)
    back = format_ts(t)
    assert back.endswith("Z")
    assert abs(parse_ts(back) - t) < 1e-6
    if off in ("Z", "z", "+00:00"):
        assert back == dt.isoformat() + "Z"


@given(t=st.floats(min_value=-2e9, max_value=7e9, allow_nan=False))
def test_format_ts_is_rfc3339_utc(t) -> None:
    s = format_ts(t)
    assert s.endswith("Z") and abs(parse_ts(s) - t) <= 2e-6  # microsecond resolution


@pytest.mark.parametrize("bad", ["2025-01-01T00:00:00", "2025-01-01", "2025-13-01T00:00:00Z", "2025-02-29T00:00:00Z",
                                 "20250101T000000Z", "2025-W01-1T00:00:00Z", "2025-01-01 00:00:00Z", "", "now", 1735689600])
def test_parse_ts_rejects(bad) -> None:
    with pytest.raises(ValueError):
        parse_ts(bad)  # type: ignore[arg-type]


def test_parse_ts_rfc3339_corners() -> None:
    assert parse_ts("2016-12-31T23:59:60Z") == parse_ts("2017-01-01T00:00:00Z")  # leap second
    assert parse_ts("2025-01-01t00:00:00z") == parse_ts("2025-01-01T00:00:00Z")
    assert parse_ts("2025-01-01T00:00:00.123456789Z") == parse_ts("2025-01-01T00:00:00.123456Z")


@settings(max_examples=300)
@given(s=st.from_regex(c._RFC3339, fullmatch=True))
def test_rfc3339_shaped_strings_never_escape_as_other_errors(s) -> None:
    """Shape-valid but calendar-invalid strings (Feb 30, year 0, year 9999 plus an
    offset) must surface as ValueError / bad_timestamp, never as a crash; and parse_ts
    must be exactly as strict as decode, or replay and live would disagree."""
    try:
        t = parse_ts(s)
    except ValueError:
        t = None
    out = _dec(_SUB, dict(_OK, ts=s), now=9e12)
    if t is None:
        assert isinstance(out, Rejection) and out.reason == "bad_timestamp", out
    elif t < 0:
        assert out.reason == "ancient_timestamp", out
    else:
        assert isinstance(out, dict) and out["_t"] == t, out


# ------------------------------------------------- the worker's other inputs: ticks, examples

from stream_app.ingest.contract import EXAMPLE_FEATURES, decode_example, decode_tick  # noqa: E402
from stream_app.risk.features import FEATURES, NEUTRAL  # noqa: E402
from stream_app.risk.labels import Example  # noqa: E402
from stream_app.risk.scoring import example_message  # noqa: E402

_TICK = dict(now=NOW, ceiling=NOW - 86400.0)
_EX = {"customer_id": "c-1", "features": dict(NEUTRAL), "label": True, "snapshot_t": NOW - 90 * 86400.0,
       "labelled_t": NOW - 60 * 86400.0, "score": 0.25}


def test_training_schema_names_exactly_the_feature_set() -> None:
    assert EXAMPLE_FEATURES == FEATURES
    assert set(_schema("churn.training")["properties"]["features"]["properties"]) == set(FEATURES)
    for ex in _schema("churn.training")["examples"]:
        assert isinstance(decode_example(None, orjson.dumps(ex), now=NOW), dict)


def test_the_workers_own_examples_are_valid() -> None:
    for label, score in ((True, 0.7), (False, None)):
        ex = Example(dict(NEUTRAL, mrr=99.0, tenure_days=12.0), label, NOW - 40 * 86400.0, NOW - 10 * 86400.0, score)
        out = decode_example(b"cus_1", example_message("cus_1", ex), now=NOW)
        assert isinstance(out, dict) and out["label"] is label and out["features"]["mrr"] == 99.0


def _ex(**changes) -> bytes:
    ex = {**_EX, **changes}
    return orjson.dumps({k: v for k, v in ex.items() if v is not ...})


def _feats(**changes) -> dict:
    f = {**NEUTRAL, **changes}
    return {k: v for k, v in f.items() if v is not ...}


@pytest.mark.parametrize("code, key, value", [
    ("not_json", None, b"{oops"),
    ("not_json", None, None),
    ("not_object", None, b"[1, 2]"),
    ("too_large", None, b"{" + b" " * 70000 + b"}"),
    ("missing_field", None, _ex(label=...)),
    ("missing_field", None, _ex(features=_feats(mrr=...))),
    ("bad_value", None, _ex(features=_feats(shoe_size=44.0))),  # an unknown key would grow the model
    ("bad_value", None, _ex(features=_feats(mrr=1e300))),
    ("bad_value", None, _ex(features=_feats(usage_trend_log=-1e9))),
    ("wrong_type", None, _ex(features=_feats(mrr="99"))),
    ("wrong_type", None, _ex(features=_feats(csat=True))),
    ("bad_value", None, _ex(label=2)),
    ("bad_value", None, _ex(label="1")),
    ("bad_value", None, _ex(customer_id="")),
    ("bad_value", None, _ex(score=1.5)),
    ("key_mismatch", b"c-2", _ex()),
    ("future_timestamp", None, _ex(labelled_t=NOW + 2 * 86400.0)),
    ("bad_value", None, _ex(snapshot_t=-1.0)),
])
def test_bad_examples_are_rejected_with_a_reason(code, key, value) -> None:
    out = decode_example(key, value, now=NOW)
    assert isinstance(out, Rejection) and out.reason == code, out


def test_labels_are_booleans_after_decoding() -> None:
    assert [decode_example(None, _ex(label=v), now=NOW)["label"] for v in (0, 1, False, True)] == [False, True, False, True]


@pytest.mark.parametrize("value, code", [
    (b"[1]", "not_object"), (b'"t"', "not_object"), (b"nope", "not_json"), (None, "not_json"), (b"{}", "missing_field"),
    (b'{"t": "2025-01-01T00:00:00Z"}', "wrong_type"), (b'{"t": true}', "wrong_type"), (b'{"t": [1]}', "wrong_type"),
    (b'{"t": 1e300}', "future_timestamp"), (b'{"t": -5}', "ancient_timestamp"),
])
def test_bad_ticks_are_rejected_with_a_reason(value, code) -> None:
    out = decode_tick(value, **_TICK)
    assert isinstance(out, Rejection) and out.reason == code, out


def test_a_tick_never_moves_a_clock_past_the_events() -> None:
    ceiling = _TICK["ceiling"]
    assert decode_tick(orjson.dumps({"t": NOW}), **_TICK) == ceiling  # within max_future_s, yet capped
    assert decode_tick(orjson.dumps({"t": ceiling - 5}), **_TICK) == ceiling - 5
    assert decode_tick(b'{"t": null}', **_TICK) is None
    assert decode_tick(orjson.dumps({"t": NOW}), now=NOW, ceiling=None) is None  # nothing allows a move


@settings(max_examples=300)
@given(value=st.none() | st.binary(max_size=200) | json_values.map(lambda v: json.dumps({"t": v}).encode()),
       ceiling=st.none() | st.floats(0, 4e9))
def test_ticks_never_raise_and_never_pass_the_ceiling(value, ceiling) -> None:
    out = decode_tick(value, now=NOW, ceiling=ceiling)
    if isinstance(out, Rejection):
        assert out.reason in REJECTION_REASONS and "\n" not in out.detail
    elif out is not None:
        assert ceiling is not None and math.isfinite(out) and out <= ceiling


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.none() | st.binary(max_size=300), key=st.none() | st.binary(max_size=6))
def test_examples_never_raise_on_arbitrary_bytes(value, key) -> None:
    out = decode_example(key, value, now=NOW)
    assert isinstance(out, Rejection) and out.reason in REJECTION_REASONS


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(_EX)), feature=st.sampled_from(FEATURES + ("extra",)), new=json_values,
       in_features=st.booleans(), remove=st.booleans())
def test_near_valid_examples(field, feature, new, in_features, remove) -> None:
    ex = {**_EX, "features": dict(NEUTRAL)}
    target, name = (ex["features"], feature) if in_features else (ex, field)
    if remove:
        target.pop(name, None)
    else:
        target[name] = new
    try:
        raw = json.dumps(ex).encode()
    except (UnicodeEncodeError, ValueError):
        assume(False)
    out = decode_example(None, raw, now=NOW)
    if isinstance(out, Rejection):
        assert out.reason in REJECTION_REASONS and "\n" not in out.detail
    else:
        assert set(out["features"]) == set(FEATURES) and isinstance(out["label"], bool)
        assert all(math.isfinite(v) and -1000 <= v <= 1e12 for v in out["features"].values())
