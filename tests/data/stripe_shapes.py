"""Stripe objects as Stripe publishes them, for the adapter's tests.

The field sets are those of the `subscription`, `invoice`, `coupon` and
`discount` resources in Stripe's OpenAPI fixtures (github.com/stripe/openapi,
openapi/fixtures3.json) and of the `Event` object of the API reference; the
builders only change what a scenario needs (status, prices, quantities,
discounts, cancellation), everything else keeps the fixture's shape.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any


def t(s: str) -> int:
    """'2025-05-01T09:00' (UTC) -> Unix seconds, as Stripe gives times."""
    return int(datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp())


def price(pid: str, unit_amount: int, interval: str = "month", interval_count: int = 1, *, lookup_key: str | None = None,
          currency: str = "usd", usage_type: str = "licensed", **extra: Any) -> dict:
    return {
        "active": True, "billing_scheme": "per_unit", "created": 1679492997, "currency": currency, "custom_unit_amount": None,
        "id": pid, "livemode": False, "lookup_key": lookup_key, "metadata": {}, "nickname": None, "object": "price",
        "product": "prod_NZbFOV0OmNHxwl",
        "recurring": {"aggregate_usage": None, "interval": interval, "interval_count": interval_count, "usage_type": usage_type},
        "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None, "type": "recurring",
        "unit_amount": unit_amount, "unit_amount_decimal": str(unit_amount), **extra,
    }


PRO = price("price_1MoS37LgUG5tbmjcCA3GTNX8", 5000, lookup_key="pro-monthly")
BASIC = price("price_1MoS37LgUG5tbmjcBasic001", 2000, lookup_key="basic-monthly")
TEAM_ANNUAL = price("price_1MoS37LgUG5tbmjcTeamYr01", 120000, "year", lookup_key="team-annual")


def item(p: dict, quantity: int = 1, sid: str = "sub_1MoqxHLgUG5tbmjcG8lOfx2N") -> dict:
    return {"billing_thresholds": None, "created": 1679588735, "id": f"si_{p['id'][-10:]}", "metadata": {},
            "object": "subscription_item", "price": copy.deepcopy(p), "quantity": quantity, "subscription": sid, "tax_rates": []}


def coupon(cid: str = "Z4OV52SU", *, percent_off: float | None = None, amount_off: int | None = None,
           duration: str = "forever", duration_in_months: int | None = None) -> dict:
    return {"amount_off": amount_off, "created": 1678037688, "currency": "usd" if amount_off is not None else None,
            "duration": duration, "duration_in_months": duration_in_months, "id": cid, "livemode": False,
            "max_redemptions": None, "metadata": {}, "name": None, "object": "coupon", "percent_off": percent_off,
            "redeem_by": None, "times_redeemed": 1, "valid": True}


def discount(c: dict, customer: str, sub_id: str, start: int, end: int | None = None) -> dict:
    return {"checkout_session": None, "coupon": c, "customer": customer, "end": end, "id": f"di_{c['id']}_{customer[-6:]}",
            "invoice": None, "invoice_item": None, "object": "discount", "promotion_code": None, "start": start,
            "subscription": sub_id}


def subscription(sid: str, customer: str, items: list[dict], *, status: str = "active", created: int,
                 period_end: int | None = None, trial: tuple[int, int] | None = None, discount: dict | None = None,
                 cancel_at_period_end: bool = False, cancel_at: int | None = None, canceled_at: int | None = None,
                 ended_at: int | None = None, feedback: str | None = None, comment: str | None = None,
                 reason: str | None = None) -> dict:
    """The fixture's subscription resource with this scenario's values."""
    for i in items:
        i["subscription"] = sid
    return {
        "application": None, "application_fee_percent": None, "automatic_tax": {"enabled": False},
        "billing_cycle_anchor": created, "billing_thresholds": None, "cancel_at": cancel_at,
        "cancel_at_period_end": cancel_at_period_end, "canceled_at": canceled_at,
        "cancellation_details": {"comment": comment, "feedback": feedback, "reason": reason},
        "collection_method": "charge_automatically", "created": created, "currency": "usd",
        "current_period_end": period_end if period_end is not None else created + 30 * 86400,
        "current_period_start": created, "customer": customer, "days_until_due": None, "default_payment_method": None,
        "default_source": None, "default_tax_rates": [], "description": None, "discount": discount,
        "discounts": [discount["id"]] if discount else [], "ended_at": ended_at, "id": sid,
        "items": {"data": items, "has_more": False, "object": "list", "url": f"/v1/subscription_items?subscription={sid}"},
        "latest_invoice": None, "livemode": False, "metadata": {}, "next_pending_invoice_item_invoice": None,
        "object": "subscription", "on_behalf_of": None, "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None, "save_default_payment_method": None},
        "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None, "schedule": None,
        "start_date": created, "status": status, "test_clock": None, "transfer_data": None,
        "trial_end": trial[1] if trial else None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": trial[0] if trial else None,
    }


def invoice(iid: str, customer: str, sub_id: str | None, amount: int, *, paid: bool, created: int,
            billing_reason: str = "subscription_cycle", attempt_count: int = 1) -> dict:
    """The fixture's invoice resource (lines left out: the adapter reads the totals)."""
    return {
        "account_country": "US", "account_name": None, "amount_due": amount, "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount, "amount_shipping": 0, "application": None, "attempt_count": attempt_count,
        "attempted": True, "auto_advance": not paid, "automatic_tax": {"enabled": False, "status": None},
        "billing_reason": billing_reason, "charge": None, "collection_method": "charge_automatically", "created": created,
        "currency": "usd", "customer": customer, "default_payment_method": None, "discount": None, "discounts": [],
        "id": iid, "livemode": False, "metadata": {}, "object": "invoice", "paid": paid, "period_end": created,
        "period_start": created, "status": "paid" if paid else "open",
        "status_transitions": {"finalized_at": created, "marked_uncollectible_at": None, "paid_at": created if paid else None, "voided_at": None},
        "subscription": sub_id, "subtotal": amount, "tax": None, "total": amount, "total_excluding_tax": amount,
    }


def event(eid: str, type_: str, obj: dict, created: int, previous: dict | None = None) -> dict:
    """An Event as a webhook endpoint receives it."""
    data: dict[str, Any] = {"object": copy.deepcopy(obj)}
    if previous is not None:
        data["previous_attributes"] = previous
    return {"api_version": "2024-06-20", "created": created, "data": data, "id": eid, "livemode": False, "object": "event",
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": type_}
