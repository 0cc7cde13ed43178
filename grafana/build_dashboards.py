"""Generate the Grafana dashboards of the churn monitor from code.

    python grafana/build_dashboards.py           # (re)write grafana/dashboards/*.json
    python grafana/build_dashboards.py --check   # exit 1 if the committed JSON is stale

Built with grafana-foundation-sdk, Grafana's own dashboards-as-code builders
generated from its dashboard and panel schemas (the 11.2 flavour, the Grafana
of docker-compose.yml): a panel option that Grafana's model lacks is a missing
builder method (AttributeError) rather than a key Grafana silently ignores,
widths and heights are range-checked, the SDK lays rows and panels out on the
24-column grid, and the builders are typed (an enum for every choice), which
tests/monitoring/test_dashboards.py checks by running mypy over this file.
Dashboards are built from small named panel functions (one per panel, grouped
by dashboard) on top of a few panel kinds below, and written as JSON with
sorted keys, so a change to a query is a one-line diff. Grafana loads the
files through file provisioning (grafana/provisioning/dashboards/dashboards.yml);
they are read-only in the UI: change this file and regenerate.

Queries read the fleet-wide recording rules of prometheus/rules/recording.yml
(`churn:<figure>:<window>` ...) or the worker's own metrics
(stream_app/runtime/metrics.py). tests/monitoring/test_dashboards.py rejects a query
naming any other metric, checks the committed JSON equals this output, and
reads every file back through the SDK's model (nothing outside Grafana's
model survives that).

Four dashboards: Churn overview, Churn pipeline health, At-risk customers
(churn_at_risk_*, churn_expected_mrr_loss, churn_alerts_emitted_total,
churn_customers_scored_total) and Churn model quality (churn_model_*,
churn_training_examples_total, refused snapshots). docs/MONITORING.md says how to read them.

Adding a dashboard: write panel functions and a function returning
`dashboard(...)` below, register it in DASHBOARDS, and run this script. The
test accepts only metrics in stream_app.runtime.metrics.REFERENCE or recording rules,
and tests/integration/test_dashboards_live.py runs every query against a real
Prometheus scraping a real worker: a query that returns nothing fails it.
Every dashboard carries the `churnmon` tag, and each one's header links to all
dashboards with that tag, so new ones appear in the others' links.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from grafana_foundation_sdk.builders import barchart as barchart_panel
from grafana_foundation_sdk.builders import bargauge as bargauge_panel
from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import heatmap as heatmap_panel
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import timeseries as timeseries_panel
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as mc
from grafana_foundation_sdk.models import dashboard as md
from grafana_foundation_sdk.models import heatmap as mh
from grafana_foundation_sdk.models import prometheus as mp

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
TAG = "churnmon"

# Money is in the account currency (stream_app/runtime/metrics.py). Set the unit to
# the business's currency (currencyEUR, currencyGBP, ...) and regenerate.
CURRENCY = "currencyUSD"
RATE = "cps"  # counts (events) per second

DATASOURCE = md.DataSourceRef(type_val="prometheus", uid="${datasource}")
WINDOWS = ("30d", "90d")

# Colour bands of the churn-rate stats; the same numbers as the ChurnRateHigh
# ticket (5 %) and page (10 %) thresholds in prometheus/rules/alerts.yml.
CHURN_TICKET, CHURN_PAGE = 0.05, 0.10

Panel = Builder[md.Panel]
Row = tuple[str, list[Panel]]
# The panel kinds of these dashboards: helpers that take one give the same kind back, with its own options.
Kind = TypeVar("Kind", stat_panel.Panel, timeseries_panel.Panel, bargauge_panel.Panel, barchart_panel.Panel, heatmap_panel.Panel)


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> prometheus.Dataquery:
    """One Prometheus query of a panel; refIds are assigned by `_panel`.

    `table=True` returns one row per series with its labels as columns (for
    panels that join several queries on a label).
    """
    q = prometheus.Dataquery().datasource(DATASOURCE).editor_mode(mp.QueryEditorMode.CODE).expr(expr).legend_format(legend or "__auto")
    q = q.instant() if instant else q.range()
    return q.format(mp.PromQueryFormat.TABLE) if table else q


def thresholds(*steps: tuple[float, str], base: str = "green") -> gd.ThresholdsConfig:
    return gd.ThresholdsConfig().mode(md.ThresholdsMode.ABSOLUTE).steps(
        [md.Threshold(value=None, color=base)] + [md.Threshold(value=v, color=c) for v, c in steps])


def value_texts(texts: dict[str, str]) -> list[md.ValueMapping]:
    """Show a value as a word: {"0": "no", "1": "drift"}."""
    return [md.ValueMap(options={value: md.ValueMappingResult(text=text, index=i) for i, (value, text) in enumerate(texts.items())})]


def fixed_colours(p: Kind, colours: dict[str, str]) -> Kind:
    """The same colour for a series name on every panel (series named by their band, state, ...)."""
    for name, colour in colours.items():
        p.override_by_name(name, [md.DynamicConfigValue(id_val="color", value={"fixedColor": colour, "mode": "fixed"})])
    return p


def legend(*, show: bool = True) -> gc.VizLegendOptions:
    return gc.VizLegendOptions().calcs([]).display_mode(mc.LegendDisplayMode.LIST).placement(mc.LegendPlacement.BOTTOM).show_legend(show)


def tooltip(mode: mc.TooltipDisplayMode, sort: mc.SortOrder = mc.SortOrder.NONE) -> gc.VizTooltipOptions:
    return gc.VizTooltipOptions().mode(mode).sort(sort)


def last_value() -> gc.ReduceDataOptions:
    return gc.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def _panel(p: Kind, title: str, targets: Iterable[prometheus.Dataquery], unit: str, *, description: str, w: int, h: int,
           decimals: int | None, steps: gd.ThresholdsConfig | None, colour: md.FieldColorModeId = md.FieldColorModeId.PALETTE_CLASSIC) -> Kind:
    """What every panel kind sets: title, queries (refIds A, B, ...), unit, size, colours. The SDK places it."""
    p.title(title).description(description).datasource(DATASOURCE).unit(unit).span(w).height(h)
    p.thresholds(steps or thresholds()).color_scheme(gd.FieldColor().mode(colour))
    for i, t in enumerate(targets):
        p.with_target(t.ref_id(chr(ord("A") + i)))
    if decimals is not None:
        p.decimals(decimals)
    return p


def stat(title: str, expr: str, unit: str, *, description: str = "", steps: gd.ThresholdsConfig | None = None, decimals: int | None = None,
         w: int = 4, h: int = 4, mappings: list[md.ValueMapping] | None = None) -> stat_panel.Panel:
    p = _panel(stat_panel.Panel(), title, [target(expr)], unit, description=description, w=w, h=h, decimals=decimals, steps=steps,
               colour=md.FieldColorModeId.THRESHOLDS)
    p.color_mode(mc.BigValueColorMode.VALUE).graph_mode(mc.BigValueGraphMode.AREA).justify_mode(mc.BigValueJustifyMode.AUTO)
    p.orientation(mc.VizOrientation.AUTO).text_mode(mc.BigValueTextMode.AUTO).reduce_options(last_value())
    return p.mappings(mappings) if mappings else p


def timeseries(title: str, targets: Iterable[prometheus.Dataquery], unit: str, *, description: str = "", w: int = 12, h: int = 8,
               stacked: bool = False, bars: bool = False, decimals: int | None = None, interval: str | None = None,
               steps: gd.ThresholdsConfig | None = None, show_thresholds: bool = False) -> timeseries_panel.Panel:
    """`show_thresholds` shades the threshold steps behind the lines."""
    p = _panel(timeseries_panel.Panel(), title, targets, unit, description=description, w=w, h=h, decimals=decimals, steps=steps)
    p.draw_style(mc.GraphDrawStyle.BARS if bars else mc.GraphDrawStyle.LINE).fill_opacity(80 if bars else 10).line_width(1)
    p.show_points(mc.VisibilityMode.NEVER).span_nulls(False)
    p.stacking(gc.StackingConfig().group("A").mode(mc.StackingMode.NORMAL if stacked else mc.StackingMode.NONE))
    p.legend(legend()).tooltip(tooltip(mc.TooltipDisplayMode.MULTI, mc.SortOrder.DESCENDING))
    if show_thresholds:
        p.thresholds_style(gc.GraphThresholdsStyleConfig().mode(mc.GraphThresholdsStyleMode.LINE_AND_AREA))
    return p.interval(interval) if interval else p


def per_worker(title: str, expr: str, unit: str, **kw) -> timeseries_panel.Panel:
    """One line per worker (the scrape target's instance label)."""
    return timeseries(title, [target(expr, "{{instance}}")], unit, **kw)


def bargauge(title: str, targets: Iterable[prometheus.Dataquery], unit: str, *, description: str = "", w: int = 6, h: int = 8) -> bargauge_panel.Panel:
    p = _panel(bargauge_panel.Panel(), title, targets, unit, description=description, w=w, h=h, decimals=None, steps=None)
    p.display_mode(mc.BarGaugeDisplayMode.GRADIENT).orientation(mc.VizOrientation.HORIZONTAL).reduce_options(last_value())
    return p.show_unfilled(True).value_mode(mc.BarGaugeValueMode.COLOR)


def barchart(title: str, targets: Iterable[prometheus.Dataquery], unit: str, *, description: str = "", w: int = 12, h: int = 8,
             decimals: int | None = None) -> barchart_panel.Panel:
    """Signed bars, one per series: instant queries reduced to one row per series."""
    p = _panel(barchart_panel.Panel(), title, targets, unit, description=description, w=w, h=h, decimals=decimals, steps=None)
    p.fill_opacity(80).gradient_mode(mc.GraphGradientMode.NONE).line_width(1)
    p.with_transformation(md.DataTransformerConfig(
        id_val="reduce", options={"includeTimeField": False, "mode": "seriesToRows", "reducers": ["lastNotNull"]}))
    p.bar_width(0.8).legend(legend(show=False)).orientation(mc.VizOrientation.HORIZONTAL).show_value(mc.VisibilityMode.ALWAYS)
    return p.tooltip(tooltip(mc.TooltipDisplayMode.SINGLE)).x_field("Field")


def datasource_variable() -> gd.DatasourceVariable:
    return gd.DatasourceVariable("datasource").label("Data source").type("prometheus").hide(md.VariableHide.DONT_HIDE).multi(False).include_all(False).regex("")


def plan_variable() -> gd.QueryVariable:
    query = "label_values(churn_customers_active, plan)"
    return (gd.QueryVariable("plan").label("Plan").datasource(DATASOURCE).hide(md.VariableHide.DONT_HIDE)
            .query({"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
            .refresh(md.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(md.VariableSort.ALPHABETICAL_ASC).regex("")
            .include_all(True).all_value(".*").multi(True).current(md.VariableOption(selected=True, text=["All"], value=["$__all"])))


def custom_variable(name: str, label: str, values: Iterable[str], description: str, *, multi: bool = False) -> gd.CustomVariable:
    """A fixed list of values: the first selected, or All (regex .*) when `multi`."""
    values = list(values)
    current = md.VariableOption(selected=True, text=["All"], value=["$__all"]) if multi else md.VariableOption(selected=True, text=values[0], value=values[0])
    v = (gd.CustomVariable(name).label(label).description(description).hide(md.VariableHide.DONT_HIDE).values(",".join(values))
         .options([md.VariableOption(selected=not multi and i == 0, text=x, value=x) for i, x in enumerate(values)])
         .current(current).multi(multi).include_all(multi))
    return v.all_value(".*") if multi else v


def window_variable() -> gd.CustomVariable:
    return custom_variable("window", "Window", WINDOWS, "Rolling window of the churn figures, ending at the event-time clock.")


def dashboard(uid: str, title: str, description: str, rows: Iterable[Row], variables: list[Builder[md.VariableModel]], *,
              time_from: str = "now-7d", refresh: str = "1m") -> md.Dashboard:
    """Rows in order; the SDK flows each row's panels left to right and starts a new line once a line
    reaches 24 columns, so the widths of a row's panels must add up line by line to 24 (the test rejects
    a panel past column 24)."""
    d = (gd.Dashboard(title).uid(uid).description(description).tags([TAG]).readonly().time(time_from, "now").refresh(refresh)
         .timezone("utc").tooltip(md.DashboardCursorSync.CROSSHAIR).fiscal_year_start_month(0).week_start("").version(1)
         .annotation(gd.AnnotationQuery().built_in(1).datasource(md.DataSourceRef(type_val="grafana", uid="-- Grafana --")).enable(True)
                     .hide(True).icon_color("rgba(0, 211, 255, 1)").name("Annotations & Alerts").type("dashboard"))
         .link(gd.DashboardLink("Churn monitor").type(md.DashboardLinkType.DASHBOARDS).tags([TAG]).as_dropdown(False).icon("external link")
               .include_vars(False).keep_time(True).target_blank(False))
         .variables(variables))
    for row_title, panels in rows:
        d.with_row(gd.Row(row_title))
        for p in panels:
            d.with_panel(p)
    model = d.build()
    for i, placed in enumerate(model.panels or [], start=1):  # the SDK leaves ids to the caller
        placed.id_val = i
    return model


# ---------------------------------------------------------------------------
# Churn overview: panels
# ---------------------------------------------------------------------------

W = "${window}"


def churn_steps() -> gd.ThresholdsConfig:
    """Orange at the ChurnRateHigh ticket threshold, red at its page threshold."""
    return thresholds((CHURN_TICKET, "orange"), (CHURN_PAGE, "red"))


def window_stat(title: str, figure: str, unit: str, **kw) -> stat_panel.Panel:
    """A figure of the chosen window: the recording rule churn:<figure>:$window, titled "<title> ($window)"."""
    return stat(f"{title} ({W})", f"churn:{figure}:{W}", unit, **kw)


def churn_rate_stat(title: str, figure: str, description: str) -> stat_panel.Panel:
    return window_stat(title, figure, "percentunit", decimals=2, steps=churn_steps(), description=description)


def customers_now() -> Panel:
    return stat("Paying customers", "churn:customers_active:sum", "short",
                description="Customers with an active paid subscription now (trials excluded), plus purchase-only customers (plan=none).")


def mrr_now() -> Panel:
    return stat("MRR", "churn:mrr:sum", CURRENCY,
                description="Monthly recurring revenue now (Stripe definition: trials, free plans and metered items excluded).")


def arpa_now() -> Panel:
    return stat("ARPA", "churn:arpa:ratio", CURRENCY, description="Average revenue per account = MRR / paying customers (ChartMogul).")


def trials_now() -> Panel:
    return stat("In trial", "sum(churn_customers_trial)", "short", description="Customers in a trial now; they count as customers only once converted.")


def pending_cancellation() -> Panel:
    return stat("Cancelled, not yet churned", "sum(churn_customers_pending_cancellation)", "short",
                steps=thresholds((1, "orange")),
                description="Customers who cancelled but whose paid period has not ended (ProfitWell/Paddle): the most actionable group.")


def pending_cancellation_mrr() -> Panel:
    return stat("MRR about to churn", "sum(churn_mrr_pending_cancellation)", CURRENCY, steps=thresholds((1, "orange")),
                description="MRR of the customers cancelled but not yet churned; it leaves at the end of their paid periods.")


def customer_churn_rate() -> Panel:
    return churn_rate_stat("Customer churn rate", "customer_churn_rate", "Customers of the starting cohort lost in the window / customers at its start (ChartMogul; joiners who churn inside the window are left out). Alerts: ticket above 5 %, page above 10 % (30d).")


def customers_start() -> Panel:
    return window_stat("Customers at window start", "customers_start", "short",
                description="Paying customers at the end of the day the window starts.")


def customers_lost() -> Panel:
    return window_stat("Customers lost", "customers_lost", "short", steps=thresholds((1, "orange")),
                description="Customers of the starting cohort who churned in the window.")


def stripe_rolling_churn() -> Panel:
    return churn_rate_stat("Stripe rolling churn", "stripe_rolling_churn_rate", "Stripe's subscriber churn: churned in the window / (active at its start + new in it).")


def annualised_churn() -> Panel:
    return stat(f"Annualised churn (from {W})", f"churn:annualised_churn_rate:{W}", "percentunit", decimals=1,
                steps=thresholds((0.3, "orange"), (0.5, "red")),
                description="1 - (1 - monthly churn)^12 (fight-churn): the share of customers a year of this churn would lose. 4 % a month loses 39 % a year; 0.5 % loses 6 %.")


def mrr_lost() -> Panel:
    return window_stat("MRR lost", "mrr_lost", CURRENCY, steps=thresholds((1, "orange")),
                description="MRR of the starting cohort lost to churn in the window.")


def mrr_churn_rate() -> Panel:
    return churn_rate_stat("MRR churn rate", "mrr_churn_rate", "MRR lost to churn in the window / MRR at its start.")


def gross_mrr_churn() -> Panel:
    return churn_rate_stat("Gross MRR churn", "gross_mrr_churn_rate", "(churned + contraction MRR) / MRR at the window start.")


def net_mrr_churn() -> Panel:
    return window_stat("Net MRR churn", "net_mrr_churn_rate", "percentunit", decimals=2,
                steps=thresholds((0, "orange"), (CHURN_TICKET, "red")),
                description="(churn + contraction - expansion - reactivation) / MRR at the window start. Negative is good: expansion outgrew the losses.")


def net_revenue_retention() -> Panel:
    return window_stat("Net revenue retention", "net_revenue_retention", "percentunit", decimals=1,
                steps=thresholds((0.9, "orange"), (1.0, "green"), base="red"),
                description="(start MRR + expansion - contraction - churn) / start MRR of the starting cohort. Above 100 % the cohort grows without new customers.")


def quick_ratio() -> Panel:
    return window_stat("Quick ratio", "quick_ratio", "none", decimals=2,
                steps=thresholds((1, "orange"), (4, "green"), base="red"),
                description="(new + expansion MRR) / (contraction + churn MRR) (Baremetrics). Above 4 is healthy growth; below 1 the business shrinks.")


def lifetime_value() -> Panel:
    return stat(f"LTV (from {W} churn)", f"churn:ltv:{W}", CURRENCY,
                description="ARPA / monthly customer churn (ChartMogul). Unstable for small bases: a couple of churns swing it.")


def churn_rates_over_time() -> Panel:
    return timeseries("Customer churn rate", [
        target("churn:customer_churn_rate:30d", "30-day"),
        target("churn:customer_churn_rate:90d", "90-day"),
        target("churn:stripe_rolling_churn_rate:30d", "Stripe rolling 30-day"),
        target("churn:annualised_churn_rate:30d", "annualised (from 30-day)"),
    ], "percentunit", decimals=2, steps=churn_steps(),
        description="Rolling windows ending at the event-time clock.")


def mrr_churn_over_time() -> Panel:
    return timeseries("Gross and net MRR churn", [
        target("churn:gross_mrr_churn_rate:30d", "gross 30-day"),
        target("churn:net_mrr_churn_rate:30d", "net 30-day"),
        target("churn:gross_mrr_churn_rate:90d", "gross 90-day"),
        target("churn:net_mrr_churn_rate:90d", "net 90-day"),
    ], "percentunit", decimals=2, description="Gross = (churn + contraction) / start MRR; net also subtracts expansion and reactivation.")


def mrr_movements_window() -> Panel:
    sel = f'churn_window_mrr_movement{{window="{W}"'
    return barchart(f"MRR movements in the last {W}", [
        target(f'sum by (kind) ({sel}, kind=~"new|expansion|reactivation"}})', "{{kind}}", instant=True),
        target(f'-sum by (kind) ({sel}, kind=~"contraction|churn"}})', "{{kind}}", instant=True),
        target(f'sum({sel}, kind=~"new|expansion|reactivation"}}) - sum({sel}, kind=~"contraction|churn"}})', "net MRR growth", instant=True),
    ], CURRENCY, description="ChartMogul's MRR movements in the window (event time): growth = new + expansion + reactivation - contraction - churn. Losses are drawn negative.")


def mrr_movements_hourly() -> Panel:
    return timeseries("MRR movements per hour", [
        target('kind:churn_mrr_movement:increase1h{kind=~"new|expansion|reactivation"}', "{{kind}}"),
        target('-kind:churn_mrr_movement:increase1h{kind=~"contraction|churn"}', "{{kind}}"),
    ], CURRENCY, stacked=True, bars=True, interval="1h",
        description="MRR moved in each hour as events were processed (wall-clock time: a replay of history shows up as a burst). Losses are drawn negative.")


def mrr_lost_vs_usual() -> Panel:
    return timeseries("MRR churned per hour vs usual", [
        target('kind:churn_mrr_movement:increase1h{kind="churn"}', "churned in the last hour"),
        target('3 * avg_over_time(kind:churn_mrr_movement:increase1h{kind="churn"}[7d])', "3x the 7-day average (ChurnMrrLossSpike)"),
    ], CURRENCY, description="ChurnMrrLossSpike pages when the first line crosses the second and exceeds 1000.")


def quick_ratio_over_time() -> Panel:
    return timeseries(f"Quick ratio ({W})", [target(f"churn:quick_ratio:{W}", "quick ratio")], "none", w=6, decimals=2,
                      steps=thresholds((1, "orange"), (4, "green"), base="red"),
                      description="(new + expansion) / (contraction + churn) MRR.")


def nrr_over_time() -> Panel:
    return timeseries(f"Net revenue retention ({W})", [target(f"churn:net_revenue_retention:{W}", "NRR")], "percentunit", w=6, decimals=1,
                      description="(start MRR + expansion - contraction - churn) / start MRR.")


def mrr_by_plan() -> Panel:
    return timeseries("MRR by plan", [target('plan:churn_mrr:sum{plan=~"${plan}"}', "{{plan}}")], CURRENCY, stacked=True)


def customers_by_plan() -> Panel:
    return timeseries("Paying customers by plan", [target('plan:churn_customers_active:sum{plan=~"${plan}"}', "{{plan}}")], "short", stacked=True)


def churned_by(label: str, title: str, description: str) -> Panel:
    expr = f'sum by ({label}) (increase(churn_customers_churned_total{{plan=~"${{plan}}"}}[$__range]))'
    return bargauge(title, [target(expr, f"{{{{{label}}}}}", instant=True)], "short", description=description)


def churn_by_reason() -> Panel:
    return churned_by("reason", "Churned by reason", "Customers churned in the dashboard's time range by stated cancellation reason, or payment / inactivity.")


def churn_by_plan() -> Panel:
    return churned_by("plan", "Churned by plan", "Customers churned in the dashboard's time range by their plan at churn.")


def churn_by_kind() -> Panel:
    return churned_by("kind", "Churned by kind", "Voluntary (cancelled), involuntary (payment not recovered in the grace period), inactivity (non-contractual customers gone quiet).")


def early_life_churn() -> Panel:
    return bargauge("Churned by tenure (early-life churn)", [
        target("sum by (tenure) (increase(churn_customers_churned_by_tenure_total[$__range]))", "{{tenure}} days", instant=True),
    ], "short", description="Customers churned in the dashboard's time range by tenure at churn: many in 0-30 / 31-60 days points at onboarding.")


def stickiness_now() -> Panel:
    return stat("Stickiness (DAU/MAU)", "churn:stickiness:ratio", "percentunit", decimals=1, w=6, h=8,
                steps=thresholds((0.1, "orange"), (0.2, "green"), base="red"),
                description="Average daily active customers over the last 30 days / monthly active customers (NetHunt).")


def forgettable_share() -> Panel:
    return stat("Forgettable zone", "churn:forgettable_customers:ratio", "percentunit", decimals=1, w=6, h=8,
                steps=thresholds((0.1, "orange"), (0.25, "red")),
                description="Share of paying customers with no usage in the last 30 days: less than once a month.")


def active_customers() -> Panel:
    return timeseries("Active customers", [
        target("sum(churn_users_daily_active)", "daily active"),
        target("sum(churn_users_monthly_active)", "monthly active"),
        target("sum(churn_customers_forgettable)", "forgettable (paying, no usage in 30 days)"),
    ], "short")


def repeat_customer_rate() -> Panel:
    return window_stat("Repeat customer rate", "repeat_customer_rate", "percentunit", decimals=1, w=12,
                description="Customers with more than one purchase in the window / customers with a purchase in it (Stripe). For businesses that sell without subscriptions.")


def purchase_frequency() -> Panel:
    return window_stat("Purchase frequency", "purchase_frequency", "none", decimals=2, w=12,
                description="Purchases in the window / customers with a purchase in it (Stripe).")


def cohort_heatmap(title: str, rule: str, description: str) -> Panel:
    """Cohorts (start months) down, months since the start across, one cell per
    (cohort, age) coloured by retention: an instant table turned into a matrix
    (rows = age, a column per cohort), which Grafana's heatmap reads as a
    numeric x with one ordinal bucket per cohort."""
    p = _panel(heatmap_panel.Panel(), title, [target(rule, instant=True, table=True)], "percentunit", description=description, w=12, h=10,
               decimals=None, steps=None)
    p.transformations([
        md.DataTransformerConfig(id_val="groupingToMatrix", options={"columnField": "cohort", "rowField": "age", "valueField": "Value", "emptyValue": "null"}),
        md.DataTransformerConfig(id_val="convertFieldType", options={"conversions": [{"targetField": "age\\cohort", "destinationType": "number"}], "fields": {}}),
        md.DataTransformerConfig(id_val="sortBy", options={"fields": {}, "sort": [{"field": "age\\cohort"}]}),
    ])
    p.calculate(False).cell_gap(1).cell_values(heatmap_panel.CellValues().decimals(0).unit("percentunit"))
    p.color(heatmap_panel.HeatmapColorOptions().exponent(0.5).fill("dark-green").mode(mh.HeatmapColorMode.SCHEME).reverse(False)
            .scale(mh.HeatmapColorScale.LINEAR).scheme("RdYlGn").steps(64))
    p.exemplars_color("rgba(255,0,255,0.7)").filter_values(heatmap_panel.FilterValueRange().le(-1)).show_legend()
    p.rows_frame(heatmap_panel.RowsHeatmapOptions().layout(mc.HeatmapCellLayout.UNKNOWN).value("retained")).show_value(mc.VisibilityMode.AUTO)
    p.mode(mc.TooltipDisplayMode.SINGLE).show_color_scale(True).hide_y_histogram()
    return p.y_axis(heatmap_panel.YAxisConfig().axis_label("cohort (start month)").axis_placement(mc.AxisPlacement.LEFT).reverse(True))


def customer_retention_cohorts() -> Panel:
    return cohort_heatmap(
        "Customer retention by cohort", "cohort_age:churn_cohort_customers_retained:ratio",
        "ChartMogul's cohort table: customers who started in a month (row) still active at the end of each month since (column: months since the start; "
        "the current month as of now), as a share of the cohort at the end of its first month. The 24 latest cohorts.")


def mrr_retention_cohorts() -> Panel:
    return cohort_heatmap(
        "MRR retention by cohort", "cohort_age:churn_cohort_mrr_retained:ratio",
        "The cohorts' MRR at the end of each month since their start month, as a share of their MRR at the end of that first month: "
        "above 100 % the cohort's expansion outgrew its churn and contraction.")


def churn_overview() -> md.Dashboard:
    return dashboard(
        "churn-overview",
        "Churn overview",
        "Customers, MRR and churn of the whole business, as the churn monitor computes them from the event streams.",
        [
            ("Now", [customers_now(), mrr_now(), arpa_now(), trials_now(), pending_cancellation(), pending_cancellation_mrr()]),
            (f"Churn in the last {W}", [
                customer_churn_rate(), customers_start(), customers_lost(), stripe_rolling_churn(), annualised_churn(), lifetime_value(),
                mrr_churn_rate(), mrr_lost(), gross_mrr_churn(), net_mrr_churn(), net_revenue_retention(), quick_ratio(),
                churn_rates_over_time(), mrr_churn_over_time(),
            ]),
            ("MRR movements", [
                mrr_movements_window(), mrr_movements_hourly(), mrr_lost_vs_usual(), quick_ratio_over_time(), nrr_over_time(),
                mrr_by_plan(), customers_by_plan(),
            ]),
            ("Why and when customers churn", [churn_by_reason(), churn_by_plan(), churn_by_kind(), early_life_churn()]),
            ("Engagement", [stickiness_now(), forgettable_share(), active_customers()]),
            ("Purchases and cohorts", [repeat_customer_rate(), purchase_frequency(), customer_retention_cohorts(), mrr_retention_cohorts()]),
        ],
        [datasource_variable(), plan_variable(), window_variable()],
        time_from="now-30d",
    )


# ---------------------------------------------------------------------------
# Pipeline health: panels
# ---------------------------------------------------------------------------


def workers_up() -> Panel:
    return stat("Workers up", "churn:workers_up:sum", "short", steps=thresholds((1, "green"), base="red"),
                description="Workers Prometheus can scrape (job churnmon). ChurnWorkerDown / ChurnWorkersAllDown page on this.")


def partitions_assigned() -> Panel:
    return stat("Partitions assigned", "churn:partitions_assigned:sum", "short",
                description="Input partitions owned across the fleet; equals the partition count (CHURNMON_PARTITIONS, 8) when every partition has a worker.")


def events_rate() -> Panel:
    return stat("Events processed", "churn:events_processed:rate5m", RATE, description="Valid input events per second, all topics, last 5 minutes.")


def dead_letter_ratio() -> Panel:
    return stat("Dead-lettered", "churn:events_rejected:ratio_rate5m", "percentunit", decimals=2, steps=thresholds((0.01, "orange"), (0.25, "red")),
                description="Share of input messages that failed the event contract and went to churn.dlq. ChurnDeadLetterRateHigh: ticket above 1 %, page above 25 %.")


def event_time_lag() -> Panel:
    return stat("Event-time lag", "churn:event_time_lag_seconds:max", "s", steps=thresholds((3600, "orange"), (86400, "red")),
                description="Wall clock minus the newest event time processed (worst worker). Large during a replay of history; the business alerts hold off above one day.")


def consumer_lag() -> Panel:
    return stat("Consumer lag", "churn:kafka_consumergroup_lag:sum", "short", steps=thresholds((1000, "orange")),
                description="Messages waiting on the broker for consumer group churnmon (kafka-exporter).")


def events_by_topic() -> Panel:
    return timeseries("Events processed by topic", [target("topic:churn_events_processed:rate5m", "{{topic}}")], RATE, stacked=True)


def rejected_by_topic_reason() -> Panel:
    return timeseries("Rejected by topic and reason", [target("topic_reason:churn_events_rejected:rate5m", "{{topic}} {{reason}}")], RATE, stacked=True,
                      description="Messages dead-lettered to churn.dlq per second; the reason codes are those of schemas/README.md.")


def dead_letter_volume() -> Panel:
    return timeseries("Dead-letter volume per hour", [target("sum by (reason) (increase(churn_events_rejected_total[1h]))", "{{reason}}")], "short",
                      stacked=True, bars=True, interval="1h", description="Messages written to churn.dlq in each hour, by rejection reason.")


def duplicates_and_late() -> Panel:
    return timeseries("Duplicate and late events", [
        target("sum by (topic) (rate(churn_events_duplicate_total[5m]))", "duplicate {{topic}}"),
        target("sum by (topic) (rate(churn_events_late_total[5m]))", "late {{topic}}"),
    ], RATE, description="Redelivered events (dropped by event_id) and events older than the event-time clock (applied where safe).")


def processing_latency() -> Panel:
    return timeseries("Processing latency", [target("churn:event_processing_seconds:histogram_quantile", "p{{quantile}}")], "s",
                      description="Wall time to process one event, decode to state and metrics (fleet quantiles over 5 minutes).")


def processing_latency_by_worker() -> Panel:
    return timeseries("p99 processing latency by worker", [
        target("histogram_quantile(0.99, sum by (instance, le) (rate(churn_event_processing_seconds_bucket[5m])))", "{{instance}}"),
    ], "s")


def event_time_lag_by_worker() -> Panel:
    return per_worker("Event-time lag by worker", "churn_event_time_lag_seconds", "s",
                      description="Wall clock minus the newest event time each worker processed.")


def clock_behind_wall() -> Panel:
    return per_worker("Event-time clock behind wall clock", "time() - churn_event_time_clock_seconds", "s",
                      description="The windows end at this clock: the newest event time less the allowed lateness (1 h by default).")


def consumer_lag_by_topic() -> Panel:
    return timeseries("Consumer lag by topic", [target("topic:kafka_consumergroup_lag:sum", "{{topic}}")], "short", stacked=True, w=8,
                      description="From kafka-exporter; ChurnConsumerLagGrowing tickets when it is above 1000 and growing for 15 minutes.")


def partitions_by_worker() -> Panel:
    return per_worker("Partitions by worker", "churn_partitions_assigned", "short", stacked=True, w=8,
                      description="A rebalance moves partitions between workers; a worker with 0 idles.")


def workers_over_time() -> Panel:
    return timeseries("Workers up", [target("churn:workers_up:sum", "workers up")], "short", w=8)


def pipeline_health() -> md.Dashboard:
    return dashboard(
        "churn-pipeline",
        "Churn pipeline health",
        "Is the churn monitor keeping up: events in and rejected, latency, event-time lag, workers and consumer lag.",
        [
            ("Fleet", [workers_up(), partitions_assigned(), events_rate(), dead_letter_ratio(), event_time_lag(), consumer_lag()]),
            ("Input", [events_by_topic(), rejected_by_topic_reason(), dead_letter_volume(), duplicates_and_late()]),
            ("Latency and lag", [processing_latency(), processing_latency_by_worker(), event_time_lag_by_worker(), clock_behind_wall()]),
            ("Workers and Kafka", [workers_over_time(), partitions_by_worker(), consumer_lag_by_topic()]),
        ],
        [datasource_variable()],
        time_from="now-6h",
        refresh="30s",
    )


# ---------------------------------------------------------------------------
# At-risk customers: panels
# ---------------------------------------------------------------------------

# Risk bands of stream_app/risk/alerts.py (RISK_BANDS): low < 0.4 <= medium < 0.6 <= high < 0.8 <= critical.
BAND_COLOURS = {"low": "green", "medium": "yellow", "high": "orange", "critical": "red"}
# ChurnAtRiskMrrHigh tickets above this share of MRR in the high and critical bands.
HIGH_RISK_SHARE = 0.15
BAND = "${band}"


def band_variable() -> gd.CustomVariable:
    return custom_variable("band", "Risk band", BAND_COLOURS, "Churn-risk bands: low < 0.4 <= medium < 0.6 <= high < 0.8 <= critical.", multi=True)


def by_band(rule: str, *, instant: bool = False) -> list[prometheus.Dataquery]:
    """A per-band recording rule, for the bands chosen in $band."""
    return [target(f'{rule}{{band=~"{BAND}"}}', "{{band}}", instant=instant)]


def high_risk_customers() -> Panel:
    return stat("High-risk customers", "churn:high_risk_customers:sum", "short", steps=thresholds((1, "orange")),
                description="Paying customers whose current churn risk is high or critical (risk >= 0.6): the ones at-risk alerts are raised for.")


def high_risk_mrr() -> Panel:
    return stat("High-risk MRR", "churn:high_risk_mrr:sum", CURRENCY, steps=thresholds((1, "orange")),
                description="MRR of the paying customers in the high and critical risk bands.")


def high_risk_mrr_share() -> Panel:
    return stat("Share of MRR at high risk", "churn:high_risk_mrr:ratio", "percentunit", decimals=1,
                steps=thresholds((HIGH_RISK_SHARE, "red")),
                description="High and critical MRR / all MRR. ChurnAtRiskMrrHigh opens a ticket above 15 % for 30 minutes.")


def expected_loss_now() -> Panel:
    return stat("Expected MRR loss", "churn:expected_mrr_loss:sum", CURRENCY,
                description="Sum over paying customers of risk x MRR: the MRR expected to churn within the model's horizon (30 days by default, CHURNMON_HORIZON_DAYS).")


def expected_loss_share() -> Panel:
    return stat("Expected loss / MRR", "churn:expected_mrr_loss:ratio", "percentunit", decimals=1,
                steps=thresholds((0.05, "orange"), (0.10, "red")),
                description="Expected MRR loss as a share of MRR: a forward-looking counterpart of the MRR churn rate (same 5 % / 10 % colours).")


def scored_by_model_share() -> Panel:
    return stat("Scored by the model", "churn:customers_scored_by_model:ratio_rate5m", "percentunit", decimals=0,
                steps=thresholds((0.5, "green"), base="orange"),
                description="Share of the risk scores of the last 5 minutes produced by the online model; the rest come from the rule-based score, used until the model has seen CHURNMON_MIN_LABELS labels of both classes.")


def customers_by_band() -> Panel:
    return fixed_colours(timeseries("Paying customers by risk band", by_band("band:churn_at_risk_customers:sum"), "short", stacked=True,
                                    description="Every paying customer is in exactly one band, by the risk of their latest score."), BAND_COLOURS)


def mrr_by_band() -> Panel:
    return fixed_colours(timeseries("MRR by risk band", by_band("band:churn_at_risk_mrr:sum"), CURRENCY, stacked=True,
                                    description="MRR of the paying customers in each band; the stack is all MRR."), BAND_COLOURS)


def band_breakdown_now() -> Panel:
    return fixed_colours(bargauge("MRR by risk band now", by_band("band:churn_at_risk_mrr:sum", instant=True), CURRENCY, w=8,
                                  description="Where the MRR sits now, by band."), BAND_COLOURS)


def customers_by_band_now() -> Panel:
    return fixed_colours(bargauge("Customers by risk band now", by_band("band:churn_at_risk_customers:sum", instant=True), "short", w=8,
                                  description="Paying customers by band now."), BAND_COLOURS)


def expected_loss_over_time() -> Panel:
    return timeseries("Expected MRR loss", [
        target("churn:expected_mrr_loss:sum", "expected loss (risk x MRR)"),
        target("churn:high_risk_mrr:sum", "MRR in the high and critical bands"),
    ], CURRENCY, w=8,
        description="Expected loss weighs every customer by their risk; high-risk MRR counts only the top two bands, in full.")


def alerts_by_state() -> Panel:
    return fixed_colours(timeseries("At-risk alerts per hour by state", [target("state:churn_alerts_emitted:increase1h", "{{state}}")], "short",
                      description="Alerts published to churn.alerts in the last hour (rolling), by state: raised (risk reached 0.6), escalated (risk rose 0.1 above the last alert), resolved (risk fell below 0.4). Counted when processed, so a replay of history shows as a burst."),
                         {"raised": "orange", "escalated": "red", "resolved": "green"})


def alerts_by_play_over_time() -> Panel:
    return timeseries("Raised and escalated alerts per hour by play", [target("play:churn_alerts_emitted:increase1h", "{{play}}")], "short",
                      stacked=True,
                      description="The recommended play follows the category of the alert's top reason (price -> discount_or_payment_plan, payment -> dunning, inactivity / product fit -> feature_nudge, ...). The reason itself is in the alert on churn.alerts, not a metric label.")


def alerts_by_play() -> Panel:
    return bargauge("Alerts by recommended play", [
        target('sum by (play) (increase(churn_alerts_emitted_total{state=~"raised|escalated"}[$__range]))', "{{play}}", instant=True),
    ], "short", w=8,
        description="Raised and escalated alerts in the dashboard's time range by recommended play: the work each team (success, billing, product) was handed. By play, not by reason: the reason category is not a metric label (it decides the play).")


def alerts_by_state_total() -> Panel:
    return bargauge("Alerts by state", [
        target("sum by (state) (increase(churn_alerts_emitted_total[$__range]))", "{{state}}", instant=True),
    ], "short", w=8, description="Alerts published in the dashboard's time range, by state.")


def alert_resolution_ratio() -> Panel:
    return stat("Resolved / raised", 'sum(increase(churn_alerts_emitted_total{state="resolved"}[$__range])) / (sum(increase(churn_alerts_emitted_total{state="raised"}[$__range])) > 0)',
                "percentunit", decimals=0, w=8, h=8,
                description="Alerts resolved (risk back below 0.4) per alert raised in the dashboard's time range. Low for long: at-risk customers are not recovering.")


def scores_by_source() -> Panel:
    return timeseries("Risk scores by source", [target("scored_by:churn_customers_scored:rate5m", "{{scored_by}}")], RATE, stacked=True,
                      description="Risk scores computed per second (every event of a paying customer, and the daily sweep), by who produced them: the online model once ready, the rule-based score before.")


def model_version_in_use() -> Panel:
    return per_worker("Model version scoring", "churn_model_version", "none", decimals=0,
                      description="The model snapshot each worker scores with (0 = rules only). Workers pick a new snapshot up from churn.models within a second or so.")


def winback_by_band() -> Panel:
    return timeseries("Lapsed buyers by win-back band", [target("sum by (band) (churn_winback_customers)", "{{band}}")], "short",
                      stacked=True, w=16,
                      description="Purchase-only customers who lapsed (no purchase or usage for inactivity_days) in the last winback_days, by their probability of buying again within the horizon (1 - P(no purchase), from BG/NBD or the purchase model): low < 0.1 <= medium < 0.3 <= high. The high band is the `winback` play's list; each one's probability is in the customer lookup.")


def winback_now() -> Panel:
    return bargauge("Lapsed buyers by win-back band now", [target("sum by (band) (churn_winback_customers)", "{{band}}", instant=True)], "short",
                    w=8, description="Lapsed purchase-only customers still ranked, by win-back band now.")


def at_risk_customers() -> md.Dashboard:
    return dashboard(
        "churn-at-risk",
        "At-risk customers",
        "Who is likely to churn and what it would cost: paying customers and MRR by churn-risk band, the expected MRR loss, and the at-risk alerts sent to customer success.",
        [
            ("Now", [high_risk_customers(), high_risk_mrr(), high_risk_mrr_share(), expected_loss_now(), expected_loss_share(), scored_by_model_share()]),
            ("Risk bands", [customers_by_band(), mrr_by_band(), customers_by_band_now(), band_breakdown_now(), expected_loss_over_time()]),
            ("At-risk alerts", [alerts_by_state(), alerts_by_play_over_time(), alerts_by_state_total(), alerts_by_play(), alert_resolution_ratio()]),
            ("Scoring", [scores_by_source(), model_version_in_use()]),
            ("Win-back", [winback_by_band(), winback_now()]),
        ],
        [datasource_variable(), band_variable()],
        time_from="now-7d",
    )


# ---------------------------------------------------------------------------
# Model quality: panels
# ---------------------------------------------------------------------------

# ChurnModelAucLow tickets below this rolling ROC AUC (prometheus/rules/alerts.yml).
AUC_FLOOR = 0.65


def quality(metric: str, window: str) -> str:
    """One figure of the trainer (the only worker that exports churn_model_quality)."""
    return f'max(churn_model_quality{{metric="{metric}", window="{window}"}})'


def rolling_and_cumulative(metric: str) -> list[prometheus.Dataquery]:
    return [target(quality(metric, "rolling"), "rolling (recent labels)"), target(quality(metric, "cumulative"), "cumulative")]


def model_ready() -> Panel:
    return stat("Model ready", "min(churn_model_ready)", "none", steps=thresholds((1, "green"), base="orange"),
                mappings=value_texts({"0": "rules only", "1": "model"}),
                w=3, description="1 (model) when the model every worker scores with has seen CHURNMON_MIN_LABELS labels of both classes; until then the rule-based score is used. The least ready worker.")


def model_version_now() -> Panel:
    return stat("Model version", "max(churn_model_version)", "none", decimals=0,
                w=3, description="Newest model snapshot in use (0 = none published yet). The trainer publishes one every CHURNMON_PUBLISH_EVERY labels or CHURNMON_PUBLISH_INTERVAL_S seconds.")


def model_age_now() -> Panel:
    return stat("Model age", "time() - max(churn_model_created_timestamp_seconds > 0)", "s", steps=thresholds((3600, "orange"), (86400, "red")),
                w=3, description="Wall time since the newest model in use was published (time() - churn_model_created_timestamp_seconds). Grows while no labels arrive: the model stops learning.")


def auc_now() -> Panel:
    return stat("ROC AUC (rolling)", quality("roc_auc", "rolling"), "none", decimals=3,
                steps=thresholds((AUC_FLOOR, "green"), base="red"),
                w=3, description="Probability that a churner is scored above a stayer, over the most recent labels (progressive validation: each label is scored before it is learnt). 0.5 = random. The rolling window is stream_app.risk.model.Quality's (a fixed number of labels); until that many have arrived it equals the cumulative figure. ChurnModelAucLow below 0.65 for an hour.")


def lift_now() -> Panel:
    return stat("Top-decile lift", quality("top_decile_lift", "rolling"), "none", decimals=1,
                steps=thresholds((1.5, "orange"), (3, "green"), base="red"),
                w=3, description="Churn rate among the 10 % highest scores / overall churn rate, over the most recent labels (fight-churn). 1 = no better than random.")


def drift_now() -> Panel:
    return stat("Drift detected", "max(churn_model_drift_detected)", "none", steps=thresholds((1, "orange")),
                mappings=value_texts({"0": "no", "1": "drift"}),
                w=3, description="1 after ADWIN detected a change in the model's daily error on the last update (per class). ChurnModelDrift tickets on new drift events.")


def labels_learnt_total() -> Panel:
    return stat("Labels learnt", "sum(churn_model_labels_total)", "short",
                w=3, description="Labelled examples the trainer has learnt from since it started (resets when the trainer restarts; the model itself continues from its snapshot).")


def calibration_error_now() -> Panel:
    return stat("Calibration error", "churn:model_calibration_error:avg", "percentunit", decimals=1, steps=thresholds((0.05, "orange"), (0.1, "red")),
                w=3, description="Expected calibration error: the label-weighted mean over the score bins of |mean predicted risk - observed churn rate|. 0 = a risk of 0.3 means 30 % churn.")


def auc_over_time() -> Panel:
    return timeseries("ROC AUC", rolling_and_cumulative("roc_auc"), "none", decimals=3, steps=thresholds((AUC_FLOOR, "transparent"), base="red"), show_thresholds=True,
        description="Progressive validation on the delayed labels. Rolling reacts to drift; cumulative is the model's whole history. Red below 0.65 (ChurnModelAucLow).")


def log_loss_over_time() -> Panel:
    return timeseries("Log loss", rolling_and_cumulative("log_loss"), "none", decimals=3,
        description="Mean -log(probability given to what happened). Lower is better; it punishes confident mistakes, so it rises when calibration slips even if the ranking (AUC) holds.")


def brier_over_time() -> Panel:
    return timeseries("Brier score", [target(quality("brier", "cumulative"), "cumulative")], "none", decimals=4,
                      description="Mean squared error of the predicted probability (0 is perfect). Cumulative only.")


def lift_over_time() -> Panel:
    return timeseries("Top-decile lift", [target(quality("top_decile_lift", "rolling"), "rolling (recent labels)")], "none", decimals=2,
                      description="How many times more churners there are among the top 10 % of scores than overall.")


def calibration_bins() -> Panel:
    """Mean predicted risk and observed churn rate side by side, one group of bars per score bin."""
    sel = "max by (bin) (churn_model_calibration{{stat=\"{}\"}})"
    p = barchart("Calibration: predicted vs observed", [
        target(sel.format("mean_predicted"), "mean predicted", instant=True, table=True),
        target(sel.format("observed_rate"), "observed churn rate", instant=True, table=True),
    ], "percentunit", w=16, h=9, decimals=0,
        description="Labels are put in ten bins by the risk they were scored with (0-10 %, 10-20 %, ...). In each bin: the mean predicted risk and the share that did churn. A calibrated model has the two bars equal; observed below predicted means the scores overstate risk. Cumulative over the trainer's labels.")
    p.transformations([
        md.DataTransformerConfig(id_val="merge", options={}),
        md.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}, "renameByName": {"Value #A": "mean predicted", "Value #B": "observed churn rate"}}),
        md.DataTransformerConfig(id_val="sortBy", options={"fields": {}, "sort": [{"field": "bin"}]}),  # "0".."9": text order is bin order
    ])
    p.override_by_name("bin", [md.DynamicConfigValue(id_val="mappings", value=value_texts({str(i): f"{i * 10}-{(i + 1) * 10} %" for i in range(10)}))])
    p.group_width(0.7).legend(legend()).orientation(mc.VizOrientation.VERTICAL).show_value(mc.VisibilityMode.AUTO)
    return p.tooltip(tooltip(mc.TooltipDisplayMode.MULTI)).x_field("bin")


def calibration_counts() -> Panel:
    return bargauge("Labels per score bin", [
        target('max by (bin) (churn_model_calibration{stat="count"})', "{{bin}}", instant=True),
    ], "short", w=8, h=9,
        description="How many labels each calibration bin holds (bin 0 = scored 0-10 %, ..., bin 9 = 90-100 %). A bin with few labels has a noisy observed rate.")


def labels_per_minute() -> Panel:
    return timeseries("Labels per minute", [
        target("sum by (label) (rate(churn_training_examples_total[$__rate_interval])) * 60", "produced: {{label}}"),
        target("sum(rate(churn_model_labels_total[$__rate_interval])) * 60", "learnt by the trainer"),
    ], "cpm", stacked=False,
        description="Labelled examples sent to churn.training by the scoring workers (a snapshot becomes a label once the horizon has passed: churned or stayed), and those the trainer learnt. Learnt below produced for long: the trainer is behind.")


def churned_label_share() -> Panel:
    return timeseries("Share of labels that churned", [
        target('sum(increase(churn_training_examples_total{label="churned"}[1d])) / (sum(increase(churn_training_examples_total[1d])) > 0)', "churned / all labels, last 24 h"),
    ], "percentunit", decimals=1,
        description="The base rate the model learns: positives among the labels produced in the last 24 hours (labels arrive in bursts: the daily expiry of snapshots labels many stayers at once). Lift and calibration are relative to it.")


def model_version_over_time() -> Panel:
    return per_worker("Model version by worker", "churn_model_version", "none", decimals=0, w=8,
                      description="Each worker's model snapshot. Workers differing for more than a few seconds: one is not reading churn.models.")


def model_age_over_time() -> Panel:
    return per_worker("Model age by worker", "time() - (churn_model_created_timestamp_seconds > 0)", "s", w=8,
                      description="time() - churn_model_created_timestamp_seconds: wall time since the snapshot each worker scores with was published. A saw-tooth while labels arrive.")


def ready_over_time() -> Panel:
    return per_worker("Model ready by worker", "churn_model_ready", "none", decimals=0, w=8,
                      description="0 = the rule-based score, 1 = the online model.")


def drift_over_time() -> Panel:
    return timeseries("Drift", [
        target("max(churn_model_drift_detected)", "drift detected on the last update"),
        target("max(churn_model_drift_events)", "drift events since the trainer started"),
    ], "none", decimals=0, w=18,
        description="ADWIN on the model's daily mean error per class. Events accumulate within a trainer process (they restart at 0 with a new trainer).")


def drift_events_in_range() -> Panel:
    return stat("Drift events in range", "sum(increase(churn_model_drift_events[$__range]))", "none", decimals=0, w=6, h=8, steps=thresholds((1, "orange")),
                description="New drift events in the dashboard's time range (a trainer restart counts as a reset, not as events).")


def snapshots_refused() -> Panel:
    return timeseries("Model snapshots refused", [
        target("sum by (reason) (increase(churn_model_snapshots_rejected_total[$__rate_interval]))", "{{reason}}"),
    ], "none", decimals=0, w=24, bars=True,
        description="Records on churn.models a worker refused (unsigned, badly signed, old pickle format, malformed) and skipped, keeping the model it had: a forgery, or workers with different signing keys. Every worker counts each one (each reads the topic), and again after a restart. Runbook: ChurnModelSnapshotRefused.")


def candidate_auc_over_time() -> Panel:
    return timeseries("Candidates: progressive-validation ROC AUC", [
        target("max by (candidate) (churn_model_candidate_roc_auc)", "{{candidate}}"),
    ], "none", decimals=3, w=12,
        description="model_kind select: every label is scored by every candidate (rules, linear, tree) before any learns it; older labels fade (half weight after 20,000 labels). The best one serves; a challenger must lead by 0.005.")


def candidate_serving_over_time() -> Panel:
    return timeseries("Candidate serving", [
        target("max by (candidate) (churn_model_serving)", "{{candidate}}"),
        target("max(churn_model_candidate_switches)", "switches (lineage)"),
    ], "none", decimals=0, w=12,
        description="1 for the candidate whose scores, reasons and scored_by the model in use serves (rules: scored_by=rules). Switches count every change of the serving candidate in the model's lineage.")


def model_quality() -> md.Dashboard:
    return dashboard(
        "churn-model",
        "Churn model quality",
        "How good the online churn-risk model is, measured on delayed labels (progressive validation): ranking (ROC AUC, lift), probabilities (log loss, Brier, calibration), the label flow, the model in use and drift.",
        [
            ("Now", [model_ready(), model_version_now(), model_age_now(), auc_now(), lift_now(), calibration_error_now(), drift_now(), labels_learnt_total()]),
            ("Quality over time", [auc_over_time(), lift_over_time(), log_loss_over_time(), brier_over_time()]),
            ("Calibration", [calibration_bins(), calibration_counts()]),
            ("Labels", [labels_per_minute(), churned_label_share()]),
            ("Model in use", [model_version_over_time(), model_age_over_time(), ready_over_time()]),
            ("Candidates", [candidate_auc_over_time(), candidate_serving_over_time()]),
            ("Drift", [drift_over_time(), drift_events_in_range()]),
            ("Snapshots", [snapshots_refused()]),
        ],
        [datasource_variable()],
        time_from="now-24h",
    )


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

# file name -> builder.
DASHBOARDS: dict[str, Callable[[], md.Dashboard]] = {
    "churn-overview.json": churn_overview,
    "pipeline-health.json": pipeline_health,
    "at-risk-customers.json": at_risk_customers,
    "model-quality.json": model_quality,
}


def render(d: md.Dashboard) -> str:
    """The committed form: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(d, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build() -> dict[str, str]:
    """file name -> JSON text of every dashboard."""
    return {name: render(make()) for name, make in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if grafana/dashboards/ differs from the generator")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build().items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    if stale:
        print(f"stale dashboards (run python grafana/build_dashboards.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
