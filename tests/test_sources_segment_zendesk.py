"""The Segment and Zendesk adapters on those systems' own shapes (tests/data/support_usage_stories.py)."""

from __future__ import annotations

import re

import orjson
import pytest

from stream_app.config import Settings
from stream_app.ingest.contract import Rejection
from stream_app.ingest import sources
from stream_app.ingest.sources import SOURCES, run, segment
from stream_app.domain.state import day_of
from tests.data import support_usage_stories as story
from tests.data.support_usage_stories import CREATED, RATED, STATUS, segment_call, zendesk_hook
from tests.pure_pipeline import PurePipeline


def through(name: str, record: dict, config=None):
    """One record through the same gate the agent uses (decode, adapt, contract check)."""
    source = SOURCES[name]
    return run(source, orjson.dumps(record), source.config(Settings()) if config is None else config, 65536)


def replayed(name: str, records: list[dict]) -> PurePipeline:
    """The records' contract events through the worker's processor, in process."""
    pipe = PurePipeline(caught_up=True)
    for record in records:
        for ev in through(name, record).events:
            pipe.feed(ev)
    pipe.finish()
    return pipe


# -- Segment ----------------------------------------------------------------------------------


def test_page_screen_and_configured_tracks_are_sessions():
    for call in (segment_call("page", "m1", "2025-06-01T10:00:00.000Z", group="acme"),
                 segment_call("screen", "m2", "2025-06-01T10:00:00.000Z", group="acme"),
                 segment_call("track", "m3", "2025-06-01T10:00:00.000Z", group="acme", name="Application Opened")):
        (ev,) = through("segment", call).events
        assert (ev["type"], ev["customer_id"], ev["event_id"], ev["ts"]) == ("session", "acme", call["messageId"], "2025-06-01T10:00:00Z")


def test_other_tracks_are_features_renamed_by_the_mapping():
    (ev,) = through("segment", segment_call("track", "m1", "2025-06-01T10:00:00Z", group="acme", name="Report Downloaded")).events
    assert (ev["type"], ev["feature"]) == ("feature_used", "export")
    (ev,) = through("segment", segment_call("track", "m2", "2025-06-01T10:00:00Z", group="acme", name="Invoice Sent")).events
    assert ev["feature"] == "Invoice Sent"


def test_a_purchase_takes_the_first_amount_property():
    call = story.SEGMENT[6]
    (ev,) = through("segment", call).events
    assert (ev["type"], ev["amount"], ev["customer_id"]) == ("purchase", 99.5, "globex")  # total before revenue


def test_the_customer_is_the_account_or_the_user():
    call = segment_call("track", "m1", "2025-06-01T10:00:00Z", user="u-7", group="acme", name="Invoice Sent")
    assert through("segment", call).events[0]["customer_id"] == "acme"
    by_user = segment.load_mapping(None, "userId")
    assert through("segment", call, by_user).events[0]["customer_id"] == "u-7"
    call["groupId"] = "acme-top"  # a top-level groupId (as on group calls) wins over context.groupId
    assert through("segment", call).events[0]["customer_id"] == "acme-top"


def test_identify_and_ignored_events_are_counted_not_mapped():
    assert "identify" in through("segment", story.SEGMENT[0]).ignored
    assert through("segment", story.SEGMENT[5]).ignored  # Email Opened


@pytest.mark.parametrize("call, reason, says", [
    (story.SEGMENT_BAD[0], "unmappable", "groupId"),
    (story.SEGMENT_BAD[1], "unmappable", "amount"),
    (story.SEGMENT_BAD[2], "unsupported_event", "pageview"),
    ({**story.SEGMENT[3], "messageId": None}, "unmappable", "messageId"),
    ({**story.SEGMENT[3], "timestamp": "2025-06-30T09:00:00", "originalTimestamp": None}, "unmappable", "timestamp"),
    (segment_call("track", "m1", "2025-06-01T10:00:00Z", group="acme", name="Order Completed", properties={"total": -5}), "bad_value", "amount"),
])
def test_segment_calls_that_cannot_be_mapped(call, reason, says):
    got = through("segment", call)
    assert isinstance(got, Rejection) and got.reason == reason and says in got.detail, got


def test_a_mapping_file_replaces_the_defaults(tmp_path):
    path = tmp_path / "mapping.toml"
    path.write_text('pages_are_sessions = false\npurchases = ["Plan Bought"]\npurchase_amount = ["price"]\n[features]\n"Invoice Sent" = "invoicing"\n')
    m = segment.load_mapping(path)
    assert through("segment", segment_call("page", "m1", "2025-06-01T10:00:00Z", group="acme"), m).ignored
    (ev,) = through("segment", segment_call("track", "m2", "2025-06-01T10:00:00Z", group="acme", name="Plan Bought", properties={"price": 12}), m).events
    assert (ev["type"], ev["amount"]) == ("purchase", 12)
    assert through("segment", segment_call("track", "m3", "2025-06-01T10:00:00Z", group="acme", name="Invoice Sent"), m).events[0]["feature"] == "invoicing"
    assert "Application Opened" in m.sessions  # keys the file leaves out keep their defaults


def test_a_bad_mapping_file_is_a_clear_settings_error(tmp_path):
    path = tmp_path / "mapping.toml"
    path.write_text("sesions = ['x']\n")
    (problem,) = sources.problems(Settings(segment_mapping_file=str(path)).checked())  # checked as the worker starts
    assert re.search("unknown keys.*sesions", problem), problem
    with pytest.raises(ValueError, match="segment_customer must be groupId or userId"):
        Settings(segment_customer="accountId").checked()


def test_the_segment_story_in_process():
    pipe = replayed("segment", story.SEGMENT + [story.SEGMENT_REDELIVERED])
    values = pipe.values()
    got = {"churn_users_daily_active": values[("dau",)], "churn_users_monthly_active": values[("mau",)],
           "churn_active_days_30d": values[("active_days",)], 'churn_customers_active{plan="none"}': values[("active", "none")]}
    assert got == {k: story.SEGMENT_EXPECTED[k] for k in got}
    assert pipe.customers["acme"].features == ("export", "Dashboard Filtered")


# -- Zendesk ------------------------------------------------------------------------------------


def test_ticket_created_carries_priority_and_category():
    (ev,) = through("zendesk", story.ZENDESK[0]).events
    assert ev == {"event_id": "5b4d-0001", "customer_id": "901", "type": "ticket_opened", "ts": "2025-06-20T10:00:00Z",
                  "ticket_id": "35436", "priority": "high", "category": "incident"}
    (ev,) = through("zendesk", story.ZENDESK[5]).events
    assert (ev["priority"], ev["category"]) == ("normal", "uncategorised")  # no priority, no type: documented defaults


def test_solved_and_closed_resolve_a_ticket_other_status_changes_are_ignored():
    assert through("zendesk", story.ZENDESK[1]).events[0]["type"] == "ticket_resolved"
    closed = zendesk_hook(STATUS, "h1", "2025-06-22T16:30:00Z", "1", event={"current": "CLOSED", "previous": "PENDING"})
    assert through("zendesk", closed).events[0]["type"] == "ticket_resolved"
    assert through("zendesk", story.ZENDESK[4]).ignored
    already = zendesk_hook(STATUS, "h2", "2025-06-22T16:30:00Z", "1", event={"current": "CLOSED", "previous": "SOLVED"})
    assert through("zendesk", already).ignored  # solved once is resolved once


@pytest.mark.parametrize("score, csat", [("good", 5), ("bad", 1), ("Good, I'm satisfied", 5), ("Bad, I'm unsatisfied", 1)])
def test_satisfaction_good_is_high_bad_is_low(score, csat):
    (ev,) = through("zendesk", zendesk_hook(RATED, "h1", "2025-06-22T16:30:00Z", "1", event={"score": score})).events
    assert (ev["type"], ev["score"]) == ("csat", csat)


def test_an_offered_survey_is_not_a_rating():
    assert through("zendesk", zendesk_hook(RATED, "h1", "2025-06-22T16:30:00Z", "1", event={"score": "offered"})).ignored


def test_the_customer_is_the_organisation_or_the_requester_external_id_first():
    hook = zendesk_hook(CREATED, "h1", "2025-06-20T10:00:00Z", "1", org="901", requester="555")
    assert through("zendesk", hook, "requester").events[0]["customer_id"] == "555"
    hook["detail"]["requester_external_id"] = "cust-042"
    hook["detail"]["organization_external_id"] = "acme"
    assert through("zendesk", hook, "requester").events[0]["customer_id"] == "cust-042"
    assert through("zendesk", hook, "organization").events[0]["customer_id"] == "acme"
    with pytest.raises(ValueError, match="zendesk_customer"):
        Settings(zendesk_customer="brand").checked()


def test_other_zendesk_events_are_ignored_unknown_shapes_dead_lettered():
    assert through("zendesk", zendesk_hook("zen:event-type:ticket.tags_changed", "h1", "2025-06-20T10:00:00Z", "1")).ignored
    for hook, reason in ((story.ZENDESK_BAD[0], "unmappable"), (story.ZENDESK_BAD[1], "unsupported_event"),
                         ({**story.ZENDESK[0], "time": None}, "unmappable")):
        got = through("zendesk", hook)
        assert isinstance(got, Rejection) and got.reason == reason, got


def test_the_zendesk_story_in_process():
    pipe = replayed("zendesk", story.ZENDESK + [story.ZENDESK_REDELIVERED])
    for org, want in story.ZENDESK_CUSTOMERS.items():
        st, clock = pipe.customers[org], pipe.book.clock
        assert {"open_tickets": list(st.open_tickets), "csat": st.csat, "tickets_30d": st.tickets_in(day_of(clock), 30)} == want
