"""The metrics helpers that reach into prometheus_client."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from stream_app.runtime.metrics import observe_many


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[s.name + str(sorted(s.labels.items()))] = s.value
    return out


def test_observe_many_equals_n_observations():
    buckets = (0.001, 0.01, 0.1, 1.0)
    for value in (0.0005, 0.001, 0.05, 1.0, 3.0):
        a, b = CollectorRegistry(), CollectorRegistry()
        ha, hb = Histogram("h", "h", buckets=buckets, registry=a), Histogram("h", "h", buckets=buckets, registry=b)
        for _ in range(7):
            ha.observe(value)
        observe_many(hb, value, 7)
        want, got = _samples(a), _samples(b)
        assert want.keys() == got.keys()
        for k in want:  # counts exactly; the sum up to float rounding (one multiplication vs seven additions)
            assert math.isclose(want[k], got[k], rel_tol=1e-12), (value, k, want[k], got[k])
