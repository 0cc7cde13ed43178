"""The Stripe adapter on Stripe's own object shapes (tests/data/stripe_shapes.py)."""

from __future__ import annotations

import copy

import orjson
import pytest

from stream_app.ingest.contract import Rejection
from stream_app.ingest.sources import SOURCES, run
from stream_app.ingest.sources.stripe import FEEDBACK, adapt, mrr
from tests.data import stripe_story
from tests.data.stripe_shapes import BASIC, PRO, TEAM_ANNUAL, coupon, discount, event, invoice, item, price, subscription, t
from tests.pure_pipeline import PurePipeline

AT = t("2025-05-01T09:00")


def sub(items, **kw):
    return subscription("sub_1", "cus_1", items, created=AT, **kw)


def mapped(evt):
    """The contract events of one Stripe event, through the same gate as the agent."""
    result = run(SOURCES["stripe"], orjson.dumps(evt), None, 65536)
    assert not isinstance(result, Rejection), result
    return list(result.events)


def one(evt):
    events = mapped(evt)
    assert len(events) == 1, events
    return events[0]


# -- MRR, Stripe's definition ---------------------------------------------------------


@pytest.mark.parametrize("items, expected", [
    ([item(PRO)], 50.0),
    ([item(TEAM_ANNUAL, 3)], 300.0),  # annual, 3 seats: 1,200 x 3 / 12
    ([item(price("price_q", 30000, "month", 3))], 100.0),  # quarterly: interval_count 3
    ([item(price("price_w", 1000, "week"))], round(1000 / 100 * 52 / 12, 2)),
    ([item(price("price_d", 100, "day"))], round(365 / 12, 2)),
    ([item(price("price_jpy", 6000, currency="jpy"))], 6000.0),  # zero-decimal currency: not cents
    ([item(PRO), item(BASIC, 2)], 90.0),  # several items add up
    ([item(PRO), item(price("price_m", 5, usage_type="metered"))], 50.0),  # metered prices are not MRR
])
def test_mrr_is_normalised_to_a_month_times_quantity(items, expected):
    assert mrr(sub(items), AT)[0] == expected


def test_the_plan_label_is_the_largest_items_lookup_key():
    assert mrr(sub([item(BASIC), item(TEAM_ANNUAL)]), AT)[1] == "team-annual"
    assert mrr(sub([item(price("price_x", 100))]), AT)[1] == "prod_NZbFOV0OmNHxwl"  # no lookup key or nickname: the product


@pytest.mark.parametrize("c, expected", [
    (coupon(percent_off=20), 40.0),
    (coupon(amount_off=1500), 35.0),  # 15.00 off each monthly invoice
    (coupon(percent_off=25, duration="repeating", duration_in_months=3), 37.5),
    (coupon(percent_off=100, duration="once"), 50.0),  # one invoice, not the recurring amount
])
def test_discounts_in_force_reduce_mrr(c, expected):
    assert mrr(sub([item(PRO)], discount=discount(c, "cus_1", "sub_1", AT)), AT)[0] == expected


def test_an_annual_amount_off_is_spread_over_its_twelve_months():
    d = discount(coupon(amount_off=12000), "cus_1", "sub_1", AT)
    assert mrr(sub([item(TEAM_ANNUAL)], discount=d), AT)[0] == 90.0  # (1,200 - 120) / 12


def test_an_ended_discount_no_longer_counts():
    d = discount(coupon(percent_off=50, duration="repeating", duration_in_months=1), "cus_1", "sub_1", AT, end=AT + 86400)
    assert mrr(sub([item(PRO)], discount=d), AT)[0] == 25.0
    assert mrr(sub([item(PRO)], discount=d), AT + 2 * 86400)[0] == 50.0


def test_tax_is_left_out_of_mrr():
    s = sub([item(PRO)])
    s["default_tax_rates"] = [{"id": "txr_1", "object": "tax_rate", "inclusive": True, "percentage": 25}]
    assert mrr(s, AT)[0] == 40.0  # 50 including 25 % tax
    s["default_tax_rates"][0]["inclusive"] = False  # exclusive tax is added on the invoice, not part of the price
    assert mrr(s, AT)[0] == 50.0


def test_tiered_legacy_and_transformed_prices():
    volume = {**price("price_v", 0, billing_scheme="tiered", tiers_mode="volume"), "unit_amount": None, "unit_amount_decimal": None,
              "tiers": [{"up_to": 5, "unit_amount": 1000, "flat_amount": None}, {"up_to": None, "unit_amount": 800, "flat_amount": None}]}
    assert mrr(sub([item(volume, 10)]), AT)[0] == 80.0
    graduated = {**volume, "tiers_mode": "graduated"}
    assert mrr(sub([item(graduated, 10)]), AT)[0] == 90.0  # 5 x 10 + 5 x 8
    legacy = {"id": "si_1", "object": "subscription_item", "quantity": 2,
              "plan": {"id": "gold", "object": "plan", "amount": 2000, "currency": "usd", "interval": "month", "interval_count": 1, "usage_type": "licensed"}}
    assert mrr(sub([legacy]), AT) == (40.0, "gold")
    packs = price("price_p", 1000, transform_quantity={"divide_by": 10, "round": "up"})
    assert mrr(sub([item(packs, 25)]), AT)[0] == 30.0  # 25 units in packs of 10: 3 packs


def test_what_cannot_be_priced_is_dead_lettered_not_guessed():
    s = sub([item(PRO)])
    s["discounts"] = ["di_only_an_id"]
    got = adapt(event("evt_1", "customer.subscription.created", s, AT))
    assert isinstance(got, Rejection) and got.reason == "unmappable" and "di_only_an_id" in got.detail
    tiered = {**price("price_t", 0, billing_scheme="tiered", tiers_mode="volume"), "unit_amount": None}
    got = adapt(event("evt_2", "customer.subscription.created", sub([item(tiered)]), AT))
    assert isinstance(got, Rejection) and "tiers" in got.detail


# -- subscription events ----------------------------------------------------------------


def test_created_active_starts_a_subscription_with_the_event_id():
    ev = one(event("evt_1", "customer.subscription.created", sub([item(TEAM_ANNUAL, 3)]), AT))
    assert ev == {"event_id": "evt_1", "customer_id": "cus_1", "type": "subscription_started", "ts": "2025-05-01T09:00:00Z",
                  "plan": "team-annual", "mrr": 300.0}


def test_a_trial_that_converts():
    trial = (AT, AT + 14 * 86400)
    s = sub([item(PRO)], status="trialing", trial=trial)
    started = one(event("evt_1", "customer.subscription.created", s, AT))
    assert (started["type"], started["plan"], "mrr" in started) == ("trial_started", "pro-monthly", False)
    will_end = one(event("evt_2", "customer.subscription.trial_will_end", s, trial[1] - 3 * 86400))
    assert (will_end["type"], will_end["ts"]) == ("trial_started", started["ts"])  # restated at its start
    converted = one(event("evt_3", "customer.subscription.updated", {**s, "status": "active"}, trial[1], {"status": "trialing"}))
    assert (converted["type"], converted["mrr"]) == ("trial_converted", 50.0)


def test_a_trial_that_lapses():
    s = sub([item(PRO)], status="trialing", trial=(AT, AT + 14 * 86400))
    paused = one(event("evt_1", "customer.subscription.updated", {**s, "status": "paused"}, AT + 14 * 86400, {"status": "trialing"}))
    assert paused["type"] == "subscription_cancelled"  # a trial cancelled never counts as churn (state.py)
    ended = one(event("evt_2", "customer.subscription.deleted", {**s, "status": "canceled", "ended_at": AT + 14 * 86400}, AT + 14 * 86400))
    assert (ended["type"], ended["ts"]) == ("subscription_cancelled", "2025-05-15T09:00:00Z")


def test_cancel_at_period_end_keeps_mrr_until_the_period_ends_and_can_be_withdrawn():
    s = sub([item(PRO)], period_end=t("2025-06-01T09:00"))
    pending = {**s, "cancel_at_period_end": True, "cancellation_details": {"comment": "Too pricey", "feedback": "too_expensive", "reason": "cancellation_requested"}}
    ev = one(event("evt_1", "customer.subscription.updated", pending, t("2025-05-20T09:00"), {"cancel_at_period_end": False}))
    assert ev == {"event_id": "evt_1", "customer_id": "cus_1", "type": "subscription_cancelled", "ts": "2025-05-20T09:00:00Z",
                  "reason": "price", "reason_text": "Too pricey", "effective_at": "2025-06-01T09:00:00Z"}
    at = one(event("evt_2", "customer.subscription.updated", {**s, "cancel_at": t("2025-05-25T00:00")}, t("2025-05-20T09:00"), {"cancel_at": None}))
    assert at["effective_at"] == "2025-05-25T00:00:00Z"  # cancel_at wins over the period end
    back = one(event("evt_3", "customer.subscription.updated", s, t("2025-05-21T09:00"), {"cancel_at_period_end": True}))
    assert back["type"] == "subscription_renewed"  # withdraws the pending cancellation (state.py)


def test_period_end_from_items_on_newer_api_versions():
    s = sub([item(PRO)], cancel_at_period_end=True)
    del s["current_period_end"]
    s["items"]["data"][0]["current_period_end"] = t("2025-06-01T09:00")
    ev = one(event("evt_1", "customer.subscription.updated", s, AT, {"cancel_at_period_end": False}))
    assert ev["effective_at"] == "2025-06-01T09:00:00Z"


@pytest.mark.parametrize("feedback, reason", sorted(FEEDBACK.items()) + [(None, "other")])
def test_cancellation_feedback_maps_to_the_reason_categories(feedback, reason):
    s = sub([item(PRO)], status="canceled", ended_at=AT, feedback=feedback, comment="why", reason="cancellation_requested")
    ev = one(event("evt_1", "customer.subscription.deleted", s, AT))
    assert (ev["reason"], ev["reason_text"], "involuntary" in ev) == (reason, "why", False)


def test_the_issues_feedback_table():
    assert FEEDBACK == {"too_expensive": "price", "switched_service": "competitor", "missing_features": "missing_features",
                        "too_complex": "user_experience", "low_quality": "product_fit", "customer_service": "customer_service",
                        "unused": "product_fit", "other": "other"}


def test_a_cancellation_for_failed_payments_is_involuntary():
    s = sub([item(PRO)], status="canceled", ended_at=AT, reason="payment_failed")
    assert one(event("evt_1", "customer.subscription.deleted", s, AT))["involuntary"] is True
    unpaid = one(event("evt_2", "customer.subscription.updated", {**s, "status": "unpaid"}, AT, {"status": "past_due"}))
    assert (unpaid["type"], unpaid["involuntary"]) == ("subscription_cancelled", True)  # Stripe: unpaid leaves MRR


def test_price_and_quantity_changes_are_plan_changes():
    s = sub([item(PRO, 3)])
    ev = one(event("evt_1", "customer.subscription.updated", s, AT, {"items": sub([item(PRO, 1)])["items"], "quantity": 1}))
    assert (ev["type"], ev["plan"], ev["mrr"]) == ("plan_changed", "pro-monthly", 150.0)
    coupon_added = one(event("evt_2", "customer.subscription.updated",
                             {**s, "discount": discount(coupon(percent_off=10), "cus_1", "sub_1", AT)}, AT, {"discount": None}))
    assert coupon_added["mrr"] == 135.0


def test_an_update_that_moves_nothing_is_ignored_not_dropped():
    got = run(SOURCES["stripe"], orjson.dumps(event("evt_1", "customer.subscription.updated", sub([item(PRO)]), AT, {"metadata": {}})), None, 65536)
    assert got.events == () and "metadata" in got.ignored


def test_incomplete_then_active_starts_when_paid():
    s = sub([item(PRO)], status="incomplete")
    assert run(SOURCES["stripe"], orjson.dumps(event("evt_1", "customer.subscription.created", s, AT)), None, 65536).ignored
    ev = one(event("evt_2", "customer.subscription.updated", {**s, "status": "active"}, AT + 60, {"status": "incomplete"}))
    assert (ev["type"], ev["mrr"]) == ("subscription_started", 50.0)


# -- invoices ---------------------------------------------------------------------------------


def test_a_failed_payment_that_recovers():
    failed = one(event("evt_1", "invoice.payment_failed", invoice("in_1", "cus_1", "sub_1", 5000, paid=False, created=AT), AT))
    assert (failed["type"], failed["amount"], failed["event_id"]) == ("payment_failed", 50.0, "evt_1")
    inv = invoice("in_1", "cus_1", "sub_1", 5000, paid=True, created=AT, attempt_count=2)
    a = mapped(event("evt_2", "invoice.paid", inv, AT + 86400))
    b = mapped(event("evt_3", "invoice.payment_succeeded", inv, AT + 86400))
    assert [e["type"] for e in a] == ["payment_succeeded", "subscription_renewed"]
    assert [e["event_id"] for e in a] == [e["event_id"] for e in b] == ["in_1:paid", "in_1:renewed"]  # one payment, once


def test_the_first_invoice_is_not_a_renewal():
    inv = invoice("in_1", "cus_1", "sub_1", 5000, paid=True, created=AT, billing_reason="subscription_create")
    assert [e["type"] for e in mapped(event("evt_1", "invoice.paid", inv, AT))] == ["payment_succeeded"]


# -- what is not mapped ------------------------------------------------------------------------


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "not_json"),
    (b"[1]", "not_object"),
    (orjson.dumps({"id": "evt_1", "object": "event", "type": "charge.succeeded", "created": AT, "data": {"object": {}}}), "unsupported_event"),
    (orjson.dumps({"id": "evt_1", "type": "invoice.paid"}), "unmappable"),
    (orjson.dumps(event("evt_1", "invoice.paid", {**invoice("in_1", "cus_1", "sub_1", 5000, paid=True, created=AT), "customer": None}, AT)), "unmappable"),
    (orjson.dumps(event("evt_1", "invoice.paid", {**invoice("in_1", "cus_1", "sub_1", 5000, paid=True, created=AT), "amount_paid": -5}, AT)), "unmappable"),
])
def test_what_cannot_be_mapped_is_rejected_with_a_reason(raw, reason):
    got = run(SOURCES["stripe"], raw, None, 65536)
    assert isinstance(got, Rejection) and got.reason == reason and got.detail


def test_redelivery_maps_to_the_same_event_ids():
    evt = stripe_story.records[5][1]
    assert mapped(evt) == mapped(copy.deepcopy(evt))


# -- the hand-worked story, in process ---------------------------------------------------------


def test_the_story_gives_the_hand_computed_figures():
    """The same figures the e2e test reads from a real worker's /metrics."""
    from prometheus_client import generate_latest

    from stream_app.tools.harness import parse_metrics

    pipe = PurePipeline(caught_up=True)
    for _, evt in stripe_story.records + [stripe_story.REDELIVERED]:
        for ev in mapped(evt):
            pipe.feed(ev)
    pipe.finish()
    for _, evt in stripe_story.BAD:
        assert isinstance(run(SOURCES["stripe"], orjson.dumps(evt), None, 65536), Rejection)
    values = pipe.values()
    samples = parse_metrics(generate_latest(pipe.metrics.registry).decode())
    ledger = {
        "churn_customers_active": lambda p: values.get(("active", p), 0.0), "churn_mrr": lambda p: values.get(("mrr", p), 0.0),
    }
    got = {}
    for key in stripe_story.EXPECTED:
        name, _, labels = key.partition("{")
        if name in ledger:
            got[key] = ledger[name](labels.split('"')[1])
        elif name.startswith("churn_window_"):
            lab = dict(kv.split("=") for kv in labels.rstrip("}").split(","))
            window = int(lab["window"].strip('"')[:-1])
            series = {"churn_window_customers_start": ("start", window), "churn_window_customers_lost": ("lost", window),
                      "churn_window_mrr_start": ("mrr_start", window), "churn_window_mrr_lost": ("mrr_lost", window)}.get(name)
            got[key] = values.get(series if series else ("move", window, lab["kind"].strip('"')), 0.0)
        elif name == "churn_customers_trial":
            got[key] = values.get(("trial",), 0.0)
        elif name == "churn_customers_pending_cancellation":
            got[key] = values.get(("pending_cancel",), 0.0)
        elif name == "churn_mrr_pending_cancellation":
            got[key] = values.get(("pending_cancel_mrr",), 0.0)
        elif name.startswith("churn_source_records_total"):
            continue  # counted by the agent, not the processor (the e2e test checks it)
        else:
            got[key] = samples.get(key, 0.0)
    expected = {k: float(v) for k, v in stripe_story.EXPECTED.items() if not k.startswith("churn_source_records_total")}
    assert got == expected
