"""The simulated population to files: events as the input topics carry them
(JSONL, one event a line) and the truth they are judged against.

(To Kafka it goes through `stream_app.tools.producer`; `churnmon simulate`
picks the way.)
"""

from __future__ import annotations

from dataclasses import asdict

from .ground_truth import Truth
from .population import Simulation
from .scenarios import SimConfig


def write_jsonl(cfg: SimConfig, out_path, truth_path=None) -> int:
    """Write events (orjson, one per line) and optionally the truth as JSONL; return the event count."""
    import orjson

    sim = Simulation(cfg)
    n = 0
    dumps = orjson.dumps
    with open(out_path, "wb", buffering=1 << 20) as f:
        chunk: list[bytes] = []
        for ev in sim.events():
            chunk.append(dumps(ev))
            n += 1
            if len(chunk) >= 10_000:
                f.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            f.write(b"\n".join(chunk) + b"\n")
    if truth_path is not None:
        write_truth(sim.truth, truth_path)
    return n


def write_truth(truths: list[Truth], path) -> None:
    """The ground truth as JSONL, one customer per line (after the simulation has run)."""
    import orjson

    with open(path, "wb") as f:
        for t in truths:
            f.write(orjson.dumps(asdict(t)) + b"\n")
