"""Children die with their parent, however it dies: a demo, a worker that
started its own broker, and a test run, each SIGKILLed (no `finally` runs),
leave no broker, worker or simulator behind (stream_app/runtime/children.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_app.tools.broker import free_port
from stream_app.runtime.children import PDEATHSIG_AVAILABLE
from stream_app.tools.harness import spawn
from tests.integration.conftest import scrape, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not PDEATHSIG_AVAILABLE, reason="PR_SET_PDEATHSIG is Linux-only"),
]


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by init is dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every live process below `root`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found and alive(pid):
                try:
                    found[pid] = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    continue
                frontier.append(pid)
    return found


def start(args: list[str], log: Path) -> subprocess.Popen:
    """`python args` as the harness starts every child (its own session, killed
    when the test process dies: not what is tested here, its own children
    are), on its defaults: none of our CHURNMON_* variables."""
    return spawn(log.stem, [sys.executable, *args], log, {}, cwd=log.parent, own_settings=True).proc


def sigkill_and_check(proc: subprocess.Popen, children: dict[int, str], log: Path) -> None:
    """SIGKILL `proc` alone (not its group: its children must go by themselves)."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.2)
    left = {pid: cmd for pid, cmd in children.items() if alive(pid)}
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"left behind after SIGKILL: {left}\n{log.read_text()[-2000:]}"


def test_a_sigkilled_demo_leaves_nothing_behind(tmp_path):
    port = free_port()
    log = tmp_path / "demo.log"
    demo = start(["-m", "stream_app", "demo", "--customers", "40", "--days", "60", "--rate", "100",
                  "--web-port", str(port), "--plain"], log)
    try:
        wait_for(lambda: demo.poll() is None and scrape(port), 90, "the demo's worker serving /metrics")
        children = wait_for(lambda: (c := descendants(demo.pid)) and len(c) >= 3 and c, 30, "broker, worker and simulator")
        kinds = " ".join(children.values())
        assert "tansu" in kinds and " worker" in kinds and " simulate" in kinds, children
        sigkill_and_check(demo, children, log)
    finally:
        if demo.poll() is None:
            demo.kill()


def test_a_sigkilled_worker_takes_its_embedded_broker_along(tmp_path):
    port = free_port()
    log = tmp_path / "worker.log"
    worker = start(["-m", "stream_app", "worker", "--web-port", str(port), "--data-dir", str(tmp_path / "data")], log)
    try:
        wait_for(lambda: worker.poll() is None and scrape(port), 90, "the worker serving /metrics")
        children = descendants(worker.pid)
        assert any("tansu" in cmd for cmd in children.values()), children
        sigkill_and_check(worker, children, log)
    finally:
        if worker.poll() is None:
            worker.kill()


HARNESS = """
import sys, time
from pathlib import Path
from stream_app.tools.broker import EmbeddedBroker, free_port
from tests.integration.conftest import WorkerFactory
broker = EmbeddedBroker(port=free_port()).start()
worker = WorkerFactory(broker, Path(sys.argv[1]))("killed")
print("PIDS", broker.process.pid, worker.proc.pid, flush=True)
time.sleep(600)
"""


def test_a_sigkilled_test_run_leaves_no_broker_or_worker(tmp_path):
    """What a CI time-out does to pytest: the test helpers' broker and workers go with it."""
    log = tmp_path / "harness.log"
    harness = start(["-c", HARNESS, str(tmp_path)], log)
    try:
        pids = wait_for(lambda: [int(p) for found in re.findall(r"PIDS (\d+) (\d+)", log.read_text())[:1] for p in found], 120, "the harness's broker and worker")
        children = descendants(harness.pid)
        assert set(pids) <= set(children), (pids, children)
        sigkill_and_check(harness, children, log)
    finally:
        if harness.poll() is None:
            harness.kill()
