"""Alert policy (raise/escalate/resolve, hysteresis, cooldown, value filter, ids, schema)
and the rule-based health score whose reasons the alerts carry."""

from __future__ import annotations

from pathlib import Path

import fastjsonschema
import orjson
import pytest

from stream_app.risk.alerts import (
    sweep_trigger,
    CATEGORIES,
    PLAY_COST,
    PLAYS,
    REASON_CATEGORY,
    AlertConfig,
    AlertState,
    decide,
    normalise_reasons,
)
from stream_app.config import DAY
from stream_app.ingest.contract import parse_ts
from stream_app.risk.features import FEATURES, NEUTRAL, features
from stream_app.risk.health import FACTORS, health_risk
from stream_app.domain.state import Rules, apply, new_state

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "churn.alerts.json"
_schema = orjson.loads(SCHEMA_PATH.read_bytes())
validate = fastjsonschema.compile({k: v for k, v in _schema.items() if k not in ("$id", "examples")})

CFG = AlertConfig()
T = parse_ts("2025-03-01T00:00:00Z")
REASONS = [("open_tickets", 0.4), ("usage_trend", 0.2), ("tenure_days", 0.1), ("csat", -0.3)]


def step(prev, risk, t, mrr=299.0, reasons=REASONS, cfg=CFG, **kw):
    kw.setdefault("customer_id", "c1")
    return decide(prev, risk, mrr, t, reasons, cfg, **kw)


# ----------------------------------------------------------------- raise / escalate / resolve


def test_raise_only_at_upper_threshold():
    s, a = step(None, 0.59, T)
    assert a is None and s.state == "none" and s.last_risk == 0.59
    s, a = step(s, 0.6, T + 60)
    assert a is not None and a["state"] == "raised" and s.state == "raised"
    assert a["risk"] == 0.6 and a["risk_band"] == "high"
    assert a["expected_mrr_loss"] == pytest.approx(0.6 * 299.0, abs=0.01)
    assert a["priority"] == "P2"  # 179.4: P2 (>= 75, < 200)


def test_hysteresis_band_is_quiet():
    s, a = step(None, 0.7, T)
    assert a["state"] == "raised"
    for i, r in enumerate((0.5, 0.45, 0.41, 0.55, 0.65, 0.4)):
        s, a = step(s, r, T + 2 * DAY + i)
        assert a is None, r
        assert s.state == "raised"


def test_escalate_only_on_a_step_above_the_last_alerted_risk():
    s, a = step(None, 0.62, T)
    s, a = step(s, 0.71, T + 2 * DAY)
    assert a is None  # +0.09 < step
    s, a = step(s, 0.72, T + 2 * DAY + 1)
    assert a["state"] == "escalated" and s.alerted_risk == 0.72
    s, a = step(s, 0.8, T + 4 * DAY)
    assert a is None  # measured from the escalation, not the raise
    s, a = step(s, 0.83, T + 4 * DAY + 1)
    assert a["state"] == "escalated" and a["risk_band"] == "critical"


def test_resolve_below_lower_then_raise_again():
    s, a = step(None, 0.9, T)
    s, a = step(s, 0.39, T + 3 * DAY)
    assert a["state"] == "resolved" and a["reasons"] == [] and a["recommended_play"] == "none"
    assert s.state == "resolved" and not s.open
    s, a = step(s, 0.3, T + 4 * DAY)
    assert a is None  # nothing open: nothing to resolve
    s, a = step(s, 0.61, T + 5 * DAY)
    assert a["state"] == "raised"


# --------------------------------------------------------------------------------- cooldown


def test_cooldown_holds_back_raise_and_escalate_but_not_resolve():
    s, a = step(None, 0.65, T)
    assert a["state"] == "raised"
    s, a = step(s, 0.95, T + 3600)
    assert a is None and s.state == "raised"  # escalation inside the cooldown
    s, a = step(s, 0.2, T + 7200)
    assert a["state"] == "resolved"  # resolve is never held back
    s, a = step(s, 0.7, T + 3 * 3600)
    assert a is None and s.state == "resolved"  # re-raise inside the cooldown
    s, a = step(s, 0.7, T + DAY + 7200)
    assert a["state"] == "raised"
    s, a = step(s, 0.95, T + 2 * DAY + 7200)
    assert a["state"] == "escalated"


def test_cooldown_is_event_time_and_configurable():
    cfg = AlertConfig(cooldown_s=0.0)
    s, a = step(None, 0.65, T, cfg=cfg)
    s, a = step(s, 0.8, T + 1, cfg=cfg)
    assert a["state"] == "escalated"


# ------------------------------------------------------------------------------ value filter


def test_min_expected_loss_floor():
    s, a = step(None, 0.9, T, mrr=10.0)  # 9 < 10
    assert a is None and s.state == "none"
    s, a = step(s, 0.9, T + 60, mrr=12.0)  # 10.8 >= 10, play is success call (cost 20) -> still no
    assert a is None
    s, a = step(s, 0.9, T + 120, mrr=12.0, reasons=[("usage_trend", 0.5)])  # feature nudge costs 0.5
    assert a["state"] == "raised" and a["recommended_play"] == "feature_nudge"


def test_play_cost_above_expected_loss_is_not_alerted_and_costs_are_configurable():
    reasons = [("cancel_pending", 2.0)]  # save offer, cost 25
    s, a = step(None, 0.8, T, mrr=29.0, reasons=reasons)  # 23.2 < 25
    assert a is None
    cheap = AlertConfig(play_cost={**PLAY_COST, "save_offer": 5.0})
    s, a = step(None, 0.8, T, mrr=29.0, reasons=reasons, cfg=cheap)
    assert a["recommended_play"] == "save_offer" and a["priority"] == "P4"


def test_value_filter_does_not_block_resolve():
    s, a = step(None, 0.9, T, mrr=299.0)
    s, a = step(s, 0.1, T + 60, mrr=0.0)
    assert a["state"] == "resolved"


# ------------------------------------------------------------------------------- ids and dedupe


def test_alert_id_is_deterministic_for_a_redelivered_event():
    _, a1 = step(None, 0.7, T, event_id="ev-1", emitted_at=T + 5)
    _, a2 = step(None, 0.7, T, event_id="ev-1", emitted_at=T + 99)
    _, a3 = step(None, 0.7, T, event_id="ev-2")
    _, a4 = step(None, 0.7, T, event_id="ev-1", customer_id="c2")
    assert a1["alert_id"] == a2["alert_id"]
    assert len({a1["alert_id"], a3["alert_id"], a4["alert_id"]}) == 3
    # without an event id the event time identifies the trigger
    _, b1 = step(None, 0.7, T)
    _, b2 = step(None, 0.7, T)
    _, b3 = step(None, 0.7, T + 1)
    assert b1["alert_id"] == b2["alert_id"] != b3["alert_id"]


def test_same_trigger_different_state_has_different_id():
    s, raised = step(None, 0.7, T, event_id="ev-1")
    _, resolved = step(s, 0.1, T, event_id="ev-1")
    assert raised["alert_id"] != resolved["alert_id"]


def test_prev_state_is_not_mutated_and_round_trips_json():
    s, _ = step(None, 0.7, T)
    snapshot = s.to_dict()
    step(s, 0.1, T + 60)
    assert s.to_dict() == snapshot
    assert AlertState.from_dict(orjson.loads(orjson.dumps(s.to_dict()))) == s


# ------------------------------------------------------------------------------- content


def test_alert_fields_reasons_and_play():
    s, a = step(None, 0.75, T, event_id="e", model_version=7, scored_by="model", emitted_at=T + 1.5)
    assert list(a) == ["alert_id", "customer_id", "ts", "emitted_at", "trigger_event_id", "state", "risk", "risk_band", "mrr",
                       "expected_mrr_loss", "priority", "reasons", "recommended_play", "model_version", "scored_by"]
    assert a["ts"] == "2025-03-01T00:00:00Z" and a["emitted_at"] == "2025-03-01T00:00:01.500000Z"
    assert a["trigger_event_id"] == "e"
    assert [r["feature"] for r in a["reasons"]] == ["open_tickets", "usage_trend", "tenure_days"]
    assert a["reasons"][0] == {"feature": "open_tickets", "contribution": 0.4, "category": "customer_service"}
    assert a["recommended_play"] == "success_manager_call"
    assert (a["model_version"], a["scored_by"]) == (7, "model")


def test_play_skips_profile_reasons():
    reasons = normalise_reasons([("tenure_days", 0.9), ("failed_payments", 0.3)])
    _, a = step(None, 0.9, T, reasons=reasons)
    assert a["recommended_play"] == "dunning"


def test_every_feature_and_category_has_a_mapping():
    assert set(REASON_CATEGORY) == set(FEATURES)
    assert set(REASON_CATEGORY.values()) <= set(CATEGORIES)
    assert set(PLAYS) == set(CATEGORIES)
    assert set(PLAYS.values()) <= set(PLAY_COST)


def test_config_is_checked():
    with pytest.raises(ValueError):
        AlertConfig(upper=0.3, lower=0.5)


# ---------------------------------------------------------------------------------- schema


def test_produced_alerts_validate_against_the_schema():
    produced = []
    s, a = step(None, 0.75, T, event_id="e1", scored_by="model", model_version=3)
    produced.append(a)
    s, a = step(s, 0.9, T + 2 * DAY, event_id="e2")
    produced.append(a)
    s, a = step(s, 0.1, T + 3 * DAY, event_id="e3")
    produced.append(a)
    risk, factors = health_risk(dict(NEUTRAL, contractual=1.0, failed_payments=1.0, cancel_pending=1.0))
    _, a = step(None, risk, T, reasons=factors, mrr=99.0)
    produced.append(a)
    assert [a["state"] for a in produced] == ["raised", "escalated", "resolved", "raised"]
    for a in produced:
        validate(orjson.loads(orjson.dumps(a)))
    for example in _schema["examples"]:
        validate(example)


def test_schema_rejects_unknown_fields_and_bad_values():
    _, a = step(None, 0.75, T)
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validate({**a, "extra": 1})
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validate({**a, "risk": 1.5})
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validate({**a, "state": "open"})


# ---------------------------------------------------------------------------------- health


RULES = Rules()
T0 = parse_ts("2025-01-01T00:00:00Z")


def _life(collapse: bool, angry: bool):
    """90 days of daily use; then either more of the same or a collapse with angry tickets."""
    n = 0

    def ev(type_, day, **kw):
        nonlocal n
        n += 1
        return {"event_id": f"e{n}", "customer_id": "c", "type": type_, "_t": T0 + day * DAY,
                "ts": "x", **kw}

    evs = [ev("subscription_started", 0, plan="business", mrr=299.0)]
    evs += [ev("session", d + 0.4) for d in range(90)]
    evs += [ev("session", d + 0.4) for d in range(90, 120) if not collapse or d in (95, 101)]
    if angry:
        evs += [ev("ticket_opened", 100 + i, ticket_id=f"t{i}", priority="urgent", category="bug") for i in range(4)]
        evs += [ev("csat", 110, score=1), ev("nps", 111, score=2)]
    s = new_state("c")
    for e in sorted(evs, key=lambda e: e["_t"]):
        s, _ = apply(s, e, RULES)
    return features(s, T0 + 119.9 * DAY)


def test_collapsing_usage_and_angry_tickets_score_high_with_those_reasons():
    risk, factors = health_risk(_life(collapse=True, angry=True))
    assert risk >= 0.8
    names = [f for f, _, _ in factors]
    assert {"days_since_last_activity", "usage_trend", "open_tickets", "csat", "nps_detractor"} <= set(names)
    cats = {c for _, _, c in factors}
    assert {"customer_service", "inactivity", "product_fit", "user_experience"} <= cats
    contributions = [c for _, c, _ in factors]
    assert contributions == sorted(contributions, reverse=True) and all(c > 0 for c in contributions)


def test_healthy_customer_scores_low_and_signals_add_up():
    healthy, _ = health_risk(_life(collapse=False, angry=False))
    angry, _ = health_risk(_life(collapse=False, angry=True))
    both, _ = health_risk(_life(collapse=True, angry=True))
    assert healthy < 0.1 < angry < both


def test_health_factors_name_features_and_accept_partial_dicts():
    assert {name for name, _ in FACTORS} <= set(FEATURES)
    risk, factors = health_risk({"failed_payments": 1.0})
    assert risk > 0.3 and factors[0][0] == "failed_payments" and factors[0][2] == "payment"
    assert health_risk(NEUTRAL) == (0.0, [])
    full, _ = health_risk(dict(NEUTRAL, contractual=1.0, cancel_pending=1.0, failed_payments=1.0, dunning_days=14.0))
    assert full == 1.0  # capped


def test_sweep_alerts_have_no_trigger_event() -> None:
    _, a = step(None, 0.75, T, event_id=sweep_trigger(20000))
    assert a is not None and a["trigger_event_id"] is None
    _, again = step(None, 0.75, T, event_id=sweep_trigger(20000))
    assert again["alert_id"] == a["alert_id"]
