"""Every topic the monitor reads or writes, and creating them up front.

All input topics and every table changelog share one partition count, so that
a customer's events and state live in the same partition number everywhere
(co-partitioning) and Faust never sees a changelog whose partition count
differs from its source (PartitionsMismatch). We create them explicitly rather
than relying on broker auto-creation, which would pick its own count.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ..config import Settings
from ..ingest.contract import TOPICS as INPUT_TOPICS
from ..ingest.sources import SOURCE_TOPICS  # churn.source.stripe, .segment, .zendesk: read by the adapter agents

SUBSCRIPTION, USAGE, SUPPORT = INPUT_TOPICS
DLQ = "churn.dlq"  # rejected input: original bytes + why, in headers
ALERTS = "churn.alerts"  # at-risk alerts for downstream services (schemas/churn.alerts.json)
TRAINING = "churn.training"  # labelled examples, one partition: one trainer learns from all
MODELS = "churn.models"  # versioned model snapshots, compacted: every worker hot-swaps to the newest
RISK_TABLE = "risk"
CUSTOMERS_TABLE = "customers"

log = logging.getLogger(__name__)


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


def clock_topic(settings: Settings) -> str:
    """Internal: event-time ticks that move idle partitions. Per app, like a
    changelog: another consumer group's ticks must never move our clock."""
    return f"{settings.app_id}-clock"


def all_topics(settings: Settings) -> dict[str, tuple[int, dict]]:
    """name -> (partitions, config) of every topic a worker needs."""
    n = settings.partitions
    compacted = {"cleanup.policy": "compact"}
    topics: dict[str, tuple[int, dict]] = {t: (n, {}) for t in INPUT_TOPICS}
    topics[clock_topic(settings)] = (n, {"retention.ms": str(3600 * 1000)})
    topics.update({t: (n, {}) for t in SOURCE_TOPICS})  # keyed by customer where the source allows; any key works
    topics[DLQ] = (n, {})
    topics[ALERTS] = (n, {})
    topics[TRAINING] = (1, {})
    topics[MODELS] = (1, compacted)
    topics[changelog_topic(settings, CUSTOMERS_TABLE)] = (n, compacted)
    topics[changelog_topic(settings, RISK_TABLE)] = (n, compacted)
    return topics


def bootstrap_servers(broker_url: str) -> str:
    """kafka://h1:9092;h2:9092 -> h1:9092,h2:9092 (what aiokafka wants)."""
    hosts = broker_url.split("://", 1)[-1]
    return ",".join(h.strip().rstrip("/") for h in hosts.replace(";", ",").split(",") if h.strip())


async def ensure_topics(settings: Settings, broker_url: str, extra: dict[str, tuple[int, dict]] | None = None, timeout: float = 30.0) -> list[str]:
    """Create the missing topics with the configured partition count; return those created.

    An existing topic with a different partition count is an error: the
    state would not be co-partitioned with its events.
    """
    wanted = {**all_topics(settings), **(extra or {})}
    from .security import kafka_client_kwargs

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker_url), request_timeout_ms=int(timeout * 1000),
                                **kafka_client_kwargs(settings))
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except BaseException:
        await admin.close()
        raise
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, wanted[name][0], 1, topic_configs=wanted[name][1]) for name in missing]
            )
        present = [name for name in wanted if name in existing]
        if present:
            for meta in await admin.describe_topics(present):
                count = len(meta.get("partitions", []))
                want = wanted[meta["topic"]][0]
                if count and count != want:
                    hint = f"set CHURNMON_PARTITIONS={count} or recreate it" if want == settings.partitions else "recreate it"
                    raise RuntimeError(f"topic {meta['topic']} has {count} partitions but the monitor needs {want}: {hint}")
        return missing
    finally:
        await admin.close()
