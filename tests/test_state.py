"""State transitions, called directly: no Kafka."""

from __future__ import annotations

import msgspec
import pytest

from stream_app.ingest.contract import parse_ts
from stream_app.domain.state import (
    ACTIVE, CANCELLED, LAPSED, TRIAL, TRIAL_EXPIRED, CustomerState, Rules, advance, apply, new_state, next_deadline,
)

DAY = 86400.0
RULES = Rules()
_n = 0


def e(typ: str, ts: str, cid: str = "c1", **fields) -> dict:
    global _n
    _n += 1
    out = {"event_id": f"e{_n}", "customer_id": cid, "type": typ, "ts": ts, "_t": parse_ts(ts), **fields}
    if "effective_at" in fields:
        out["_effective_t"] = parse_ts(fields["effective_at"])
    return out


def run(*events, state: CustomerState | None = None):
    s = state or new_state("c1")
    effects = []
    for ev in events:
        s, eff = apply(s, ev, RULES)
        effects.append(eff)
    return s, effects


def test_start_is_new_mrr_and_plan_changes_are_expansion_and_contraction():
    s, eff = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="basic", mrr=29),
        e("plan_changed", "2025-02-01T00:00:00Z", plan="pro", mrr=99),
        e("plan_changed", "2025-03-01T00:00:00Z", plan="basic", mrr=29),
    )
    assert s.status == ACTIVE and s.plan == "basic" and s.mrr == 29
    assert [m for x in eff for m in x.movements] == [("new", 29), ("expansion", 70), ("contraction", 70)]
    assert [c[1] for c in s.plan_changes] == ["pro", "basic"]


def test_cancellation_at_period_end_keeps_mrr_until_it_takes_effect():
    s, _ = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99),
        e("subscription_cancelled", "2025-01-20T00:00:00Z", reason="price", effective_at="2025-02-01T00:00:00Z"),
    )
    assert s.status == ACTIVE and s.mrr == 99 and s.cancel_effective_t == parse_ts("2025-02-01T00:00:00Z")
    assert next_deadline(s, RULES) == s.cancel_effective_t
    s, eff = advance(s, parse_ts("2025-01-31T23:59:59Z"), RULES)
    assert s.status == ACTIVE and eff.churn is None
    s, eff = advance(s, parse_ts("2025-02-01T00:00:00Z"), RULES)
    assert s.status == CANCELLED and s.mrr == 0
    assert eff.churn.kind == "voluntary" and eff.churn.reason == "price" and eff.churn.mrr == 99
    assert eff.movements == (("churn", 99),)
    assert s.churned_t == parse_ts("2025-02-01T00:00:00Z")


def test_immediate_cancellation_churns_at_once():
    s, eff = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99),
        e("subscription_cancelled", "2025-03-01T00:00:00Z", reason="competitor"),
    )
    assert s.status == CANCELLED and eff[-1].churn.reason == "competitor"
    assert 58 < eff[-1].churn.tenure_days < 60


def test_an_involuntary_cancellation_is_payment_churn_at_once_or_at_its_end():
    s, eff = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99),
        e("subscription_cancelled", "2025-03-01T00:00:00Z", reason="other", involuntary=True),
    )
    assert s.status == CANCELLED and (eff[-1].churn.kind, eff[-1].churn.reason) == ("involuntary", "payment")
    s, _ = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99),
        e("subscription_cancelled", "2025-03-01T00:00:00Z", reason="other", involuntary=True, effective_at="2025-03-10T00:00:00Z"),
    )
    s, eff = advance(s, parse_ts("2025-03-10T00:00:00Z"), RULES)
    assert (eff.churn.kind, eff.churn.reason, eff.churn.mrr) == ("involuntary", "payment", 99)


def test_a_renewal_withdraws_a_pending_cancellation():
    s, eff = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99),
        e("subscription_cancelled", "2025-01-20T00:00:00Z", reason="price", effective_at="2025-02-01T00:00:00Z"),
        e("subscription_renewed", "2025-01-22T00:00:00Z"),
    )
    assert (s.status, s.cancel_effective_t, s.cancel_reason, next_deadline(s, RULES)) == (ACTIVE, None, None, None)
    s, eff = advance(s, parse_ts("2025-02-02T00:00:00Z"), RULES)
    assert s.status == ACTIVE and eff.churn is None and s.mrr == 99


def test_failed_payment_churns_only_after_the_grace_period():
    start = e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99)
    failed = e("payment_failed", "2025-02-01T00:00:00Z", amount=99)
    s, _ = run(start, failed)
    s, eff = advance(s, parse_ts("2025-02-14T23:00:00Z"), RULES)
    assert s.status == ACTIVE and eff.churn is None
    s, eff = advance(s, parse_ts("2025-02-15T00:00:00Z"), RULES)
    assert s.status == CANCELLED and eff.churn.kind == "involuntary" and eff.churn.reason == "payment"


def test_recovered_payment_is_not_churn_and_a_late_payment_does_not_undo_it():
    s, _ = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99),
        e("payment_failed", "2025-02-01T00:00:00Z", amount=99),
        e("payment_succeeded", "2025-02-10T00:00:00Z", amount=99),
    )
    s, eff = advance(s, parse_ts("2025-04-01T00:00:00Z"), RULES)
    assert s.status == ACTIVE and eff.churn is None
    s2, effs = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99),
        e("payment_failed", "2025-02-01T00:00:00Z", amount=99),
        e("payment_succeeded", "2025-03-01T00:00:00Z", amount=99),
    )
    assert s2.status == CANCELLED and effs[-1].churn.kind == "involuntary"


def test_purchase_only_customers_lapse_after_the_inactivity_period():
    s, eff = run(e("purchase", "2025-01-01T00:00:00Z", amount=30), e("purchase", "2025-02-01T00:00:00Z", amount=10))
    assert s.status == ACTIVE and not s.contractual and s.plan_label() == "none" and s.purchases == 2
    assert eff[0].movements == ()  # purchase-only customers bring no MRR
    s, eff = advance(s, parse_ts("2025-05-02T00:00:00Z"), RULES)
    assert s.status == LAPSED and eff.churn.kind == "inactivity"
    s, eff = run(e("purchase", "2025-06-01T00:00:00Z", amount=30), state=s)
    assert s.status == ACTIVE and s.spell_start_t == parse_ts("2025-06-01T00:00:00Z")


def test_a_purchase_of_nothing_counts_as_a_purchase_and_as_activity():
    s, eff = run(e("purchase", "2025-01-01T00:00:00Z", amount=30))
    s, eff = advance(s, parse_ts("2025-03-01T00:00:00Z"), RULES)
    s, eff = run(e("purchase", "2025-03-01T00:00:00Z", amount=0), state=s)
    assert s.status == ACTIVE and s.purchases == 2 and s.purchase_amount == 30.0
    assert s.last_activity_t == s.last_purchase_t == parse_ts("2025-03-01T00:00:00Z")
    # it keeps the customer alive: 90 days from the free purchase, not from the paid one
    s, eff = advance(s, parse_ts("2025-05-15T00:00:00Z"), RULES)
    assert s.status == ACTIVE and eff.churn is None


def test_contractual_customers_do_not_lapse_for_inactivity():
    s, _ = run(e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99))
    s, eff = advance(s, parse_ts("2026-01-01T00:00:00Z"), RULES)
    assert s.status == ACTIVE and eff.churn is None


def test_trials_convert_or_expire_and_are_not_customers():
    s, _ = run(e("trial_started", "2025-01-01T00:00:00Z", plan="pro"))
    assert s.status == TRIAL and not s.is_customer
    s2, eff = run(e("trial_converted", "2025-01-14T00:00:00Z", plan="pro", mrr=99), state=s.copy())
    assert s2.status == ACTIVE and eff[0].movements == (("new", 99),)
    s3, eff = advance(s, parse_ts("2025-01-16T00:00:00Z"), RULES)
    assert s3.status == TRIAL_EXPIRED and eff.churn is None


def test_coming_back_after_churn_is_reactivation():
    s, eff = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99),
        e("subscription_cancelled", "2025-02-01T00:00:00Z", reason="price"),
        e("subscription_started", "2025-05-01T00:00:00Z", plan="basic", mrr=29),
    )
    assert eff[-1].movements == (("reactivation", 29),)
    assert len(s.spells) == 1 and s.spell_start_t == parse_ts("2025-05-01T00:00:00Z")


def test_redelivered_event_changes_nothing():
    start = e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99)
    session = e("session", "2025-01-02T00:00:00Z")
    s, _ = run(start, session)
    before = s.to_bytes()
    s, eff = apply(s, dict(session), RULES)
    assert eff.duplicate and s.to_bytes() == before


def test_support_and_usage_signals_are_kept():
    s, _ = run(
        e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99),
        e("session", "2025-01-02T10:00:00Z", duration_s=10),
        e("feature_used", "2025-01-02T11:00:00Z", feature="reports"),
        e("feature_used", "2025-01-03T11:00:00Z", feature="reports"),
        e("ticket_opened", "2025-01-04T00:00:00Z", ticket_id="t1", priority="high", category="billing"),
        e("ticket_opened", "2025-01-05T00:00:00Z", ticket_id="t2", priority="low", category="bug"),
        e("ticket_resolved", "2025-01-06T00:00:00Z", ticket_id="t1"),
        e("csat", "2025-01-06T00:00:00Z", score=2),
        e("nps", "2025-01-07T00:00:00Z", score=4),
    )
    assert s.features == ("reports",) and s.open_tickets == ("t2",) and s.tickets.total() == 2
    assert s.csat == 2 and s.nps == 4 and s.sessions_first_14d == 3 and len(s.usage_days()) == 2


def test_history_is_bounded_by_the_longest_window():
    s = new_state("c1")
    s, _ = apply(s, e("subscription_started", "2024-01-01T00:00:00Z", plan="pro", mrr=99), RULES)
    t0 = parse_ts("2024-01-02T00:00:00Z")
    for i in range(400):
        s, _ = apply(s, {"event_id": f"s{i}", "customer_id": "c1", "type": "session", "ts": "", "_t": t0 + i * DAY}, RULES)
    assert len(s.usage_days()) <= RULES.keep_days + 2 and s.usage.size == RULES.usage_days
    assert len(s.seen) == 8 * RULES.dedupe_ids * 3  # a fixed window of id digests per topic


@pytest.mark.parametrize("state", [new_state("x"), run(e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99))[0]])
def test_state_round_trips_through_the_table_codec(state):
    assert CustomerState.from_bytes(state.to_bytes()) == state


def test_every_schema_type_has_a_handler():
    from stream_app.ingest.contract import TOPIC_TYPES
    from stream_app.domain.state import HANDLERS

    assert set(HANDLERS) == set().union(*TOPIC_TYPES.values())


def test_a_subscribers_purchase_read_before_their_subscription_gives_the_same_state():
    """Topics are not ordered with each other: the usage topic may be read first."""
    start = e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99)
    buy = e("purchase", "2025-01-05T00:00:00Z", amount=10)
    in_order, _ = run(dict(start), dict(buy))
    reversed_, effects = run(dict(buy), dict(start))
    for name in ("status", "contractual", "plan", "mrr", "spell_start_t", "started_t", "mrr_changes", "purchases"):
        assert getattr(in_order, name) == getattr(reversed_, name), name
    assert effects[-1].movements == (("new", 99),)


def _fields(s: CustomerState) -> dict:
    """Everything the events decided (what the fingerprint covers, less timing)."""
    out = msgspec.structs.asdict(s)
    for name in ("late_events", "risk", "risk_band", "seen", "scored_t", "model_score", "observed_through", "alert",
                 "labelled_through", "label_due_t"):
        out.pop(name)
    out["usage"], out["tickets"] = s.usage_items(), s.tickets.items() if s.tickets is not None else []
    out["first_days"] = s.sessions_first_14d
    return out


@pytest.mark.parametrize("converted", [True, False], ids=["converted", "expired"])
@pytest.mark.parametrize("bought", ["2025-01-05T00:00:00Z", "2025-01-22T00:00:00Z"], ids=["during-trial", "after-trial"])
def test_a_purchase_read_before_an_earlier_trial_gives_the_same_state(bought, converted):
    """The usage topic read weeks ahead of the subscription topic (the scale-out
    test's cus_000034: trial_start_t was None on the scaled workers). In event
    order a trialist's purchase starts no spell; read first, it made the
    customer an active buyer, and the trial was then ignored."""
    subscription = [e("trial_started", "2025-01-01T11:47:04Z", plan="business")]
    if converted:
        subscription.append(e("trial_converted", "2025-01-15T11:47:04Z", plan="business", mrr=299))
    usage = [e("session", "2025-01-01T13:00:45Z"), e("purchase", bought, amount=19)]
    end = parse_ts("2025-03-01T00:00:00Z")
    in_order, _ = run(*map(dict, sorted(subscription + usage, key=lambda ev: ev["_t"])))
    usage_first, _ = run(*map(dict, usage + subscription))
    for s in (in_order, usage_first):
        advance(s, end, RULES)
    assert usage_first.trial_start_t == parse_ts("2025-01-01T11:47:04Z")
    assert _fields(usage_first) == _fields(in_order)
    assert in_order.status == (ACTIVE if converted else TRIAL_EXPIRED)


def test_a_trial_after_a_purchase_spell_leaves_the_buyer_active():
    """In event order too: a buyer who starts a trial later stays an active buyer."""
    s, _ = run(e("purchase", "2025-01-05T00:00:00Z", amount=19), e("trial_started", "2025-01-10T00:00:00Z", plan="pro"))
    assert s.status == ACTIVE and not s.contractual and s.trial_start_t is None
    assert s.spell_start_t == parse_ts("2025-01-05T00:00:00Z")


def test_dedupe_window_is_per_topic():
    """Many usage events read after a ticket must not push the ticket out of the window."""
    s, _ = run(e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99))
    ticket = e("ticket_opened", "2025-03-01T00:00:00Z", ticket_id="t1", priority="high", category="bug")
    s, _ = run(dict(ticket), state=s)
    for i in range(200):
        s, _ = run(e("session", f"2025-02-{1 + i % 28:02d}T00:00:00Z"), state=s)
    s, eff = run(dict(ticket), state=s)
    assert eff[0].duplicate


def test_a_replay_from_far_back_is_dropped_by_offset():
    """A rebalance can rewind a partition far beyond any event-id window: the
    offsets applied per topic catch every redelivery, however old."""
    s = new_state("c1")
    events = [e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99)]
    events += [e("session", f"2025-01-{1 + i % 28:02d}T0{i % 10}:00:00Z") for i in range(300)]
    offsets = {"churn.subscription": 0, "churn.usage": 0}
    for ev in events:
        topic = "churn.subscription" if ev["type"].startswith("subscription") else "churn.usage"
        s, _ = apply(s, dict(ev), RULES, offset=offsets[topic])
        offsets[topic] += 1
    before = s.to_bytes()
    replayed = [apply(s, dict(ev), RULES, offset=i)[1].duplicate for i, ev in enumerate(events[1:])]
    assert len(events) > 4 * RULES.dedupe_ids  # far beyond the event-id window
    assert all(replayed) and s.to_bytes() == before


def test_the_same_event_produced_twice_is_dropped_by_id():
    """A retrying producer or a DLQ re-publication: same event id, new offset."""
    s, _ = run(e("subscription_started", "2025-01-01T00:00:00Z", plan="pro", mrr=99))
    buy = e("purchase", "2025-01-05T00:00:00Z", amount=10)
    s, first = apply(s, dict(buy), RULES, offset=5)
    s, again = apply(s, dict(buy), RULES, offset=9)
    assert not first.duplicate and again.duplicate and s.purchases == 1


def test_onboarding_usage_does_not_depend_on_which_topic_is_read_first():
    start = e("subscription_started", "2025-01-10T00:00:00Z", plan="pro", mrr=99)
    usage = [e("session", f"2025-01-{d:02d}T12:00:00Z") for d in (8, 12, 20, 23, 30)]
    subscription_first, _ = run(dict(start), *map(dict, usage))
    usage_first, _ = run(*map(dict, reversed(usage)), dict(start))
    for name in ("first_seen_t", "sessions_first_14d", "first_days"):
        assert getattr(subscription_first, name) == getattr(usage_first, name), name
    assert usage_first.sessions_first_14d == 3  # Jan 8, 12, 20: within 14 days of the first event (Jan 8)


def test_fingerprint_ignores_the_order_days_were_recorded_in():
    from stream_app.runtime.views import fingerprint

    a, b = new_state("c1"), new_state("c1")
    for day in (1, 1, 5):
        a = apply(a, {"event_id": f"a{day}{a.usage_days()}", "customer_id": "c1", "type": "session", "_t": day * DAY}, RULES)[0]
    for day in (5, 1, 1):  # a late day recorded after a newer one
        b = apply(b, {"event_id": f"b{day}{b.usage_days()}", "customer_id": "c1", "type": "session", "_t": day * DAY}, RULES)[0]
    b.seen = a.seen  # which ids were seen is not what the events decided
    a.risk, b.late_events = 0.9, 3  # timing, not events
    assert fingerprint(a, 10 * DAY, RULES) == fingerprint(b, 10 * DAY, RULES)
    b.usage.add(6)
    assert fingerprint(a, 10 * DAY, RULES) != fingerprint(b, 10 * DAY, RULES)


def test_a_state_written_before_the_support_and_payment_history_fields_still_decodes():
    """The new fields sit at the end with defaults: an older record (a shorter
    msgpack array) decodes, with the defaults, and its 31-day ticket ring
    grows to the 90-day one on its next ticket, keeping its counts."""
    import msgspec

    from stream_app.domain.dayring import DayRing
    from stream_app.domain.state import CustomerState, TICKET_DAYS

    s = new_state("old")
    s.tickets = DayRing.new(31)
    s.tickets.add(100, 2)
    fields = msgspec.msgpack.decode(s.to_bytes())  # the positional array, as stored
    old = msgspec.msgpack.encode(fields[:-8])  # without the eight new fields
    back = CustomerState.from_bytes(old)
    assert (back.last_ticket_t, back.csat_n, back.failures_total, back.last_failed_t) == (None, 0, 0, None)
    assert back.tickets.size == 31
    back, _ = apply(back, {"event_id": "t", "customer_id": "old", "type": "ticket_opened", "_t": 101 * 86400.0,
                           "ticket_id": "x", "priority": "low", "category": "bug"}, Rules())
    assert back.tickets.size == TICKET_DAYS and back.tickets_in(101, 30) == 3 and back.last_ticket_t == 101 * 86400.0
