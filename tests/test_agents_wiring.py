"""Wiring checks that need Faust objects but no broker."""

from stream_app.agents import register
from stream_app.app import build_app
from stream_app.config import Settings


def test_table_writes_and_recovers_its_changelog_with_the_same_codecs():
    settings = Settings()
    pipeline = register(build_app(settings, "kafka://127.0.0.1:1"), settings, "kafka://127.0.0.1:1")
    for table, codec in ((pipeline.customers, "customer_state"), (pipeline.risk, "risk_memory")):
        topic = table.changelog_topic
        assert (table.key_serializer, table.value_serializer) == ("utf8", codec)
        assert (topic.key_serializer, topic.value_serializer) == ("utf8", codec)
        assert topic.partitions == settings.partitions
