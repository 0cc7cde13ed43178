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

from .contract import TOPICS as INPUT_TOPICS
from .config import Settings

SUBSCRIPTION, USAGE, SUPPORT = INPUT_TOPICS
DLQ = "churn.dlq"  # rejected input: original bytes + why, in headers
CUSTOMERS_TABLE = "customers"

log = logging.getLogger(__name__)


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


def clock_topic(settings: Settings) -> str:
    """Internal: event-time ticks that move idle partitions. Per app, like a
    changelog: another consumer group's ticks must never move our clock."""
    return f"{settings.app_id}-clock"


def all_topics(settings: Settings) -> dict[str, dict]:
    """name -> config of every topic a worker needs."""
    compacted = {"cleanup.policy": "compact"}
    topics: dict[str, dict] = {t: {} for t in INPUT_TOPICS}
    topics[clock_topic(settings)] = {"retention.ms": str(3600 * 1000)}
    topics[DLQ] = {}
    topics[changelog_topic(settings, CUSTOMERS_TABLE)] = compacted
    return topics


def bootstrap_servers(broker_url: str) -> str:
    """kafka://h1:9092;h2:9092 -> h1:9092,h2:9092 (what aiokafka wants)."""
    hosts = broker_url.split("://", 1)[-1]
    return ",".join(h.strip().rstrip("/") for h in hosts.replace(";", ",").split(",") if h.strip())


async def ensure_topics(settings: Settings, broker_url: str, extra: dict[str, dict] | None = None, timeout: float = 30.0) -> list[str]:
    """Create the missing topics with the configured partition count; return those created.

    An existing topic with a different partition count is an error: the
    state would not be co-partitioned with its events.
    """
    wanted = {**all_topics(settings), **(extra or {})}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker_url), request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, settings.partitions, 1, topic_configs=wanted[name]) for name in missing]
            )
        present = [name for name in wanted if name in existing]
        if present:
            for meta in await admin.describe_topics(present):
                count = len(meta.get("partitions", []))
                if count and count != settings.partitions:
                    raise RuntimeError(
                        f"topic {meta['topic']} has {count} partitions but the monitor is configured for "
                        f"{settings.partitions}: set CHURNMON_PARTITIONS={count} or recreate the topic"
                    )
        return missing
    finally:
        await admin.close()
