"""The delayed-label protocol: right labels, only once known, bounded, serialisable."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.config import DAY
from stream_app.labels import Example, LabelBook, expire, observe, on_churn

H = 30


def daily(book: LabelBook, days, hour: float = 12.0) -> None:
    for d in days:
        observe(book, d * DAY + hour * 3600, {"day": float(d)})


def test_one_snapshot_per_day_first_wins():
    b = LabelBook()
    observe(b, 0.0, {"v": 1.0}, score=0.1)
    observe(b, 3600.0, {"v": 2.0}, score=0.9)
    observe(b, DAY - 1, {"v": 3.0})
    assert len(b.snapshots) == 1 and b.snapshots[0][1] == {"v": 1.0} and b.snapshots[0][2] == 0.1
    observe(b, DAY, {"v": 4.0})
    assert len(b.snapshots) == 2


def test_snapshot_is_a_copy():
    b = LabelBook()
    f = {"v": 1.0}
    observe(b, 0.0, f)
    f["v"] = 99.0
    assert b.snapshots[0][1] == {"v": 1.0}


def test_positives_only_within_horizon():
    b = LabelBook(horizon_days=H)
    daily(b, range(0, 31))
    churn_t = 35 * DAY
    # without expiry, older snapshots are still waiting and must come out negative
    exs = on_churn(b, churn_t)
    assert len(exs) == 31
    for ex in exs:
        assert ex.label == (churn_t - ex.snapshot_t <= H * DAY)
        assert ex.labelled_t == churn_t
    assert sum(ex.label for ex in exs) == 26  # days 5..30 at noon
    assert b.snapshots == []


def test_negatives_only_after_horizon_passes():
    b = LabelBook(horizon_days=H)
    daily(b, [0, 1])
    t0 = b.snapshots[0][0]
    assert expire(b, t0 + H * DAY - 1) == []
    out = expire(b, t0 + H * DAY)
    assert [(ex.label, ex.snapshot_t) for ex in out] == [(False, t0)]
    assert len(b.snapshots) == 1


def test_lead_time_drops_the_last_days():
    b = LabelBook(horizon_days=H, lead_days=7)
    daily(b, range(0, 30))
    churn_t = 30 * DAY
    exs = on_churn(b, churn_t)
    assert all(churn_t - ex.snapshot_t >= 7 * DAY for ex in exs)
    assert all(ex.label for ex in exs)
    assert b.dropped == 7  # days 23..29 at noon: less than 7 days before churn


def test_snapshots_at_or_after_churn_are_never_positive():
    b = LabelBook()
    observe(b, 10 * DAY, {})
    assert on_churn(b, 10 * DAY) == [] and b.dropped == 1


def test_bounded_memory_with_daily_expiry():
    b = LabelBook(horizon_days=H)
    for d in range(400):
        now = d * DAY + 3600
        expire(b, now)
        observe(b, now, {"d": float(d)})
        assert len(b.snapshots) <= H + 1
    assert b.dropped == 0


def test_bounded_memory_even_without_expiry():
    b = LabelBook(horizon_days=H)
    daily(b, range(100))
    assert len(b.snapshots) == H + 1 and b.dropped == 100 - (H + 1)


def test_json_round_trip():
    b = LabelBook(horizon_days=H, lead_days=2)
    observe(b, 0.0, {"a": 1.0, "b": 2.5}, score=0.25)
    observe(b, DAY, {"a": 0.0, "b": -1.0})
    observe(b, 2 * DAY, {"a": 0.0, "c": 3.0}, score=0.5)  # a changed feature set survives too
    raw = orjson.dumps(b.to_dict())
    b2 = LabelBook.from_dict(orjson.loads(raw))
    assert b2 == b
    assert on_churn(b2, 3 * DAY) == on_churn(b, 3 * DAY)


def test_empty_book_round_trip():
    assert LabelBook.from_dict(orjson.loads(orjson.dumps(LabelBook().to_dict()))) == LabelBook()


def test_example_shape():
    ex = Example({"a": 1.0}, True, 0.0, 1.0)
    assert ex.score is None and ex._fields == ("features", "label", "snapshot_t", "labelled_t", "score")


@given(
    days=st.integers(1, 120),
    churn_day=st.one_of(st.none(), st.floats(0.0, 130.0)),
    observe_hours=st.lists(st.floats(0.0, 23.9), min_size=1, max_size=3),
    horizon=st.sampled_from([7, 30]),
    lead=st.sampled_from([0, 3]),
)
@settings(max_examples=300, deadline=None)
def test_protocol_never_labels_before_known_and_always_right(days, churn_day, observe_hours, horizon, lead):
    """Live loop: each day advance (churn first), expire, observe. Every label
    must equal the truth computed with hindsight, and be emitted no earlier
    than the moment that truth became known."""
    b = LabelBook(horizon_days=horizon, lead_days=lead)
    churn_t = None if churn_day is None else churn_day * DAY
    got: list[Example] = []
    churned = False
    for d in range(days):
        for h in sorted(observe_hours):
            now = d * DAY + h * 3600
            if churn_t is not None and not churned and churn_t <= now:
                got += on_churn(b, churn_t)
                churned = True
            got += expire(b, now)
            if not churned:
                observe(b, now, {"t": now})
            assert len(b.snapshots) <= b.capacity
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
