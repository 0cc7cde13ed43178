"""The real Alertmanager with the real alertmanager/alertmanager.yml (only the
webhook URLs and grouping timers changed): pages and tickets reach their
receivers, and the inhibition rules mute what they should."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import yaml

from stream_app.tools.broker import free_port
from stream_app.tools.harness import spawn
from tests.monitoring.tools import WebhookReceiver, alertmanager_config_for_test, wait_http


def _alert(name: str, severity: str, **labels: str) -> dict:
    now = datetime.now(timezone.utc)
    return {
        "labels": {"alertname": name, "severity": severity, "service": "churnmon", **labels},
        "annotations": {"summary": f"{name} test"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


def test_routing_and_inhibition(tools, tmp_path):
    with WebhookReceiver() as receiver:
        config = tmp_path / "alertmanager.yml"
        config.write_text(yaml.safe_dump(alertmanager_config_for_test(receiver)), encoding="utf-8")
        port = free_port()
        log = tmp_path / "alertmanager.log"
        proc = spawn("alertmanager", [tools.alertmanager, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="], log, {})
        try:
            wait_http(f"http://127.0.0.1:{port}/-/ready", proc)
            alerts = [
                _alert("ChurnRateHigh", "page"),
                _alert("ChurnRateHigh", "ticket"),  # muted: the page of the same alert fires
                _alert("ChurnDeadLetterRateHigh", "ticket"),
                _alert("ChurnWorkerDown", "page", instance="w1:6066", job="churnmon"),
                _alert("ChurnNoEventsProcessed", "page"),  # muted: a worker is down
            ]
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.status == 200
            expected = {("/page", "ChurnRateHigh", "page"), ("/page", "ChurnWorkerDown", "page"), ("/ticket", "ChurnDeadLetterRateHigh", "ticket")}
            deadline = time.monotonic() + 30
            got: set = set()
            while time.monotonic() < deadline and not expected <= got:
                got = {(path, labels["alertname"], labels["severity"]) for path, _status, labels in receiver.alerts()}
                time.sleep(0.2)
            assert expected <= got, f"delivered: {sorted(got)}\n{log.read_text()[-2000:]}"
            time.sleep(3)  # several group intervals: nothing muted turns up late
            got = {(path, labels["alertname"], labels["severity"]) for path, _status, labels in receiver.alerts()}
            assert got == expected, f"inhibited alerts were delivered: {sorted(got - expected)}"
        finally:
            proc.stop()
