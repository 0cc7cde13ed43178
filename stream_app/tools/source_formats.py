"""The simulator's population as the source systems would publish it:
`churnmon simulate --format stripe|segment|zendesk`.

Each format renders its system's share of the contract events (Stripe: the
subscription topic; Segment: usage; Zendesk: support) as the records the
adapters read (stream_app/ingest/sources), so the demo and the tests exercise the
adapters with a realistic population. Feeding the rendered records through
the adapter gives back the simulator's events, except where the source
system cannot say as much (tests/test_source_formats.py checks the round
trip):

- Stripe's cancellation feedback has eight values: the reasons onboarding,
  company_closed and changing_needs come back as other (the comment keeps
  the stated text); a renewal is a paid `subscription_cycle` invoice, which
  the adapter maps to a payment and a renewal.
- Zendesk rates good or bad: CSAT 4-5 is good (back as 5), 1-3 bad (back as
  1); Zendesk has no NPS, so nps events are not rendered.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..ingest.contract import parse_ts
from ..ingest.sources import SEGMENT_TOPIC, STRIPE_TOPIC, ZENDESK_TOPIC
from ..ingest.sources.stripe import FEEDBACK
from ..ingest.sources.zendesk import CREATED, SATISFACTION, STATUS_CHANGED
from .simulator import PLAN_MRR

FORMATS = ("stripe", "segment", "zendesk")
TOPIC = {"stripe": STRIPE_TOPIC, "segment": SEGMENT_TOPIC, "zendesk": ZENDESK_TOPIC}
REASON_FEEDBACK = {reason: feedback for feedback, reason in FEEDBACK.items() if feedback != "unused"}

Record = tuple[str, dict]  # (Kafka key: the customer, the source record)


def _secs(ts: str) -> int:
    return int(parse_ts(ts))


def _price(plan: str, mrr: float) -> dict:
    return {"id": f"price_{plan}", "object": "price", "active": True, "billing_scheme": "per_unit", "currency": "usd",
            "lookup_key": plan, "nickname": None, "product": f"prod_{plan}", "type": "recurring",
            "recurring": {"aggregate_usage": None, "interval": "month", "interval_count": 1, "usage_type": "licensed"},
            "tax_behavior": "exclusive", "tiers_mode": None, "transform_quantity": None,
            "unit_amount": round(mrr * 100), "unit_amount_decimal": str(round(mrr * 100))}


@dataclass
class _Subscription:
    """What Stripe holds about one customer's subscription, as the events change it."""

    sid: str
    customer: str
    plan: str
    mrr: float
    created: int
    status: str = "active"
    trial: tuple[int, int] | None = None
    cancel_at: int | None = None
    details: dict = field(default_factory=lambda: {"comment": None, "feedback": None, "reason": None})

    def items(self) -> dict:
        return {"object": "list", "has_more": False, "url": f"/v1/subscription_items?subscription={self.sid}",
                "data": [{"id": f"si_{self.sid[4:]}", "object": "subscription_item", "quantity": 1, "subscription": self.sid,
                          "price": _price(self.plan, self.mrr), "tax_rates": []}]}

    def obj(self, at: int) -> dict:
        period_end = self.cancel_at or at + 30 * 86400
        return {"id": self.sid, "object": "subscription", "customer": self.customer, "status": self.status,
                "created": self.created, "start_date": self.created, "currency": "usd", "items": self.items(),
                "current_period_start": at, "current_period_end": period_end, "cancel_at": self.cancel_at,
                "cancel_at_period_end": self.cancel_at is not None, "canceled_at": None, "ended_at": None,
                "cancellation_details": dict(self.details), "discount": None, "discounts": [], "default_tax_rates": [],
                "trial_start": self.trial[0] if self.trial else None, "trial_end": self.trial[1] if self.trial else None,
                "livemode": False, "metadata": {}}


def _stripe_event(eid: str, typ: str, obj: dict, created: int, previous: dict | None = None) -> dict:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {"id": f"evt_{eid}", "object": "event", "api_version": "2024-06-20", "created": created, "data": data,
            "livemode": False, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": typ}


class _Stripe:
    def __init__(self) -> None:
        self.subs: dict[str, _Subscription] = {}
        self.count: dict[str, int] = {}

    def _new(self, cid: str, plan: str, mrr: float, at: int) -> _Subscription:
        n = self.count[cid] = self.count.get(cid, 0) + 1
        sub = self.subs[cid] = _Subscription(f"sub_{cid}_{n}", cid, plan, mrr, at)
        return sub

    def _invoice(self, ev: dict, at: int, reason: str, paid: bool) -> dict:
        sub = self.subs.get(ev["customer_id"])
        cents = round(float(ev.get("amount", sub.mrr if sub else 0.0)) * 100)
        return {"id": f"in_{ev['event_id']}", "object": "invoice", "customer": ev["customer_id"],
                "subscription": sub.sid if sub else None, "billing_reason": reason, "currency": "usd", "created": at,
                "amount_due": cents, "amount_paid": cents if paid else 0, "amount_remaining": 0 if paid else cents,
                "attempt_count": 1, "paid": paid, "status": "paid" if paid else "open", "total": cents}

    def render(self, ev: dict) -> Iterator[dict]:
        cid, typ, eid, at = ev["customer_id"], ev["type"], ev["event_id"], _secs(ev["ts"])
        sub = self.subs.get(cid)
        if typ == "trial_started":
            sub = self._new(cid, ev["plan"], PLAN_MRR.get(ev["plan"], 0.0), at)
            sub.status, sub.trial = "trialing", (at, at + 14 * 86400)
            yield _stripe_event(eid, "customer.subscription.created", sub.obj(at), at)
        elif typ == "trial_converted" and sub is not None and sub.status == "trialing":
            sub.status, sub.plan, sub.mrr = "active", ev["plan"], float(ev["mrr"])
            yield _stripe_event(eid, "customer.subscription.updated", sub.obj(at), at, {"status": "trialing"})
        elif typ in ("subscription_started", "trial_converted") or (typ == "plan_changed" and (sub is None or sub.status != "active")):
            sub = self._new(cid, ev["plan"], float(ev["mrr"]), at)
            yield _stripe_event(eid, "customer.subscription.created", sub.obj(at), at)
        elif typ == "plan_changed":
            before = sub.items()
            sub.plan, sub.mrr = ev["plan"], float(ev["mrr"])
            yield _stripe_event(eid, "customer.subscription.updated", sub.obj(at), at, {"items": before})
        elif typ == "subscription_renewed":
            yield _stripe_event(eid, "invoice.paid", self._invoice(ev, at, "subscription_cycle", True), at)
        elif typ == "payment_succeeded":
            yield _stripe_event(eid, "invoice.payment_succeeded", self._invoice(ev, at, "subscription_update", True), at)
        elif typ == "payment_failed":
            yield _stripe_event(eid, "invoice.payment_failed", self._invoice(ev, at, "subscription_cycle", False), at)
        elif typ == "subscription_cancelled" and sub is not None:
            sub.details = {"comment": ev.get("reason_text"), "feedback": REASON_FEEDBACK.get(ev["reason"], "other"),
                           "reason": "cancellation_requested"}
            effective = _secs(ev["effective_at"]) if ev.get("effective_at") else None
            end_id = eid
            if effective is not None and effective > at and sub.status == "active":
                sub.cancel_at = effective  # cancel at period end now; Stripe deletes the subscription then
                yield _stripe_event(eid, "customer.subscription.updated", sub.obj(at), at, {"cancel_at_period_end": False, "cancel_at": None})
                at, end_id = effective, f"{eid}-end"
            obj = {**sub.obj(at), "status": "canceled", "canceled_at": at, "ended_at": at}
            yield _stripe_event(end_id, "customer.subscription.deleted", obj, at)
            sub.status = "canceled"


def _segment(ev: dict) -> Iterator[dict]:
    cid, ts = ev["customer_id"], ev["ts"]
    call: dict[str, Any] = {"messageId": ev["event_id"], "timestamp": ts, "originalTimestamp": ts, "sentAt": ts, "receivedAt": ts,
                            "userId": f"{cid}-user", "anonymousId": None, "context": {"groupId": cid}, "integrations": {}}
    if ev["type"] == "session":
        yield {**call, "type": "page", "name": "App", "properties": {}}
    elif ev["type"] == "feature_used":
        yield {**call, "type": "track", "event": ev["feature"], "properties": {}}
    elif ev["type"] == "purchase":
        yield {**call, "type": "track", "event": "Order Completed", "properties": {"total": ev["amount"], "currency": "USD"}}


def _zendesk(ev: dict, tickets: dict[str, dict]) -> Iterator[dict]:
    cid, typ = ev["customer_id"], ev["type"]
    if typ == "ticket_opened":
        tickets[ev["ticket_id"]] = {"priority": ev["priority"].upper(), "type": ev["category"].upper()}
    ticket_id = ev.get("ticket_id") or next(reversed(tickets), f"csat-{ev['event_id']}")  # a rating is of the last ticket
    ticket = tickets.get(ticket_id, {})
    hook = {"account_id": 1, "id": ev["event_id"], "time": ev["ts"], "zendesk_event_version": "2022-11-06",
            "subject": f"zen:ticket:{ticket_id}",
            "detail": {"id": ticket_id, "organization_id": cid, "requester_id": f"{cid}-requester", "priority": ticket.get("priority"),
                       "type": ticket.get("type"), "status": "OPEN", "created_at": ev["ts"], "updated_at": ev["ts"]},
            "event": {}}
    if typ == "ticket_opened":
        yield {**hook, "type": CREATED}
    elif typ == "ticket_resolved":
        yield {**hook, "type": STATUS_CHANGED, "event": {"current": "SOLVED", "previous": "OPEN"}}
    elif typ == "csat":
        yield {**hook, "type": SATISFACTION, "event": {"score": "good" if ev["score"] >= 4 else "bad"}}


def render(fmt: str, events: Iterable[dict]) -> Iterator[Record]:
    """(key, source record) for each contract event this format carries, in
    event-time order (a Stripe cancellation at period end also ends the
    subscription then, which may come after later events)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    stripe, tickets_of = _Stripe(), {}
    later: list[tuple[int, int, Record]] = []  # a heap of records held until event time reaches them
    for seq, ev in enumerate(events):
        if fmt == "stripe":
            records = list(stripe.render(ev))
        elif fmt == "segment":
            records = list(_segment(ev))
        else:
            records = list(_zendesk(ev, tickets_of.setdefault(ev["customer_id"], {})))
        now = _secs(ev["ts"])
        while later and later[0][0] <= now:
            yield heapq.heappop(later)[2]
        for rec in records:
            at = rec.get("created", now) if fmt == "stripe" else now
            if at > now:
                heapq.heappush(later, (at, seq, (ev["customer_id"], rec)))
            else:
                yield ev["customer_id"], rec
    while later:
        yield heapq.heappop(later)[2]
