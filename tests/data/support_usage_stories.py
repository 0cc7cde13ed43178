"""Segment-spec calls and Zendesk webhooks as those systems publish them,
and two short stories whose figures are worked out by hand (below).

Segment: the common fields of the Segment spec (anonymousId, context,
integrations, messageId, receivedAt, sentAt, originalTimestamp, timestamp,
type, userId), as in its "Spec: Common Fields" example; B2B accounts carry
`context.groupId`. Zendesk: the event-webhook envelope of its API reference
(type, account_id, id, time, zendesk_event_version, subject, detail, event),
ticket properties in `detail`; satisfaction ratings come from a trigger with
the body the README gives (same envelope).
"""

from __future__ import annotations

from typing import Any


def segment_call(kind: str, mid: str, ts: str, *, user: str | None = "AiUGstSDIg", group: str | None = None,
                 name: str | None = None, properties: dict | None = None) -> dict:
    call: dict[str, Any] = {
        "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "context": {"library": {"name": "analytics.js", "version": "2.11.1"}, "ip": "108.0.78.21",
                    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_5)"},
        "integrations": {}, "messageId": mid, "receivedAt": ts, "sentAt": ts, "originalTimestamp": ts, "timestamp": ts,
        "type": kind, "userId": user, "properties": properties or {},
    }
    if group is not None:
        call["context"]["groupId"] = group
    if kind == "track":
        call["event"] = name
    elif kind in ("page", "screen"):
        call["name"] = name
    return call


def zendesk_hook(kind: str, hid: str, ts: str, ticket: str, *, org: str | None = "901", requester: str = "6596848315901",
                 priority: str | None = "NORMAL", ticket_type: str | None = "QUESTION", event: dict | None = None,
                 status: str = "OPEN") -> dict:
    return {
        "type": kind, "account_id": 12514403, "id": hid, "time": ts, "zendesk_event_version": "2022-11-06",
        "subject": f"zen:ticket:{ticket}",
        "detail": {"actor_id": "8447388090494", "assignee_id": "8447388090494", "brand_id": "8447346621310", "created_at": ts,
                   "custom_status": "8447388093694", "description": "Exports fail since yesterday", "external_id": None,
                   "form_id": "8646151517822", "group_id": "8447320466430", "id": ticket, "is_public": True,
                   "organization_id": org, "priority": priority, "requester_id": requester, "status": status,
                   "subject": "Exports fail", "submitter_id": requester, "tags": ["export"], "type": ticket_type,
                   "updated_at": ts, "via": {"channel": "web_service"}},
        "event": event if event is not None else {"meta": {"sequence": {"id": "seq-1", "position": 1}}},
    }


CREATED = "zen:event-type:ticket.created"
STATUS = "zen:event-type:ticket.status_changed"
RATED = "churnmon:ticket.satisfaction_rated"

# -- Segment: two accounts (groupId), one that only buys -----------------------------------
SEGMENT = [
    segment_call("identify", "ajs-0001", "2025-06-01T09:00:00.000Z", group=None),  # ignored: who, not what
    segment_call("page", "ajs-0002", "2025-06-28T09:00:00.000Z", group="acme", name="Dashboard"),
    segment_call("screen", "ajs-0003", "2025-06-29T09:00:00.000Z", group="acme", name="Home"),
    segment_call("track", "ajs-0004", "2025-06-30T09:00:00.000Z", group="acme", name="Report Exported"),
    segment_call("track", "ajs-0005", "2025-06-30T09:05:00.000Z", group="acme", name="Dashboard Filtered"),
    segment_call("track", "ajs-0006", "2025-06-30T09:10:00.000Z", group="acme", name="Email Opened"),  # ignored by the mapping
    segment_call("track", "ajs-0007", "2025-06-20T10:00:00.000Z", group="globex", name="Order Completed",
                 properties={"order_id": "50314b8e9bcf000000000000", "total": 99.5, "revenue": 90.0, "currency": "USD"}),
    segment_call("track", "ajs-0008", "2025-06-30T12:00:00.000Z", group="globex", name="Application Opened"),
]
SEGMENT_REDELIVERED = SEGMENT[1]
SEGMENT_BAD = [
    segment_call("track", "ajs-0100", "2025-06-30T12:00:00.000Z", group=None, name="Report Exported"),  # no account
    segment_call("track", "ajs-0101", "2025-06-30T12:00:00.000Z", group="acme", name="Order Completed", properties={}),  # no amount
    {**segment_call("page", "ajs-0102", "2025-06-30T12:00:00.000Z", group="acme"), "type": "pageview"},
]
# Hand computation (clock 06-30 11:00 = 12:00 less 1 h lateness: day 06-30):
# usage: acme on 06-28, 06-29, 06-30 (page, screen, two tracks); globex on 06-20 (purchase) and 06-30 (session).
# Daily active on 06-30: acme and globex = 2; monthly active: 2; active days: acme 3 + globex 2 = 5.
# globex's purchase makes it a purchase-only customer (plan none); acme only uses: not a paying customer.
# Contract events: 2 sessions + 2 features (acme) + 1 purchase + 1 session (globex) = 6, plus the redelivered page (duplicate).
SEGMENT_EXPECTED = {
    "churn_users_daily_active": 2,
    "churn_users_monthly_active": 2,
    "churn_active_days_30d": 5,
    'churn_customers_active{plan="none"}': 1,
    'churn_events_processed_total{topic="churn.usage"}': 6,
    'churn_events_duplicate_total{topic="churn.usage"}': 1,
    'churn_source_records_total{outcome="mapped",source="segment"}': 6 + 1,
    'churn_source_records_total{outcome="ignored",source="segment"}': 2,
    'churn_source_records_total{outcome="dead_lettered",source="segment"}': 3,
}

# -- Zendesk: two organisations ---------------------------------------------------------------
ZENDESK = [
    zendesk_hook(CREATED, "5b4d-0001", "2025-06-20T10:00:00Z", "35436", org="901", priority="HIGH", ticket_type="INCIDENT"),
    zendesk_hook(STATUS, "5b4d-0002", "2025-06-22T16:30:00Z", "35436", org="901", status="SOLVED",
                 event={"current": "SOLVED", "previous": "OPEN"}),
    zendesk_hook(RATED, "5b4d-0003", "2025-06-23T08:00:00Z", "35436", org="901", event={"score": "bad", "comment": "Took two days"}),
    zendesk_hook(CREATED, "5b4d-0004", "2025-06-25T11:00:00Z", "35437", org="902", priority="URGENT", ticket_type="PROBLEM"),
    zendesk_hook(STATUS, "5b4d-0005", "2025-06-26T11:00:00Z", "35437", org="902", status="PENDING",
                 event={"current": "PENDING", "previous": "OPEN"}),  # ignored: not solved
    zendesk_hook(CREATED, "5b4d-0006", "2025-06-28T11:00:00Z", "35438", org="902", priority=None, ticket_type=None),
    zendesk_hook(RATED, "5b4d-0007", "2025-06-30T12:00:00Z", "35438", org="902", event={"score": "Good, I'm satisfied"}),
]
ZENDESK_REDELIVERED = ZENDESK[0]
ZENDESK_BAD = [
    zendesk_hook(CREATED, "5b4d-0100", "2025-06-30T12:00:00Z", "35439", org=None),  # no organisation
    {**zendesk_hook(CREATED, "5b4d-0101", "2025-06-30T12:00:00Z", "35440"), "type": "ticket_created"},  # not a Zendesk type
]
# Hand computation: org 901 opened 35436 (high, incident), solved it, rated bad -> CSAT 1, no open ticket.
# org 902 opened 35437 (urgent, problem) and 35438 (no priority -> normal, no type -> uncategorised), rated good -> CSAT 5;
# both still open. Contract events: 3 ticket_opened + 1 ticket_resolved + 2 csat = 6, plus a duplicate.
ZENDESK_EXPECTED = {
    'churn_events_processed_total{topic="churn.support"}': 6,
    'churn_events_duplicate_total{topic="churn.support"}': 1,
    'churn_source_records_total{outcome="mapped",source="zendesk"}': 6 + 1,
    'churn_source_records_total{outcome="ignored",source="zendesk"}': 1,
    'churn_source_records_total{outcome="dead_lettered",source="zendesk"}': 2,
}
ZENDESK_CUSTOMERS = {
    "901": {"open_tickets": [], "csat": 1, "tickets_30d": 1},
    "902": {"open_tickets": ["35437", "35438"], "csat": 5, "tickets_30d": 2},
}
