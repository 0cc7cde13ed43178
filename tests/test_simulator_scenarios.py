"""The simulator's named scenarios (`churnmon simulate --scenario NAME`).

Each scenario must run, be deterministic per seed, and have its churn really
driven by its own mechanism, visible in the events the monitor reads: a model
can only learn what leaves a trace. The comparisons are between groups of one
population (churners against stayers, the risen plan against the others) or
between scenarios run with the same seed, so they fail when a mechanism stops
acting, whatever the overall churn level.
"""

from __future__ import annotations

import hashlib
import itertools
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import datetime

import orjson
import pytest

from stream_app.tools.simulator import SCENARIOS, PLAN_MRR, SimConfig, Simulation, events, scenario
from tests.test_simulator import sessions_before

DAY = 86_400


def epoch(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


def run(name: str, **kw):
    """(events by customer, truth by customer, config) of one scenario run."""
    cfg = scenario(name, **kw)
    sim = Simulation(cfg)
    by = defaultdict(list)
    for e in sim.events():
        by[e["customer_id"]].append(e)
    return by, {t.customer_id: t for t in sim.truth}, cfg


SIZE = dict(customers=1500, days=180, seed=4)


@pytest.fixture(scope="module")
def support():
    return run("support-trouble", **SIZE)


@pytest.fixture(scope="module")
def payment():
    return run("payment-price", **SIZE)


@pytest.fixture(scope="module")
def usage():
    return run("usage-decay", **SIZE)


def observed_until(t, cfg) -> int:
    """End of the customer's observed (first) life: churn, or the period end."""
    return epoch(t.churned_at) if t.churned else epoch(cfg.start) + cfg.days * DAY


def subscribers(tr):
    """Paying subscription customers (trials that never converted left out)."""
    return [t for t in tr.values() if t.contractual and "trial_not_converted" not in t.drivers]


# --------------------------------------------------------------------------- every scenario


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_runs_and_is_deterministic_per_seed(name):
    cfg = scenario(name, customers=150, days=90, seed=9)
    a = list(itertools.islice(events(cfg), 4000))
    b = list(itertools.islice(events(cfg), 4000))
    c = list(itertools.islice(events(scenario(name, customers=150, days=90, seed=10)), 4000))
    assert len(a) > 500
    assert orjson.dumps(a) == orjson.dumps(b)
    assert orjson.dumps(a) != orjson.dumps(c)


def test_default_is_byte_identical_to_before_the_scenarios():
    """The default population's events and truth for one seed, fingerprinted
    before the scenario weights were added (commit 1423335): existing tests
    and benches compare against this population."""
    sim = Simulation(SimConfig(customers=200, days=90, seed=11))
    h = hashlib.sha256()
    for e in sim.events():
        h.update(orjson.dumps(e) + b"\n")
    for t in sim.truth:
        h.update(orjson.dumps(asdict(t)) + b"\n")
    assert sim.event_count == 26215
    assert h.hexdigest() == "e78a13d6121f695beb47cc8821865cac7517a7b85329ba27ee2dd81d14697381"


def test_usage_decay_is_the_default_mechanisms_on_subscriptions_only():
    """A customer who is a subscriber in both lives the same life (only event ids differ)."""
    def lives(name):
        by = defaultdict(list)
        for e in events(scenario(name, customers=120, days=90, seed=2)):
            by[e["customer_id"]].append({k: v for k, v in e.items() if k != "event_id"})
        return by

    default, decay = lives("default"), lives("usage-decay")
    both = [c for c, evs in default.items() if evs[0]["type"] != "purchase"]
    assert len(both) > 100
    assert all(default[c] == decay[c] for c in both)
    assert all(evs[0]["type"] != "purchase" for evs in decay.values())


def test_unknown_scenario_and_bad_weights_are_named():
    with pytest.raises(ValueError, match="unknown scenario 'churny': one of default, usage-decay"):
        scenario("churny")
    with pytest.raises(ValueError, match=r"episode_rates: unknown episode kind\(s\) \['pricing'\]"):
        SimConfig(episode_rates={"pricing": 2.0})
    with pytest.raises(ValueError, match="price_rise_plan 'gold'"):
        SimConfig(price_rise_plan="gold")


# --------------------------------------------------------------------------- support-trouble


def support_traces(by, tr, cfg):
    """Per subscriber: (tickets per 30 observed days, share of CSAT answers <= 2, a ticket left open > 7 days)."""
    out = {}
    for t in subscribers(tr):
        start, end = epoch(t.started_at), observed_until(t, cfg)
        days = max(14.0, (end - start) / DAY)
        opened, resolved, csat = {}, set(), []
        for e in by[t.customer_id]:
            te = epoch(e["ts"])
            if te > end:
                break
            if e["type"] == "ticket_opened":
                opened[e["ticket_id"]] = te
            elif e["type"] == "ticket_resolved":
                resolved.add(e["ticket_id"])
            elif e["type"] == "csat":
                csat.append(e["score"])
        stale = any(tid not in resolved and end - te > 7 * DAY for tid, te in opened.items())
        low = sum(s <= 2 for s in csat) / len(csat) if csat else 0.0
        out[t.customer_id] = (30.0 * len(opened) / days, low, stale)
    return out


def test_support_trouble_churners_had_markedly_more_support_trouble(support):
    by, tr, cfg = support
    traces = support_traces(by, tr, cfg)
    churned = [traces[c] for c, t in tr.items() if c in traces and t.churned and t.churn_kind == "voluntary"]
    stayed = [traces[c] for c, t in tr.items() if c in traces and not t.churned]
    assert len(churned) > 100 and len(stayed) > 1000
    rate_c, rate_s = statistics.mean(x[0] for x in churned), statistics.mean(x[0] for x in stayed)
    low_c, low_s = statistics.mean(x[1] for x in churned), statistics.mean(x[1] for x in stayed)
    stale_c, stale_s = statistics.mean(x[2] for x in churned), statistics.mean(x[2] for x in stayed)
    assert rate_c > 1.8 * rate_s, (rate_c, rate_s)
    assert low_c > 4 * low_s, (low_c, low_s)
    assert stale_c > 2 * stale_s, (stale_c, stale_s)


def test_support_trouble_churn_is_mostly_about_service(support, usage):
    """Customer service is the stated reason of most voluntary churn here,
    and far more often than under the default mechanisms on the same seed."""
    _, tr, _ = support
    _, tr_usage, _ = usage

    def share(truths):
        vol = [t for t in truths.values() if t.churn_kind == "voluntary"]
        return sum(t.reason == "customer_service" for t in vol) / len(vol)

    assert share(tr) > 0.5, share(tr)
    assert share(tr) > 3 * share(tr_usage), (share(tr), share(tr_usage))


def session_ratio(by, tr):
    """Sessions/day in the 14 days before a voluntary cancellation over the same
    customers' days 60-90 before it (before the decision: a cancelled customer
    waiting for the period end uses the product less in every scenario)."""
    def cancelled(c, t):
        return max(epoch(e["ts"]) for e in by[c] if e["type"] == "subscription_cancelled" and e["ts"] <= t.churned_at)

    before, earlier = sessions_before(by, tr, cancelled, skip_reasons=("company_closed", "other"))
    assert len(before) >= 30
    return statistics.mean(before) / statistics.mean(earlier)


def test_usage_falls_little_before_support_or_payment_price_churn(support, payment, usage):
    decay = session_ratio(*usage[:2])
    assert decay < 0.8, decay
    for name, pop in (("support-trouble", support), ("payment-price", payment)):
        ratio = session_ratio(*pop[:2])
        assert ratio > 0.8 and ratio > decay + 0.15, (name, ratio, decay)


# --------------------------------------------------------------------------- payment-price


def test_payment_price_churn_is_largely_involuntary_after_the_grace_period(payment):
    by, tr, cfg = payment
    churned = [t for t in tr.values() if t.churned]
    kinds = Counter(t.churn_kind for t in churned)
    assert kinds["involuntary"] > 0.4 * len(churned), kinds
    for t in churned:
        if t.churn_kind != "involuntary":
            continue
        failed = [epoch(e["ts"]) for e in by[t.customer_id]
                  if e["type"] == "payment_failed" and e["ts"] <= t.churned_at]
        assert failed and failed[-1] + cfg.grace_days * DAY == epoch(t.churned_at)
    # dunning: many failures are recovered (a payment_succeeded within the grace period)
    recovered = failures = 0
    for evs in by.values():
        for i, e in enumerate(evs):
            if e["type"] == "payment_failed":
                failures += 1
                t0 = epoch(e["ts"])
                recovered += any(x["type"] == "payment_succeeded" and t0 < epoch(x["ts"]) <= t0 + cfg.grace_days * DAY
                                 for x in evs[i + 1:i + 200])
    assert failures > 300 and 0.3 < recovered / failures < 0.9, (recovered, failures)


def test_a_failed_payment_is_a_strong_but_uncertain_warning(payment):
    """After a failed renewal a customer churns within 30 days far more often
    than after a paid one, yet most failures are recovered (dunning works)."""
    by, tr, cfg = payment
    end = epoch(cfg.start) + (cfg.days - 30) * DAY
    outcome = {"payment_failed": [], "subscription_renewed": []}
    for c, evs in by.items():
        t = tr[c]
        ch = epoch(t.churned_at) if t.churned else None
        for e in evs:
            if e["type"] in outcome and epoch(e["ts"]) <= end:
                te = epoch(e["ts"])
                outcome[e["type"]].append(ch is not None and te <= ch <= te + 30 * DAY)
    after_fail = statistics.mean(outcome["payment_failed"])
    after_paid = statistics.mean(outcome["subscription_renewed"])
    assert len(outcome["payment_failed"]) > 300
    assert 0.2 < after_fail < 0.7, after_fail
    assert after_fail > 5 * after_paid, (after_fail, after_paid)


def test_the_price_rise_reaches_the_plan_and_its_customers_leave_over_price(payment):
    by, tr, cfg = payment
    rise = cfg.days // 2
    rise_day = epoch(cfg.start) + rise * DAY
    new_price = round(PLAN_MRR["pro"] * cfg.price_rise_factor, 2)
    # the rise takes effect at midnight (second 0), a downgrade over it follows at second 1
    changes = [e for evs in by.values() for e in evs
               if e["type"] == "plan_changed" and rise_day <= epoch(e["ts"]) <= rise_day + 1]
    risen = [e for e in changes if epoch(e["ts"]) == rise_day]
    assert {e["plan"] for e in risen} == {"pro"}
    assert len(risen) > 200
    # every pro subscription's own price (list price, or one raised before) x 1.3
    for e in risen:
        before = [x for x in by[e["customer_id"]] if "mrr" in x and x["ts"] < e["ts"]][-1]["mrr"]
        assert e["mrr"] == round(before * cfg.price_rise_factor, 2), (e, before)
    assert Counter(e["mrr"] for e in risen).most_common(1)[0][0] == new_price
    downgraded = [e for e in changes if epoch(e["ts"]) == rise_day + 1]
    assert downgraded and {e["plan"] for e in downgraded} == {"basic"}
    # customers who start on pro after the rise pay the new price
    late = [e for evs in by.values() for e in evs
            if e["type"] in ("subscription_started", "trial_converted") and e["plan"] == "pro"
            and epoch(e["ts"]) > rise_day + DAY]
    assert late and {e["mrr"] for e in late} == {new_price}

    # price churn in the 60 days after the rise vs the 60 days before, by plan at the rise
    def on_plan(plan):
        out = []
        for c, evs in by.items():
            cur = None
            for e in evs:
                if epoch(e["ts"]) >= rise_day:
                    break
                if e["type"] in ("subscription_started", "plan_changed", "trial_started", "trial_converted"):
                    cur = e["plan"]
            t = tr[c]
            if cur == plan and not (t.churned and epoch(t.churned_at) < rise_day - 60 * DAY):
                out.append(t)
        return out

    def price_churn(truths, lo, hi):
        return sum(t.churned and t.reason == "price" and lo <= epoch(t.churned_at) < hi for t in truths) / len(truths)

    pro, basic = on_plan("pro"), on_plan("basic")
    after = (rise_day, rise_day + 60 * DAY)
    before = (rise_day - 60 * DAY, rise_day)
    assert len(pro) > 300
    pro_after, pro_before = price_churn(pro, *after), price_churn(pro, *before)
    basic_after = price_churn(basic, *after)
    assert pro_after > 3 * max(pro_before, 0.002), (pro_after, pro_before)
    assert pro_after > 3 * max(basic_after, 0.002), (pro_after, basic_after)


# --------------------------------------------------------------------------- purchase-only


def test_purchase_only_customers_buy_with_rhythms_of_their_own():
    by, tr, cfg = run("purchase-only", customers=600, days=270, seed=4)
    assert all({e["type"] for e in evs} == {"purchase"} for evs in by.values())
    gaps = []
    for evs in by.values():
        ts = [epoch(e["ts"]) / DAY for e in evs]
        if len(ts) >= 4:
            d = [b - a for a, b in zip(ts, ts[1:])]
            gaps.append(statistics.median(d))
    assert len(gaps) > 150
    q = statistics.quantiles(gaps, n=10)
    assert q[-1] > 3 * q[0], q  # a customer's own rhythm, not one population gap
    churned = [t for t in tr.values() if t.churned]
    assert churned and all(t.churn_kind == "inactivity" for t in churned)
