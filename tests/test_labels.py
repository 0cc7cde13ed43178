"""The delayed-label protocol: right labels, only once known, bounded, serialisable."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.config import DAY
from stream_app.risk.features import FEATURES, NEUTRAL
from stream_app.risk.labels import (
    Example, LabelBook, Policy, expire, is_observation_day, next_observation_day, observe, on_churn, snapshot_time,
)

H = 30
DAILY = Policy(horizon_days=H, every_days=1)


def daily(book: LabelBook, days, policy: Policy = DAILY) -> None:
    for d in days:
        observe(book, d, {"usage_7d": float(d)}, None, policy)


def test_one_snapshot_per_day_first_wins():
    b = LabelBook()
    observe(b, 0, {"usage_7d": 1.0}, 0.125, DAILY)
    observe(b, 0, {"usage_7d": 2.0}, 0.875, DAILY)
    assert b.size == 1 and b.features_of(0)["usage_7d"] == 1.0
    observe(b, 1, {"usage_7d": 4.0}, None, DAILY)
    assert b.size == 2


def test_snapshot_keeps_every_feature_in_order_and_is_a_copy():
    b = LabelBook()
    f = {"usage_7d": 1.0, "mrr": 99.0}
    observe(b, 0, f, None, DAILY)
    f["usage_7d"] = 99.0
    got = b.features_of(0)
    assert list(got) == list(FEATURES)
    assert got["usage_7d"] == 1.0 and got["mrr"] == 99.0 and got["csat"] == NEUTRAL["csat"]


def test_positives_only_within_horizon():
    b = LabelBook()
    daily(b, range(0, 31))
    churn_t = 35 * DAY
    # without expiry, older snapshots are still waiting and must come out negative
    exs = on_churn(b, churn_t, DAILY)
    assert len(exs) == 31
    for ex in exs:
        assert ex.label == (churn_t - ex.snapshot_t <= H * DAY)
        assert ex.labelled_t == churn_t
    assert sum(ex.label for ex in exs) == 27  # days 4..30 end within 30 days of day 35
    assert b.size == 0


def test_negatives_only_after_horizon_passes():
    b = LabelBook()
    daily(b, [0, 1])
    t0 = snapshot_time(0)
    assert expire(b, t0 + H * DAY - 1, DAILY) == []
    out = expire(b, t0 + H * DAY, DAILY)
    assert [(ex.label, ex.snapshot_t) for ex in out] == [(False, t0)]
    assert b.size == 1


def test_lead_time_drops_the_last_days():
    policy = Policy(horizon_days=H, lead_days=7, every_days=1)
    b = LabelBook()
    daily(b, range(0, 30), policy)
    churn_t = 30 * DAY
    exs = on_churn(b, churn_t, policy)
    assert all(churn_t - ex.snapshot_t >= 7 * DAY for ex in exs)
    assert all(ex.label for ex in exs)
    assert b.dropped == 7  # days 23..29 end less than 7 days before churn


def test_snapshots_at_or_after_churn_are_never_positive():
    b = LabelBook()
    observe(b, 10, {}, None, DAILY)
    assert on_churn(b, snapshot_time(10), DAILY) == [] and b.dropped == 1


def test_bounded_memory_with_expiry():
    for policy in (DAILY, Policy(horizon_days=H, every_days=7)):
        b = LabelBook()
        for d in range(0, 400, policy.every_days):
            expire(b, d * DAY, policy)
            observe(b, d, {}, None, policy)
            assert b.size <= policy.capacity
        assert b.dropped == 0


def test_bounded_memory_even_without_expiry():
    b = LabelBook()
    daily(b, range(100))
    assert b.size == DAILY.capacity and b.dropped == 100 - DAILY.capacity


def test_a_full_book_is_small():
    """A daily book of a 30-day horizon (issue: at most 6 KB per customer with
    31 snapshots). Rows are sparse (a bit mask, then the features away from
    neutral), so the feature set can grow (47 then, 64 now) without the book:
    a subscriber's purchase features and a buyer's subscription ones cost
    nothing."""
    b = LabelBook()
    daily(b, range(DAILY.capacity))
    assert b.size == DAILY.capacity == 32
    assert len(msgspec.msgpack.encode(b)) < 6 * 1024


def test_round_trip():
    b = LabelBook()
    observe(b, 0, {"usage_7d": 1.0, "mrr": 2.5}, 0.25, DAILY)
    observe(b, 1, {"usage_7d": 0.0, "mrr": -1.0}, None, DAILY)
    b2 = msgspec.msgpack.decode(msgspec.msgpack.encode(b), type=LabelBook)
    assert b2 == b
    assert on_churn(b2, 3 * DAY, DAILY) == on_churn(b, 3 * DAY, DAILY)


def test_a_book_of_another_feature_set_is_dropped_and_counted():
    b = LabelBook()
    daily(b, range(3))
    b.fset += 1
    assert expire(b, 1e12, DAILY) == [] and b.size == 0 and b.dropped == 3


def test_example_shape():
    ex = Example({"a": 1.0}, True, 0.0, 1.0)
    assert ex.score is None and ex._fields == ("features", "label", "snapshot_t", "labelled_t", "score")


def test_observation_days_are_spread_and_periodic():
    every = 7
    phases = {next_observation_day(f"c{i}", -1, every) for i in range(200)}
    assert phases == set(range(every))  # customers spread over the week
    days = [d for d in range(60) if is_observation_day("c42", d, every)]
    assert all(b - a == every for a, b in zip(days, days[1:]))
    assert next_observation_day("c42", days[0], every) == days[1]
    assert next_observation_day("c42", days[0] - 1, every) == days[0]


@given(
    days=st.integers(1, 120),
    churn_day=st.one_of(st.none(), st.floats(0.0, 130.0)),
    visit_hours=st.lists(st.floats(0.0, 23.9), min_size=1, max_size=3),
    horizon=st.sampled_from([7, 30]),
    lead=st.sampled_from([0, 3]),
    every=st.sampled_from([1, 7]),
)
@settings(max_examples=300, deadline=None)
def test_protocol_never_labels_before_known_and_always_right(days, churn_day, visit_hours, horizon, lead, every):
    """Live loop: at each visit, churn first, then expire, then close the
    observation days that ended. Every label must equal the truth computed
    with hindsight, and be emitted no earlier than the moment that truth
    became known."""
    policy = Policy(horizon_days=horizon, lead_days=lead, every_days=every)
    b = LabelBook()
    churn_t = None if churn_day is None else churn_day * DAY
    got: list[Example] = []
    churned = False
    closed = -1
    for d in range(days):
        for h in sorted(visit_hours):
            now = d * DAY + h * 3600
            if churn_t is not None and not churned and churn_t <= now:
                got += on_churn(b, churn_t, policy)
                churned = True
            got += expire(b, now, policy)
            if not churned:
                for day in range(closed + 1, d):  # the days that ended before now
                    if is_observation_day("c", day, every) and (churn_t is None or snapshot_time(day) <= churn_t):
                        observe(b, day, {"usage_7d": float(day)}, None, policy)
            closed = max(closed, d - 1)
            assert b.size <= policy.capacity
    H_s, L_s = horizon * DAY, lead * DAY
    for ex in got:
        s = ex.snapshot_t
        assert ex.labelled_t >= s
        if ex.label:
            assert churn_t is not None and L_s <= churn_t - s <= H_s
            assert ex.labelled_t == churn_t  # known exactly when the churn happened
        else:
            assert churn_t is None or churn_t - s > H_s
            assert ex.labelled_t >= s + H_s or (churn_t is not None and ex.labelled_t == churn_t)
    # nothing is labelled twice
    assert len({ex.snapshot_t for ex in got}) == len(got)
