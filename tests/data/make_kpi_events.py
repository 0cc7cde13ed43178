"""Writes tests/data/kpi_events.jsonl: a small history whose KPIs are known by hand.

The clock ends on 2025-06-30 (last event at noon, allowed lateness 1 h), so the
30-day window is 06-01..06-30 (start = end of 05-31) and the 90-day window is
04-02..06-30 (start = end of 04-01). EXPECTED below is worked out from the
domain formulas, by hand, in the comments; tests compare /metrics with it.

Run `python tests/data/make_kpi_events.py` to regenerate (deterministic).
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

events: list[dict] = []


def ev(cid: str, typ: str, ts: str, **fields) -> None:
    events.append({"event_id": f"k{len(events)}", "customer_id": cid, "type": typ, "ts": ts, **fields})


def day(d: str, hh: str = "09:00:00") -> str:
    return f"2025-{d}T{hh}Z"


# Group A: 510 customers on basic at 50/month since 03-01.
A = [f"a{i:03d}" for i in range(510)]
for c in A:
    ev(c, "subscription_started", day("03-01"), plan="basic", mrr=50)
# 10 purchase-only customers buy once on 01-10 and lapse 90 days later (04-10).
P = [f"p{i:02d}" for i in range(10)]
for c in P:
    ev(c, "purchase", day("01-10"), amount=20)
# a000..a009 cancel on 05-10 (competitor): inside 90d, before 30d.
for c in A[0:10]:
    ev(c, "subscription_cancelled", day("05-10"), reason="competitor")
# a010..a030 (21) cancel on 06-15 (price): inside 30d.
for c in A[10:31]:
    ev(c, "subscription_cancelled", day("06-15"), reason="price", reason_text="too expensive")
# a031..a034 (4) fail a payment on 06-01 and never recover: involuntary churn on 06-15.
for c in A[31:35]:
    ev(c, "payment_failed", day("06-01"), amount=50)
# a035..a036 cancel on 06-25, effective 07-15: cancelled, not yet churned.
for c in A[35:37]:
    ev(c, "subscription_cancelled", day("06-25"), reason="price", effective_at="2025-07-15T00:00:00Z")
# a037 fails a payment on 06-10 and recovers on 06-12: no churn.
ev(A[37], "payment_failed", day("06-10"), amount=50)
ev(A[37], "payment_succeeded", day("06-12"), amount=50)
# a040..a044 (5) downgrade to starter at 30 on 06-05; a045..a047 (3) upgrade to pro at 100 on 06-06.
for c in A[40:45]:
    ev(c, "plan_changed", day("06-05"), plan="starter", mrr=30)
for c in A[45:48]:
    ev(c, "plan_changed", day("06-06"), plan="pro", mrr=100)
# a100..a199 (100) use the product every other day, 06-02 .. 06-30 (15 days), at noon.
for d in range(2, 31, 2):
    for c in A[100:200]:
        ev(c, "session", day(f"06-{d:02d}", "12:00:00"), duration_s=300)
# a200..a249 (50) used it once on 05-15: forgettable again by 06-30.
for c in A[200:250]:
    ev(c, "feature_used", day("05-15"), feature="reports")
# a250..a259 open tickets and rate us.
for c in A[250:260]:
    ev(c, "ticket_opened", day("06-20"), ticket_id=f"t-{c}", priority="high", category="billing")
    ev(c, "csat", day("06-21"), score=2)
    ev(c, "nps", day("06-21"), score=3)
# Group B: 20 new customers on pro at 200 on 06-10; b00..b04 cancel on 06-20 (joined and left inside the window).
B = [f"b{i:02d}" for i in range(20)]
for c in B:
    ev(c, "subscription_started", day("06-10"), plan="pro", mrr=200)
for c in B[:5]:
    ev(c, "subscription_cancelled", day("06-20"), reason="product_fit")
# 3 trials start on 06-25.
for i in range(3):
    ev(f"t{i}", "trial_started", day("06-25"), plan="pro")

# Purchases (repeat customer rate, purchase frequency), all by customers of a100..a199,
# at noon: June's on their session days, so no figure above moves.
# a100..a129 (30) buy on 06-04; a100..a109 (10) again on 06-10 and 06-20.
for c in A[100:130]:
    ev(c, "purchase", day("06-04", "12:00:00"), amount=40)
for c in A[100:110]:
    ev(c, "purchase", day("06-10", "12:00:00"), amount=40)
    ev(c, "purchase", day("06-20", "12:00:00"), amount=40)
# a130..a139 (10) buy on 05-20; a130..a134 (5) again on 06-08.
for c in A[130:140]:
    ev(c, "purchase", day("05-20", "12:00:00"), amount=25)
for c in A[130:135]:
    ev(c, "purchase", day("06-08", "12:00:00"), amount=25)
# a140..a144 (5) buy on 04-10 and 05-06 (inside 90d, before 30d).
for c in A[140:145]:
    ev(c, "purchase", day("04-10", "12:00:00"), amount=60)
    ev(c, "purchase", day("05-06", "12:00:00"), amount=60)

events.sort(key=lambda e: e["ts"])  # stable: same-second events keep their order

# -- the hand computation -------------------------------------------------------
# Active now: A 510 - 10 - 21 - 4 = 475 (incl. 2 pending); of those 5 starter, 3 pro, 467 basic; B 15 pro.
EXPECTED = {
    'churn_customers_active{plan="basic"}': 467,
    'churn_customers_active{plan="starter"}': 5,
    'churn_customers_active{plan="pro"}': 18,
    'churn_mrr{plan="basic"}': 467 * 50,
    'churn_mrr{plan="starter"}': 5 * 30,
    'churn_mrr{plan="pro"}': 3 * 100 + 15 * 200,
    "churn_customers_trial": 3,
    "churn_customers_pending_cancellation": 2,
    "churn_mrr_pending_cancellation": 100,
    # 30d: start = A active at end of 05-31 = 510 - 10 = 500; lost = 21 + 4 = 25 (5 %); B's 5 excluded.
    'churn_window_customers_start{window="30d"}': 500,
    'churn_window_customers_lost{window="30d"}': 25,
    'churn_window_customers_churned{window="30d"}': 30,
    'churn_window_customers_new{window="30d"}': 20,
    'churn_window_mrr_start{window="30d"}': 500 * 50,
    'churn_window_mrr_lost{window="30d"}': 25 * 50,
    # 90d: start = end of 04-01: A 510 + 10 purchase-only = 520; lost = 10 + 21 + 4 + 10 lapsed = 45.
    'churn_window_customers_start{window="90d"}': 520,
    'churn_window_customers_lost{window="90d"}': 45,
    'churn_window_customers_churned{window="90d"}': 50,
    'churn_window_customers_new{window="90d"}': 20,
    'churn_window_mrr_start{window="90d"}': 510 * 50,
    'churn_window_mrr_lost{window="90d"}': 35 * 50,
    'churn_window_mrr_movement{kind="churn",window="30d"}': 25 * 50 + 5 * 200,
    'churn_window_mrr_movement{kind="contraction",window="30d"}': 5 * 20,
    'churn_window_mrr_movement{kind="expansion",window="30d"}': 3 * 50,
    'churn_window_mrr_movement{kind="new",window="30d"}': 20 * 200,
    'churn_window_mrr_movement{kind="churn",window="90d"}': 35 * 50 + 5 * 200,
    # counters over the whole file
    'churn_mrr_movement_total{kind="new"}': 510 * 50 + 20 * 200,
    'churn_mrr_movement_total{kind="churn"}': 35 * 50 + 5 * 200,
    'churn_mrr_movement_total{kind="contraction"}': 100,
    'churn_mrr_movement_total{kind="expansion"}': 150,
    'churn_customers_churned_total{kind="voluntary",plan="basic",reason="competitor"}': 10,
    'churn_customers_churned_total{kind="voluntary",plan="basic",reason="price"}': 21,
    'churn_customers_churned_total{kind="involuntary",plan="basic",reason="payment"}': 4,
    'churn_customers_churned_total{kind="inactivity",plan="none",reason="inactivity"}': 10,
    'churn_customers_churned_total{kind="voluntary",plan="pro",reason="product_fit"}': 5,
    # tenure at churn: B 10 days; competitor 70; lapsed exactly 90; price and payment 106
    'churn_customers_churned_by_tenure_total{tenure="0-30"}': 5,
    'churn_customers_churned_by_tenure_total{tenure="31-60"}': 0,
    'churn_customers_churned_by_tenure_total{tenure="61-90"}': 20,
    'churn_customers_churned_by_tenure_total{tenure="90+"}': 25,
    # usage on 06-30: 100 daily actives; 100 monthly actives; 100 x 15 active days
    "churn_users_daily_active": 100,
    "churn_users_monthly_active": 100,
    "churn_active_days_30d": 1500,
    # paying customers with no usage since 05-31: 475 - 100 (B started 06-10: not yet)
    "churn_customers_forgettable": 375,
    # purchases, 30d (06-01..06-30): a100..a109 three each (repeat), a110..a129 one, a130..a134 one (06-08):
    # 35 purchasing customers, 10 repeat, 30 + 20 + 5 = 55 purchases
    'churn_window_customers_purchasing{window="30d"}': 35,
    'churn_window_customers_repeat{window="30d"}': 10,
    'churn_window_purchases{window="30d"}': 55,
    # 90d (04-02..06-30): also a130..a134 twice (repeat), a135..a139 once, a140..a144 twice (repeat):
    # 45 purchasing, 10 + 5 + 5 = 20 repeat, 55 + 5 + 5 + 10 = 75 purchases
    'churn_window_customers_purchasing{window="90d"}': 45,
    'churn_window_customers_repeat{window="90d"}': 20,
    'churn_window_purchases{window="90d"}': 75,
    # cohorts (start month; June is as of the clock, 06-30):
    # 2025-01: the 10 purchase-only customers (no MRR), active to their lapse on 04-10:
    # retained at the ends of January, February and March, not of April, May or June
    'churn_cohort_customers_retained{age="0",cohort="2025-01"}': 10,
    'churn_cohort_customers_retained{age="1",cohort="2025-01"}': 10,
    'churn_cohort_customers_retained{age="2",cohort="2025-01"}': 10,
    'churn_cohort_customers_retained{age="3",cohort="2025-01"}': 0,
    'churn_cohort_customers_retained{age="4",cohort="2025-01"}': 0,
    'churn_cohort_customers_retained{age="5",cohort="2025-01"}': 0,
    # 2025-03: A, 510 at 50; all of them at the ends of March and April; 500 at the end of May
    # (a000..a009 left on 05-10); in June 475 now (21 + 4 more left) with MRR 467 x 50 + 5 x 30 + 3 x 100
    'churn_cohort_customers_retained{age="0",cohort="2025-03"}': 510,
    'churn_cohort_customers_retained{age="1",cohort="2025-03"}': 510,
    'churn_cohort_customers_retained{age="2",cohort="2025-03"}': 500,
    'churn_cohort_customers_retained{age="3",cohort="2025-03"}': 475,
    'churn_cohort_mrr_retained{age="0",cohort="2025-03"}': 510 * 50,
    'churn_cohort_mrr_retained{age="1",cohort="2025-03"}': 510 * 50,
    'churn_cohort_mrr_retained{age="2",cohort="2025-03"}': 500 * 50,
    'churn_cohort_mrr_retained{age="3",cohort="2025-03"}': 467 * 50 + 5 * 30 + 3 * 100,
    # 2025-06: B, 20 at 200 from 06-10, 5 gone on 06-20: 15 now
    'churn_cohort_customers_retained{age="0",cohort="2025-06"}': 15,
    'churn_cohort_mrr_retained{age="0",cohort="2025-06"}': 15 * 200,
    'churn_events_processed_total{topic="churn.subscription"}': sum(1 for e in events if e["type"] not in ("session", "feature_used", "purchase", "ticket_opened", "csat", "nps")),
}
# customer churn rate 30d = 25 / 500 = 5 %; stickiness = 1500 / 30 / 100 = 0.5
# repeat customer rate 30d = 10 / 35, 90d = 20 / 45; purchase frequency 30d = 55 / 35, 90d = 75 / 45
EXPECTED_RATES = {"customer_churn_rate_30d": 0.05, "stickiness": 0.5, "stripe_rolling_churn_30d": 30 / 520,
                  "repeat_customer_rate_30d": 10 / 35, "repeat_customer_rate_90d": 20 / 45,
                  "purchase_frequency_30d": 55 / 35, "purchase_frequency_90d": 75 / 45}

if __name__ == "__main__":
    out = Path(__file__).with_name("kpi_events.jsonl")
    out.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    print(f"wrote {len(events)} events to {out}", file=sys.stderr)
