"""The exposition text round-trips into the ledger values the terminal view uses."""

from prometheus_client import generate_latest

from stream_app.tools.dashboard import at_risk_rows, parse, render_rows, risk_rows
from stream_app.runtime.metrics import Metrics

VALUES = {
    ("active", "pro"): 10.0, ("mrr", "pro"): 990.0, ("trial",): 2.0, ("pending_cancel",): 1.0,
    ("start", 30): 100.0, ("lost", 30): 5.0, ("new", 30): 7.0, ("mrr_start", 30): 9000.0,
    ("move", 30, "churn"): 300.0, ("at_risk", "high"): 3.0, ("at_risk_mrr", "high"): 297.0,
    ("expected_loss",): 180.0, ("dau",): 4.0, ("mau",): 9.0, ("active_days",): 120.0,
}


def test_round_trip_and_rows():
    m = Metrics()
    m.watch_ledgers(lambda: (VALUES, 1.75e9, 8, 1.75e9))
    values, other = parse(generate_latest(m.registry).decode())
    assert values == VALUES
    assert other["churn_event_time_clock_seconds{}"] == 1.75e9
    assert other["churn_event_time_lag_seconds{}"] > 0
    rows = dict(render_rows(values, other) + risk_rows(values) + at_risk_rows(None))
    assert rows["customer churn rate 30d / 90d"].startswith("5.00 %")
    assert "high 3 (297)" in rows["customers (MRR) by risk band"]
