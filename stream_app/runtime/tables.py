"""The worker's two customer-keyed tables and their changelogs.

`customers` holds each customer's compact state (`CustomerState`), `risk`
what scoring remembers between events (`RiskMemory`: label snapshots
waiting, the alert state). Both are written once per touched customer per
batch (`processing.py`) and restored from their compacted changelogs.
"""

from __future__ import annotations

import weakref

import faust
from faust.serializers import codecs
from faust.streams import _current_event

from ..config import Settings
from ..domain.state import CustomerState
from ..risk.scoring import RiskMemory
from . import topics


class _Utf8(codecs.Codec):
    def _dumps(self, s: str) -> bytes:
        return s.encode()

    def _loads(self, b: bytes) -> str:
        return b.decode()


class _StateCodec(codecs.Codec):
    def _dumps(self, s: CustomerState) -> bytes:
        return s.to_bytes()

    def _loads(self, b: bytes) -> CustomerState:
        return CustomerState.from_bytes(b)


class _RiskCodec(codecs.Codec):
    def _dumps(self, m: RiskMemory) -> bytes:
        return m.to_bytes()

    def _loads(self, b: bytes) -> RiskMemory:
        return RiskMemory.from_bytes(b)


codecs.register("utf8", _Utf8())
codecs.register("customer_state", _StateCodec())
codecs.register("risk_memory", _RiskCodec())


def customer_table(app: faust.App, settings: Settings, name: str, value_serializer: str) -> faust.Table:
    """A customer-keyed table whose changelog uses our codecs on both paths.

    Faust derives a table's serializers from key_type/value_type and falls
    back to JSON, ignoring its schema; it writes the changelog with the
    table's serializers and recovers with the changelog topic's. Both are set
    here, or a restarted worker recovers '"cus_1"' keys and dict values.
    """
    n = settings.partitions
    changelog = app.topic(
        topics.changelog_topic(settings, name), key_serializer="utf8", value_serializer=value_serializer,
        partitions=n, compacting=True, internal=True,
    )
    table = app.Table(name, partitions=n, changelog_topic=changelog, options=store_options(settings),
                      schema=faust.Schema(key_serializer="utf8", value_serializer=value_serializer))
    table.key_serializer = "utf8"
    table.value_serializer = value_serializer
    return table


def store_options(settings: Settings) -> dict | None:
    """RocksDB memory bounds: every table partition is a database of its own."""
    if not settings.store.startswith("rocksdb"):
        return None
    mb = 1024 * 1024
    return {"write_buffer_size": settings.rocksdb_write_buffer_mb * mb, "max_write_buffer_number": 2,
            "block_cache_size": settings.rocksdb_block_cache_mb * mb, "block_cache_compressed_size": 0}


def writes_for(event: faust.EventT) -> None:
    """Table writes from now on belong to `event`'s partition.

    A Faust table picks the changelog partition of a write (and the RocksDB
    store its database) from the current event, a context variable that
    Faust sets per event while a stream iterates. A batch is processed after
    that, so it is set here, in this task's context only. Not through
    `Stream._set_current_event`: that also rewrites the stream's own
    `current_event`, which `take_batches` reads for the next event it buffers
    (it then buffered one event twice and dropped the next).
    """
    _current_event.set(weakref.ref(event))
