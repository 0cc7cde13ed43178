from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from stream_app import kpis
from stream_app.kpis import Ledger, figures
from stream_app.state import ACTIVE, CANCELLED, new_state
from tests.data.make_kpi_events import EXPECTED, EXPECTED_RATES, events
from tests.pure_pipeline import PurePipeline
from tests.test_state import DAY

LEDGER_NAMES = {name: key for key, (name, _) in __import__("stream_app.metrics", fromlist=["x"]).LEDGER_GAUGES.items()}


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
        if "plan" in lab:
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
    expected = ledger_expectations()
    got = {k: values.get(k, 0.0) for k in expected}
    assert got == {k: float(v) for k, v in expected.items()}
    f30 = figures(values, 30)
    assert f30["customer_churn_rate"] == EXPECTED_RATES["customer_churn_rate_30d"]
    assert f30["stickiness"] == EXPECTED_RATES["stickiness"]
    assert abs(f30["stripe_rolling_churn"] - EXPECTED_RATES["stripe_rolling_churn_30d"]) < 1e-12


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
    from stream_app.contract import TOPICS, topic_for_type
    from stream_app.simulator import SimConfig, events as simulate

    from stream_app.contract import parse_ts

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
    from stream_app.contract import TOPICS, topic_for_type
    from stream_app.simulator import SimConfig, events as simulate
    from stream_app.views import fingerprint

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
