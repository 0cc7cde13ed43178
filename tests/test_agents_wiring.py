"""Wiring checks that need Faust objects but no broker."""

from stream_app.runtime.agents import register
from stream_app.runtime.app import build_app
from stream_app.config import Settings


def test_table_writes_and_recovers_its_changelog_with_the_same_codecs():
    settings = Settings()
    pipeline = register(build_app(settings, "kafka://127.0.0.1:1"), settings, "kafka://127.0.0.1:1")
    for table, codec in ((pipeline.customers, "customer_state"), (pipeline.risk, "risk_memory")):
        topic = table.changelog_topic
        assert (table.key_serializer, table.value_serializer) == ("utf8", codec)
        assert (topic.key_serializer, topic.value_serializer) == ("utf8", codec)
        assert topic.partitions == settings.partitions


def test_one_adapter_agent_per_source_topic():
    from stream_app.ingest.sources import SOURCES

    settings = Settings()
    app = build_app(settings, "kafka://127.0.0.1:1")
    register(app, settings, "kafka://127.0.0.1:1")
    topics_of = {name.rsplit(".", 1)[-1]: tuple(agent.channel.topics) for name, agent in app.agents.items()}
    for source in SOURCES.values():
        assert topics_of[f"churn-source-{source.name}"] == (source.topic,)
