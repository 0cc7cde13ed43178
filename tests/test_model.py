"""ChurnModel and Quality: pure scoring, fallback, explanations, live metrics (persistence: test_snapshots.py)."""

from __future__ import annotations

import math
import pickle
import random

import pytest
from river import compose

from stream_app.risk.alerts import REASON_CATEGORY
from stream_app.risk.features import FEATURES, NEUTRAL
from stream_app.risk.model import ChurnModel, Quality, with_health_factors


def sample(rnd: random.Random, churn: bool) -> dict[str, float]:
    """A synthetic feature dict where churners go quiet and complain."""
    x = dict(NEUTRAL)
    x.update(contractual=1.0, mrr=rnd.choice((29.0, 99.0, 299.0)), tenure_days=rnd.uniform(0, 400))
    if churn:
        x.update(days_since_last_activity=rnd.uniform(5, 30), usage_trend=rnd.uniform(0.05, 0.7),
                 open_tickets=float(rnd.randint(0, 4)), usage_7d=float(rnd.randint(0, 3)))
    else:
        x.update(days_since_last_activity=rnd.uniform(0, 6), usage_trend=rnd.uniform(0.6, 1.6),
                 open_tickets=float(rnd.randint(0, 1)), usage_7d=float(rnd.randint(2, 15)))
    return x


def trained(kind: str = "logreg", n: int = 1500, min_labels: int = 100, seed: int = 1) -> ChurnModel:
    rnd = random.Random(seed)
    m = ChurnModel(kind, min_labels=min_labels)
    for _ in range(n):
        y = rnd.random() < 0.2
        m.learn(sample(rnd, y), y)
    return m


def scaler_state(m: ChurnModel) -> bytes:
    """Everything before the classifier (the scaler sits inside a union)."""
    transformers = list(m.pipeline.steps.values())[:-1]
    blob = pickle.dumps(transformers)
    assert b"StandardScaler" in blob
    return blob


# -------------------------------------------------------------------- pure inference


def test_scoring_does_not_move_the_scaler():
    m = trained(n=300)
    before = scaler_state(m)
    rnd = random.Random(9)
    for _ in range(50):
        m.score(sample(rnd, True))
    assert scaler_state(m) == before


def test_scoring_is_pure_even_inside_learn_during_predict():
    """river can be switched to learn during predict; scoring must not follow."""
    m = trained(n=300)
    before = scaler_state(m)
    x = sample(random.Random(3), True)
    with compose.learn_during_predict():
        a = m.score(x)
        b = m.score(x)
    assert a == b and scaler_state(m) == before


def test_score_is_a_probability_and_learning_separates():
    m = trained()
    rnd = random.Random(42)
    pos = [m.score(sample(rnd, True)) for _ in range(200)]
    neg = [m.score(sample(rnd, False)) for _ in range(200)]
    assert all(0.0 <= p <= 1.0 for p in pos + neg)
    wins = sum(p > q for p, q in zip(pos, neg))
    assert wins / 200 > 0.8


def test_score_matches_the_river_pipeline():
    """`score` sums the logit itself (exactly); it must still be river's model."""
    m = trained()
    rnd = random.Random(6)
    for _ in range(50):
        x = sample(rnd, rnd.random() < 0.5)
        assert m.score(x) == pytest.approx(m.pipeline.predict_proba_one(x)[True], rel=1e-12, abs=1e-15)


# --------------------------------------------------------------------- readiness and fallback


def test_ready_needs_min_labels_of_both_classes():
    m = ChurnModel(min_labels=3)
    x = dict(NEUTRAL)
    for _ in range(5):
        m.learn(x, False)
    assert not m.ready  # no positive yet
    m.learn(x, True)
    assert m.ready and m.labels_seen == 6 and m.positives == 1


def test_assess_uses_rules_until_ready_then_model():
    rnd = random.Random(7)
    x = sample(rnd, True)
    x.update(open_tickets=4.0, csat=1.0, csat_known=1.0)
    m = ChurnModel(min_labels=1000)
    a = m.assess(x)
    assert a.scored_by == "rules"
    assert {"open_tickets", "csat"} <= {r[0] for r in a.reasons}
    m = trained(min_labels=100)
    a = m.assess(x)
    assert a.scored_by == "model" and a.risk == m.score(x)
    assert a.reasons and all(c > 0 for _, c, _ in a.reasons)
    assert all(cat == REASON_CATEGORY[f] for f, _, cat in a.reasons)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        ChurnModel("svm")


# -------------------------------------------------------------------------- explanations


def test_linear_contributions_are_exact_and_named_by_feature():
    m = trained()
    x = sample(random.Random(11), True)
    contrib = m.contributions(x)
    names = [k for k, _ in contrib]
    assert set(names) <= set(FEATURES)  # health-factor inputs fold into their feature
    lr = list(m.pipeline.steps.values())[-1]
    logit = sum(c for _, c in contrib) + lr.intercept
    p = m.score(x)
    assert logit == pytest.approx(math.log(p / (1 - p)), rel=1e-6, abs=1e-6)
    assert [c for _, c in contrib] == sorted((c for _, c in contrib), reverse=True)


def test_health_factor_inputs_are_added_not_replacing():
    x = sample(random.Random(1), True)
    z = with_health_factors(x)
    assert all(z[k] == v for k, v in x.items())
    assert any(k.startswith("hf_") for k in z)
    assert with_health_factors({"open_tickets": 5.0})["hf_open_tickets"] > 0  # partial dicts work


def test_forest_learns_scores_and_explains_by_perturbation():
    m = trained("arf", n=800)
    x = sample(random.Random(2), True)
    p = m.score(x)
    assert 0.0 <= p <= 1.0
    contrib = dict(m.contributions(x))
    assert set(contrib) == set(FEATURES)
    assert contrib["mrr"] == pytest.approx(p - m.score({**x, "mrr": NEUTRAL["mrr"]}))


# ----------------------------------------------------------------------------- quality


def test_quality_perfect_and_random_scores():
    q = Quality(window=500)
    rnd = random.Random(0)
    for _ in range(2000):
        y = rnd.random() < 0.1
        q.update(y, rnd.uniform(0.6, 1.0) if y else rnd.uniform(0.0, 0.4))
    r = q.report()
    assert r["roc_auc"] > 0.95 and r["roc_auc_rolling"] == pytest.approx(1.0)
    assert r["top_decile_lift"] > 8.0
    assert r["labels"] == 2000 and 150 < r["positives"] < 250
    assert sum(b["count"] for b in r["calibration"]) == 2000

    q = Quality(window=500)
    for _ in range(3000):
        q.update(rnd.random() < 0.1, rnd.random())
    r = q.report()
    assert 0.4 < r["roc_auc"] < 0.6 and 0.4 < r["roc_auc_rolling"] < 0.6


def test_quality_brier_logloss_and_calibration_bins():
    q = Quality(bins=10)
    for y, p in ((True, 0.95), (False, 0.05), (True, 0.15), (False, 0.12)):
        q.update(y, p)
    r = q.report()
    assert r["brier"] == pytest.approx((0.05**2 + 0.05**2 + 0.85**2 + 0.12**2) / 4)
    expected_ll = -(math.log(0.95) + math.log(0.95) + math.log(0.15) + math.log(0.88)) / 4
    assert r["log_loss"] == pytest.approx(expected_ll, rel=1e-6)
    bins = r["calibration"]
    assert bins[1]["count"] == 2 and bins[1]["observed_rate"] == 0.5
    assert bins[1]["mean_predicted"] == pytest.approx(0.135)
    assert bins[9]["count"] == 1 and bins[9]["observed_rate"] == 1.0


def test_quality_flags_drift_when_the_model_goes_wrong():
    q = Quality()
    rnd = random.Random(4)
    for _ in range(3000):  # a good model
        y = rnd.random() < 0.1
        q.update(y, 0.8 if y else 0.05)
    assert q.drift_events == 0
    for _ in range(3000):  # the world changed: same scores, now wrong
        y = rnd.random() < 0.1
        q.update(not y, 0.8 if y else 0.05)
    assert q.drift_events >= 1


def test_quality_daily_drift_ignores_label_bursts_but_sees_a_real_change():
    """Bursts of one class (a churn's positives, a day's expiry) are not drift;
    a model that got worse at separating the classes is."""
    q = Quality()
    rnd = random.Random(8)
    day = 86400.0
    for d in range(200):
        # one day: a burst of 30 positives of one churned customer, then 500 negatives
        p_burst = rnd.uniform(0.3, 0.9)
        for _ in range(30):
            q.update(True, p_burst, d * day + 100)
        for _ in range(500):
            q.update(False, rnd.uniform(0.0, 0.1), d * day + 200)
    assert q.drift_events == 0
    for d in range(200, 300):  # the world changed: negatives now look like churners
        for _ in range(30):
            q.update(True, rnd.uniform(0.3, 0.9), d * day + 100)
        for _ in range(500):
            q.update(False, rnd.uniform(0.3, 0.9), d * day + 200)
    q.flush()
    assert q.drift_events >= 1
