"""Prometheus rules and Alertmanager config: promtool/amtool checks, the
promtool unit tests, and the conventions every rule must follow.

Runs the real promtool and amtool (installed by install_tools.sh when
missing); skips only when they cannot be installed.
"""

from __future__ import annotations

import random
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from stream_app.domain import kpis
from stream_app.runtime.metrics import LEDGER_GAUGES

from tests.monitoring.tools import (
    EXTERNAL_METRICS,
    REPO,
    RULE_FILES,
    alerting_rules,
    exported_names,
    load_yaml,
    metric_names,
    recorded_names,
    recording_rules,
    runbook_anchors,
)

PROM_TESTS = sorted((REPO / "prometheus" / "tests").glob("*.yml"))
ALERTMANAGER = REPO / "alertmanager" / "alertmanager.yml"
RUNBOOK_BASE = "https://churnmon.example/docs/RUNBOOK.md#"
SEVERITIES = {"page", "ticket"}


def run(*cmd: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


# -- promtool / amtool -------------------------------------------------------------


def test_promtool_check_rules(tools):
    ok(run(tools.promtool, "check", "rules", *map(str, RULE_FILES)))


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_promtool_check_config(tools, config):
    # also loads and checks the rule files the config names
    ok(run(tools.promtool, "check", "config", str(REPO / "prometheus" / config)))


def test_local_config_reads_the_same_rules_and_job():
    prod = load_yaml(REPO / "prometheus" / "prometheus.yml")
    local = load_yaml(REPO / "prometheus" / "prometheus.local.yml")
    assert local["rule_files"] == prod["rule_files"]
    assert [j["job_name"] for j in local["scrape_configs"]] == ["churnmon"]  # the alert rules select job="churnmon"


@pytest.mark.parametrize("test_file", PROM_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(tools, test_file: Path):
    ok(run(tools.promtool, "test", "rules", str(test_file)))


def test_amtool_check_config(tools):
    ok(run(tools.amtool, "check-config", str(ALERTMANAGER)))


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "alertname=ChurnRateHigh", "service=churnmon"], "page"),
        (["severity=ticket", "alertname=ChurnRateHigh", "service=churnmon"], "ticket"),
        (["alertname=SomethingWithoutSeverity"], "ticket"),
    ],
)
def test_alertmanager_routes_by_severity(tools, labels, receiver):
    proc = run(tools.amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    ok(proc)
    assert proc.stdout.split() == [receiver]


def test_inhibition_rules_name_real_alerts():
    names = {r["alert"] for r in alerting_rules()}
    config = load_yaml(ALERTMANAGER)
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            m = re.fullmatch(r'alertname(=~|=)"(.*)"', matcher)
            if m:
                wanted = set(m.group(2).split("|"))
                assert wanted <= names, f"inhibit rule names unknown alerts: {wanted - names}"
    assert config["route"]["group_by"] == ["alertname"]


# -- conventions ---------------------------------------------------------------------


def test_every_alert_has_severity_annotations_and_a_runbook_section():
    anchors = runbook_anchors()
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["labels"]["service"] == "churnmon", name
        ann = rule["annotations"]
        for key in ("summary", "description", "runbook_url"):
            assert ann.get(key, "").strip(), f"{name}: annotation {key} missing"
        url = ann["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), f"{name}: runbook_url {url} is not {RUNBOOK_BASE}<anchor>"
        anchor = url[len(RUNBOOK_BASE):]
        assert anchor == name.lower(), f"{name}: runbook anchor should be #{name.lower()}"
        assert anchor in anchors, f"{name}: docs/RUNBOOK.md has no section #{anchor}"


def test_recording_rule_names_follow_level_metric_operations():
    seen = Counter()
    for rule in recording_rules():
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
        seen[(rule["record"], tuple(sorted((rule.get("labels") or {}).items())))] += 1
    assert not [k for k, n in seen.items() if n > 1], "duplicate recording rules"


def test_rules_read_only_metrics_that_exist():
    allowed = exported_names() | recorded_names() | set(EXTERNAL_METRICS)
    for rule in recording_rules() + alerting_rules():
        unknown = metric_names(rule["expr"]) - allowed
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads unknown metrics {unknown}"


def _test_files() -> list[dict]:
    return [load_yaml(p) for p in PROM_TESTS]


def test_every_alert_is_tested_firing_and_silent():
    fired: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for doc in _test_files():
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.update((check["alertname"], a["exp_labels"]["severity"]) for a in check["exp_alerts"])
                else:
                    silent.add(check["alertname"])
    for rule in alerting_rules():
        key = (rule["alert"], rule["labels"]["severity"])
        assert key in fired, f"no promtool test shows {key[0]} firing with severity {key[1]}"
        assert rule["alert"] in silent, f"no promtool test shows {rule['alert']} staying silent"


def test_every_recording_rule_is_tested():
    tested: set[str] = set()
    for doc in _test_files():
        for case in doc["tests"]:
            for check in case.get("promql_expr_test", []):
                tested |= metric_names(check["expr"])
    # read by tested alerts, or cross-checked against stream_app.domain.kpis below
    for rule in alerting_rules():
        tested |= metric_names(rule["expr"])
    tested |= {name.format(w=w) for name in KPI_RULES.values() for w in WINDOWS}
    untested = recorded_names() - tested
    assert not untested, f"recording rules without a test: {sorted(untested)}"


# -- the recording rules compute what stream_app.domain.kpis computes ---------------------------

WINDOWS = ("30d", "90d")
# kpis.figures key -> recording rule ({w} = window)
KPI_RULES = {
    "customers": "churn:customers_active:sum",
    "mrr": "churn:mrr:sum",
    "arpa": "churn:arpa:ratio",
    "stickiness": "churn:stickiness:ratio",
    "customers_start": "churn:customers_start:{w}",
    "customers_lost": "churn:customers_lost:{w}",
    "mrr_lost": "churn:mrr_lost:{w}",
    "customer_churn_rate": "churn:customer_churn_rate:{w}",
    "stripe_rolling_churn": "churn:stripe_rolling_churn_rate:{w}",
    "mrr_churn_rate": "churn:mrr_churn_rate:{w}",
    "gross_mrr_churn": "churn:gross_mrr_churn_rate:{w}",
    "net_mrr_churn": "churn:net_mrr_churn_rate:{w}",
    "net_revenue_retention": "churn:net_revenue_retention:{w}",
    "quick_ratio": "churn:quick_ratio:{w}",
    "ltv": "churn:ltv:{w}",
    "annualised_churn": "churn:annualised_churn_rate:{w}",
    "repeat_customer_rate": "churn:repeat_customer_rate:{w}",
    "purchase_frequency": "churn:purchase_frequency:{w}",
}


def _ledgers() -> list[dict]:
    """Summed ledger values (kpis.Series -> value): hand-picked edge cases and random fleets."""
    plans = ("basic", "pro", "none")
    kinds = kpis.MOVEMENT_KINDS

    def ledger(rng: random.Random, *, empty_start: bool = False, kinds_present=kinds, buyers: bool = True) -> dict:
        v: dict = {}
        for plan in plans:
            v[("active", plan)] = float(rng.randint(0, 400))
            v[("mrr", plan)] = 0.0 if plan == "none" else round(rng.uniform(0, 40000), 2)
        for w in (30, 90):
            start = 0.0 if empty_start else float(rng.randint(50, 800))
            v[("start", w)] = start
            v[("lost", w)] = float(rng.randint(0, int(start) // 4)) if start else 0.0
            v[("churned", w)] = v[("lost", w)] + rng.randint(0, 20)
            v[("new", w)] = float(rng.randint(0, 200))
            v[("mrr_start", w)] = 0.0 if empty_start else round(rng.uniform(1000, 50000), 2)
            v[("mrr_lost", w)] = round(rng.uniform(0, v[("mrr_start", w)] / 5), 2)
            for kind in kinds_present:
                v[("move", w, kind)] = round(rng.uniform(0, 5000), 2)
            purchasing = float(rng.randint(1, 300)) if buyers else 0.0
            v[("purchasers", w)] = purchasing
            v[("repeat", w)] = float(rng.randint(0, int(purchasing)))
            v[("purchases", w)] = purchasing + v[("repeat", w)] + rng.randint(0, 200) if buyers else 0.0
        v[("mau",)] = float(rng.randint(1, 900))
        v[("active_days",)] = float(rng.randint(0, int(v[("mau",)]) * 30))
        v[("dau",)] = float(rng.randint(0, int(v[("mau",)])))
        v[("forgettable",)] = float(rng.randint(0, 50))
        return v

    rng = random.Random(20250501)
    cases = [ledger(rng) for _ in range(4)]
    cases.append(ledger(rng, empty_start=True))  # no base: rates absent, as kpis returns None
    cases.append(ledger(rng, kinds_present=("new", "churn")))  # kinds not seen yet have no series
    cases.append(ledger(rng, kinds_present=("new", "expansion")))  # no losses: quick ratio absent
    zero = ledger(rng)
    zero.update({k: 0.0 for k in zero if k[0] == "lost"})  # no churn: LTV absent
    cases.append(zero)
    cases.append(ledger(rng, buyers=False))  # nobody bought: no repeat rate, no frequency
    return cases


def _input_series(v: dict) -> list[dict]:
    """The ledger split over two workers, as their /metrics would show it."""
    series = []
    for key, value in sorted(v.items(), key=repr):
        name = LEDGER_GAUGES[key[0]][0]
        if key[0] in ("active", "mrr"):
            labels = f'plan="{key[1]}"'
        elif key[0] == "move":
            labels = f'window="{key[1]}d", kind="{key[2]}"'
        elif len(key) == 2:
            labels = f'window="{key[1]}d"'
        else:
            labels = ""
        share = round(value * 0.6, 6)
        for worker, part in (("w1", share), ("w2", value - share)):
            sep = ", " if labels else ""
            series.append({"series": f'{name}{{instance="{worker}"{sep}{labels}}}', "values": f"{part!r}x5"})
    return series


def _checks(v: dict) -> list[dict]:
    checks = []
    for w in WINDOWS:
        fig = kpis.figures(v, int(w[:-1]))
        for key, rule in KPI_RULES.items():
            name = rule.format(w=w)
            expected = fig[key]
            if expected is None:
                checks.append({"expr": name, "eval_time": "2m", "exp_samples": []})
                continue
            tol = 1e-9 * max(1.0, abs(expected))
            checks.append({
                "expr": f"abs({name} - ({expected!r})) <= bool {tol!r}",
                "eval_time": "2m",
                "exp_samples": [{"labels": "{}", "value": 1}],
            })
    return checks


def test_recording_rules_match_kpis(tools, tmp_path):
    """Every windowed figure of the recording rules equals stream_app.domain.kpis.figures
    on the same ledger values (the worker's terminal view uses kpis)."""
    doc = {
        "rule_files": [str(REPO / "prometheus" / "rules" / "recording.yml")],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": _input_series(v), "promql_expr_test": _checks(v)} for v in _ledgers()],
    }
    path = tmp_path / "kpis_test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    ok(run(tools.promtool, "test", "rules", str(path)))
