"""Builds the faust.App from Settings; no logic.

Agents, timers and views register themselves on the app in their own modules
(`agents.register`), so adding a feature never touches this file.
"""

from __future__ import annotations

import socket
from pathlib import Path

import faust

from ..config import Settings
from . import offsets, recovery
from .security import faust_credentials


class App(faust.App):
    """faust.App whose consumer commits with `offsets.Consumer`, whose tables
    recover with `recovery.Recovery` (see there why), and which knows the
    monitor's settings (`churn_settings`)."""

    churn_settings: Settings | None = None

    def _new_transport(self):
        return offsets.Transport(self.conf.broker_consumer, self)


def build_app(settings: Settings, broker_url: str) -> faust.App:
    advertised = socket.gethostname() if settings.web_host == "hostname" else settings.web_host
    app = App(
        settings.app_id,
        broker=broker_url,
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=str(Path(settings.data_dir)),
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        web_enabled=True,
        web_bind=settings.web_bind or advertised,
        web_host=advertised,
        web_port=settings.web_port,
        web_in_thread=False,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        producer_linger_ms=settings.producer_linger_ms,
        producer_max_batch_size=settings.producer_max_batch_size,
        table_standby_replicas=settings.standby_replicas,
        autodiscover=False,
        # one consumer instance reads all input topics; keep the worker's own
        # output (alerts, DLQ) flowing while tables recover
        stream_wait_empty=False,
        TableManager=recovery.TableManager,
    )
    app.churn_settings = settings
    return app
