"""The demo's live terminal view: scrape /metrics, show the domain's figures.

It reads the worker's own exposition text (the same numbers Prometheus and
Grafana see) and turns it back into ledger values, so the figures on screen are
computed by the same `kpis.figures` as everywhere else.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from ..domain.kpis import Series, figures
from ..runtime.metrics import CLOCK_GAUGE, LEDGER_GAUGES

_BY_NAME = {name: key for key, (name, _help) in LEDGER_GAUGES.items()}


def scrape(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def parse(text: str) -> tuple[dict[Series, float], dict[str, float]]:
    """Exposition text -> (ledger values keyed like kpis.Series, other samples by name{labels})."""
    values: dict[Series, float] = {}
    other: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        key = _BY_NAME.get(family.name)
        for sample in family.samples:
            labels = sample.labels
            if key is None:
                label_text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                other[f"{sample.name}{{{label_text}}}"] = sample.value
                continue
            if "plan" in labels:
                series: Series = (key, labels["plan"])
            elif "band" in labels:
                series = (key, labels["band"])
            elif "kind" in labels:
                series = (key, int(labels["window"].rstrip("d")), labels["kind"])
            elif "window" in labels:
                series = (key, int(labels["window"].rstrip("d")))
            else:
                series = (key,)
            values[series] = values.get(series, 0.0) + sample.value
    return values, other


def risk_rows(values: dict[Series, float]) -> list[tuple[str, str]]:
    bands = {k[1]: v for k, v in values.items() if k[0] == "at_risk"}
    mrr = {k[1]: v for k, v in values.items() if k[0] == "at_risk_mrr"}
    if not bands:
        return []
    text = "  ".join(f"{b} {bands.get(b, 0):,.0f} ({mrr.get(b, 0):,.0f})" for b in ("critical", "high", "medium", "low"))
    return [("customers (MRR) by risk band", text), ("expected MRR loss", _fmt(values.get(("expected_loss",), 0.0), "$"))]


def _fmt(x: float | None, kind: str = "n") -> str:
    if x is None:
        return "–"
    if kind == "%":
        return f"{100 * x:.2f} %"
    if kind in ("$", "i"):
        return f"{x:,.0f}"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def render_rows(values: dict[Series, float], other: dict[str, float]) -> list[tuple[str, str]]:
    f30, f90 = figures(values, 30), figures(values, 90)
    clock = other.get(CLOCK_GAUGE[0] + "{}")
    processed = sum(v for k, v in other.items() if k.startswith("churn_events_processed_total"))
    rejected = sum(v for k, v in other.items() if k.startswith("churn_events_rejected_total"))
    clock_text = time.strftime("%Y-%m-%d", time.gmtime(clock)) if clock else "–"
    return [
        ("event-time clock", clock_text),
        ("events processed / dead-lettered", f"{processed:,.0f} / {rejected:,.0f}"),
        ("customers (paying)", _fmt(f30["customers"])),
        ("MRR", _fmt(f30["mrr"], "$")),
        ("ARPA", _fmt(f30["arpa"])),
        ("customer churn rate 30d / 90d", f"{_fmt(f30['customer_churn_rate'], '%')} / {_fmt(f90['customer_churn_rate'], '%')}"),
        ("customers lost 30d (of start)", f"{_fmt(f30['customers_lost'], 'i')} of {_fmt(f30['customers_start'], 'i')}"),
        ("MRR lost 30d", f"{_fmt(f30['mrr_lost'], '$')} ({_fmt(f30['mrr_churn_rate'], '%')})"),
        ("gross / net MRR churn 30d", f"{_fmt(f30['gross_mrr_churn'], '%')} / {_fmt(f30['net_mrr_churn'], '%')}"),
        ("annualised churn", _fmt(f30["annualised_churn"], "%")),
        ("quick ratio 30d / NRR 30d", f"{_fmt(f30['quick_ratio'])} / {_fmt(f30['net_revenue_retention'], '%')}"),
        ("stickiness (DAU/MAU)", _fmt(f30["stickiness"], "%")),
        ("forgettable zone", _fmt(f30["forgettable"], "i")),
        ("cancelled, not yet churned", _fmt(values.get(("pending_cancel",), 0.0), "i")),
    ]


def at_risk_rows(board) -> list[tuple[str, str]]:
    if board is None:
        return []
    rows = []
    for a in board.top(5):
        why = ", ".join(r["feature"] for r in a.get("reasons", [])[:2])
        rows.append((f"at risk: {a['customer_id']}", f"{a['risk']:.2f} {a['risk_band']}, loss {a['expected_mrr_loss']:,.0f}/mo, {a['recommended_play']} ({why})"))
    return rows or [("at risk", "no open alerts yet")]


def run_view(url: str, *, seconds: float = 0.0, plain: bool = False, alive: Callable[[], bool] = lambda: True,
             interval: float = 1.0, board=None) -> None:
    """Refresh the figures every `interval` s until `seconds` pass (0 = forever) or the worker dies."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console(stderr=False)
    deadline = time.monotonic() + seconds if seconds else None

    def table(rows: list[tuple[str, str]], status: str) -> Table:
        t = Table(title=f"churn monitor — {status}", show_header=False, expand=False)
        t.add_column("figure", style="cyan")
        t.add_column("value", justify="right")
        for name, value in rows:
            t.add_row(name, value)
        return t

    def frame() -> tuple[list[tuple[str, str]], str]:
        try:
            values, other = parse(scrape(url))
            return render_rows(values, other) + risk_rows(values) + at_risk_rows(board), time.strftime("%H:%M:%S")
        except OSError as exc:
            return [], f"waiting for the worker ({type(exc).__name__})"

    if plain or not console.is_terminal:
        while alive() and (deadline is None or time.monotonic() < deadline):
            rows, status = frame()
            console.print(f"[{status}] " + " | ".join(f"{k}: {v}" for k, v in rows), soft_wrap=True)
            time.sleep(interval)
        return
    with Live(table([], "starting"), console=console, refresh_per_second=2) as live:
        while alive() and (deadline is None or time.monotonic() < deadline):
            rows, status = frame()
            live.update(table(rows, status))
            time.sleep(interval)
