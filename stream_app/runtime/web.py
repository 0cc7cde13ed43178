"""The worker's HTTP pages: /metrics, the customer lookup and /healthz.

The lookup is routed by Faust to the worker that owns the customer's
partition (`table_route`); the token is checked before the request is
forwarded and again by the owner. What a page shows is built by the pure
functions of views.py.
"""

from __future__ import annotations

import faust
from prometheus_client import generate_latest

from ..config import Settings
from . import topics
from .metrics import Metrics
from .processing import Processing
from .security import lookup_denied
from .views import customer_view, raw_view, risk_view


def register_pages(app: faust.App, settings: Settings, metrics: Metrics, processing: Processing,
                   customers: faust.Table, risk: faust.Table) -> None:
    processor = processing.processor

    @app.page("/metrics")
    async def metrics_page(web, request):
        body = generate_latest(metrics.registry)
        return web.bytes(body, content_type="text/plain", headers={"X-Content-Format": "prometheus-text-0.0.4"})

    def require_token(view):
        """Checked before the request is forwarded to the owning worker (which checks again)."""
        async def guarded(web, request, *args, **kwargs):
            denied = lookup_denied(settings.lookup_token, request.headers.get("Authorization"), raw=bool(request.query.get("raw")))
            if denied is not None:
                status, message = denied
                return web.json({"error": message}, status=status, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
            return await view(web, request, *args, **kwargs)
        return guarded

    @app.page("/customers/{customer_id}")
    @require_token
    @app.table_route(table=customers, match_info="customer_id")
    async def lookup(web, request, customer_id):
        st = customers.get(customer_id)
        if st is None:
            return web.json({"error": f"unknown customer {customer_id!r}"}, status=404)
        if request.query.get("raw"):  # the table value itself, for debugging a fingerprint mismatch
            return web.bytes(raw_view(st), content_type="application/json")
        view = customer_view(st, processing.worker_clock(), processor.rules)
        memory = risk.get(customer_id)
        now = processing.worker_clock() or st.last_event_t or 0.0
        if st.watched(now, processor.rules):
            view.update(risk_view(processor, st, now))
        if memory is not None:
            view["label_snapshots_waiting"] = memory.labels.size
        return web.json(view)

    @app.page("/healthz")
    async def health(web, request):
        body = {"ok": True, "partitions": processing.describe()}
        describe = getattr(app.consumer, "describe", None)  # (offsets.Consumer; not with another transport)
        if describe is not None:
            body["consumer"] = describe(topics.INPUT_TOPICS)
        return web.json(body)
