"""A Stripe event sequence whose figures are worked out by hand (below).

Eleven customers, as Stripe would deliver their events to a webhook endpoint:
an annual plan with three seats, a forever coupon, a trial that converts, a
trial that lapses, a cancellation at period end, a failed payment that
recovers, a failed payment that ends in cancellation (involuntary), an
upgrade in quantity, a downgrade in price, an immediate cancellation, and a
cancellation at period end that is withdrawn. The last event (2025-06-30
12:00 UTC) sets the clock: with 1 h allowed lateness the 30-day window is
06-01..06-30, its start the end of 05-31.

`records` are (key, Stripe Event) in delivery order, keyed by Stripe
customer; `REDELIVERED` is sent again (Stripe delivers at least once), `BAD`
cannot be mapped.
"""

from __future__ import annotations

import copy

from tests.data.stripe_shapes import BASIC, PRO, TEAM_ANNUAL, coupon, discount, event, invoice, item, subscription, t

records: list[tuple[str, dict]] = []


def deliver(cid: str, evt: dict) -> None:
    records.append((cid, evt))


def evt_id() -> str:
    return f"evt_1Story{len(records):04d}"


def created(cid: str, sub: dict, at: int) -> None:
    deliver(cid, event(evt_id(), "customer.subscription.created", sub, at))


def updated(cid: str, sub: dict, prev: dict, at: int) -> None:
    deliver(cid, event(evt_id(), "customer.subscription.updated", sub, at, prev))


def deleted(cid: str, sub: dict, at: int) -> None:
    deliver(cid, event(evt_id(), "customer.subscription.deleted", sub, at))


def paid(cid: str, inv: dict, at: int) -> None:
    """Stripe sends both for one paid invoice."""
    deliver(cid, event(evt_id(), "invoice.paid", inv, at))
    deliver(cid, event(evt_id(), "invoice.payment_succeeded", inv, at))


D = t  # a readable alias: D("2025-05-01T09:00")

# 1. annual plan, 3 seats: 1,200.00 a year x 3 / 12 = 300/month
s1 = subscription("sub_s01", "cus_annual", [item(TEAM_ANNUAL, 3)], created=D("2025-05-01T09:00"), period_end=D("2026-05-01T09:00"))
created("cus_annual", s1, D("2025-05-01T09:00"))

# 2. pro (50) with a forever 20 % coupon: 40
s2 = subscription("sub_s02", "cus_coupon", [item(PRO)], created=D("2025-05-02T09:00"),
                  discount=discount(coupon("SPRING20", percent_off=20), "cus_coupon", "sub_s02", D("2025-05-02T09:00")))
created("cus_coupon", s2, D("2025-05-02T09:00"))

# 3. a 14-day trial of pro that converts on 05-17: new 50; its first invoice paid (and delivered twice over)
trial = (D("2025-05-03T09:00"), D("2025-05-17T09:00"))
s3 = subscription("sub_s03", "cus_trial_ok", [item(PRO)], status="trialing", created=trial[0], trial=trial, period_end=trial[1])
created("cus_trial_ok", s3, trial[0])

# 4. a trial of pro that lapses: told it ends, then deleted at its end (never paid: not churn)
lapse = (D("2025-05-04T09:00"), D("2025-05-18T09:00"))
s4 = subscription("sub_s04", "cus_trial_lapse", [item(PRO)], status="trialing", created=lapse[0], trial=lapse, period_end=lapse[1])
created("cus_trial_lapse", s4, lapse[0])

# 5. pro x 2 = 100, cancelled at period end on 06-10 (effective 07-05): pending, keeps its MRR
s5 = subscription("sub_s05", "cus_cape", [item(PRO, 2)], created=D("2025-05-05T09:00"), period_end=D("2025-07-05T09:00"))
created("cus_cape", s5, D("2025-05-05T09:00"))

# 6. basic 20; a renewal payment fails on 06-06 and is recovered on 06-09
s6 = subscription("sub_s06", "cus_recovers", [item(BASIC)], created=D("2025-05-06T09:00"))
created("cus_recovers", s6, D("2025-05-06T09:00"))

# 7. basic 20; a payment fails on 06-07, Stripe cancels for it on 06-20: involuntary churn of 20
s7 = subscription("sub_s07", "cus_involuntary", [item(BASIC)], created=D("2025-05-07T09:00"))
created("cus_involuntary", s7, D("2025-05-07T09:00"))

# 8. basic x 1 = 20, up to 5 seats on 06-12: expansion 80
s8 = subscription("sub_s08", "cus_upgrade", [item(BASIC)], created=D("2025-05-08T09:00"))
created("cus_upgrade", s8, D("2025-05-08T09:00"))

# 9. pro 50, down to basic 20 on 06-14: contraction 30
s9 = subscription("sub_s09", "cus_downgrade", [item(PRO)], created=D("2025-05-09T09:00"))
created("cus_downgrade", s9, D("2025-05-09T09:00"))

# 10. pro 50, cancelled at once on 06-15, switched to a competitor: voluntary churn of 50
s10 = subscription("sub_s10", "cus_leaves", [item(PRO)], created=D("2025-05-10T09:00"))
created("cus_leaves", s10, D("2025-05-10T09:00"))

# 11. pro 50, cancels at period end on 06-16 and takes it back on 06-18: stays
s11 = subscription("sub_s11", "cus_stays", [item(PRO)], created=D("2025-05-11T09:00"), period_end=D("2025-07-11T09:00"))
created("cus_stays", s11, D("2025-05-11T09:00"))

REDELIVERED = copy.deepcopy(records[0])  # cus_annual's creation, delivered again later

deliver("cus_trial_lapse", event(evt_id(), "customer.subscription.trial_will_end", s4, D("2025-05-15T09:00")))

s3_active = {**s3, "status": "active", "current_period_start": trial[1], "current_period_end": trial[1] + 30 * 86400}
updated("cus_trial_ok", s3_active, {"status": "trialing"}, trial[1])
paid("cus_trial_ok", invoice("in_s03_1", "cus_trial_ok", "sub_s03", 5000, paid=True, created=trial[1]), trial[1] + 60)

deleted("cus_trial_lapse", {**s4, "status": "canceled", "canceled_at": lapse[1], "ended_at": lapse[1]}, lapse[1])

deliver("cus_recovers", event(evt_id(), "invoice.payment_failed",
                              invoice("in_s06_2", "cus_recovers", "sub_s06", 2000, paid=False, created=D("2025-06-06T09:00")), D("2025-06-06T09:00")))
deliver("cus_involuntary", event(evt_id(), "invoice.payment_failed",
                                 invoice("in_s07_2", "cus_involuntary", "sub_s07", 2000, paid=False, created=D("2025-06-07T09:00")), D("2025-06-07T09:00")))
paid("cus_recovers", invoice("in_s06_2", "cus_recovers", "sub_s06", 2000, paid=True, created=D("2025-06-06T09:00"), attempt_count=2), D("2025-06-09T09:00"))

updated("cus_cape", {**s5, "cancel_at_period_end": True, "cancel_at": s5["current_period_end"], "canceled_at": D("2025-06-10T09:00"),
                     "cancellation_details": {"comment": "Too expensive for two seats", "feedback": "too_expensive", "reason": "cancellation_requested"}},
        {"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None,
         "cancellation_details": {"comment": None, "feedback": None, "reason": None}}, D("2025-06-10T09:00"))

s8_up = {**s8, "items": {**s8["items"], "data": [item(BASIC, 5, "sub_s08")]}}
updated("cus_upgrade", s8_up, {"items": s8["items"]}, D("2025-06-12T09:00"))

s9_down = {**s9, "items": {**s9["items"], "data": [item(BASIC, 1, "sub_s09")]}}
updated("cus_downgrade", s9_down, {"items": s9["items"]}, D("2025-06-14T09:00"))

deleted("cus_leaves", {**s10, "status": "canceled", "canceled_at": D("2025-06-15T09:00"), "ended_at": D("2025-06-15T09:00"),
                       "cancellation_details": {"comment": "Moved to another tool", "feedback": "switched_service", "reason": "cancellation_requested"}},
        D("2025-06-15T09:00"))

s11_pending = {**s11, "cancel_at_period_end": True, "cancel_at": s11["current_period_end"], "canceled_at": D("2025-06-16T09:00"),
               "cancellation_details": {"comment": None, "feedback": "unused", "reason": "cancellation_requested"}}
updated("cus_stays", s11_pending, {"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None}, D("2025-06-16T09:00"))
updated("cus_stays", s11, {"cancel_at_period_end": True, "cancel_at": s11["current_period_end"], "canceled_at": D("2025-06-16T09:00")},
        D("2025-06-18T09:00"))

deleted("cus_involuntary", {**s7, "status": "canceled", "canceled_at": D("2025-06-20T09:00"), "ended_at": D("2025-06-20T09:00"),
                            "cancellation_details": {"comment": None, "feedback": None, "reason": "payment_failed"}}, D("2025-06-20T09:00"))

# the last event: cus_coupon's renewal is paid (40 after its coupon), 06-30 12:00
paid("cus_coupon", invoice("in_s02_3", "cus_coupon", "sub_s02", 4000, paid=True, created=D("2025-06-30T12:00")), D("2025-06-30T12:00"))

BAD = [
    ("cus_annual", event("evt_1Charge0001", "charge.succeeded", {"id": "ch_1", "object": "charge", "customer": "cus_annual"}, D("2025-06-30T12:00"))),
    ("cus_nobody", event("evt_1NoCustomer1", "customer.subscription.created", {**s1, "customer": None}, D("2025-06-30T12:00"))),
]

# -- the hand computation ------------------------------------------------------------
# Paying at the end: annual 300 (team-annual); coupon 40, trial_ok 50, cape 100 (pending), stays 50 (pro-monthly);
# recovers 20, upgrade 100, downgrade 20 (basic-monthly). Gone: involuntary (20), leaves (50); trial_lapse never paid.
# Contract events: 11 creations -> 9 subscription_started + 2 trial_started; trial_will_end -> trial_started again;
# conversion -> trial_converted; 3 paid invoices x 2 Stripe events -> 2 payment_succeeded + 2 subscription_renewed each
# (the second of each pair a duplicate); 2 payment_failed; deletions -> 3 subscription_cancelled; cancel_at_period_end
# -> 2 subscription_cancelled (with effective_at) and its withdrawal -> 1 subscription_renewed; quantity and price
# changes -> 2 plan_changed; the redelivered creation -> its subscription_started again (a duplicate).
EXPECTED = {
    'churn_customers_active{plan="team-annual"}': 1,
    'churn_customers_active{plan="pro-monthly"}': 4,
    'churn_customers_active{plan="basic-monthly"}': 3,
    'churn_mrr{plan="team-annual"}': 300,
    'churn_mrr{plan="pro-monthly"}': 40 + 50 + 100 + 50,
    'churn_mrr{plan="basic-monthly"}': 20 + 100 + 20,
    "churn_customers_trial": 0,
    "churn_customers_pending_cancellation": 1,
    "churn_mrr_pending_cancellation": 100,
    # new: 300 + 40 + 100 + 20 + 20 + 20 + 50 + 50 + 50 at creation, 50 at conversion
    'churn_mrr_movement_total{kind="new"}': 700,
    'churn_mrr_movement_total{kind="expansion"}': 80,
    'churn_mrr_movement_total{kind="contraction"}': 30,
    'churn_mrr_movement_total{kind="churn"}': 20 + 50,
    'churn_customers_churned_total{kind="involuntary",plan="basic-monthly",reason="payment"}': 1,
    'churn_customers_churned_total{kind="voluntary",plan="pro-monthly",reason="competitor"}': 1,
    # the 30-day window: 10 paying at the end of 05-31 (all but trial_lapse) with 700 MRR; 2 lost with 70
    'churn_window_customers_start{window="30d"}': 10,
    'churn_window_customers_lost{window="30d"}': 2,
    'churn_window_mrr_start{window="30d"}': 700,
    'churn_window_mrr_lost{window="30d"}': 70,
    'churn_window_mrr_movement{kind="churn",window="30d"}': 70,
    'churn_window_mrr_movement{kind="expansion",window="30d"}': 80,
    'churn_window_mrr_movement{kind="contraction",window="30d"}': 30,
    # 3 invoices paid twice over (payment_succeeded + subscription_renewed each) and one redelivered Stripe event
    'churn_events_duplicate_total{topic="churn.subscription"}': 3 * 2 + 1,
    # the contract events counted above (36), less the 7 duplicates, which are counted as such instead
    'churn_events_processed_total{topic="churn.subscription"}': 9 + 2 + 1 + 1 + 12 + 2 + 3 + 2 + 1 + 2 + 1 - 7,
    'churn_source_records_total{outcome="mapped",source="stripe"}': len(records) + 1,
    'churn_source_records_total{outcome="dead_lettered",source="stripe"}': len(BAD),
    'churn_source_records_total{outcome="ignored",source="stripe"}': 0,
}
