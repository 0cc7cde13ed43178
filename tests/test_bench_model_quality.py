"""bench/model_quality.py: its metrics, and one small replay per kind of scenario.

The bench is a script, not a test; these check that its figures mean what the
README says (AUC, top-decile lift, calibration), that every scenario runs
through it, and that BG/NBD is the extra scorer of purchase-only populations.
"""

from __future__ import annotations

import doctest
import importlib.util
import math
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "model_quality.py"


@pytest.fixture(scope="module")
def mq():
    spec = importlib.util.spec_from_file_location("model_quality", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_doctests(mq):
    res = doctest.testmod(mq)
    assert res.failed == 0 and res.attempted > 0


def test_metrics_on_known_inputs(mq):
    y = np.array([0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    perfect = y.astype(float)
    assert mq.auc(y, perfect) == 1.0 and mq.auc(y, -perfect) == 0.0
    assert mq.auc(y, np.zeros(len(y))) == 0.5  # all tied: chance
    assert mq.top_decile_lift(y, perfect) == pytest.approx(1.0 / 0.2)  # top 2 of 20 all churn; base 4/20
    assert mq.ece(y, perfect) == 0.0 and mq.brier(y, perfect) == 0.0
    # predicting the base rate everywhere is calibrated but ranks nothing
    base = np.full(len(y), y.mean())
    assert mq.ece(y, base) == pytest.approx(0.0) and mq.auc(y, base) == 0.5
    # an over-confident scorer: right ranking, bad calibration
    over = np.where(y, 0.9, 0.5)
    assert mq.auc(y, over) == 1.0 and mq.ece(y, over) == pytest.approx((16 * 0.5 + 4 * 0.1) / 20)


def args(**kw):
    a = dict(customers=120, days=120, seed=3, model="logreg", horizon=30.0, lead=0.0, min_labels=60,
             every=10, brief=True, quiet=True)
    return Namespace(**{**a, **kw})


def test_a_subscription_scenario_is_scored_by_model_rules_and_recency(mq, capsys):
    res = mq.run_scenario("support-trouble", args())
    out = capsys.readouterr().out
    assert "=== scenario support-trouble ===" in out
    m = res["scorers"]
    assert set(m) == {"model", "rules (health.py)", "recency (days inactive)"}
    for name, v in m.items():
        assert 0.0 <= v["roc_auc"] <= 1.0 and v["top_decile_lift"] >= 0.0, (name, v)
    assert math.isnan(m["recency (days inactive)"]["brier"])  # a rank, not a probability
    assert 0.0 <= m["model"]["ece"] <= 1.0


def test_purchase_only_runs_through_the_workers_processor_with_bgnbd(mq, capsys):
    res = mq.run_scenario("purchase-only", args(customers=300, days=150))
    assert res["labels"] > 1000  # buyer labels judged after the first BG/NBD fit
    m = res["scorers"]
    assert set(m) == {"model", "rules (health.py)", "recency (days inactive)", "BG/NBD p_no_purchase"}
    assert 0.0 <= m["BG/NBD p_no_purchase"]["brier"] <= 1.0 and 0.0 <= m["model"]["brier"] <= 1.0
    assert all(0.0 <= v["roc_auc"] <= 1.0 for v in m.values())
    assert "through the worker's processor" in capsys.readouterr().out


def test_all_scenarios_print_a_summary_and_write_valid_json(mq, capsys, tmp_path):
    import json

    out = tmp_path / "mq.json"
    assert mq.main(["--scenario", "all", "--customers", "150", "--days", "120", "--min-labels", "60",
                    "--quiet", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("model_quality: scenarios default, usage-decay, support-trouble, payment-price, purchase-only")
    assert "machine: " in text and "load average" in text and "settings: 150 customers, 120 days" in text
    assert "=== ROC AUC by scenario (snapshots after the model became ready) ===" in text
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert [r["scenario"] for r in data["results"]] == ["default", "usage-decay", "support-trouble",
                                                         "payment-price", "purchase-only"]
    assert data["settings"]["customers"] == 150
    assert data["results"][3]["scorers"]["recency (days inactive)"]["brier"] is None
