"""The processor (stream_app.runtime.process), called directly over dicts: no Kafka."""

from __future__ import annotations

import orjson
import pytest

from stream_app.config import DAY, Settings
from stream_app.ingest.contract import TOPICS, parse_ts, topic_for_type
from stream_app.risk.labels import next_observation_day, snapshot_time
from stream_app.runtime.process import Output, Processor, Record
from stream_app.runtime.views import fingerprint
from tests.pure_pipeline import PurePipeline

T0 = parse_ts("2025-01-01T00:00:00Z")


class Counting(dict):
    """A table that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def __setitem__(self, key, value) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)


class Harness:
    def __init__(self, **settings) -> None:
        self.customers, self.risk = Counting(), Counting()
        self.p = Processor(Settings(**settings), self.customers, self.risk, wall=lambda: 4e9)
        self.p.ensure_books([0])
        self.offsets = dict.fromkeys(TOPICS, 0)
        self.n = 0

    @property
    def book(self):
        return self.p.books[0]

    def record(self, typ: str, t: float, cid: str = "c1", offset: int | None = None, **fields) -> Record:
        topic = topic_for_type(typ)
        if offset is None:
            offset = self.offsets[topic]
            self.offsets[topic] += 1
        self.n += 1
        ev = {"event_id": f"e{self.n}", "customer_id": cid, "type": typ, "ts": _ts(t), **fields}
        return Record(topic, 0, offset, cid.encode(), orjson.dumps(ev))

    def run(self, *records: Record) -> Output:
        """A batch, after everything fed before was read (the worker's ticks mark caught-up inputs idle)."""
        self.book.idle.update(TOPICS)
        return self.p.process(0, list(records))

    def idle_until(self, t: float) -> Output:
        """Every input caught up, the worker's clock at `t` (what ticks do)."""
        self.book.idle.update(TOPICS)
        return self.p.tick(0, t)


def _ts(t: float) -> str:
    from stream_app.ingest.contract import format_ts

    return format_ts(t)


def started(h: Harness, cid: str = "c1", t: float = T0, mrr: float = 100.0) -> Record:
    return h.record("subscription_started", t, cid, plan="pro", mrr=mrr)


def test_a_deadline_later_the_same_day_is_visited_once_when_the_clock_reaches_it():
    """The sweep bug: a deadline later today was handed out again on every event."""
    h = Harness(allowed_lateness_s=0.0)
    d = 40
    h.run(started(h), h.record("subscription_cancelled", T0 + DAY, reason="price", effective_at=_ts(T0 + (d + 0.75) * DAY)))
    for hour in range(1, 10):  # a busy neighbour moves the clock through the morning of the cancellation day
        h.run(started(h, "n1", T0) if hour == 1 else h.record("session", T0 + (d + hour / 24) * DAY, "n1"))
        h.book.idle.update(TOPICS)
    writes_before = h.customers.writes.count("c1")
    out = h.idle_until(T0 + (d + 0.5) * DAY)  # noon: the cancellation (18:00) is not due yet
    assert h.customers.writes.count("c1") == writes_before and out.visits == 0
    assert h.customers["c1"].status == "active"
    out = h.idle_until(T0 + (d + 0.8) * DAY)  # past 18:00: visited, once
    assert h.customers.writes.count("c1") == writes_before + 1 and h.customers["c1"].status == "cancelled"
    out = h.idle_until(T0 + (d + 0.9) * DAY)
    assert h.customers.writes.count("c1") == writes_before + 1 and out.visits == 0


def test_a_silent_subscriber_is_visited_once_per_observation_period():
    h = Harness(allowed_lateness_s=7200.0, snapshot_every_days=7, alert_lower=0.99, alert_upper=0.99)
    h.run(started(h), h.record("session", T0 + 3600))
    scored, labelled, quiet = [], [], []
    for day in range(1, 60):
        before = len(h.customers.writes)
        out = h.idle_until(T0 + day * DAY)
        if out.scores:
            scored.append(day)
        elif out.visits:
            labelled.append((day, len(out.examples)))
        elif len(h.customers.writes) == before:
            quiet.append(day)
    day0 = int(T0 // DAY)
    obs = [d - day0 for d in range(day0, day0 + 60) if d == next_observation_day("c1", d - 1, 7)]
    # scored once at the end of each observation day; besides, a visit when a
    # snapshot's horizon passes (its label, no score); nothing on the other days
    assert scored == [d + 1 for d in obs if 0 < d + 1 < 60] and len(scored) >= 8
    assert labelled and all(n == 1 for _, n in labelled)
    assert [d for d, _ in labelled] == [d + 1 + 30 for d in obs if d + 1 + 30 < 60 and d + 1 + 30 not in scored]
    assert len(quiet) == 59 - len(scored) - len(labelled)


def test_a_silent_subscriber_at_risk_is_visited_daily():
    """Near an alert (risk at or above the resolve threshold) a week is too slow."""
    h = Harness(allowed_lateness_s=7200.0, snapshot_every_days=7)
    h.run(started(h), h.record("session", T0 + 3600))
    days = [day for day in range(1, 40) if h.idle_until(T0 + day * DAY).visits]
    first_daily = next(d for d, e in zip(days, days[1:]) if e == d + 1)
    assert h.customers["c1"].risk >= h.p.alert_cfg.lower
    assert days[days.index(first_daily):] == list(range(first_daily, 40))
    assert all(b - a == 7 for a, b in zip(days[:days.index(first_daily)], days[1:days.index(first_daily)]))


def test_a_silent_buyer_costs_two_scores_and_stays_ranked_after_its_lapse():
    """A buyer's question is "no purchase within the horizon" (labels.on_purchase):
    silence labels its snapshots positive as their horizons pass, its lapse
    decides no label, and a lapsed buyer keeps its risk (its win-back chance
    is 1 - risk) until winback_days after its last activity. Silent, it is
    scored when its lapse comes within the horizon (day 60) and at no other
    visit: visits close its silent days' snapshots and label those whose
    horizon passed (one a period), and the one at the end of the win-back
    window (day 150) takes it off the ranking."""
    h = Harness(allowed_lateness_s=0.0, winback_days=150.0)
    out = h.run(h.record("purchase", T0, amount=20.0))
    assert out.scores == 1
    scores, labels, visits = {}, {}, 0
    for day in range(1, 200):
        out = h.idle_until(T0 + day * DAY)
        visits += out.visits
        if out.scores:
            scores[day] = out.scores
        labels.update({day: [orjson.loads(v)["label"] for _, v in out.examples]} if out.examples else {})
        if day == 120:
            st = h.customers["c1"]
            assert st.status == "lapsed" and st.risk is not None
    assert scores == {60: 1}
    assert all(all(v) for v in labels.values())
    assert sum(map(len, labels.values())) >= 12  # ~one snapshot per 10 days of the 150 watched
    assert visits <= 20  # one per observation period at most, no daily visits
    assert h.customers["c1"].risk is None  # past the win-back window: off the ranking


def test_a_purchase_labels_the_buyers_waiting_snapshots_negative():
    h = Harness(allowed_lateness_s=0.0)
    h.run(h.record("purchase", T0, amount=20.0))
    seen = []
    for day in range(1, 25):
        seen += h.idle_until(T0 + day * DAY).examples
    assert not seen  # nothing decided yet: every horizon still open
    out = h.run(h.record("purchase", T0 + 25 * DAY, amount=5.0))
    labels = [orjson.loads(v)["label"] for _, v in out.examples]
    assert labels and not any(labels)  # bought within 30 days of each snapshot


def test_one_write_per_touched_customer_per_batch_and_none_for_redeliveries():
    h = Harness()
    recs = [started(h)] + [h.record("session", T0 + i * 60) for i in range(1, 20)]
    out = h.run(*recs)
    assert h.customers.writes == ["c1"] and out.scores == 1 and sum(out.processed.values()) == 20
    again = h.run(*recs[5:])  # redelivered: same offsets
    assert h.customers.writes == ["c1"] and again.scores == 0 and sum(again.duplicates.values()) == 15


def test_nothing_is_written_for_a_customer_whose_visit_is_not_due():
    h = Harness(allowed_lateness_s=0.0)
    h.run(started(h), started(h, "c2"))
    writes = len(h.customers.writes)
    h.book.idle.update(TOPICS)
    h.run(h.record("session", T0 + 3600, "c2"))
    assert h.customers.writes[writes:] == ["c2"]


@pytest.mark.parametrize("batch", [7, 100])
def test_batch_boundaries_change_neither_states_nor_what_the_model_learns(batch):
    """End-of-day snapshots are decided by the events, not by when visits happen."""
    from stream_app.tools.simulator import SimConfig, events as simulate

    evs = sorted(simulate(SimConfig(customers=40, days=90, seed=5)), key=lambda e: e["ts"])
    one, many = PurePipeline(batch=1, caught_up=True), PurePipeline(batch=batch, caught_up=True)
    for e in evs:
        one.feed(e)
        many.feed(e)
    one.finish()
    many.finish()
    clock = one.book.clock
    assert clock == many.book.clock
    rules = one.processor.rules
    assert {c: fingerprint(s, clock, rules) for c, s in one.customers.items()} == \
        {c: fingerprint(s, clock, rules) for c, s in many.customers.items()}
    key = lambda e: (e["customer_id"], e["snapshot_t"])  # noqa: E731
    a, b = {key(e): e for e in one.examples}, {key(e): e for e in many.examples}
    assert len(a) > 50
    for k in a.keys() & b.keys():  # the same snapshot, the same features and label
        assert (a[k]["features"], a[k]["label"]) == (b[k]["features"], b[k]["label"]), k
    # a label is emitted at a visit after its horizon: at the end of the stream
    # some may still wait in one run and not in the other, never more than an
    # observation period's worth
    horizon, every = one.settings.horizon_days * DAY, one.settings.snapshot_every_days * DAY
    assert all(clock - every <= t + horizon <= clock for _, t in a.keys() ^ b.keys())
    differ = {k for k in set(one.values()) | set(many.values()) if one.values().get(k) != many.values().get(k)}
    assert differ <= {("expected_loss",)} | {(s, b) for s in ("at_risk", "at_risk_mrr") for b in ("low", "medium", "high", "critical")}


def test_after_a_restore_only_the_customers_due_are_visited():
    """The first sweep after a rebuild must not score every live customer again."""
    h = Harness(allowed_lateness_s=0.0)
    h.run(*[started(h, f"c{i}") for i in range(50)])
    h.idle_until(T0 + 0.5 * DAY)
    restored = Processor(h.p.settings, dict(h.customers), dict(h.risk), wall=lambda: 4e9)
    restored.ensure_books([0])
    restored.books[0].idle.update(TOPICS)
    out = restored.tick(0, T0 + 0.6 * DAY)
    assert out.visits == 0 and out.scores == 0
    # a day later only those whose first observation day after their score has just ended are due
    day0 = int(T0 // DAY)
    out = restored.tick(0, T0 + 2.01 * DAY)
    every = restored.policy.every_days
    due = sum(1 for i in range(50) if next_observation_day(f"c{i}", day0, every) == day0 + 1)
    assert out.visits == out.scores == due and 0 < due < 50


def test_sweep_limit_leaves_the_rest_due():
    h = Harness(allowed_lateness_s=0.0, snapshot_every_days=1, sweep_idle_visits=10)
    h.run(*[started(h, f"c{i}") for i in range(30)])
    h.book.idle.update(TOPICS)
    out = h.p.tick(0, T0 + 2.5 * DAY, sweep_limit=3)  # a tick applies no event: the idle budget
    assert out.visits == 10
    out = h.p.tick(0, T0 + 2.5 * DAY, sweep_limit=100)
    assert out.visits == 20


def test_a_batch_with_events_sweeps_at_the_small_budget():
    """Silent customers' visits never hold a batch's own events (and their
    alerts) back for long: few per batch while events arrive."""
    h = Harness(allowed_lateness_s=0.0, snapshot_every_days=1, sweep_idle_visits=100)
    h.run(*[started(h, f"c{i}") for i in range(30)])
    h.book.idle.update(TOPICS)
    out = h.p.process(0, [h.record("session", T0 + 2.5 * DAY, "c0", duration_s=60.0)], sweep_limit=4)
    assert out.visits == 4 and len(out.applied) == 1


def test_end_of_day_snapshots_feed_labels_after_a_churn():
    h = Harness(allowed_lateness_s=0.0, snapshot_every_days=1)
    h.run(started(h))
    for day in range(1, 10):
        h.run(h.record("session", T0 + day * DAY + 3600))
    out = h.run(h.record("subscription_cancelled", T0 + 10 * DAY + 7200, reason="price"))
    labels = [(orjson.loads(v)["snapshot_t"], orjson.loads(v)["label"]) for _, v in out.examples]
    # days 0..9 closed as the customer stood at their end; all within 30 days of the churn
    assert labels == [(snapshot_time(int(T0 // DAY) + d), True) for d in range(10)]


def test_events_are_applied_in_event_time_order_across_topics():
    """A topic read weeks ahead of another waits for it (Kafka orders a
    partition's records within a topic, not across topics)."""
    h = Harness(allowed_lateness_s=3600.0)
    sessions = [h.record("session", T0 + d * DAY + 3600) for d in range(1, 30)]
    out = h.p.process(0, sessions)  # usage read first; the subscription topic has delivered nothing yet
    assert out.applied == [] and h.book.held_events() == 29 and "c1" not in h.customers
    start = started(h)
    cancel = h.record("subscription_cancelled", T0 + 10.5 * DAY, reason="price")
    h.book.idle.add("churn.support")  # an empty topic, read to its end (the worker's tick finds that)
    out = h.p.process(0, [start, cancel])
    # everything up to the cancellation (and an hour's lateness) applied, in time order; the rest waits
    assert [r.offset for r in out.applied[:3]] == [start.offset, sessions[0].offset, sessions[1].offset]
    assert cancel in out.applied and h.book.held_events() == 29 - 10
    st = h.customers["c1"]
    assert st.status == "cancelled" and st.churned_t == T0 + 10.5 * DAY
    # the subscription topic caught up with its end (the worker's tick): the rest is applied
    h.book.idle.add("churn.subscription")
    out = h.p.tick(0, T0)
    assert len(out.applied) == 19 and h.book.held_events() == 0


def test_an_input_read_to_its_end_holds_nothing_back_without_waiting_for_a_tick():
    """Live, the support topic is usually read to its end with its newest
    event long past: a session waits for it only until the processor asks
    whether it is caught up, not until the worker's next tick."""
    h = Harness(allowed_lateness_s=3600.0)
    h.run(started(h), h.record("ticket_opened", T0 + 3600, ticket_id="t1", priority="low", category="billing"))
    read_to_end = set()
    h.p.caught_up = lambda topic, partition: topic in read_to_end
    h.book.idle.clear()  # a fresh event on each topic made them busy again
    session = h.record("session", T0 + 5 * DAY, duration_s=60.0)
    out = h.p.process(0, [session])
    assert out.applied == [] and h.book.held_events() == 1  # support and subscription not known to be read
    read_to_end.update({"churn.support", "churn.subscription"})
    out = h.p.process(0, [])
    assert out.applied == [session] and h.book.held_events() == 0
    assert {"churn.support", "churn.subscription"} <= h.book.idle


def test_holding_is_bounded():
    h = Harness(input_hold_max=5)
    out = h.p.process(0, [h.record("session", T0 + d * 3600) for d in range(12)])
    assert len(out.applied) == 7 and h.book.held_events() == 5


# -- clock ticks: a trust boundary (contract.decode_tick) -------------------------------------


def _tick(value: bytes, offset: int = 0) -> Record:
    return Record("churnmon-clock", 0, offset, None, value)


def test_bad_ticks_come_back_for_the_dead_letter_topic_and_move_nothing():
    h = Harness()
    h.p.clock_topic = "churnmon-clock"
    h.run(h.record("subscription_started", T0, plan="pro", mrr=99.0))
    clock = h.book.clock
    bad = [b"[1, 2]", b'{"t": 1e300}', b'{"t": "2030-01-01T00:00:00Z"}', b"{}", b"tick"]
    out = h.p.process(0, [_tick(v, i) for i, v in enumerate(bad)])
    assert [r.reason for _, r in out.rejected] == ["not_object", "future_timestamp", "wrong_type", "missing_field", "not_json"]
    assert h.book.clock == clock


def test_a_tick_moves_a_clock_no_further_than_the_events_allow():
    h = Harness()
    h.p.clock_topic = "churnmon-clock"
    h.run(h.record("subscription_started", T0, plan="pro", mrr=99.0))
    clock = h.book.clock
    # the wall clock (within max_future_s of it, so well-formed): capped at the worker's clock
    out = h.p.process(0, [_tick(orjson.dumps({"t": 3.9e9}))])
    assert not out.rejected and h.book.clock == clock
    # a partition with an input still to read is not moved at all
    h.book.idle.discard(TOPICS[0])
    h.p.books[1] = h.p.new_book(1)
    h.p.books[1].raise_to(T0 + 30 * DAY)
    h.p.process(0, [_tick(orjson.dumps({"t": T0 + 30 * DAY}))])
    assert h.book.clock == clock
    # once every input is read, a legitimate tick moves it to the worker's clock
    h.book.idle.update(TOPICS)
    h.p.process(0, [_tick(orjson.dumps({"t": T0 + 30 * DAY}))])
    assert h.book.clock == T0 + 30 * DAY
