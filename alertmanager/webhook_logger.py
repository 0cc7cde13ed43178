"""A stand-in webhook receiver for Alertmanager: logs every notification.

docker-compose.yml runs it as the `alert-webhook` service so that a local
stack shows its pages and tickets (`docker compose logs -f alert-webhook`)
before a real paging or ticketing endpoint is configured. One line per alert:

    2025-05-01T10:00:00Z page firing ChurnRateHigh severity=page ... | 30-day customer churn rate is 15% ...

Standard library only; listens on 0.0.0.0:$PORT (default 5001).
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def lines(path: str, payload: dict) -> list[str]:
    """Log lines for one Alertmanager webhook payload (version 4).

    >>> lines("/page", {"status": "firing", "alerts": [{"status": "firing",
    ...     "labels": {"alertname": "ChurnRateHigh", "severity": "page"},
    ...     "annotations": {"summary": "churn is high"}}]})
    ['page firing ChurnRateHigh severity=page | churn is high']
    """
    receiver = path.strip("/") or "webhook"
    out = []
    for alert in payload.get("alerts", []):
        labels = dict(alert.get("labels", {}))
        name = labels.pop("alertname", "?")
        label_text = " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        summary = alert.get("annotations", {}).get("summary", "")
        out.append(f"{receiver} {alert.get('status', payload.get('status', '?'))} {name} {label_text} | {summary}")
    return out


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for line in lines(self.path, payload):
            print(f"{stamp} {line}", flush=True)
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - a health check
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:  # quiet access log
        pass


def main() -> None:
    port = int(os.environ.get("PORT", "5001"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"alert webhook logger listening on :{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
