"""Draw the benchmark results: throughput and latency vs offered load.

    python bench/plot.py [--results bench/results] [--out docs/img/bench_throughput_latency.png]

Reads the JSON the benchmark scripts wrote (bench/results/*.json:
throughput[_uvloop].json, scaling.json, latency_rates.json or else
latency.json) and draws one figure of four panels:

1. events/s of one process: raw aiokafka, bare Faust agent, naive Table
   agent, the project's worker and, where it ran them, the quixstreams
   peers (bench/throughput.py; log scale);
2. events/s vs worker processes, with linear scaling for reference
   (bench/scaling.py);
3. processed vs offered events/s, with the one-worker throughput of (1)
   (bench/latency.py --rates);
4. event -> alert and event -> /metrics latency percentiles vs offered
   events/s, over the floor a plain consumer sees on the same broker
   (bench/latency.py --rates).

A panel whose results file is missing says which script to run. Needs
matplotlib (the project's `docs` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ALERT = "on Kafka (record timestamp)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="folder of the results JSON")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "bench_throughput_latency.png", help="PNG to write")
    return p.parse_args(argv)


def load(folder: Path, *names: str) -> dict | None:
    """The first of `names` (without .json) that exists in `folder`."""
    for name in names:
        path = folder / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
    return None


def missing(ax, script: str) -> None:
    ax.text(0.5, 0.5, f"no results yet:\nrun {script}", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def throughput_panel(ax, plain: dict | None, uvloop: dict | None) -> None:
    ax.set_title("One process, same events (events/s, log scale)")
    if plain is None:
        return missing(ax, "bench/throughput.py")
    labels, values, colors = [], [], []
    for key, res in plain["results"].items():
        labels.append(res["label"])
        values.append(res["rate"])
        colors.append("tab:red" if key == "worker" else "tab:blue")
    if uvloop is not None:
        for key in ("bare", "table"):
            res = uvloop["results"][key]
            labels.append(res["label"])
            values.append(res["rate"])
            colors.append("tab:green")
    ys = range(len(labels))[::-1]
    ax.barh(list(ys), values, color=colors)
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.set_xscale("log")
    for y, v in zip(ys, values):
        ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_xlim(min(values) / 3, max(values) * 8)


def scaling_panel(ax, scaling: dict | None) -> None:
    ax.set_title("Worker processes, one app id (events/s)")
    if scaling is None:
        return missing(ax, "bench/scaling.py")
    runs = scaling["runs"]
    ks = [r["workers"] for r in runs]
    rates = [r["rate"] for r in runs]
    ax.plot(ks, rates, "o-", color="tab:red", label="measured")
    base = next((r["rate"] for r in runs if r["workers"] == 1), None)
    if base:
        ax.plot(ks, [base * k for k in ks], "--", color="grey", label="linear")
    cpus = scaling.get("cpus")
    if cpus and cpus <= max(ks):
        ax.axvline(cpus, color="grey", lw=0.8, ls=":")
        ax.text(cpus, 0, f" {cpus} CPUs", fontsize=8, va="bottom")
    for k, r in zip(ks, rates):
        ax.annotate(f"{r:,.0f}", (k, r), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xticks(ks)
    ax.set_xlabel("workers")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def processed_panel(ax, latency: dict | None, plain: dict | None) -> None:
    ax.set_title("One worker: processed vs offered (events/s)")
    if latency is None:
        return missing(ax, "bench/latency.py --rates ...")
    runs = latency["runs"]
    offered = [r["offered_rate"] for r in runs]
    processed = [r["processed_per_s"] for r in runs]
    cap = plain["results"]["worker"]["rate"] if plain is not None else None
    top = max(offered + processed + ([cap] if cap else [])) * 1.1
    ax.plot([0, top], [0, top], "--", color="grey", lw=0.8, label="processed = offered")
    ax.plot(offered, processed, "o-", color="tab:red", label="processed")
    if cap is not None:
        ax.axhline(cap, color="tab:blue", lw=0.8, ls=":", label=f"throughput.py worker ({cap:,.0f}/s)")
    ax.set_xlabel("offered events/s")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.legend(fontsize=8)


def latency_panel(ax, latency: dict | None) -> None:
    ax.set_title("One worker: latency vs offered load (ms, log scale)")
    if latency is None:
        return missing(ax, "bench/latency.py --rates ...")
    runs = latency["runs"]
    offered = [r["offered_rate"] for r in runs]
    series = [
        ("event -> alert p50", [r["alert_latency_s"][ALERT]["p50"] for r in runs], "o-", "tab:red"),
        ("event -> alert p99", [r["alert_latency_s"][ALERT]["p99"] for r in runs], "o--", "tab:red"),
        ("event -> /metrics p50", [r["metric_latency_s"]["p50"] for r in runs], "s-", "tab:blue"),
        ("event -> /metrics p99", [r["metric_latency_s"]["p99"] for r in runs], "s--", "tab:blue"),
    ]
    if all("fetch_latency_s" in r for r in runs):  # the broker + fetch floor under both
        series.append(("event -> plain consumer p50 (floor)", [r["fetch_latency_s"]["p50"] for r in runs], "^:", "grey"))
    for label, values, style, color in series:
        ax.plot(offered, [1000 * v for v in values], style, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("offered events/s")
    ax.legend(fontsize=8)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plain = load(args.results, "throughput")
    uvloop = load(args.results, "throughput_uvloop")
    scaling = load(args.results, "scaling")
    latency = load(args.results, "latency_rates", "latency")
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    throughput_panel(axes[0][0], plain, uvloop)
    scaling_panel(axes[0][1], scaling)
    processed_panel(axes[1][0], latency, plain)
    latency_panel(axes[1][1], latency)
    info = next((d for d in (plain, scaling, latency) if d), None)
    where = f"{info['machine']}, {info['cpus']} CPUs, Python {info['python']}, {info['date'][:10]}" if info else ""
    fig.suptitle(f"churn-monitor benchmarks (embedded broker, {where})", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
