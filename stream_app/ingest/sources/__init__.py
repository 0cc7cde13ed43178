"""Source adapters: what Stripe, Segment-spec tools and Zendesk emit, mapped
to the event contract at the "events in" end, before decode/validate.

One source topic per system; the worker's adapter agents (agents.py) read
them, run the pure `adapt` of each record and produce the contract events to
the input topics, keyed by customer, so everything downstream is unchanged.
What cannot be mapped goes to churn.dlq with the reason and the source topic.
"""

from __future__ import annotations

from . import segment, stripe, zendesk
from .base import SOURCE_REJECTION_REASONS, Mapped, Source, run

STRIPE_TOPIC = "churn.source.stripe"
SEGMENT_TOPIC = "churn.source.segment"
ZENDESK_TOPIC = "churn.source.zendesk"

SOURCES: dict[str, Source] = {
    "stripe": Source("stripe", STRIPE_TOPIC, stripe.adapt),
    "segment": Source("segment", SEGMENT_TOPIC, segment.adapt,
                      lambda s: segment.load_mapping(s.segment_mapping_file, s.segment_customer)),
    "zendesk": Source("zendesk", ZENDESK_TOPIC, zendesk.adapt, lambda s: s.zendesk_customer),
}
SOURCE_TOPICS: tuple[str, ...] = tuple(s.topic for s in SOURCES.values())
OUTCOMES = ("mapped", "ignored", "dead_lettered")


def problems(settings) -> list[str]:
    """What in the settings the adapters cannot start with (empty = fine):
    a Segment mapping file that does not load. Checked when a worker starts,
    the only process that runs the adapters."""
    if not settings.segment_mapping_file or settings.segment_customer not in ("groupId", "userId"):
        return []
    try:
        segment.load_mapping(settings.segment_mapping_file, settings.segment_customer)
    except ValueError as exc:
        return [str(exc)]
    return []


__all__ = ["problems", "SOURCES", "SOURCE_TOPICS", "SOURCE_REJECTION_REASONS", "OUTCOMES", "Mapped", "Source", "run"]
