"""Killing the worker that trains (SIGKILL) and restarting it loses neither the
model (its version continues from the newest snapshot on churn.models, never
from zero) nor the label snapshots waiting for their answer (risk table,
recovered from its changelog)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.runtime.children import die_with_parent
from tests.integration.conftest import REPO, replay, wait_for

pytestmark = pytest.mark.integration


def version(w) -> float:
    return w.metrics().get("churn_model_version", 0.0)


def children(pid: int) -> list[int]:
    """The processes `pid` started (Linux /proc)."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def waiting(w, ids) -> dict[str, int]:
    out = {}
    for cid in ids:
        status, body = w.get(f"/customers/{cid}")
        if status == 200:
            out[cid] = json.loads(body).get("label_snapshots_waiting", 0)
    return out


def test_trainer_and_worker_restart_keep_the_model_and_pending_labels(broker, workers, app_id, tmp_path):
    path = tmp_path / "sim.jsonl"
    subprocess.run(
        [sys.executable, "-m", "stream_app", "simulate", "--customers", "250", "--days", "120", "--seed", "11", "--out", str(path)],
        check=True, capture_output=True, env={"PYTHONPATH": str(REPO), "PATH": ""}, **die_with_parent(),
    )
    # the last part of the history arrives after the restart, so the restarted
    # trainer has new labels to learn whatever the first worker got through
    lines = path.read_bytes().splitlines(keepends=True)
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_bytes(b"".join(lines[: len(lines) * 7 // 10]))
    rest.write_bytes(b"".join(lines[len(lines) * 7 // 10:]))
    assert replay(broker, first).returncode == 0

    w = workers(app_id, CHURNMON_PUBLISH_EVERY="100")
    wait_for(lambda: version(w) >= 3, 240, "a few model versions", w, every=1)
    ids = [f"cus_{i:06d}" for i in range(0, 250, 5)]
    before = waiting(w, ids)
    v_before = version(w)
    trainers = children(w.proc.pid)
    assert trainers, "the worker that owns churn.training runs its trainer in a child process"
    w.stop(signal.SIGKILL)
    # the trainer process dies with its worker, however the worker dies
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in trainers), 10, f"the trainer processes {trainers} to exit")

    again = workers(app_id, CHURNMON_PUBLISH_EVERY="100")
    # the newest snapshot is read back: scoring resumes with it, not with an empty model
    v_after = wait_for(lambda: version(again) >= v_before and version(again), 60, "the model back from churn.models", again)
    assert v_after >= v_before >= 3
    # the label snapshots waiting for their answer came back with the risk table
    recovered = waiting(again, ids)
    assert sum(recovered.values()) > 0
    assert sum(1 for cid in before if cid in recovered) >= len(before) * 0.9
    # the trainer continues from that snapshot: versions keep increasing
    assert replay(broker, rest).returncode == 0
    wait_for(lambda: version(again) > v_after, 240, "the trainer to publish after the restart", again, every=1)
