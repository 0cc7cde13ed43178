"""Stripe `Event` objects (as a webhook endpoint or an event destination
delivers them) -> contract events on churn.subscription.

MRR follows Stripe's own definition: the recurring amount of every licensed
(not metered) price, times its quantity, normalised to a month by the price's
`recurring.interval` and `interval_count`, after the subscription's active
discounts, without tax; only `active` and `past_due` subscriptions carry MRR
(a trial carries none). Cancellation feedback becomes the monitor's reason
categories (`FEEDBACK`); a cancellation for failed payments is involuntary
churn. The README's "Stripe" section has the full mapping table.

Every emitted event's `event_id` is the Stripe event id (a second event
from the same record gets `<evt id>:<type>`), so a redelivered Stripe event
(Stripe delivers at least once) is dropped by the worker like any
duplicate. Invoice payments are the exception: Stripe sends `invoice.paid`
and `invoice.payment_succeeded` for one payment, so their events take the
invoice id and the second is a duplicate.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from ..contract import Rejection
from .base import UNMAPPABLE, UNSUPPORTED, Mapped, event, ignored, iso

# cancellation_details.feedback -> the contract's reason (schemas/churn.subscription.json)
FEEDBACK = {
    "too_expensive": "price",
    "switched_service": "competitor",
    "missing_features": "missing_features",
    "too_complex": "user_experience",
    "low_quality": "product_fit",
    "customer_service": "customer_service",
    "unused": "product_fit",  # paid for and not used: the product did not fit the need (documented choice)
    "other": "other",
}
MRR_STATUSES = frozenset({"active", "past_due"})  # Stripe: trials, unpaid, paused, incomplete carry no MRR
# currencies whose amounts Stripe gives in whole units, not cents
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})
INTERVAL_MONTHS = {"day": Decimal(12) / Decimal(365), "week": Decimal(12) / Decimal(52), "month": Decimal(1), "year": Decimal(12)}
_PRICE_FIELDS = ("items", "plan", "quantity", "discount", "discounts")  # previous_attributes that can move MRR


class Unmappable(Exception):
    """What this record lacks for the mapping (becomes an `unmappable` rejection)."""


# ------------------------------------------------------------------------ MRR


def _units(currency: Any) -> Decimal:
    return Decimal(1) if str(currency or "").lower() in ZERO_DECIMAL else Decimal(100)


def _dec(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise Unmappable(f"{what} is missing")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise Unmappable(f"{what} is not a number ({value!r})") from None
    if not d.is_finite() or d < 0:
        raise Unmappable(f"{what} must be a finite amount >= 0 ({value!r})")
    return d


def _first(obj: dict, *keys: str, default: Any = None) -> Any:
    """The first of these fields that is set (Stripe sends unset ones as null)."""
    return next((obj[k] for k in keys if obj.get(k) is not None), default)


def _price(item: dict) -> dict:
    """The item's price; `plan` on subscriptions created before Prices (its
    `amount` is the unit amount, its interval fields sit on the plan itself)."""
    price = item.get("price")
    if isinstance(price, dict):
        return price
    plan = item.get("plan")
    if isinstance(plan, dict):
        return {**plan, "unit_amount": plan.get("amount"), "unit_amount_decimal": plan.get("amount_decimal"),
                "recurring": {"interval": plan.get("interval"), "interval_count": plan.get("interval_count", 1),
                              "usage_type": plan.get("usage_type", "licensed")}}
    raise Unmappable(f"subscription item {item.get('id')!r} has no price object")


def _quantity(item: dict, price: dict) -> Decimal:
    q = item.get("quantity")
    q = Decimal(1) if q is None else _dec(q, "item quantity")
    transform = price.get("transform_quantity")
    if isinstance(transform, dict) and transform.get("divide_by"):
        q = q / _dec(transform["divide_by"], "transform_quantity.divide_by")
        q = Decimal(math.ceil(q) if transform.get("round") == "up" else math.floor(q))
    return q


def _tiered(price: dict, q: Decimal) -> Decimal:
    tiers = price.get("tiers")
    if not isinstance(tiers, list) or not tiers:
        raise Unmappable(f"price {price.get('id')!r} is tiered but its tiers are not in the event (expand them: prices' tiers)")
    total, below = Decimal(0), Decimal(0)
    for tier in tiers:
        up_to = tier.get("up_to")
        top = Decimal("Infinity") if up_to in (None, "inf") else _dec(up_to, "tier up_to")
        unit = _dec(_first(tier, "unit_amount_decimal", "unit_amount", default=0), "tier unit_amount")
        flat = _dec(_first(tier, "flat_amount_decimal", "flat_amount", default=0), "tier flat_amount")
        if price.get("tiers_mode") == "volume":
            if q <= top:
                return unit * q + flat
            continue
        if q > below:  # graduated: each tier prices the units that fall in it
            total += unit * (min(q, top) - below) + flat
        below = top
        if q <= top:
            break
    return total


def _inclusive_tax(rates: Any) -> Decimal:
    """The share of an amount that inclusive tax rates make up, to take it out."""
    pct = sum((_dec(r.get("percentage"), "tax rate percentage") for r in rates or () if isinstance(r, dict) and r.get("inclusive")), Decimal(0))
    return Decimal(1) / (1 + pct / 100)


def _item_month(item: dict, sub: dict) -> tuple[Decimal, Decimal, dict]:
    """(monthly amount, months per interval, price) of one licensed item; amounts in currency units."""
    price = _price(item)
    recurring = price.get("recurring")
    if not isinstance(recurring, dict):
        return Decimal(0), Decimal(1), price  # a one-time price on a subscription is not recurring revenue
    months = INTERVAL_MONTHS.get(recurring.get("interval"))
    if months is None:
        raise Unmappable(f"price {price.get('id')!r} has an unknown recurring.interval {recurring.get('interval')!r}")
    months *= _dec(recurring.get("interval_count") or 1, "recurring.interval_count")
    if recurring.get("usage_type") == "metered":
        return Decimal(0), months, price  # Stripe's MRR leaves metered prices out
    q = _quantity(item, price)
    if price.get("billing_scheme") == "tiered":
        amount = _tiered(price, q)
    else:
        unit = _first(price, "unit_amount_decimal", "unit_amount")
        amount = _dec(unit, f"price {price.get('id')!r} unit_amount") * q
    rates = item.get("tax_rates") or sub.get("default_tax_rates")
    amount = amount * _inclusive_tax(rates) / _units(price.get("currency") or sub.get("currency"))
    return amount / months, months, price


def _discounts(sub: dict, at: float) -> list[dict]:
    """The subscription's discounts in force at `at`: `discounts` (expanded
    objects) and the older single `discount`, each once. A discount given only
    by id cannot be priced: the record is dead-lettered rather than counted
    at a wrong MRR."""
    found: dict[str, dict] = {}
    single = sub.get("discount")
    if isinstance(single, dict):
        found[str(single.get("id"))] = single
    for d in sub.get("discounts") or ():
        if isinstance(d, dict):
            found[str(d.get("id"))] = d
        elif d not in found:
            raise Unmappable(f"discount {d!r} is only an id in this event: its coupon (and so the MRR) is unknown")
    out = []
    for d in found.values():
        end = d.get("end")
        if isinstance(end, (int, float)) and not isinstance(end, bool) and end <= at:
            continue
        coupon = d.get("coupon") or (d.get("source") or {}).get("coupon")
        if not isinstance(coupon, dict):
            raise Unmappable(f"discount {d.get('id')!r} has no coupon object")
        if coupon.get("duration") == "once":
            continue  # one invoice, not the recurring amount (documented choice)
        out.append(coupon)
    return out


def mrr(sub: dict, at: float) -> tuple[float, str]:
    """(MRR in currency units, plan label) of a subscription object, whatever
    its status; `at` (epoch seconds) decides which discounts are still on.

    >>> item = {"price": {"id": "price_1", "currency": "usd", "unit_amount": 120000, "lookup_key": "team-annual",
    ...                   "recurring": {"interval": "year", "interval_count": 1, "usage_type": "licensed"}}, "quantity": 3}
    >>> mrr({"items": {"data": [item]}}, 0.0)
    (300.0, 'team-annual')
    """
    items = (sub.get("items") or {}).get("data")
    if not isinstance(items, list) or not items:
        raise Unmappable("subscription has no items")
    total, top, top_price, months = Decimal(0), Decimal(-1), None, None
    for item in items:
        if not isinstance(item, dict):
            raise Unmappable("subscription item is not an object")
        amount, item_months, price = _item_month(item, sub)
        total += amount
        if amount > top:
            top, top_price, months = amount, price, item_months
    for coupon in _discounts(sub, at):
        if coupon.get("percent_off") is not None:
            total *= 1 - _dec(coupon["percent_off"], "coupon percent_off") / 100
        elif coupon.get("amount_off") is not None:
            off = _dec(coupon["amount_off"], "coupon amount_off") / _units(coupon.get("currency") or sub.get("currency"))
            total = max(Decimal(0), total - off / (months or 1))  # off each invoice: per billing interval
    return float(round(total, 2)), _plan(top_price or {})


def _plan(price: dict) -> str:
    """A readable plan label (it becomes a metric label: the price's lookup
    key or nickname, else its product, else its id)."""
    product = price.get("product")
    product = product.get("id") if isinstance(product, dict) else product
    for label in (price.get("lookup_key"), price.get("nickname"), product, price.get("id")):
        if isinstance(label, str) and label:
            return label[:64]
    return "stripe"


# -------------------------------------------------------------------- events


def _customer(obj: dict) -> str:
    c = obj.get("customer")
    c = c.get("id") if isinstance(c, dict) else c
    if not isinstance(c, str) or not c or len(c) > 128:
        raise Unmappable(f"{obj.get('object', 'object')} {obj.get('id')!r} has no customer id")
    return c


def _period_end(sub: dict) -> Any:
    """current_period_end: on the subscription before API version 2025-03-31, on its items since."""
    end = sub.get("current_period_end")
    if end is None:
        ends = [i.get("current_period_end") for i in (sub.get("items") or {}).get("data") or () if isinstance(i, dict)]
        end = max((e for e in ends if isinstance(e, (int, float))), default=None)
    return end


def _reason(sub: dict) -> tuple[str, str | None, bool]:
    """(reason, reason_text, involuntary) from cancellation_details."""
    details = sub.get("cancellation_details") or {}
    comment = details.get("comment")
    comment = comment[:2000] if isinstance(comment, str) and comment else None
    return FEEDBACK.get(details.get("feedback"), "other"), comment, details.get("reason") == "payment_failed"


def _cancelled(eid: str, cid: str, ts: str, sub: dict, effective: Any = None) -> dict:
    reason, text, involuntary = _reason(sub)
    return event(eid, cid, "subscription_cancelled", ts, reason=reason, reason_text=text,
                 effective_at=iso(effective) if effective is not None else None, involuntary=True if involuntary else None)


class _Out:
    """Events of one record: the first keeps the Stripe event id, later ones add their type."""

    def __init__(self, evt_id: str, cid: str, ts: str) -> None:
        self.evt_id, self.cid, self.ts, self.events = evt_id, cid, ts, []

    def add(self, type_: str, ts: str | None = None, **fields: Any) -> None:
        eid = self.evt_id if not self.events else f"{self.evt_id}:{type_}"
        self.events.append(event(eid, self.cid, type_, ts or self.ts, **fields))

    def cancel(self, sub: dict, effective: Any = None, ts: str | None = None) -> None:
        eid = self.evt_id if not self.events else f"{self.evt_id}:subscription_cancelled"
        self.events.append(_cancelled(eid, self.cid, ts or self.ts, sub, effective))


def _scheduled_end(sub: dict) -> Any:
    """When a scheduled cancellation takes effect, or None if none is scheduled."""
    if sub.get("cancel_at") is not None:
        return sub["cancel_at"]
    if sub.get("cancel_at_period_end"):
        return _period_end(sub)
    return None


def _created(out: _Out, sub: dict, at: float) -> str | None:
    status = sub.get("status")
    if status == "trialing":
        plan = mrr(sub, at)[1]
        out.add("trial_started", ts=iso(sub.get("trial_start")) or out.ts, plan=plan)
    elif status in MRR_STATUSES:
        value, plan = mrr(sub, at)
        out.add("subscription_started", plan=plan, mrr=value)
    else:
        return f"a subscription created {status}: it starts when its first payment succeeds (customer.subscription.updated)"
    end = _scheduled_end(sub)
    if end is not None:
        out.cancel(sub, end)
    return None


def _updated(out: _Out, sub: dict, prev: dict, at: float) -> str | None:
    status = sub.get("status")
    before = prev.get("status", status)
    started = False
    if before != status:
        if before == "trialing" and status in MRR_STATUSES:
            value, plan = mrr(sub, at)
            out.add("trial_converted", plan=plan, mrr=value)
            started = True
        elif status in MRR_STATUSES and before not in MRR_STATUSES:
            value, plan = mrr(sub, at)  # incomplete -> active, or back from unpaid or paused
            out.add("subscription_started", plan=plan, mrr=value)
            started = True
        elif before in MRR_STATUSES and status == "unpaid":
            # Stripe removes MRR when a subscription is marked unpaid: involuntary churn
            out.cancel({**sub, "cancellation_details": {**(sub.get("cancellation_details") or {}), "reason": "payment_failed"}})
        elif before == "trialing" and status in ("paused", "incomplete_expired", "unpaid", "canceled"):
            out.cancel(sub)  # the trial lapsed without converting (not churn: it never paid)
    if not started and status in MRR_STATUSES and any(k in prev for k in _PRICE_FIELDS):
        value, plan = mrr(sub, at)
        out.add("plan_changed", plan=plan, mrr=value)
    if "cancel_at_period_end" in prev or "cancel_at" in prev:
        end = _scheduled_end(sub)
        was = prev.get("cancel_at", sub.get("cancel_at")) is not None or bool(prev.get("cancel_at_period_end", sub.get("cancel_at_period_end")))
        if end is not None:
            out.cancel(sub, end)
        elif was:
            out.add("subscription_renewed")  # the scheduled cancellation was withdrawn
    if not out.events:
        return f"no change the monitor tracks ({', '.join(sorted(prev)) or 'no previous_attributes'})"
    return None


def _deleted(out: _Out, sub: dict) -> None:
    ended = iso(sub.get("ended_at")) or iso(sub.get("canceled_at")) or out.ts
    out.cancel(sub, ts=ended)


def _trial_will_end(out: _Out, sub: dict, at: float) -> str | None:
    """Restates the trial at its start: a monitor connected mid-trial (that
    never saw `created`) learns of it; otherwise it changes nothing."""
    start = iso(sub.get("trial_start"))
    if start is None or sub.get("status") != "trialing":
        return "trial_will_end of a subscription that is not trialing"
    out.add("trial_started", ts=start, plan=mrr(sub, at)[1])
    return None


def _invoice(eid: str, evt_type: str, inv: dict, ts: str) -> Mapped:
    cid = _customer(inv)
    units = _units(inv.get("currency"))
    if evt_type == "invoice.payment_failed":  # each attempt is a failure of its own: the event id
        amount = _dec(inv.get("amount_due", inv.get("amount_remaining")), "invoice amount_due") / units
        return Mapped((event(eid, cid, "payment_failed", ts, amount=float(amount)),))
    iid = inv.get("id")
    if not isinstance(iid, str) or not iid:
        raise Unmappable("invoice has no id")
    amount = _dec(inv.get("amount_paid", inv.get("total")), "invoice amount_paid") / units
    events = [event(f"{iid}:paid", cid, "payment_succeeded", ts, amount=float(amount))]
    if inv.get("billing_reason") == "subscription_cycle":
        events.append(event(f"{iid}:renewed", cid, "subscription_renewed", ts))
    return Mapped(tuple(events))


SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
                       "customer.subscription.trial_will_end")
INVOICE_EVENTS = ("invoice.payment_failed", "invoice.paid", "invoice.payment_succeeded")
EVENT_TYPES = SUBSCRIPTION_EVENTS + INVOICE_EVENTS


def adapt(evt: dict, config: Any = None) -> Mapped | Rejection:
    """One Stripe Event -> contract events, or a Rejection naming why not.

    >>> sub = {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active", "items": {"data": [
    ...     {"price": {"id": "price_1", "currency": "usd", "unit_amount": 2000, "recurring": {"interval": "month", "interval_count": 1}}, "quantity": 2}]}}
    >>> adapt({"id": "evt_1", "object": "event", "type": "customer.subscription.created", "created": 1735689600, "data": {"object": sub}}).events
    ({'event_id': 'evt_1', 'customer_id': 'cus_1', 'type': 'subscription_started', 'ts': '2025-01-01T00:00:00Z', 'plan': 'price_1', 'mrr': 40.0},)
    >>> adapt({"id": "evt_2", "object": "event", "type": "charge.succeeded", "created": 1735689600, "data": {"object": {}}}).reason
    'unsupported_event'
    """
    eid, typ = evt.get("id"), evt.get("type")
    if evt.get("object") != "event" or not isinstance(eid, str) or not eid or not isinstance(typ, str):
        return Rejection(UNMAPPABLE, "not a Stripe Event: needs object 'event', an id and a type")
    if typ not in EVENT_TYPES:
        return Rejection(UNSUPPORTED, f"Stripe event type {typ!r} is not mapped; send only {', '.join(EVENT_TYPES)}")
    created = evt.get("created")
    ts = iso(created) if isinstance(created, (int, float)) else None
    data = evt.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if ts is None or not isinstance(obj, dict):
        return Rejection(UNMAPPABLE, f"Stripe event {eid} has no created time or no data.object")
    try:
        if typ in INVOICE_EVENTS:
            return _invoice(eid, typ, obj, ts)
        out = _Out(eid, _customer(obj), ts)
        if typ == "customer.subscription.created":
            why = _created(out, obj, float(created))
        elif typ == "customer.subscription.updated":
            prev = data.get("previous_attributes") or {}
            why = _updated(out, obj, prev if isinstance(prev, dict) else {}, float(created))
        elif typ == "customer.subscription.deleted":
            why = _deleted(out, obj)
        else:
            why = _trial_will_end(out, obj, float(created))
        return Mapped(tuple(out.events)) if out.events else ignored(why or "nothing to map")
    except Unmappable as exc:
        return Rejection(UNMAPPABLE, f"Stripe {typ} {eid}: {exc}")
