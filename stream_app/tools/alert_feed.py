"""Reading churn.alerts for people: `churnmon alerts` and the demo's at-risk board.

An alert is published on entry (raised), on a real rise (escalated) and on
recovery (resolved); the board keeps each customer's latest one and lists the
open ones by expected MRR loss, the order a success team should work them in.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import orjson

from ..runtime.topics import ALERTS, bootstrap_servers


def line(a: dict) -> str:
    """One alert as one readable line.

    >>> line({"ts": "2025-06-01T09:00:00Z", "state": "raised", "customer_id": "c1", "risk": 0.72, "risk_band": "high",
    ...       "mrr": 299.0, "expected_mrr_loss": 215.28, "priority": "P1", "recommended_play": "success_manager_call",
    ...       "scored_by": "rules", "model_version": 0,
    ...       "reasons": [{"feature": "open_tickets", "contribution": 0.3, "category": "customer_service"}]})
    '2025-06-01 RAISED    c1  risk 0.72 high  MRR 299  expected loss 215 P1  play success_manager_call  [rules v0]  open_tickets (customer_service)'
    """
    reasons = ", ".join(f"{r['feature']} ({r['category']})" for r in a.get("reasons", []))
    return (
        f"{a['ts'][:10]} {a['state'].upper():<9} {a['customer_id']}  risk {a['risk']:.2f} {a['risk_band']}  "
        f"MRR {a['mrr']:,.0f}  expected loss {a['expected_mrr_loss']:,.0f} {a['priority']}  "
        f"play {a['recommended_play']}  [{a['scored_by']} v{a['model_version']}]  {reasons}"
    ).rstrip()


async def follow(broker_url: str, on_alert: Callable[[dict], None], *, from_beginning: bool = True,
                 stop: Callable[[], bool] = lambda: False, idle_timeout: float | None = None,
                 client_kwargs: dict | None = None) -> int:
    """Call `on_alert` for every alert until `stop()` (or `idle_timeout` s without one)."""
    from ..runtime import kafka_io

    n = 0
    idle = 0.0
    # a tail with no end, subscribed by topic name (no partition list to fetch first, unlike kafka_io.Scan)
    async with kafka_io.consumer(bootstrap_servers(broker_url), ALERTS, auto_offset_reset="earliest" if from_beginning else "latest",
                                 **(client_kwargs or {})) as consumer:
        while not stop():
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                idle += 0.5
                if idle_timeout is not None and idle >= idle_timeout:
                    break
                continue
            idle = 0.0
            for msgs in batch.values():
                for m in msgs:
                    try:
                        on_alert(orjson.loads(m.value))
                        n += 1
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
    return n


class AtRiskBoard:
    """Latest alert per customer, kept up to date by a background thread."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.latest: dict[str, dict] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "AtRiskBoard":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True

    def _run(self) -> None:
        try:
            asyncio.run(follow(self.broker_url, self._on, stop=lambda: self._stop))
        except Exception:  # the board is a convenience; the demo keeps running without it
            pass

    def _on(self, alert: dict) -> None:
        self.latest[alert["customer_id"]] = alert

    def top(self, n: int = 5) -> list[dict]:
        open_ = [a for a in list(self.latest.values()) if a.get("state") in ("raised", "escalated")]
        return sorted(open_, key=lambda a: -a.get("expected_mrr_loss", 0.0))[:n]
