"""features(state, now): every key always present, neutral when unknown, right windows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.config import DAY
from stream_app.ingest.contract import parse_ts
from stream_app.risk.features import FEATURES, NEUTRAL, features, monthly_value, p_alive
from stream_app.tools.simulator import SimConfig, Simulation
from stream_app.domain.state import ACTIVE, CANCELLED, LAPSED, TRIAL, Rules, advance, apply, new_state

RULES = Rules()
T0 = parse_ts("2025-01-01T00:00:00Z")
_n = 0


def ev(type_: str, day: float, **fields) -> dict:
    global _n
    _n += 1
    e = {"event_id": f"e{_n}", "customer_id": "c", "type": type_, "_t": T0 + day * DAY,
         "ts": "2025-01-01T00:00:00Z"}
    e.update(fields)
    return e


def run(*events):
    s = new_state("c")
    for e in events:
        s, _ = apply(s, e, RULES)
    return s


def check_complete(f: dict) -> None:
    assert tuple(f) == FEATURES  # same keys, same order: the model sees a fixed vector
    for k, v in f.items():
        assert isinstance(v, float), k
        assert math.isfinite(v), k


def subscriber(**kw):
    return run(ev("subscription_started", 0, plan="pro", mrr=99.0), **kw)


# ----------------------------------------------------------------- presence and neutrality


def test_unknown_customer_is_all_neutral():
    f = features(new_state("nobody"), T0)
    check_complete(f)
    assert f == NEUTRAL


def test_neutral_covers_exactly_the_feature_set():
    assert set(NEUTRAL) == set(FEATURES)
    assert len(FEATURES) == len(set(FEATURES))


@pytest.mark.parametrize(
    "events, status",
    [
        ([ev("subscription_started", 0, plan="pro", mrr=99.0)], ACTIVE),
        ([ev("trial_started", 0, plan="basic")], TRIAL),
        ([ev("purchase", 0, amount=40.0)], ACTIVE),
        ([ev("subscription_started", 0, plan="pro", mrr=99.0), ev("subscription_cancelled", 5, reason="price")], CANCELLED),
        ([ev("subscription_started", 0, plan="business", mrr=299.0),
          ev("subscription_cancelled", 5, reason="price", _effective_t=T0 + 30 * DAY)], ACTIVE),
        ([ev("subscription_started", 0, plan="basic", mrr=29.0), ev("payment_failed", 3, amount=29.0)], ACTIVE),
        ([ev("subscription_started", 0, plan="free", mrr=0.0)], ACTIVE),
        ([ev("subscription_started", 0, plan="weird-custom-plan", mrr=180.0), ev("session", 1)], ACTIVE),
        ([ev("ticket_opened", 0, ticket_id="t1", priority="high", category="bug"), ev("csat", 1, score=2),
          ev("nps", 1, score=3)], None),
    ],
)
def test_every_kind_of_customer_has_every_feature(events, status):
    s = run(*events)
    assert s.status == status
    for day in (0.5, 10, 45, 200):
        check_complete(features(s, T0 + day * DAY))


def test_lapsed_purchase_only_customer_still_complete():
    s = run(ev("purchase", 0, amount=10.0))
    s, eff = advance(s, T0 + 91 * DAY, RULES)
    assert s.status == LAPSED and eff.churn is not None
    check_complete(features(s, T0 + 92 * DAY))


def test_subscription_features_neutral_for_purchase_only_and_rfm_neutral_for_subscribers():
    buyer = run(ev("purchase", 0, amount=20.0), ev("purchase", 10, amount=30.0))
    fb = features(buyer, T0 + 15 * DAY)
    for k in ("days_to_renewal", "renewal_within_7d", "cancel_pending", "plan_tier", "contractual", "mrr"):
        assert fb[k] == NEUTRAL[k], k
    assert fb["frequency"] == 2.0 and fb["monetary"] == 50.0
    assert fb["recency_days"] == pytest.approx(5.0)
    assert fb["mean_gap_days"] == pytest.approx(10.0)
    assert fb["recency_gap_ratio"] == pytest.approx(0.5)
    sub = subscriber()
    fs = features(sub, T0 + 15 * DAY)
    for k in ("recency_days", "frequency", "monetary", "mean_gap_days", "recency_gap_ratio", "p_alive", "lapse_within_30d"):
        assert fs[k] == NEUTRAL[k], k
    assert fs["contractual"] == 1.0 and fs["plan_tier"] == 2.0 and fs["mrr"] == 99.0


def test_unknown_surveys_are_neutral_with_flag_off_then_known():
    s = subscriber()
    f = features(s, T0 + DAY)
    assert (f["csat"], f["csat_known"], f["nps"], f["nps_known"], f["nps_detractor"]) == (
        NEUTRAL["csat"], 0.0, NEUTRAL["nps"], 0.0, 0.0)
    s, _ = apply(s, ev("csat", 2, score=1), RULES)
    s, _ = apply(s, ev("nps", 2, score=4), RULES)
    f = features(s, T0 + 3 * DAY)
    assert (f["csat"], f["csat_known"], f["csat_low"]) == (1.0, 1.0, 1.0)
    assert (f["nps"], f["nps_known"], f["nps_detractor"]) == (4.0, 1.0, 1.0)


# ----------------------------------------------------------------------- values


def test_usage_windows_trend_and_stickiness():
    events = [ev("subscription_started", 0, plan="pro", mrr=99.0)]
    events += [ev("session", d + 0.5) for d in range(0, 53)]  # daily for 53 days
    events += [ev("session", 59.5)]  # then one session in the last week
    s = run(*events)
    now = T0 + 59.9 * DAY  # day 59
    f = features(s, now)
    assert f["usage_7d"] == 1.0
    assert f["usage_30d"] == 24.0  # days 30..52 + 59
    assert f["active_days_30d"] == 24.0
    assert f["stickiness"] == pytest.approx(24 / 30)
    assert f["usage_trend"] < 0.3  # a collapse
    assert f["usage_trend_log"] == pytest.approx(math.log(f["usage_trend"]))
    assert f["days_since_last_activity"] == pytest.approx(0.4)
    assert f["no_activity_7d"] == 0.0
    assert f["usage_trend_90d"] < 1.0


def test_rates_use_observed_days_only():
    """A customer first seen 3 days ago, active daily, is not 'falling'."""
    s = run(ev("subscription_started", 0, plan="pro", mrr=99.0), *[ev("session", d + 0.5) for d in range(3)])
    f = features(s, T0 + 2.9 * DAY)
    assert f["usage_trend"] == pytest.approx(1.0)
    assert f["usage_trend_90d"] == NEUTRAL["usage_trend_90d"]


def test_recent_downgrade_and_price_increase_windows():
    s = run(ev("subscription_started", 0, plan="pro", mrr=99.0), ev("plan_changed", 10, plan="basic", mrr=29.0),
            ev("plan_changed", 20, plan="basic", mrr=35.0))
    f = features(s, T0 + 25 * DAY)
    assert f["recent_downgrade"] == 1.0 and f["price_increase_recent"] == 1.0
    assert f["days_since_price_change"] == pytest.approx(5.0)
    f = features(s, T0 + 45 * DAY)
    assert f["recent_downgrade"] == 0.0 and f["price_increase_recent"] == 1.0
    f = features(s, T0 + 60 * DAY)
    assert f["recent_downgrade"] == 0.0 and f["price_increase_recent"] == 0.0
    assert f["price_change_90d"] == 1.0
    assert features(s, T0 + 200 * DAY)["price_change_90d"] == 0.0


def test_expansion_is_not_a_price_shock():
    s = run(ev("subscription_started", 0, plan="basic", mrr=29.0), ev("plan_changed", 10, plan="pro", mrr=99.0))
    f = features(s, T0 + 12 * DAY)
    assert f["price_increase_recent"] == 0.0 and f["recent_downgrade"] == 0.0 and f["price_change_90d"] == 0.0


def test_days_to_renewal_cancel_pending_and_dunning():
    s = run(ev("subscription_started", 0, plan="pro", mrr=99.0), ev("subscription_renewed", 30))
    assert features(s, T0 + 33 * DAY)["days_to_renewal"] == pytest.approx(27.0)
    f = features(s, T0 + 55 * DAY)
    assert f["days_to_renewal"] == pytest.approx(5.0) and f["renewal_within_7d"] == 1.0
    s, _ = apply(s, ev("subscription_cancelled", 56, reason="price", _effective_t=T0 + 60 * DAY), RULES)
    assert features(s, T0 + 57 * DAY)["cancel_pending"] == 1.0
    s2 = run(ev("subscription_started", 0, plan="pro", mrr=99.0), ev("payment_failed", 30, amount=99.0))
    f = features(s2, T0 + 36 * DAY)
    assert f["failed_payments"] == 1.0 and f["dunning_days"] == pytest.approx(6.0)


def test_onboarding_incomplete_only_early_in_life():
    s = run(ev("subscription_started", 0, plan="pro", mrr=99.0), ev("session", 1))
    f = features(s, T0 + 20 * DAY)
    assert f["sessions_first_14d"] == 1.0 and f["onboarding_incomplete"] == 1.0
    assert features(s, T0 + 150 * DAY)["onboarding_incomplete"] == 0.0
    busy = run(ev("subscription_started", 0, plan="pro", mrr=99.0), *[ev("session", d + 0.2) for d in range(14)])
    assert features(busy, T0 + 20 * DAY)["onboarding_incomplete"] == 0.0


def test_lapse_within_horizon_for_quiet_buyers():
    s = run(ev("purchase", 0, amount=10.0), ev("purchase", 10, amount=10.0))
    assert features(s, T0 + 40 * DAY)["lapse_within_30d"] == 0.0
    assert features(s, T0 + 75 * DAY)["lapse_within_30d"] == 1.0
    assert features(s, T0 + 75 * DAY, inactivity_days=180)["lapse_within_30d"] == 0.0


def test_monthly_value():
    assert monthly_value(subscriber(), T0) == 99.0
    buyer = run(ev("purchase", 0, amount=30.0), ev("purchase", 30, amount=30.0))
    assert monthly_value(buyer, T0 + 60 * DAY) == pytest.approx(30.0)


# ---------------------------------------------------------------------- P(alive)


@given(x=st.integers(0, 200), tx=st.floats(0, 400), gap=st.floats(0, 400), more=st.floats(0.1, 200))
@settings(max_examples=200, deadline=None)
def test_p_alive_is_a_probability_and_falls_with_silence(x, tx, gap, more):
    a = p_alive(x, tx, tx + gap)
    b = p_alive(x, tx, tx + gap + more)
    assert 0.0 <= b <= a <= 1.0


def test_p_alive_regular_buyer_dies_faster_than_one_off():
    # same silence (60 days), a regular buyer is more surely gone
    assert p_alive(20, 200.0, 260.0) < p_alive(0, 0.0, 60.0)


# ------------------------------------------------------------ a whole simulated population


def test_every_simulated_customer_has_every_feature_every_week():
    cfg = SimConfig(customers=150, days=120, seed=3)
    sim = Simulation(cfg)
    states: dict = {}
    seen_status = set()
    day = None
    for e in sim.events():
        e["_t"] = parse_ts(e["ts"])
        if "effective_at" in e:
            e["_effective_t"] = parse_ts(e["effective_at"])
        d = int(e["_t"] // DAY)
        if day is not None and d != day and d % 7 == 0:
            for s in states.values():
                advance(s, e["_t"], RULES)
                seen_status.add((s.status, s.contractual))
                check_complete(features(s, e["_t"]))
        day = d
        s = states.get(e["customer_id"]) or new_state(e["customer_id"])
        states[e["customer_id"]], _ = apply(s, e, RULES)
    assert {(ACTIVE, True), (ACTIVE, False), (CANCELLED, True)} <= seen_status


# ----------------------------------------------------- support, payment and price history


def test_tickets_count_recency_and_trend():
    s = run(ev("subscription_started", 0, plan="pro", mrr=99.0),
            *[ev("ticket_opened", d, ticket_id=f"t{d}", priority="high", category="bug") for d in (10, 50, 85, 88, 89)])
    f = features(s, T0 + 90 * DAY)
    assert (f["tickets_30d"], f["tickets_90d"]) == (3.0, 5.0)
    assert f["days_since_last_ticket"] == pytest.approx(1.0)
    assert f["ticket_trend_log"] == pytest.approx(math.log((3 / 30 + 0.02) / (2 / 60 + 0.02)))  # rising
    quiet = features(s, T0 + 200 * DAY)
    assert (quiet["tickets_90d"], quiet["ticket_trend_log"]) == (0.0, 0.0)
    assert quiet["days_since_last_ticket"] == pytest.approx(111.0)


def test_csat_mean_and_last_differ():
    s = run(ev("subscription_started", 0, plan="pro", mrr=99.0), ev("csat", 1, score=5), ev("csat", 2, score=5), ev("csat", 3, score=1))
    f = features(s, T0 + 4 * DAY)
    assert (f["csat"], f["csat_mean"], f["csat_answers"]) == (1.0, pytest.approx(11 / 3), 3.0)


def test_a_recovered_payment_failure_is_still_remembered():
    s = run(ev("subscription_started", 0, plan="basic", mrr=29.0), ev("payment_failed", 30, amount=29.0),
            ev("payment_failed", 33, amount=29.0))
    f = features(s, T0 + 35 * DAY)
    assert (f["in_dunning"], f["failed_payments"], f["payment_failures_total"]) == (1.0, 2.0, 2.0)
    assert f["days_since_payment_failure"] == pytest.approx(2.0)
    s, _ = apply(s, ev("payment_succeeded", 36, amount=29.0), RULES)
    f = features(s, T0 + 40 * DAY)
    assert (f["in_dunning"], f["failed_payments"], f["dunning_days"]) == (0.0, 0.0, 0.0)
    assert f["payment_failures_total"] == 2.0 and f["days_since_payment_failure"] == pytest.approx(7.0)


def test_price_change_ratio_and_days_since_the_increase():
    s = run(ev("subscription_started", 0, plan="pro", mrr=100.0), ev("plan_changed", 20, plan="pro", mrr=130.0))
    f = features(s, T0 + 30 * DAY)
    assert f["price_change_log_ratio"] == pytest.approx(math.log(1.3))
    assert f["days_since_price_increase"] == pytest.approx(10.0) and f["price_increase_recent"] == 1.0
    s, _ = apply(s, ev("plan_changed", 40, plan="basic", mrr=29.0), RULES)  # then a downgrade
    f = features(s, T0 + 45 * DAY)
    assert f["price_change_log_ratio"] == pytest.approx(math.log(29 / 130))
    assert features(s, T0 + 300 * DAY)["price_change_log_ratio"] == 0.0  # too long ago to matter


def test_usage_over_90_days():
    s = run(ev("subscription_started", 0, plan="pro", mrr=99.0), *[ev("session", d, duration_s=60) for d in (1, 40, 80, 95)])
    assert features(s, T0 + 96 * DAY)["usage_90d"] == 3.0  # day 1 is out of the window


def test_tickets_left_open_and_bad_ratings_fade():
    s = run(ev("subscription_started", 0, plan="pro", mrr=99.0),
            ev("ticket_opened", 1, ticket_id="a", priority="high", category="bug"),
            ev("ticket_opened", 9, ticket_id="b", priority="low", category="bug"),
            ev("ticket_opened", 10, ticket_id="c", priority="low", category="bug"),
            ev("ticket_resolved", 11, ticket_id="a"),
            ev("csat", 11, score=1), ev("csat", 12, score=3), ev("csat", 13, score=5))
    f = features(s, T0 + 20 * DAY)
    assert f["oldest_open_ticket_days"] == pytest.approx(11.0) and f["overdue_tickets"] == 2.0
    assert f["bad_csat_recent"] == pytest.approx(0.5 ** (9 / 30) + 0.5 ** (8 / 30) / 3, rel=1e-3)
    assert features(s, T0 + 200 * DAY)["bad_csat_recent"] < 0.02
