"""Tests for the synthetic customer population (stream_app.tools.simulator).

The simulator is the ground truth the whole monitor is evaluated against, so
these tests check (1) the event contract, (2) determinism, (3) that the truth
file agrees with the event stream, and (4) that churn is *learnable*: the
domain's risk signals precede churn.
"""

from __future__ import annotations

import doctest
import inspect
import itertools
import statistics
from collections import Counter, defaultdict
from datetime import datetime

import orjson
import pytest

from stream_app.tools import simulator as sim_mod
from stream_app.tools.simulator import (
    EVENT_FIELDS,
    REASONS,
    SimConfig,
    Simulation,
    Truth,
    churn_summary,
    events,
    truth,
    write_jsonl,
)

DAY = 86_400
SMALL = SimConfig(customers=400, days=180, seed=11)
USAGE = {"session", "feature_used", "purchase"}
PRIORITIES = {"low", "normal", "high", "urgent"}


def epoch(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


@pytest.fixture(scope="module")
def small():
    """One run of a small population: (events, truth by customer id)."""
    sim = Simulation(SMALL)
    evs = list(sim.events())
    return evs, {t.customer_id: t for t in sim.truth}


@pytest.fixture(scope="module")
def by_customer(small):
    evs, _ = small
    out = defaultdict(list)
    for e in evs:
        out[e["customer_id"]].append(e)
    return out


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_first_5000_events():
    a = list(itertools.islice(events(SimConfig()), 5000))
    b = list(itertools.islice(events(SimConfig()), 5000))
    assert len(a) == 5000
    assert orjson.dumps(a) == orjson.dumps(b)


def test_different_seed_differs():
    a = list(itertools.islice(events(SimConfig(seed=1)), 5000))
    b = list(itertools.islice(events(SimConfig(seed=2)), 5000))
    strip = lambda evs: [{k: v for k, v in e.items() if k != "event_id"} for e in evs]  # noqa: E731
    assert strip(a) != strip(b)


def test_write_jsonl_is_byte_identical_and_counts(tmp_path):
    cfg = SimConfig(customers=60, days=60, seed=5)
    paths = []
    for i in range(2):
        out, tr = tmp_path / f"ev{i}.jsonl", tmp_path / f"truth{i}.jsonl"
        n = write_jsonl(cfg, out, tr)
        paths.append((out, tr, n))
    (o1, t1, n1), (o2, t2, n2) = paths
    assert n1 == n2 > 0
    assert o1.read_bytes() == o2.read_bytes()
    assert t1.read_bytes() == t2.read_bytes()
    lines = o1.read_bytes().splitlines()
    assert len(lines) == n1
    assert orjson.loads(lines[0])["event_id"] == "5-1"
    truths = [orjson.loads(x) for x in t1.read_bytes().splitlines()]
    assert len(truths) == len(truth(cfg))
    assert set(truths[0]) >= {"customer_id", "started_at", "plan", "contractual", "churned", "churned_at",
                              "churn_kind", "reason", "latent_risk", "drivers"}


def test_customer_life_is_stable_when_population_changes():
    """A customer's RNG is seeded from (seed, index): growing the population does not change it."""
    def life(n):
        cfg = SimConfig(customers=n, days=90, seed=3, new_per_day=0)
        return [{k: v for k, v in e.items() if k != "event_id"} for e in events(cfg)
                if e["customer_id"] == "cus_000004"]
    assert life(10) == life(40)
    assert life(10)


def test_events_is_a_lazy_generator_and_simulation_is_single_use():
    assert inspect.isgenerator(events(SMALL))
    s = Simulation(SimConfig(customers=5, days=3))
    s.run()
    with pytest.raises(RuntimeError):
        s.run()


def test_module_doctests():
    res = doctest.testmod(sim_mod)
    assert res.failed == 0 and res.attempted > 0


# --------------------------------------------------------------------------- contract


def test_ts_non_decreasing_and_ids_unique(small):
    evs, _ = small
    ts = [e["ts"] for e in evs]
    assert all(a <= b for a, b in zip(ts, ts[1:]))
    ids = [e["event_id"] for e in evs]
    assert len(set(ids)) == len(ids)
    assert ids[0] == f"{SMALL.seed}-1"


def test_every_event_has_common_and_own_fields(small):
    evs, _ = small
    seen = Counter()
    for e in evs:
        assert isinstance(e["event_id"], str)
        assert isinstance(e["customer_id"], str) and e["customer_id"].startswith("cus_")
        ts = e["ts"]
        assert isinstance(ts, str) and len(ts) == 20 and ts.endswith("Z") and ts[10] == "T"
        datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")
        t = e["type"]
        assert t in EVENT_FIELDS, t
        seen[t] += 1
        for name, types in EVENT_FIELDS[t].items():
            assert isinstance(e[name], types), (t, name, e)
            assert not isinstance(e[name], bool)
        if t == "subscription_cancelled":
            assert e["reason"] in REASONS
            assert set(e) <= {"event_id", "customer_id", "type", "ts", "reason", "reason_text", "effective_at"}
            if "effective_at" in e:
                assert e["effective_at"] > e["ts"]
        elif t == "ticket_opened":
            assert e["priority"] in PRIORITIES
        elif t == "csat":
            assert e["score"] in range(1, 6)
        elif t == "nps":
            assert 0 <= e["score"] <= 10
        elif t in ("payment_failed", "payment_succeeded", "purchase", "plan_changed",
                   "subscription_started", "trial_converted"):
            money = e.get("amount", e.get("mrr"))
            assert money > 0 and round(money, 2) == money
        elif t == "session":
            assert e["duration_s"] > 0
    # a small population already exercises every event type
    assert set(seen) == set(EVENT_FIELDS), set(EVENT_FIELDS) - set(seen)


def test_tickets_resolve_after_opening(small, by_customer):
    for evs in by_customer.values():
        opened = {}
        for e in evs:
            if e["type"] == "ticket_opened":
                assert e["ticket_id"] not in opened
                opened[e["ticket_id"]] = e["ts"]
            elif e["type"] == "ticket_resolved":
                assert opened[e["ticket_id"]] <= e["ts"]


def test_usage_volume_is_bounded(small):
    evs, tr = small
    start = epoch(SMALL.start)
    end = start + SMALL.days * DAY
    customer_days = 0.0
    for t in tr.values():
        if "trial_not_converted" in t.drivers:
            stop = epoch(t.started_at) + 14 * DAY
        elif not t.contractual and t.churned:
            stop = epoch(t.churned_at) - 90 * DAY
        else:
            stop = epoch(t.churned_at) if t.churned else end
        customer_days += max(0, stop - epoch(t.started_at)) / DAY
    usage = sum(1 for e in evs if e["type"] in USAGE)
    per_day = usage / customer_days
    assert 0.5 < per_day < 3.0, per_day
    support = sum(1 for e in evs if e["type"] == "ticket_opened")
    per_quarter = support / customer_days * 91
    assert 0.5 < per_quarter < 5.0, per_quarter


# --------------------------------------------------------------------------- truth vs events


def test_truth_is_consistent_with_events(small, by_customer):
    evs, tr = small
    end = epoch(SMALL.start) + SMALL.days * DAY
    assert set(by_customer) <= set(tr)
    kinds = Counter()
    for cid, t in tr.items():
        assert isinstance(t, Truth)
        assert 0.0 <= t.latent_risk <= 1.0
        mine = by_customer.get(cid, [])
        assert mine and mine[0]["ts"] == t.started_at
        if not t.churned:
            assert t.churned_at is None and t.churn_kind is None and t.reason is None
            continue
        kinds[t.churn_kind] += 1
        ch = epoch(t.churned_at)
        assert ch <= end
        react = epoch(t.reactivated_at) if t.reactivated_at else None
        if react is not None:
            assert react > ch
        # nothing happens between churn and (optional) reactivation
        for e in mine:
            te = epoch(e["ts"])
            if te > ch:
                assert react is not None and te >= react, (cid, e, t)
        if t.churn_kind == "voluntary":
            assert t.contractual and t.reason in REASONS
            cancels = [e for e in mine if e["type"] == "subscription_cancelled" and epoch(e["ts"]) <= ch]
            assert cancels, (cid, t)
            c = cancels[-1]
            assert c["reason"] == t.reason
            assert epoch(c["ts"]) <= ch
            assert c.get("effective_at", c["ts"]) == t.churned_at
        elif t.churn_kind == "involuntary":
            assert t.contractual and t.reason is None and "payment_failed" in t.drivers
            failed = [e for e in mine if e["type"] == "payment_failed"]
            assert failed and epoch(failed[-1]["ts"]) + SMALL.grace_days * DAY == ch
            # not recovered: no payment after the failure (before any reactivation)
            after = [e for e in mine if e["type"] == "payment_succeeded"
                     and failed[-1]["ts"] < e["ts"] and (react is None or epoch(e["ts"]) < react)]
            assert not after
        else:
            assert t.churn_kind == "inactivity" and not t.contractual and t.reason is None
            purchases = [e for e in mine if e["type"] == "purchase"]
            assert {e["type"] for e in mine} == {"purchase"}
            assert epoch(purchases[-1]["ts"]) + 90 * DAY == ch
    assert kinds["voluntary"] > 10 and kinds["involuntary"] > 3 and kinds["inactivity"] > 0


def test_trials(small, by_customer):
    _, tr = small
    end = epoch(SMALL.start) + SMALL.days * DAY
    converted = not_converted = 0
    for cid, t in tr.items():
        types = [e["type"] for e in by_customer[cid]]
        if types[0] != "trial_started":
            continue
        started = epoch(by_customer[cid][0]["ts"])
        if started // DAY + 14 >= end // DAY:
            continue  # still in trial when the period ends
        if "trial_converted" in types:
            converted += 1
            conv = next(e for e in by_customer[cid] if e["type"] == "trial_converted")
            assert epoch(conv["ts"]) // DAY - started // DAY == 14
            assert t.converted_at == conv["ts"]
        else:
            not_converted += 1
            assert t.contractual and not t.churned and t.drivers == ["trial_not_converted"]
            assert all(epoch(e["ts"]) < started + 14 * DAY for e in by_customer[cid])
            assert not {"payment_succeeded", "payment_failed", "subscription_renewed"} & set(types)
    assert converted > not_converted > 0


def test_cancellations_mostly_take_effect_at_period_end(small):
    evs, _ = small
    cancels = [e for e in evs if e["type"] == "subscription_cancelled"]
    with_effective = sum(1 for e in cancels if "effective_at" in e)
    assert 0.6 < with_effective / len(cancels) < 0.95


# --------------------------------------------------------------------------- learnability


def sessions_before(by_customer, tr, moment, skip_reasons=()):
    """Sessions/day of each voluntary churner in the 14 days before `moment(cid,
    truth)` and in days 60-90 before it (two lists; churners younger than 90
    days at that moment, or whose reason is in `skip_reasons`, left out)."""
    before, earlier = [], []
    for cid, t in tr.items():
        if t.churn_kind != "voluntary" or t.reason in skip_reasons:
            continue
        ch = moment(cid, t)
        if ch - 90 * DAY < epoch(t.started_at):
            continue
        sess = [epoch(e["ts"]) for e in by_customer[cid] if e["type"] == "session"]
        before.append(sum(ch - 14 * DAY <= s < ch for s in sess) / 14)
        earlier.append(sum(ch - 90 * DAY <= s < ch - 60 * DAY for s in sess) / 30)
    return before, earlier


def test_usage_decays_before_voluntary_churn(small, by_customer):
    """Sessions/day in the 14 days before churn vs the same customers 60-90 days earlier.

    Over 20 seeds the ratio is 0.37-0.67 (company closures and "other" churn
    carry no warning, which keeps it well above 0); 0.75 leaves headroom.
    """
    _, tr = small
    before, earlier = sessions_before(by_customer, tr, lambda cid, t: epoch(t.churned_at))
    assert len(before) >= 15
    assert statistics.mean(before) < 0.75 * statistics.mean(earlier), (statistics.mean(before),
                                                                     statistics.mean(earlier))


def test_churners_report_lower_csat_and_nps(small, by_customer):
    _, tr = small
    scores = {("csat", True): [], ("csat", False): [], ("nps", True): [], ("nps", False): []}
    for cid, t in tr.items():
        for e in by_customer[cid]:
            if e["type"] in ("csat", "nps"):
                scores[(e["type"], t.churned)].append(e["score"])
    mean = {k: statistics.mean(v) for k, v in scores.items()}
    assert mean[("csat", True)] < mean[("csat", False)] - 0.2, mean
    assert mean[("nps", True)] < mean[("nps", False)] - 0.5, mean


def test_customer_service_churn_is_preceded_by_support_trouble():
    cfg = SimConfig(customers=1500, days=240, seed=4)
    sim = Simulation(cfg)
    tickets, low_csat = Counter(), Counter()
    evs = [e for e in sim.events() if e["type"] in ("ticket_opened", "csat")]
    tr = {t.customer_id: t for t in sim.truth}
    for e in evs:
        t = tr[e["customer_id"]]
        if t.churned and t.churned_at and e["ts"] > t.churned_at:
            continue
        if e["type"] == "ticket_opened":
            tickets[e["customer_id"]] += 1
        elif e["score"] <= 2:
            low_csat[e["customer_id"]] += 1

    def rate(ids):
        ids = list(ids)
        return sum(tickets[c] for c in ids) / len(ids), sum(low_csat[c] > 0 for c in ids) / len(ids)

    cs = [c for c, t in tr.items() if t.reason == "customer_service"]
    healthy = [c for c, t in tr.items() if not t.churned and t.contractual and not t.drivers]
    assert len(cs) >= 10
    cs_tickets, cs_low = rate(cs)
    ok_tickets, ok_low = rate(healthy)
    assert cs_tickets > 2 * ok_tickets
    assert cs_low > 2 * ok_low


def test_latent_risk_is_higher_for_churners(small):
    _, tr = small
    ch = [t.latent_risk for t in tr.values() if t.churned]
    ok = [t.latent_risk for t in tr.values() if not t.churned]
    assert statistics.mean(ch) > statistics.mean(ok) + 0.1


# --------------------------------------------------------------------------- population


@pytest.fixture(scope="module")
def year():
    cfg = SimConfig(customers=1000, days=365, seed=42)
    return cfg, truth(cfg)


def test_monthly_churn_rate_is_plausible(year):
    cfg, tr = year
    s = churn_summary(tr, cfg)
    assert 0.01 <= s["monthly_churn_rate"] <= 0.08, s
    assert all(r < 0.10 for r in s["monthly_rates"])
    assert set(s["by_kind"]) == {"voluntary", "involuntary", "inactivity"}
    assert s["by_kind"]["voluntary"] > s["by_kind"]["involuntary"] > s["by_kind"]["inactivity"] / 3
    # a mix of all reasons, none dominating
    assert len(s["by_reason"]) >= 9, s["by_reason"]
    assert max(s["by_reason"].values()) < 0.35 * sum(s["by_reason"].values())


def test_population_grows_with_arrivals(year):
    cfg, tr = year
    assert len(tr) > cfg.customers * 1.5
    late = [t for t in tr if t.started_at >= "2025-07-01"]
    assert late and any(t.plan != "none" for t in late)


def test_early_life_churn_after_failed_onboarding(year):
    _, tr = year
    ages = []
    for t in tr:
        if t.churned and "onboarding_failed" in t.drivers and t.started_at >= "2025-01-01T01":
            ages.append((epoch(t.churned_at) - epoch(t.converted_at or t.started_at)) // DAY)
    assert len(ages) >= 20
    # concentrated at the 30/60/90-day renewals
    near = sum(1 for a in ages if min(abs(a - 30), abs(a - 60), abs(a - 90)) <= 3)
    assert near / len(ages) > 0.5
    assert max(ages) < 150


def test_write_truth_writes_one_line_per_customer_as_simulate_broker_truth_does(tmp_path):
    """`churnmon simulate --broker ... --truth FILE` writes the truth with
    `write_truth` after producing (it once imported a name that did not exist)."""
    import orjson

    from stream_app.tools.simulator import Simulation, scenario, write_truth

    sim = Simulation(scenario("default", customers=15, days=20, seed=3))
    for _ in sim.events():
        pass
    path = tmp_path / "truth.jsonl"
    write_truth(sim.truth, path)
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [r["customer_id"] for r in rows] == [t.customer_id for t in sim.truth] and len(rows) >= 15


def test_a_start_without_a_utc_offset_is_refused_by_name():
    """The start is read with the monitor's own parse_ts, so a start the
    monitor would not accept as an event time is refused (it was once taken
    as UTC); any offset is fine."""
    with pytest.raises(ValueError, match=r"start: not an RFC 3339 timestamp with offset: '2025-01-01T00:00:00'"):
        SimConfig(start="2025-01-01T00:00:00")
    assert Simulation(SimConfig(customers=1, days=1, start="2025-01-01T01:00:00+01:00")).start_epoch == 1735689600
