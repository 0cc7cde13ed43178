"""Zendesk ticket webhooks -> contract events on churn.support.

Zendesk's event webhooks (`zen:event-type:ticket.created`,
`zen:event-type:ticket.status_changed`) carry the ticket in `detail`, the
change in `event`, a unique `id` (the contract's `event_id`) and `time`.
Satisfaction ratings have no event webhook; a trigger on "Satisfaction is
Good/Bad" sends them, with the JSON body given in the README (same envelope,
type `churnmon:ticket.satisfaction_rated`). CSAT: good -> 5 (high), bad -> 1
(low) on the contract's 1-5 scale.

The customer is the ticket's organisation or its requester
(CHURNMON_ZENDESK_CUSTOMER): their external id when the body carries one
(`organization_external_id`, `requester_external_id`), else the Zendesk id.
"""

from __future__ import annotations

from typing import Any

from ..contract import Rejection
from .base import UNMAPPABLE, UNSUPPORTED, Mapped, event, ident, ignored, iso

CREATED = "zen:event-type:ticket.created"
STATUS_CHANGED = "zen:event-type:ticket.status_changed"
SATISFACTION = "churnmon:ticket.satisfaction_rated"
EVENT_TYPES = (CREATED, STATUS_CHANGED, SATISFACTION)
CUSTOMER_KEYS = ("organization", "requester")
SOLVED = frozenset({"solved", "closed"})
PRIORITIES = frozenset({"low", "normal", "high", "urgent"})
CSAT = {"good": 5, "bad": 1}  # Zendesk's two-point rating on the contract's 1-5 scale
NO_CATEGORY = "uncategorised"


def _customer(detail: dict, key: str) -> str | None:
    return ident(detail.get(f"{key}_external_id")) or ident(detail.get(f"{key}_id"))


def _lower(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def _rating(value: Any) -> str | None:
    """'good' / 'bad' from the API's score or a trigger placeholder's text ("Good, I'm satisfied")."""
    v = _lower(value) or ""
    for word in CSAT:
        if v.startswith(word):
            return word
    return None


def adapt(hook: dict, customer: str = "organization") -> Mapped | Rejection:
    """One Zendesk webhook -> ticket_opened, ticket_resolved or csat.

    >>> hook = {"type": CREATED, "id": "2b2a-1", "time": "2025-02-10T10:00:00Z", "account_id": 1,
    ...         "detail": {"id": "77", "organization_id": "901", "requester_id": "55", "priority": "HIGH", "type": "INCIDENT", "status": "NEW"}}
    >>> adapt(hook).events
    ({'event_id': '2b2a-1', 'customer_id': '901', 'type': 'ticket_opened', 'ts': '2025-02-10T10:00:00Z', 'ticket_id': '77', 'priority': 'high', 'category': 'incident'},)
    """
    typ = hook.get("type")
    if typ not in EVENT_TYPES:
        if isinstance(typ, str) and typ.startswith("zen:event-type:"):
            return ignored(f"Zendesk event {typ} carries nothing the monitor tracks")
        return Rejection(UNSUPPORTED, f"Zendesk webhook type {typ!r} is not mapped; send {', '.join(EVENT_TYPES)}")
    eid = ident(hook.get("id"))
    ts = iso(hook.get("time"))
    detail = hook.get("detail")
    if eid is None or ts is None or not isinstance(detail, dict):
        return Rejection(UNMAPPABLE, "a Zendesk webhook needs an id, a time with an offset and a detail object")
    tid = ident(detail.get("id"))
    if tid is None:
        return Rejection(UNMAPPABLE, f"Zendesk webhook {eid} has no ticket id (detail.id)")
    cid = _customer(detail, customer)
    if cid is None:
        return Rejection(UNMAPPABLE, f"ticket {tid} has no {customer} ({customer}_external_id or {customer}_id): "
                                     f"set CHURNMON_ZENDESK_CUSTOMER to the one your tickets carry")
    change = hook.get("event") if isinstance(hook.get("event"), dict) else {}
    if typ == CREATED:
        priority = _lower(detail.get("priority"))
        return Mapped((event(eid, cid, "ticket_opened", ts, ticket_id=tid,
                             priority=priority if priority in PRIORITIES else "normal",
                             category=(_lower(detail.get("type")) or NO_CATEGORY)[:128]),))
    if typ == STATUS_CHANGED:
        now, before = _lower(change.get("current")), _lower(change.get("previous"))
        if now in SOLVED and before not in SOLVED:
            return Mapped((event(eid, cid, "ticket_resolved", ts, ticket_id=tid),))
        return ignored(f"ticket {tid} went from {before} to {now}: only solving is mapped")
    rating = _rating(change.get("score"))
    if rating is None:
        return ignored(f"ticket {tid} satisfaction {change.get('score')!r} is not a rating (offered, unoffered)")
    return Mapped((event(eid, cid, "csat", ts, score=CSAT[rating]),))
