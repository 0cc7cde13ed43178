"""Draw the key dashboard series from a running Prometheus into PNG files.

    python grafana/render_panels.py --prometheus http://127.0.0.1:9090 --out docs/img
    python grafana/render_panels.py --minutes 30 --x event-time   # a replay of history

For documentation and quick looks without a Grafana: each plot runs the same
PromQL as the dashboard panel it stands for (range queries on
/api/v1/query_range, the calibration bars an instant query) and writes one
PNG. Needs matplotlib (a dev dependency); everything else is the standard
library.

`--x event-time` puts the workers' event-time clock
(churn_event_time_clock_seconds) on the x axis instead of the wall clock:
during a replay of history a few wall minutes cover months of event time,
and the window figures (churn:*:30d, churn_window_*) follow the event-time
clock. Counters (*_total) move in wall-clock bursts then, so the plots use
the window gauges and the at-risk and model gauges, not counter rates.
tests/integration/test_dashboards_live.py writes the PNGs of docs/img/ with
this script when CHURNMON_DASHBOARD_PNGS names a directory.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

# Colours of the dashboards (grafana/build_dashboards.py BAND_COLOURS).
BAND_COLOURS = {"low": "#56a64b", "medium": "#f2cc0c", "high": "#ff780a", "critical": "#e02f44"}
KIND_COLOURS = {"new": "#56a64b", "expansion": "#8ab8ff", "reactivation": "#b877d9", "contraction": "#ff9830", "churn": "#e02f44"}
CHURN_TICKET, CHURN_PAGE = 0.05, 0.10  # ChurnRateHigh thresholds
AUC_FLOOR = 0.65  # ChurnModelAucLow


# -- Prometheus ------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    start: float
    end: float
    step: float

    def _get(self, path: str, params: dict) -> list:
        with urllib.request.urlopen(f"{self.url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}", timeout=30) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]["result"]

    def range(self, expr: str) -> list[tuple[dict, list[tuple[float, float]]]]:
        """(labels, [(t, value), ...]) per series; NaN and infinities dropped."""
        result = self._get("/api/v1/query_range", {"query": expr, "start": self.start, "end": self.end, "step": self.step})
        out = []
        for r in result:
            points = [(float(t), float(v)) for t, v in r["values"] if math.isfinite(float(v))]
            out.append((r["metric"], points))
        return out

    def instant(self, expr: str) -> list[tuple[dict, float]]:
        return [(r["metric"], float(r["value"][1])) for r in self._get("/api/v1/query", {"query": expr, "time": self.end})]


class Axis:
    """Maps a sample's wall time to the x value plotted (wall or event time)."""

    def __init__(self, prom: Prometheus, mode: str) -> None:
        self.mode = mode
        self.clock: dict[float, float] = {}
        if mode == "event-time":
            for _labels, points in prom.range("max(churn_event_time_clock_seconds)"):
                self.clock = dict(points)
            if not self.clock:
                raise SystemExit("--x event-time: Prometheus has no churn_event_time_clock_seconds in the time range")

    @property
    def label(self) -> str:
        return "event time (the workers' clock, UTC)" if self.mode == "event-time" else "wall clock (UTC)"

    def xy(self, points: list[tuple[float, float]]) -> tuple[list[datetime], list[float]]:
        xs, ys = [], []
        for t, v in points:
            x = self.clock.get(t) if self.mode == "event-time" else t
            if x is None:
                continue
            xs.append(datetime.fromtimestamp(x, tz=timezone.utc))
            ys.append(v)
        return xs, ys


# -- plots ----------------------------------------------------------------------------------


def _figure(title: str, subtitle: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=110)
    fig.suptitle(title, x=0.01, ha="left", fontsize=13, fontweight="bold")
    ax.set_title(subtitle, loc="left", fontsize=9, color="#555555")
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _dates(ax, axis: Axis) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel(axis.label, fontsize=9)


def _percent(ax) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))


def _money(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def _empty(series) -> bool:
    return not any(points for _labels, points in series)


def churn_rate_30d(prom: Prometheus, axis: Axis):
    fig, ax = _figure("Customer churn rate, 30-day window", "churn:customer_churn_rate:30d and churn:stripe_rolling_churn_rate:30d (Churn overview)")
    drawn = False
    for expr, label, colour in (
        ("churn:customer_churn_rate:30d", "customer churn rate (ChartMogul)", "#1f60c4"),
        ("churn:stripe_rolling_churn_rate:30d", "Stripe rolling churn", "#8f8f8f"),
    ):
        for _labels, points in prom.range(expr):
            xs, ys = axis.xy(points)
            ax.plot(xs, ys, label=label, color=colour, linewidth=1.8)
            drawn = drawn or bool(xs)
    ax.axhline(CHURN_TICKET, color="#ff9830", linestyle="--", linewidth=1, label="ticket 5 %")
    ax.axhline(CHURN_PAGE, color="#e02f44", linestyle="--", linewidth=1, label="page 10 %")
    ax.set_ylim(0, max(CHURN_PAGE * 1.3, ax.get_ylim()[1]))
    _percent(ax)
    _dates(ax, axis)
    ax.legend(fontsize=8, loc="upper left", frameon=False, ncol=4)
    return fig, drawn


def mrr_movements_30d(prom: Prometheus, axis: Axis):
    subtitle = "sum by (kind) (churn_window_mrr_movement{window=\"30d\"}); losses drawn negative (Churn overview)"
    series = {labels.get("kind", "?"): points for labels, points in prom.range('sum by (kind) (churn_window_mrr_movement{window="30d"})')}
    if axis.mode == "event-time" and axis.clock:
        # A replay from the first day: in the first 30 days every customer of the
        # initial population is "new" MRR, which dwarfs every later movement.
        warm = min(axis.clock.values()) + 30 * 86400
        series = {k: [(t, v) for t, v in points if axis.clock.get(t, 0.0) >= warm] for k, points in series.items()}
        subtitle += "; from the first full 30-day window"
    fig, ax = _figure("MRR movements in the last 30 days", subtitle)
    drawn = False
    net: dict[float, float] = {}
    for kind in ("new", "expansion", "reactivation", "contraction", "churn"):
        points = series.get(kind, [])
        sign = -1.0 if kind in ("contraction", "churn") else 1.0
        xs, ys = axis.xy([(t, sign * v) for t, v in points])
        for t, v in points:
            net[t] = net.get(t, 0.0) + sign * v
        if xs:
            ax.fill_between(xs, ys, 0, color=KIND_COLOURS[kind], alpha=0.25, linewidth=0)
            ax.plot(xs, ys, color=KIND_COLOURS[kind], linewidth=1.4, label=kind)
            drawn = True
    xs, ys = axis.xy(sorted(net.items()))
    if xs:
        ax.plot(xs, ys, color="black", linewidth=1.6, linestyle="--", label="net MRR growth")
    ax.axhline(0, color="#444444", linewidth=0.8)
    ax.set_ylabel("MRR (account currency)", fontsize=9)
    _money(ax)
    _dates(ax, axis)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False, ncol=6)
    return fig, drawn


def at_risk_mrr_by_band(prom: Prometheus, axis: Axis):
    import matplotlib.pyplot as plt

    fig, (top, low) = plt.subplots(2, 1, figsize=(10, 6.4), dpi=110, sharex=True, gridspec_kw={"height_ratios": [1, 1]})
    fig.suptitle("MRR by churn-risk band", x=0.01, ha="left", fontsize=13, fontweight="bold")
    top.set_title("band:churn_at_risk_mrr:sum, stacked (At-risk customers); below: the bands above low, and churn:expected_mrr_loss:sum",
                  loc="left", fontsize=9, color="#555555")
    series = {labels.get("band", "?"): dict(points) for labels, points in prom.range("band:churn_at_risk_mrr:sum")}
    times = sorted(t for t in set().union(*(s.keys() for s in series.values())) if axis.mode != "event-time" or t in axis.clock) if series else []
    xs, _ = axis.xy([(t, 0.0) for t in times])
    drawn = bool(series and xs)
    for ax, bands in ((top, [b for b in BAND_COLOURS if b in series]), (low, [b for b in ("medium", "high", "critical") if b in series])):
        ax.grid(True, color="#e5e5e5", linewidth=0.8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if drawn and bands:
            ax.stackplot(xs, [[series[b].get(t, 0.0) for t in times] for b in bands], labels=bands,
                         colors=[BAND_COLOURS[b] for b in bands], alpha=0.85)
        ax.set_ylabel("MRR", fontsize=9)
        _money(ax)
    for _labels, points in prom.range("churn:expected_mrr_loss:sum"):
        ex, ey = axis.xy(points)
        low.plot(ex, ey, color="black", linewidth=1.4, linestyle="--", label="expected MRR loss (risk x MRR, all bands)")
    for ax in (top, low):
        ax.set_ylim(bottom=0)  # after everything is drawn: the top follows the data
    top.legend(fontsize=8, loc="lower right", frameon=True, ncol=4)
    low.legend(fontsize=8, loc="upper right", frameon=True, ncol=4)
    _dates(low, axis)
    return fig, drawn


def model_roc_auc(prom: Prometheus, axis: Axis):
    fig, ax = _figure("Churn model ROC AUC", "max(churn_model_quality{metric=\"roc_auc\"}) by window (Churn model quality); progressive validation on delayed labels")
    drawn = False
    for window, colour, style, width in (("cumulative", "#73bf69", "-", 3.0), ("rolling", "#1f60c4", "--", 1.4)):
        for _labels, points in prom.range(f'max(churn_model_quality{{metric="roc_auc", window="{window}"}})'):
            xs, ys = axis.xy(points)
            if not xs:
                continue
            name = "rolling (recent labels)" if window == "rolling" else "cumulative"
            ax.plot(xs, ys, color=colour, linestyle=style, linewidth=width, label=f"{name}: {ys[-1]:.3f} at the end")
            drawn = True
    ax.axhline(AUC_FLOOR, color="#e02f44", linestyle="--", linewidth=1, label="ChurnModelAucLow floor 0.65")
    ax.axhline(0.5, color="#8f8f8f", linestyle=":", linewidth=1, label="random ranking 0.5")
    for _labels, points in prom.range("min(churn_model_ready)"):
        ready = [t for t, v in points if v >= 1]
        xs, _ = axis.xy([(t, 0.0) for t in ready[:1]])
        if xs:
            ax.axvline(xs[0], color="#555555", linewidth=0.8)
            ax.annotate(" model ready: scores replace the rules", (xs[0], 0.32), fontsize=8, color="#555555")
    ax.set_ylim(0.3, 1.0)
    _dates(ax, axis)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    return fig, drawn


def model_calibration(prom: Prometheus, axis: Axis):
    fig, ax = _figure("Churn model calibration", "max by (bin) (churn_model_calibration{stat=...}) at the end of the range (Churn model quality)")
    stats = {}
    for stat in ("mean_predicted", "observed_rate", "count"):
        stats[stat] = {int(labels["bin"]): v for labels, v in prom.instant(f'max by (bin) (churn_model_calibration{{stat="{stat}"}})')}
    bins = sorted(stats["count"])
    drawn = bool(bins)
    width = 0.38
    xs = list(range(len(bins)))
    ax.bar([x - width / 2 for x in xs], [stats["mean_predicted"].get(b, 0.0) for b in bins], width, color="#8ab8ff", label="mean predicted risk")
    ax.bar([x + width / 2 for x in xs], [stats["observed_rate"].get(b, 0.0) for b in bins], width, color="#e02f44", label="observed churn rate")
    for x, b in zip(xs, bins):
        ax.annotate(f"n={stats['count'][b]:.0f}", (x, 0.0), xytext=(0, -24), textcoords="offset points", ha="center", fontsize=7, color="#555555")
    ax.set_xticks(xs, [f"{b * 10}-{(b + 1) * 10} %" for b in bins], fontsize=8)
    ax.set_xlabel("score bin (risk the label's snapshot was scored with); n = labels in the bin", fontsize=9, labelpad=16)
    ax.set_ylim(0, 1)
    _percent(ax)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return fig, drawn


PLOTS: dict[str, Callable[[Prometheus, Axis], tuple]] = {
    "churn_rate_30d.png": churn_rate_30d,
    "mrr_movements_30d.png": mrr_movements_30d,
    "at_risk_mrr_by_band.png": at_risk_mrr_by_band,
    "model_roc_auc.png": model_roc_auc,
    "model_calibration.png": model_calibration,
}


def render(prom: Prometheus, out: Path, x: str = "wall") -> dict[str, bool]:
    """Write every plot to `out`; file name -> whether it had data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis = Axis(prom, x)
    out.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for name, plot in PLOTS.items():
        fig, had_data = plot(prom, axis)
        fig.tight_layout()
        fig.savefig(out / name, bbox_inches="tight", metadata={"Software": None})  # no version stamp: files change only when the data does
        plt.close(fig)
        drawn[name] = had_data
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img", help="output directory")
    parser.add_argument("--minutes", type=float, default=60.0, help="time range ending now (wall clock)")
    parser.add_argument("--start", type=float, help="range start, Unix seconds (instead of --minutes)")
    parser.add_argument("--end", type=float, help="range end, Unix seconds (default now)")
    parser.add_argument("--step", type=float, help="seconds between points (default: range / 300, at least 1)")
    parser.add_argument("--x", choices=("wall", "event-time"), default="wall", help="x axis: wall clock, or the workers' event-time clock (replays)")
    args = parser.parse_args(argv)
    end = args.end or time.time()
    start = args.start or end - args.minutes * 60
    step = args.step or max(1.0, (end - start) / 300)
    drawn = render(Prometheus(args.prometheus, start, end, step), args.out, args.x)
    for name, had_data in drawn.items():
        print(f"wrote {args.out / name}" + ("" if had_data else " (no data)"), file=sys.stderr)
    return 0 if all(drawn.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
