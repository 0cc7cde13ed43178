"""What every source adapter shares: the result type, the outcome of one
source record, and the check that whatever an adapter emits is a contract
event.

An adapter is a pure function from the bytes of one source record (a Stripe
`Event`, a Segment call, a Zendesk webhook) to contract events, so it is
tested without Kafka and the agent that runs it stays thin wiring. It never
raises: a record it cannot map comes back as a `Rejection` with a bounded
reason code (safe as a metric label) and a detail for people, and goes to
churn.dlq like any invalid input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..contract import Rejection, format_ts, json_object, parse_ts, topic_for_type, validate_event

# Reason codes of source records that cannot be mapped (the input topics'
# own codes, e.g. not_json or bad_value, are reused where they fit).
UNSUPPORTED = "unsupported_event"  # a type the adapter does not know (e.g. a Stripe charge.* event)
UNMAPPABLE = "unmappable"  # a known type without what the mapping needs (no customer, no price, ...)
SOURCE_REJECTION_REASONS = frozenset({UNSUPPORTED, UNMAPPABLE, "not_json", "not_object", "too_large", "bad_value",
                                      "missing_field", "wrong_type", "bad_timestamp", "unknown_type"})


@dataclass(frozen=True)
class Mapped:
    """The contract events one source record became (in the order they
    happened), or why it became none: a record that carries nothing the
    monitor tracks (a Segment `identify`, a Stripe update of metadata only)
    is counted as ignored, never dropped silently."""

    events: tuple[dict, ...] = ()
    ignored: str | None = None  # why nothing was emitted, when nothing was


@dataclass(frozen=True)
class Source:
    """One source system: its topic, its adapter, and how it is described."""

    name: str
    topic: str
    adapt: Callable[[dict, Any], "Mapped | Rejection"]  # a decoded JSON object and the source's config
    config: Callable[[Any], Any] = field(default=lambda settings: None)  # Settings -> the adapter's config


def ignored(why: str) -> Mapped:
    return Mapped((), why)


def event(event_id: str, customer_id: str, type_: str, ts: str, **fields: Any) -> dict:
    """A contract event: the envelope first, then the type's fields (None values left out)."""
    out = {"event_id": event_id[:128], "customer_id": customer_id, "type": type_, "ts": ts}
    out.update((k, v) for k, v in fields.items() if v is not None)
    return out


def iso(value: Any) -> str | None:
    """A source timestamp (Unix seconds, or ISO 8601 with an offset) as the
    contract's canonical RFC 3339 UTC string; None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return format_ts(float(value))
        except (OverflowError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            return format_ts(parse_ts(value))
        except ValueError:
            return None
    return None


def ident(value: Any) -> str | None:
    """An id as a non-empty string of at most 128 characters (Zendesk sends
    numeric ids, sometimes as strings, and "0" or "" for none)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        value = value.strip()
        if value and value != "0" and len(value) <= 128:
            return value
    return None


def checked(source: str, result: Mapped | Rejection) -> Mapped | Rejection:
    """Hold what an adapter emits to the contract: an event the worker would
    reject makes the whole source record a rejection (dead-lettered with the
    source bytes), so no half-mapped record reaches the input topics."""
    if isinstance(result, Rejection):
        return result
    for ev in result.events:
        try:
            topic = topic_for_type(ev.get("type"))
        except (KeyError, TypeError):
            return Rejection("unknown_type", f"{source} adapter emitted an unknown event type {ev.get('type')!r}")
        rej = validate_event(topic, ev)
        if rej is not None:
            return Rejection(rej.reason, f"the {ev['type']} event mapped from this {source} record is invalid: {rej.detail}")
    return result


def run(source: Source, value: bytes | None, config: Any, max_bytes: int) -> Mapped | Rejection:
    """One source record, end to end: decode, map, check. Never raises."""
    obj = json_object(value, max_bytes, "a source record")
    if isinstance(obj, Rejection):
        return obj
    try:
        return checked(source.name, source.adapt(obj, config))
    except Exception as exc:  # an adapter bug must not stall the source partition
        return Rejection(UNMAPPABLE, f"{source.name} adapter failed on this record: {type(exc).__name__}: {str(exc)[:200]}")
