"""End to end, real processes only: a churn spike pages on-call.

embedded broker -> worker (python -m stream_app worker) -> /metrics
  -> prometheus (scrapes every 1 s, the real recording and alerting rules,
     evaluated every 1 s)
  -> alertmanager (the real routes and inhibitions; group_wait 1 s)
  -> a webhook receiver in this test.

The spike: 100 customers subscribed 60 days ago; 30 of them cancel in the
last two hours. The 30-day customer churn rate becomes 30 %, above the 10 %
page threshold of ChurnRateHigh; its `for: 1m` is the bulk of the wait. No
rule is overridden.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.parse
import urllib.request

import orjson
import pytest
import yaml

from stream_app.runtime import kafka_io
from stream_app.tools.broker import embedded_broker, free_port
from stream_app.ingest.contract import format_ts, topic_for_type
from stream_app.runtime.topics import bootstrap_servers
from stream_app.tools.harness import spawn
from tests.monitoring.tools import (
    RULE_FILES,
    WebhookReceiver,
    alertmanager_config_for_test,
    ensure_tools,
    wait_http,
)

pytestmark = pytest.mark.integration

DAY = 86400.0
CUSTOMERS, CANCELLED = 100, 30
ALERT_WITHIN_S = 120  # from producing the spike to the page at the webhook


def spike_events(now: float) -> list[dict]:
    """100 paying customers since 60 days ago, 30 cancellations in the last 2 hours,
    and a session per customer a minute ago (so every partition's clock is recent)."""
    events = []
    for i in range(CUSTOMERS):
        cid = f"e2e-{i:03d}"
        events.append({"event_id": f"{cid}-start", "customer_id": cid, "type": "subscription_started",
                       "ts": format_ts(now - 60 * DAY + i * 60), "plan": "pro" if i % 2 else "basic", "mrr": 50.0})
    for i in range(CANCELLED):
        cid = f"e2e-{i:03d}"
        events.append({"event_id": f"{cid}-cancel", "customer_id": cid, "type": "subscription_cancelled",
                       "ts": format_ts(now - 2 * 3600 + i * 60), "reason": "price"})
    for i in range(CUSTOMERS):
        cid = f"e2e-{i:03d}"
        events.append({"event_id": f"{cid}-session", "customer_id": cid, "type": "session",
                       "ts": format_ts(now - 60), "duration_s": 120.0})
    return events


async def produce(broker_url: str, events: list[dict]) -> None:
    await kafka_io.send(bootstrap_servers(broker_url), [(topic_for_type(e["type"]), e["customer_id"].encode(), orjson.dumps(e)) for e in events],
                        each_acked=False)


def prom_query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())["data"]["result"]


def diagnose(prom_port: int, receiver: WebhookReceiver, logs: dict) -> str:
    lines = [f"webhook received: {receiver.alerts()}"]
    for expr in ("up", "churn:customer_churn_rate:30d", "churn:customers_start:30d", "churn:customers_lost:30d",
                 "churn:event_time_lag_seconds:max", "ALERTS"):
        try:
            lines.append(f"{expr} = {[(r['metric'], r['value'][1]) for r in prom_query(prom_port, expr)]}")
        except OSError as exc:
            lines.append(f"{expr}: {exc}")
    for name, path in logs.items():
        lines.append(f"--- {name} log ---\n{path.read_text(errors='replace')[-2500:]}")
    return "\n".join(lines)


def test_churn_spike_pages_on_call(tmp_path):
    tools, why = ensure_tools()
    if tools is None:
        pytest.skip(why)
    procs = []
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "prometheus", "alertmanager")}
    with WebhookReceiver() as receiver, embedded_broker() as broker:
        try:
            # the worker
            web_port = free_port()
            worker = spawn("worker", [sys.executable, "-m", "stream_app", "worker", "--broker", broker.url, "--web-port", str(web_port),
                                      "--data-dir", str(tmp_path / "worker-data"), "--app-id", "e2e-alerting"], logs["worker"], {})
            procs.append(worker)

            # alertmanager: the real routes and inhibitions, webhooks to this test
            am_port = free_port()
            am_config = tmp_path / "alertmanager.yml"
            am_config.write_text(yaml.safe_dump(alertmanager_config_for_test(receiver)), encoding="utf-8")
            alertmanager = spawn("alertmanager", [tools.alertmanager, f"--config.file={am_config}", f"--storage.path={tmp_path / 'am-data'}",
                                                  f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                                 logs["alertmanager"], {})
            procs.append(alertmanager)

            # prometheus: the real rule files, fast scrapes and evaluations
            prom_port = free_port()
            prom_config = tmp_path / "prometheus.yml"
            prom_config.write_text(yaml.safe_dump({
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in RULE_FILES],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [{"job_name": "churnmon", "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}]}],
            }), encoding="utf-8")
            prometheus = spawn("prometheus", [tools.prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                                              f"--web.listen-address=127.0.0.1:{prom_port}"], logs["prometheus"], {})
            procs.append(prometheus)

            wait_http(f"http://127.0.0.1:{web_port}/healthz", worker, timeout=90)
            wait_http(f"http://127.0.0.1:{am_port}/-/ready", alertmanager)
            wait_http(f"http://127.0.0.1:{prom_port}/-/ready", prometheus)

            # the spike
            started = time.monotonic()
            asyncio.run(produce(broker.url, spike_events(time.time())))

            deadline = started + ALERT_WITHIN_S
            page = None
            while time.monotonic() < deadline and page is None:
                for proc, name in ((worker, "worker"), (prometheus, "prometheus"), (alertmanager, "alertmanager")):
                    assert proc.alive(), f"{name} exited:\n{diagnose(prom_port, receiver, logs)}"
                page = next((labels for path, status, labels in receiver.alerts()
                             if path == "/page" and status == "firing" and labels["alertname"] == "ChurnRateHigh"), None)
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            assert page is not None, f"no ChurnRateHigh page within {ALERT_WITHIN_S} s\n{diagnose(prom_port, receiver, logs)}"
            assert page["severity"] == "page" and page["service"] == "churnmon"
            print(f"ChurnRateHigh paged {elapsed:.1f} s after the spike was produced")

            # what Prometheus computed is the spike's churn rate
            (rate,) = prom_query(prom_port, "churn:customer_churn_rate:30d")
            assert float(rate["value"][1]) == pytest.approx(CANCELLED / CUSTOMERS)
            # the ticket of the same alert is still pending (for: 30m), and would be muted by the page anyway
            assert not [a for a in receiver.alerts() if a[0] == "/ticket" and a[2]["alertname"] == "ChurnRateHigh"]
        finally:
            for proc in reversed(procs):
                proc.stop()
