from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from stream_app.domain import kpis
from stream_app.domain.kpis import Ledger, figures
from stream_app.domain.state import ACTIVE, CANCELLED, month_of, new_state
from tests.data.make_kpi_events import EXPECTED, EXPECTED_RATES, events
from tests.pure_pipeline import PurePipeline
from tests.test_state import DAY

LEDGER_NAMES = {name: key for key, (name, _) in __import__("stream_app.runtime.metrics", fromlist=["x"]).LEDGER_GAUGES.items()}


def ledger_expectations():
    """EXPECTED entries that come from the ledger, keyed like kpis.Series."""
    out = {}
    for sample, value in EXPECTED.items():
        name, _, labels = sample.partition("{")
        key = LEDGER_NAMES.get(name)
        if key is None:
            continue
        lab = dict(kv.split("=") for kv in labels.rstrip("}").split(",")) if labels else {}
        lab = {k: v.strip('"') for k, v in lab.items()}
        if "cohort" in lab:
            year, month = map(int, lab["cohort"].split("-"))
            series = (key, year * 12 + month - 1, int(lab["age"]))
        elif "plan" in lab:
            series = (key, lab["plan"])
        elif "kind" in lab:
            series = (key, int(lab["window"][:-1]), lab["kind"])
        elif "window" in lab:
            series = (key, int(lab["window"][:-1]))
        else:
            series = (key,)
        out[series] = value
    return out


def test_fixture_figures_match_the_hand_computation():
    pipe = PurePipeline()
    for e in events:
        pipe.feed(e)
    pipe.finish()
    values = pipe.values()
    values.update(kpis.cohort_cells(values, month_of(pipe.book.day())))  # cells in place of their changes
    expected = ledger_expectations()
    got = {k: values.get(k, 0.0) for k in expected}
    assert got == {k: float(v) for k, v in expected.items()}
    f30 = figures(values, 30)
    assert f30["customer_churn_rate"] == EXPECTED_RATES["customer_churn_rate_30d"]
    assert f30["stickiness"] == EXPECTED_RATES["stickiness"]
    assert abs(f30["stripe_rolling_churn"] - EXPECTED_RATES["stripe_rolling_churn_30d"]) < 1e-12
    f90 = figures(values, 90)
    for w, f in (("30d", f30), ("90d", f90)):
        assert f["repeat_customer_rate"] == EXPECTED_RATES[f"repeat_customer_rate_{w}"]
        assert f["purchase_frequency"] == EXPECTED_RATES[f"purchase_frequency_{w}"]


def test_counters_from_effects_match_the_hand_computation():
    pipe = PurePipeline()
    for e in events:
        pipe.feed(e)
    pipe.finish()
    churned = {}
    moves = {}
    for eff in pipe.effects:
        for m in eff.movements:
            moves[m.kind] = moves.get(m.kind, 0.0) + m.amount
        if eff.churn:
            k = (eff.churn.kind, eff.churn.plan, eff.churn.reason)
            churned[k] = churned.get(k, 0) + 1
    assert moves["new"] == EXPECTED['churn_mrr_movement_total{kind="new"}']
    assert moves["churn"] == EXPECTED['churn_mrr_movement_total{kind="churn"}']
    assert churned[("voluntary", "basic", "price")] == 21
    assert churned[("involuntary", "basic", "payment")] == 4
    assert churned[("inactivity", "none", "inactivity")] == 10


# -- the ledger against brute force ------------------------------------------------

spells_strategy = st.lists(
    st.tuples(st.integers(0, 200), st.one_of(st.none(), st.integers(0, 120)), st.sampled_from([10.0, 29.0, 99.0])),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(spells_strategy, st.integers(0, 400), st.sampled_from([30, 90]))
def test_window_counts_equal_brute_force(spells, today, w):
    """Whatever the spells, the ledger's window figures equal a direct count."""
    ledger = Ledger()
    truth = {"start": 0, "lost": 0, "churned": 0, "new": 0, "mrr_start": 0.0, "mrr_lost": 0.0}
    for i, (start, length, mrr) in enumerate(spells):
        s = new_state(f"c{i}")
        end = None if length is None else start + length
        if end is None:
            s.status, s.spell_start_t, s.mrr, s.contractual, s.plan = ACTIVE, start * DAY, mrr, True, "p"
            s.mrr_changes = [[start * DAY, mrr, "new"]]
        else:
            s.status = CANCELLED
            s.spells = [[start * DAY, end * DAY, mrr]]
            s.mrr_changes = [[start * DAY, mrr, "new"], [end * DAY, 0.0, "churn"]]
        ledger.add(kpis.contributions(s, (w,)))
        ws = today - w  # active at the end of day ws
        active_at_ws = start <= ws and (end is None or end > ws)
        truth["start"] += active_at_ws
        truth["mrr_start"] += mrr if active_at_ws else 0.0
        if end is not None and ws < end <= today:
            truth["churned"] += 1
            if active_at_ws:
                truth["lost"] += 1
                truth["mrr_lost"] += mrr
        if ws < start <= today:
            truth["new"] += 1
    got = {k: ledger.value((k, w), today) for k in truth}
    assert got == {k: float(v) for k, v in truth.items()}


def test_fold_keeps_values():
    rng = random.Random(1)
    a, b = Ledger(), Ledger()
    steps = [(("x",), rng.randint(0, 100), rng.choice([-1.0, 1.0, 2.5])) for _ in range(500)]
    a.add(steps)
    b.add(steps)
    b.fold(50)
    for day in range(50, 120):
        assert a.value(("x",), day) == b.value(("x",), day)
    b.add([(("x",), 10, 1.0)])  # a late step lands in the base
    assert b.value(("x",), 60) == a.value(("x",), 60) + 1.0


def test_tenure_buckets_and_formulas():
    assert kpis.customer_churn_rate(25, 500) == 0.05
    assert kpis.customer_churn_rate(1, 0) is None
    assert kpis.quick_ratio(0, 0, 0, 0) is None
    assert round(kpis.annualised(0.035), 4) == 0.3479
    assert kpis.lifetime_value(100.0, 0.05) == 2000.0
    assert kpis.net_revenue_retention(1000, 100, 50, 50) == 1.0


def test_figures_do_not_depend_on_the_order_topics_are_read_in():
    """Kafka orders a partition's messages within a topic, not across topics.

    Reading a whole topic before the next is the worst case; the clock (the
    slowest busy input) and the order-robust transitions must still give the
    figures of reading everything in event-time order.
    """
    from stream_app.ingest.contract import TOPICS, topic_for_type
    from stream_app.tools.simulator import SimConfig, events as simulate

    from stream_app.ingest.contract import parse_ts

    sim = list(simulate(SimConfig(customers=150, days=120, seed=3)))

    def skewed(ahead: str, days: float):
        """Interleaved, with one topic read `days` of event time ahead of the others."""
        return sorted(sim, key=lambda e: parse_ts(e["ts"]) - (days * 86400 if topic_for_type(e["type"]) == ahead else 0))

    results = []
    orders = (None, TOPICS, TOPICS[::-1], (TOPICS[1], TOPICS[2], TOPICS[0]), "usage+20d", "subscription+20d")
    for order in orders:
        pipe = PurePipeline()
        if order == "usage+20d":
            stream = skewed("churn.usage", 20)
        elif order == "subscription+20d":
            stream = skewed("churn.subscription", 20)
        else:
            stream = sim if order is None else [e for t in order for e in sim if topic_for_type(e["type"]) == t]
        for e in stream:
            pipe.feed(e)
        pipe.finish()
        # the at-risk series follow when each customer was last scored, which
        # depends on the read order; every KPI must not
        results.append({k: v for k, v in pipe.values().items() if k[0] not in ("at_risk", "at_risk_mrr", "expected_loss")})
    assert results[0][("start", 30)] > 50
    for order, other in zip(orders[1:], results[1:]):
        assert other == results[0], (order, {k: (results[0].get(k), other.get(k)) for k in set(other) | set(results[0]) if other.get(k) != results[0].get(k)})


def test_every_customers_state_does_not_depend_on_the_order_topics_are_read_in():
    """Equal figures are not enough: a field no figure reads (trial_start_t)
    may still differ, and then the lookup, the features and the scale-out
    test's fingerprints do (cus_000034 in the scale-out test). Seed 2 has
    trialists who buy during their trial and one who buys after converting."""
    from stream_app.ingest.contract import TOPICS, topic_for_type
    from stream_app.tools.simulator import SimConfig, events as simulate
    from stream_app.runtime.views import fingerprint

    sim = list(simulate(SimConfig(customers=80, days=60, seed=2)))
    by_topic = {t: [e for e in sim if topic_for_type(e["type"]) == t] for t in TOPICS}
    states = []
    for order in (None, (TOPICS[1], TOPICS[0], TOPICS[2]), TOPICS):
        pipe = PurePipeline()
        for e in sim if order is None else [e for t in order for e in by_topic[t]]:
            pipe.feed(e)
        pipe.finish()
        states.append({cid: fingerprint(s, pipe.book.clock, pipe.processor.rules) for cid, s in pipe.customers.items()})
    for order, other in zip(("usage first", "subscription first"), states[1:]):
        assert other == states[0], (order, sorted(cid for cid in other if other[cid] != states[0][cid]))


# -- purchases and cohorts -------------------------------------------------------------

purchases_strategy = st.lists(  # per customer: purchases as (day, count)
    st.dictionaries(st.integers(0, 150), st.integers(1, 3), max_size=8),
    min_size=1, max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(purchases_strategy, st.integers(0, 250), st.sampled_from([30, 90]))
def test_purchase_windows_equal_brute_force(customers, today, w):
    """Purchasing, repeat customers and purchases in the window ending on
    `today` equal a direct count over each customer's purchase days."""
    ledger = Ledger()
    truth = {"purchasers": 0, "repeat": 0, "purchases": 0}
    for bought in customers:
        ledger.add(kpis.purchase_steps(tuple(sorted(bought.items())), (w,)))
        n = sum(c for d, c in bought.items() if today - w < d <= today)
        truth["purchasers"] += n >= 1
        truth["repeat"] += n >= 2
        truth["purchases"] += n
    assert {k: ledger.value((k, w), today) for k in truth} == {k: float(v) for k, v in truth.items()}


def test_repeat_rate_and_purchase_frequency_by_hand():
    # 40 customers bought in the window, 10 of them more than once; 60 purchases in all
    v = {("purchasers", 30): 40.0, ("repeat", 30): 10.0, ("purchases", 30): 60.0}
    f = figures(v, 30)
    assert (f["repeat_customer_rate"], f["purchase_frequency"]) == (0.25, 1.5)
    assert figures({}, 30)["repeat_customer_rate"] is None and figures({}, 30)["purchase_frequency"] is None


def _story(cid: str) -> list[dict]:
    """Starts 2024-01-15 at 50, 80 from 03-10, cancels 05-20, comes back 08-03 at 30,
    and uses the product now and then until 2025-02-15."""
    out = [
        ("subscription_started", "2024-01-15", {"plan": "basic", "mrr": 50}),
        ("plan_changed", "2024-03-10", {"plan": "pro", "mrr": 80}),
        ("subscription_cancelled", "2024-05-20", {"reason": "price"}),
        ("subscription_started", "2024-08-03", {"plan": "starter", "mrr": 30}),
    ]
    out += [("session", d, {"duration_s": 60}) for d in ("2024-09-01", "2024-11-20", "2025-01-05", "2025-02-15")]
    return [{"event_id": f"{cid}-{i}", "customer_id": cid, "type": t, "ts": f"{d}T09:00:00Z", **f} for i, (t, d, f) in enumerate(out)]


def test_cohort_cells_by_hand_and_unchanged_when_history_is_pruned():
    """The 2024-01 cohort of one customer, by hand: retained at the ends of
    January to April (MRR 50, 50, 80, 80), gone at the ends of May to July,
    back from August (30) to February 2025 (the clock's month, as of now).
    With 90-day windows the state drops the spells and MRR changes older
    than 91 days, folding the months they told into its record first; with
    900-day windows it keeps them: the cells must be the same."""
    from stream_app.config import Settings
    from stream_app.domain.state import day_of

    cohort = 2024 * 12
    want_customers = [1, 1, 1, 1, 0, 0, 0] + [1] * 7
    want_mrr = [50, 50, 80, 80, 0, 0, 0] + [30] * 7
    cells = []
    for windows in ((30, 90), (30, 900)):
        pipe = PurePipeline(Settings(windows_days=windows))
        for e in _story("c1"):
            pipe.feed(e)
        pipe.finish()
        v = kpis.cohort_cells(pipe.values(), month_of(pipe.book.day()))
        assert month_of(pipe.book.day()) == cohort + 13
        got = [v.get(("cohort", cohort, age), 0.0) for age in range(14)], [v.get(("cohort_mrr", cohort, age), 0.0) for age in range(14)]
        assert got == (want_customers, want_mrr), windows
        cells.append({k: x for k, x in v.items() if k[0].startswith("cohort") and x})  # a cell summed to 0 may keep its key
        s = pipe.customers["c1"]
        if windows == (30, 90):  # history pruned, months through October 2024 (age 9) folded
            assert s.spells == () and s.retained_through == 9 and day_of(s.mrr_changes[0][0]) == day_of(s.spell_start_t)
            assert s.retained == 0b1110001111 and s.retained_mrr_items() == ((0, 50.0), (2, 80.0), (4, 0.0), (7, 30.0))
        else:
            assert s.retained_through == -1 and len(s.spells) == 1
    assert cells[0] == cells[1]


def test_cohort_labels_stay_bounded():
    """24 cohorts x 24 ages at most, whatever the history: a customer starting
    every month for four years, the clock in the last month."""
    from prometheus_client import generate_latest

    from stream_app.runtime.metrics import Metrics

    pipe = PurePipeline()
    for i in range(48):
        year, month = 2021 + i // 12, i % 12 + 1
        pipe.feed({"event_id": f"s{i}", "customer_id": f"c{i}", "type": "subscription_started",
                   "ts": f"{year}-{month:02d}-05T00:00:00Z", "plan": "basic", "mrr": 10})
    pipe.finish()
    metrics = Metrics()
    metrics.watch_ledgers(lambda: (pipe.values(), pipe.book.clock, 1, pipe.book.max_event_t))
    text = generate_latest(metrics.registry).decode()
    cells = [line for line in text.splitlines() if line.startswith("churn_cohort_customers_retained{")]
    cohorts = {line.split('cohort="')[1][:7] for line in cells}
    assert sorted(cohorts)[0] == "2023-01" and sorted(cohorts)[-1] == "2024-12" and len(cohorts) == 24
    assert len(cells) == 24 * 25 // 2  # cohort 2023-01 has ages 0..23, 2024-12 age 0
    assert 'churn_cohort_customers_retained{age="23",cohort="2023-01"} 1.0' in text
    assert 'churn_cohort_mrr_retained{age="1",cohort="2024-11"} 10.0' in text
    # the clock (the last start less the allowed lateness) is on 12-04: the last start not yet
    assert 'churn_cohort_mrr_retained{age="0",cohort="2024-12"} 0.0' in text
