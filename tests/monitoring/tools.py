"""Shared helpers of the monitoring tests: where the Prometheus tools are, and
which metric names a PromQL expression reads.

No third-party PromQL parser: `metric_names` is a small tokenizer that is
right for the expressions this project writes (selectors, aggregations,
functions, binary operators, label lists); the tests also run every
expression through `promtool check rules`, which parses real PromQL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = Path(__file__).resolve().with_name("install_tools.sh")
RULE_FILES = [REPO / "prometheus" / "rules" / "recording.yml", REPO / "prometheus" / "rules" / "alerts.yml"]

# Metrics the rules may read that the worker does not export.
EXTERNAL_METRICS = {
    "up": "written by Prometheus for every scrape target",
    "kafka_consumergroup_lag": "danielqsj/kafka-exporter (docker-compose.yml)",
}


@dataclass(frozen=True)
class Tools:
    promtool: str
    prometheus: str
    alertmanager: str
    amtool: str


def find_tools() -> Tools | None:
    names = {
        "promtool": ["promtool"],
        "prometheus": ["prometheus"],
        "alertmanager": ["prometheus-alertmanager", "alertmanager"],
        "amtool": ["amtool"],
    }
    found = {}
    for key, candidates in names.items():
        path = next((p for p in map(shutil.which, candidates) if p), None)
        if path is None:
            return None
        found[key] = path
    return Tools(**found)


def ensure_tools() -> tuple[Tools | None, str]:
    """The tools, installing them with install_tools.sh if missing (root only).

    Returns (tools, "") or (None, why not).
    """
    tools = find_tools()
    if tools is not None:
        return tools, ""
    if os.geteuid() != 0:
        return None, f"prometheus/promtool/alertmanager/amtool missing and not root: run {INSTALL_SCRIPT} as root"
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900)
    tools = find_tools()
    if tools is None:
        return None, f"{INSTALL_SCRIPT} could not install the tools (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
    return tools, ""


# -- PromQL -----------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBERS = re.compile(r"(?<![A-Za-z0-9_:])(?:0x[0-9a-fA-F]+|[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?[a-zA-Z]*)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "atan2", "inf", "nan", "start", "end"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects.

    >>> sorted(metric_names('sum by (kind) (rate(a_total{kind=~"x|y"}[5m])) / on () (b > 0) or vector(0)'))
    ['a_total', 'b']
    >>> sorted(metric_names('histogram_quantile(0.99, sum(rate(h_bucket[5m])) by (le)) > bool 1e-3'))
    ['h_bucket']
    >>> sorted(metric_names('1 - (1 - churn:x:30d) ^ (1 / 3)'))
    ['churn:x:30d']
    """
    s = _STRINGS.sub('""', expr)
    while True:  # nested braces do not occur in selectors, but be safe
        t = _MATCHERS.sub(" ", s)
        if t == s:
            break
        s = t
    s = _RANGES.sub(" ", s)
    s = _LABEL_LISTS.sub(" ", s)
    s = _NUMBERS.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        token = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if token.lower() in _KEYWORDS:
            continue
        names.add(token)
    return names


def exported_names() -> set[str]:
    """Every series name the worker exposes, from stream_app.runtime.metrics.REFERENCE.

    REFERENCE learns the counters and the histogram when a `Metrics` is built
    (their `_doc` calls run in its constructor), so build one on its own registry.
    """
    from prometheus_client import CollectorRegistry

    from stream_app.runtime.metrics import REFERENCE, Metrics

    Metrics(CollectorRegistry())

    names = set()
    for name, (kind, _labels, _help) in REFERENCE.items():
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        if kind == "summary":
            names.update(f"{name}{suffix}" for suffix in ("_sum", "_count"))
    return names


def load_yaml(path: Path):
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def recording_rules() -> list[dict]:
    doc = load_yaml(REPO / "prometheus" / "rules" / "recording.yml")
    return [r for g in doc["groups"] for r in g["rules"] if "record" in r]


def alerting_rules() -> list[dict]:
    doc = load_yaml(REPO / "prometheus" / "rules" / "alerts.yml")
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def recorded_names() -> set[str]:
    return {r["record"] for r in recording_rules()}


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading.

    >>> github_anchor("ChurnRateHigh")
    'churnratehigh'
    >>> github_anchor("Worker down: what now?")
    'worker-down-what-now'
    """
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = (REPO / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


# -- real processes -------------------------------------------------------------------


class WebhookReceiver:
    """An Alertmanager webhook endpoint on 127.0.0.1, served from a thread.

    Every POST is kept as (path, payload); `alerts()` flattens them to
    (path, status, labels) per alert.
    """

    def __init__(self) -> None:
        import json as _json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []
        lock = self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append((self.path, _json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def alerts(self) -> list[tuple[str, str, dict]]:
        with self.lock:
            return [(path, a["status"], a["labels"]) for path, payload in self.received for a in payload["alerts"]]

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def alertmanager_config_for_test(receiver: WebhookReceiver, *, wait: str = "1s") -> dict:
    """The real alertmanager/alertmanager.yml with its webhooks pointed at `receiver`
    and its grouping timers shortened; routes and inhibitions untouched."""
    config = load_yaml(REPO / "alertmanager" / "alertmanager.yml")
    for r in config["receivers"]:
        for hook in r.get("webhook_configs", []):
            hook["url"] = receiver.url("/" + r["name"])
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        route["group_wait"] = wait
        route["group_interval"] = wait
    return config


def wait_http(url: str, proc, timeout: float = 60) -> None:
    """Until `url` answers 200; an AssertionError with the log of `proc` (a
    `stream_app.tools.harness.Proc`) if it exits first or the time runs out."""
    import urllib.request

    from stream_app.tools.harness import wait_for

    def ready() -> bool:
        proc.check()
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200

    wait_for(ready, timeout, f"{url} to answer 200", proc, every=0.2)
