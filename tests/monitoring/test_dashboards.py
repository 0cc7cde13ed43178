"""Grafana dashboards: generated, valid against Grafana's dashboard model, and
querying only metrics that exist.

The committed JSON under grafana/dashboards/ must be exactly what
grafana/build_dashboards.py produces, and must read back through
grafana-foundation-sdk's model (generated from Grafana's own schemas) without
losing or changing a key; units must be Grafana's unit ids (the SDK's list);
every query must read a metric the worker exports
(stream_app.runtime.metrics.REFERENCE, with histogram suffixes) or a
recording rule of prometheus/rules/recording.yml, and must parse as PromQL
(checked with promtool).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import os
import subprocess
import sys
from itertools import product

import pytest
import yaml
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as sdk_dashboard
from grafana_foundation_sdk.models import units

from tests.monitoring.tools import REPO, exported_names, metric_names, recorded_names

DASHBOARD_DIR = REPO / "grafana" / "dashboards"
PANEL_TYPES = {"row", "stat", "gauge", "timeseries", "bargauge", "barchart", "table", "text", "piechart", "heatmap", "state-timeline"}
# Grafana's unit ids (its valueFormats), as the SDK lists them, plus its custom-unit prefixes.
GRAFANA_UNITS = {v for k, v in vars(units).items() if not k.startswith("_") and isinstance(v, str)}
CUSTOM_UNIT_PREFIXES = ("prefix:", "suffix:", "si:", "count:", "currency:", "time:", "bool")
GRAFANA_BUILTIN_VARS = {"__range", "__range_s", "__range_ms", "__interval", "__interval_ms", "__rate_interval", "__from", "__to"}
REQUIRED_KEYS = {"uid", "title", "panels", "schemaVersion", "templating", "time", "tags", "annotations", "editable", "version", "refresh", "timezone"}


def _generator():
    spec = importlib.util.spec_from_file_location("build_dashboards", REPO / "grafana" / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
FILES = sorted(DASHBOARD_DIR.glob("*.json"))


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return out


def _queries(d: dict) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and query variable."""
    out = [(f"panel {p['title']!r}", t["expr"]) for p in _panels(d) if p["type"] != "row" for t in p["targets"]]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", q)
            out.append((f"variable {v['name']}", m.group(1) if m else q))
    return out


def _expansions(d: dict, expr: str) -> list[str]:
    """The expression with every template variable replaced, once per value of each."""
    values: dict[str, list[str]] = {name: ["5m"] for name in GRAFANA_BUILTIN_VARS}
    for v in d["templating"]["list"]:
        if v["type"] == "custom":
            values[v["name"]] = [o["value"] for o in v["options"]]
        elif v["type"] == "query":
            values[v["name"]] = [v.get("allValue") or ".*"]
        else:
            values[v["name"]] = ["x"]
    used = sorted(set(re.findall(r"\$\{?(\w+)\}?", expr)))
    unknown = [u for u in used if u not in values]
    assert not unknown, f"{expr!r} uses undefined template variables {unknown}"
    out = []
    for combo in product(*(values[u] for u in used)):
        e = expr
        for name, value in zip(used, combo):
            e = re.sub(r"\$\{" + name + r"\}|\$" + name + r"\b", value, e)
        out.append(e)
    return out


# -- generated, committed, in sync ------------------------------------------------------


def test_committed_json_is_what_the_generator_writes():
    built = GEN.build()
    assert sorted(built) == [p.name for p in FILES], "grafana/dashboards/ and DASHBOARDS list different files"
    for path in FILES:
        assert path.read_text(encoding="utf-8") == built[path.name], (
            f"{path.name} is stale: run python grafana/build_dashboards.py"
        )


def test_json_has_sorted_keys():
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n", path.name


def test_check_exits_1_when_the_json_is_stale(tmp_path, capsys):
    assert GEN.main(["--out", str(tmp_path)]) == 0
    assert GEN.main(["--check", "--out", str(tmp_path)]) == 0
    edited = tmp_path / "pipeline-health.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace('"Workers up"', '"Workers"', 1), encoding="utf-8")
    (tmp_path / "model-quality.json").unlink()
    assert GEN.main(["--check", "--out", str(tmp_path)]) == 1
    assert "stale dashboards (run python grafana/build_dashboards.py): pipeline-health.json, model-quality.json" in capsys.readouterr().err


def _mypy(path) -> subprocess.CompletedProcess:
    """mypy over a file that uses the SDK, errors inside the SDK itself not reported, no cache written."""
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", f"--cache-dir={os.devnull}", "--follow-imports=silent",
                           "--no-error-summary", str(path)], capture_output=True, text=True, timeout=300)


def test_generator_type_checks_against_the_sdk():
    """The builders are typed (enums for every choice, ints for sizes): mypy checks every call the generator makes."""
    proc = _mypy(REPO / "grafana" / "build_dashboards.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_type_check_refuses_a_wrong_option(tmp_path):
    """The check above can fail: a string where the SDK wants its enum, and a misspelt option."""
    bad = tmp_path / "bad_panel.py"
    bad.write_text("from grafana_foundation_sdk.builders import timeseries\n"
                   "from grafana_foundation_sdk.models import common\n"
                   "timeseries.Panel().show_points(\"never\").orientatoin(common.VizOrientation.AUTO)\n", encoding="utf-8")
    proc = _mypy(bad)
    assert proc.returncode == 1
    assert 'incompatible type "str"; expected "VisibilityMode"' in proc.stdout, proc.stdout
    assert 'has no attribute "orientatoin"' in proc.stdout, proc.stdout


def test_one_function_per_dashboard():
    assert GEN.DASHBOARDS["churn-overview.json"] is GEN.churn_overview
    assert GEN.DASHBOARDS["pipeline-health.json"] is GEN.pipeline_health
    assert GEN.DASHBOARDS["at-risk-customers.json"] is GEN.at_risk_customers
    assert GEN.DASHBOARDS["model-quality.json"] is GEN.model_quality
    assert len(set(GEN.DASHBOARDS.values())) == len(GEN.DASHBOARDS)


# -- Grafana's dashboard model ---------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_model(path):
    d = _load(path)
    assert REQUIRED_KEYS <= set(d), f"missing {REQUIRED_KEYS - set(d)}"
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"])
    assert d["title"].strip()
    assert "churnmon" in d["tags"]
    assert d["editable"] is False, "provisioned dashboards are generated: not editable in the UI"
    assert {"from", "to"} <= set(d["time"])
    assert d.get("id") is None, "provisioned dashboards must not carry a database id"
    names = [v["name"] for v in d["templating"]["list"]]
    assert "datasource" in names and len(names) == len(set(names))


def _lost(written, read, path=""):
    """Paths of `written` that `read` dropped or changed (keys `read` adds are the model's defaults)."""
    if isinstance(written, dict) and isinstance(read, dict):
        out = []
        for k, v in written.items():
            out += _lost(v, read[k], f"{path}/{k}") if k in read else [f"{path}/{k} dropped"]
        return out
    if isinstance(written, list) and isinstance(read, list) and len(written) == len(read):
        return [x for i, (a, b) in enumerate(zip(written, read)) for x in _lost(a, b, f"{path}[{i}]")]
    return [] if written == read else [f"{path}: {written!r} read back as {read!r}"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_json_reads_back_through_grafanas_model(path):
    """A key outside Grafana's dashboard or panel model (a typo, a hand edit, an option of another
    Grafana version) is dropped when grafana-foundation-sdk decodes the file. Values are not
    type-checked by the decoding (the builders' typed signatures are the check when generating)."""
    plugins.register_default_plugins()  # decode each panel's options by its type
    written = _load(path)
    read = json.loads(json.dumps(sdk_dashboard.Dashboard.from_json(written), cls=JSONEncoder))
    lost = _lost(written, read)
    assert not lost, f"{path.name}: not in Grafana's model: {lost}"


def test_lost_finds_a_key_outside_the_model():
    """The check above can fail: a misspelt panel option is dropped by the model."""
    plugins.register_default_plugins()
    d = _load(DASHBOARD_DIR / "pipeline-health.json")
    stat = next(p for p in d["panels"] if p["type"] == "stat")
    stat["options"]["colourMode"] = stat["options"].pop("colorMode")
    read = json.loads(json.dumps(sdk_dashboard.Dashboard.from_json(d), cls=JSONEncoder))
    i = d["panels"].index(stat)
    assert _lost(d, read) == [f"/panels[{i}]/options/colourMode dropped"]


def test_sdk_flavour_is_the_grafana_of_docker_compose():
    """The SDK is published once per Grafana minor (version EPOCH!MAJOR.MINOR.0); its model must be
    the one of the Grafana that loads the dashboards."""
    flavour = importlib.metadata.version("grafana-foundation-sdk").split("!")[-1]
    image = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]["image"]
    assert image.startswith("grafana/grafana:")
    assert flavour.split(".")[:2] == image.split(":")[1].split(".")[:2], (flavour, image)


def test_uids_and_titles_unique():
    dashboards = [_load(p) for p in FILES]
    uids = [d["uid"] for d in dashboards]
    titles = [d["title"] for d in dashboards]
    assert len(uids) == len(set(uids)) and len(titles) == len(set(titles))


def test_overview_variables():
    d = _load(DASHBOARD_DIR / "churn-overview.json")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert {"datasource", "plan", "window"} <= set(variables)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert [o["value"] for o in variables["window"]["options"]] == ["30d", "90d"]
    assert variables["plan"]["includeAll"] and variables["plan"]["multi"]


def test_at_risk_variables_and_recording_rules():
    d = _load(DASHBOARD_DIR / "at-risk-customers.json")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert set(variables) == {"datasource", "band"}
    assert [o["value"] for o in variables["band"]["options"]] == ["low", "medium", "high", "critical"]
    assert variables["band"]["includeAll"] and variables["band"]["allValue"] == ".*"
    exprs = [t["expr"] for p in _panels(d) if p["type"] != "row" for t in p["targets"]]
    # the fleet sums come from the churn.risk.rules recording group, not from raw gauges
    for rule in ("band:churn_at_risk_customers:sum", "band:churn_at_risk_mrr:sum", "churn:expected_mrr_loss:sum", "churn:high_risk_mrr:ratio"):
        assert any(rule in e for e in exprs), rule
    read = set().union(*map(metric_names, exprs))
    assert not read & {"churn_at_risk_customers", "churn_at_risk_mrr", "churn_expected_mrr_loss"}


def test_every_model_metric_is_on_the_model_dashboard():
    d = _load(DASHBOARD_DIR / "model-quality.json")
    read = set().union(*(metric_names(t["expr"]) for p in _panels(d) if p["type"] != "row" for t in p["targets"]))
    wanted = {n for n in exported_names() if n.startswith("churn_model_")} | {"churn_training_examples_total"}
    assert wanted - {"churn_model_calibration"} <= read, sorted(wanted - read)
    assert "churn:model_calibration_error:avg" in read
    exprs = " ".join(t["expr"] for p in _panels(d) if p["type"] != "row" for t in p["targets"])
    for metric in ("roc_auc", "log_loss", "brier", "top_decile_lift"):
        assert f'metric="{metric}"' in exprs, metric
    for stat in ("mean_predicted", "observed_rate", "count"):
        assert f'stat="{stat}"' in exprs, stat


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_panels(path):
    d = _load(path)
    panels = _panels(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in panels:
        where = f"{path.name}: panel {p.get('title')!r}"
        assert p["type"] in PANEL_TYPES, f"{where}: unknown type {p['type']}"
        assert p["title"].strip(), where
        g = p["gridPos"]
        assert set(g) == {"h", "w", "x", "y"} and all(isinstance(v, int) for v in g.values()), where
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0 and g["x"] + g["w"] <= 24, where
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not (mine & cells), f"{where}: overlaps another panel"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert p["targets"], f"{where}: no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"{where}: duplicate refId"
        for t in p["targets"]:
            assert isinstance(t.get("expr"), str) and t["expr"].strip(), f"{where}: target without expr"
            assert t["datasource"] == p["datasource"], where
        unit = p["fieldConfig"]["defaults"].get("unit")
        assert unit, f"{where}: no unit"
        assert unit in GRAFANA_UNITS or unit.startswith(CUSTOM_UNIT_PREFIXES), f"{where}: unknown unit {unit!r}"


# -- the queries ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_queries_read_only_exported_or_recorded_metrics(path):
    d = _load(path)
    allowed = exported_names() | recorded_names()
    for where, expr in _queries(d):
        for e in _expansions(d, expr):
            unknown = metric_names(e) - allowed
            assert not unknown, f"{path.name} {where}: {e!r} reads {sorted(unknown)}, which neither the worker exports nor a recording rule defines"


def test_queries_parse_as_promql(tools, tmp_path):
    """promtool parses every expanded query (as a recording rule expression)."""
    rules = []
    for path in FILES:
        d = _load(path)
        for _where, expr in _queries(d):
            rules += [{"record": f"dashboard:check:{len(rules)}", "expr": e} for e in _expansions(d, expr)]
    f = tmp_path / "dashboard_queries.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    proc = subprocess.run([tools.promtool, "check", "rules", str(f)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- provisioning -----------------------------------------------------------------------------


def test_provisioning_points_at_the_dashboards():
    ds = yaml.safe_load((REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090" and source["isDefault"]
    prov = yaml.safe_load((REPO / "grafana" / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.split(":")[:2] == ["./grafana/dashboards", path] for m in mounts), f"docker-compose does not mount grafana/dashboards at {path}"
