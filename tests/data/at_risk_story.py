"""One customer's story for the alert tests: healthy, then usage collapses and
angry tickets arrive (raise), then they recover (resolve). Plus a few healthy
neighbours so every partition has traffic."""

from __future__ import annotations

from stream_app.ingest.contract import format_ts, parse_ts

DAY = 86400.0
T0 = parse_ts("2025-03-01T09:00:00Z")
RISKY = "risky-1"
COLLAPSE_DAY = 60  # last healthy session on day 59
TROUBLE_DAY = 75  # tickets, CSAT 1, NPS 0
RECOVERY_DAY = 90  # tickets resolved, daily use again, CSAT 5, NPS 9
END_DAY = RECOVERY_DAY + 4  # short: a redelivery is of recent events (the dedupe window is 64 ids)


def story() -> list[dict]:
    out: list[dict] = []

    def ev(cid: str, typ: str, day: float, **fields) -> None:
        out.append({"event_id": f"{cid}-{len(out)}", "customer_id": cid, "type": typ, "ts": format_ts(T0 + day * DAY), **fields})

    for cid in [RISKY] + [f"calm-{i}" for i in range(6)]:
        ev(cid, "subscription_started", 0, plan="business", mrr=500.0)
    for d in range(1, END_DAY):
        for i in range(6):
            ev(f"calm-{i}", "session", d + 0.1 * i, duration_s=600)
        if d < COLLAPSE_DAY or d >= RECOVERY_DAY:
            ev(RISKY, "session", d + 0.05, duration_s=900)
            ev(RISKY, "feature_used", d + 0.06, feature=("reports", "export", "sso", "search")[d % 4])
    ev(RISKY, "csat", 10, score=5)
    for k in range(3):
        ev(RISKY, "ticket_opened", TROUBLE_DAY + 0.1 * k, ticket_id=f"T{k}", priority="urgent", category="bug")
    ev(RISKY, "csat", TROUBLE_DAY + 0.5, score=1)
    ev(RISKY, "nps", TROUBLE_DAY + 0.6, score=0)
    for k in range(3):
        ev(RISKY, "ticket_resolved", RECOVERY_DAY + 0.01 * k, ticket_id=f"T{k}")
    ev(RISKY, "csat", RECOVERY_DAY + 1, score=5)
    ev(RISKY, "nps", RECOVERY_DAY + 1.1, score=9)
    out.sort(key=lambda e: e["ts"])
    return out
