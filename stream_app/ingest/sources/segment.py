"""Segment-spec calls (Segment, RudderStack: their Kafka destinations write
the calls as they are) -> contract events on churn.usage.

Which event names are sessions, purchases or feature use is configuration,
not code: a small TOML mapping file (`segment.toml` here holds the defaults;
CHURNMON_SEGMENT_MAPPING_FILE points at your own). The customer is the
account (`groupId`, B2B) or the user (`userId`): CHURNMON_SEGMENT_CUSTOMER.
`messageId` becomes `event_id`, so a call delivered twice is dropped as a
duplicate by the worker.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract import Rejection
from .base import UNMAPPABLE, UNSUPPORTED, Mapped, event, ident, ignored, iso

DEFAULT_MAPPING = Path(__file__).with_name("segment.toml")
CUSTOMER_KEYS = ("groupId", "userId")
IGNORED_CALLS = frozenset({"identify", "group", "alias"})  # who someone is, not what they did


@dataclass(frozen=True)
class Mapping:
    customer: str = "groupId"
    pages_are_sessions: bool = True
    sessions: frozenset[str] = frozenset()
    purchases: frozenset[str] = frozenset()
    purchase_amount: tuple[str, ...] = ("total", "revenue", "value")
    ignore: frozenset[str] = frozenset()
    features: tuple[tuple[str, str], ...] = ()

    def feature(self, name: str) -> str:
        return dict(self.features).get(name, name)


def load_mapping(path: str | Path | None = None, customer: str = "groupId") -> Mapping:
    """The defaults, overlaid with the keys of the file at `path`; a file
    that is not TOML or has a key of the wrong kind is a ValueError naming it."""
    if customer not in CUSTOMER_KEYS:
        raise ValueError(f"segment customer must be one of {', '.join(CUSTOMER_KEYS)} (got {customer!r})")
    raw = tomllib.loads(DEFAULT_MAPPING.read_text())
    if path:
        try:
            raw.update(tomllib.loads(Path(path).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"segment mapping file {path}: {exc}") from exc
    known = {"pages_are_sessions", "sessions", "purchases", "purchase_amount", "ignore", "features"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"segment mapping file {path}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    try:
        features = raw.get("features", {})
        if not isinstance(features, dict) or not all(isinstance(v, str) and v for v in features.values()):
            raise TypeError("features must be a table of event name = feature name")
        for key in ("sessions", "purchases", "purchase_amount", "ignore"):
            if not isinstance(raw.get(key, []), list) or not all(isinstance(v, str) for v in raw.get(key, [])):
                raise TypeError(f"{key} must be a list of strings")
        return Mapping(customer=customer, pages_are_sessions=bool(raw.get("pages_are_sessions", True)),
                       sessions=frozenset(raw.get("sessions", ())), purchases=frozenset(raw.get("purchases", ())),
                       purchase_amount=tuple(raw.get("purchase_amount", ())), ignore=frozenset(raw.get("ignore", ())),
                       features=tuple(sorted(features.items())))
    except TypeError as exc:
        raise ValueError(f"segment mapping file {path or DEFAULT_MAPPING}: {exc}") from exc


DEFAULT = load_mapping()


def _customer(call: dict, key: str) -> str | None:
    if key == "groupId":
        context = call.get("context") if isinstance(call.get("context"), dict) else {}
        return ident(call.get("groupId")) or ident(context.get("groupId"))
    return ident(call.get("userId"))


def _amount(props: dict, names: tuple[str, ...]) -> Any:
    for name in names:
        if props.get(name) is not None:
            return props[name]
    return None


def adapt(call: dict, mapping: Mapping | None = None) -> Mapped | Rejection:
    """One Segment call -> a session, feature_used or purchase event.

    >>> call = {"type": "track", "event": "Report Exported", "userId": "u1", "context": {"groupId": "acme"},
    ...         "messageId": "m-1", "timestamp": "2025-01-01T10:00:00.000Z", "properties": {}}
    >>> adapt(call).events
    ({'event_id': 'm-1', 'customer_id': 'acme', 'type': 'feature_used', 'ts': '2025-01-01T10:00:00Z', 'feature': 'export'},)
    """
    m = mapping or DEFAULT
    kind = call.get("type")
    if kind in IGNORED_CALLS:
        return ignored(f"a Segment {kind} call carries no activity")
    if kind not in ("track", "page", "screen"):
        return Rejection(UNSUPPORTED, f"Segment call type {kind!r} is not mapped (track, page, screen are; identify, group, alias are ignored)")
    mid = ident(call.get("messageId"))
    if mid is None:
        return Rejection(UNMAPPABLE, "Segment call has no messageId (the event id that makes redeliveries harmless)")
    ts = iso(call.get("timestamp")) or iso(call.get("originalTimestamp"))
    if ts is None:
        return Rejection(UNMAPPABLE, f"Segment call {mid} has no timestamp with an offset")
    cid = _customer(call, m.customer)
    if cid is None:
        where = "groupId (or context.groupId)" if m.customer == "groupId" else "userId"
        return Rejection(UNMAPPABLE, f"Segment call {mid} has no {where}: set CHURNMON_SEGMENT_CUSTOMER to the id your calls carry")
    props = call.get("properties") if isinstance(call.get("properties"), dict) else {}
    if kind in ("page", "screen"):
        if not m.pages_are_sessions:
            return ignored(f"{kind} calls are not sessions in this mapping")
        return Mapped((event(mid, cid, "session", ts),))
    name = call.get("event")
    if not isinstance(name, str) or not name:
        return Rejection(UNMAPPABLE, f"Segment track call {mid} has no event name")
    if name in m.ignore:
        return ignored(f"track event {name!r} is ignored by the mapping")
    if name in m.sessions:
        return Mapped((event(mid, cid, "session", ts),))
    if name in m.purchases:
        amount = _amount(props, m.purchase_amount)
        if amount is None:
            return Rejection(UNMAPPABLE, f"purchase {name!r} ({mid}) has none of the amount properties {list(m.purchase_amount)}")
        return Mapped((event(mid, cid, "purchase", ts, amount=amount),))
    return Mapped((event(mid, cid, "feature_used", ts, feature=m.feature(name)[:128]),))
