"""What the counting apps of bench/throughput.py share (not a benchmark itself).

bench/_faust_counter.py (Faust) and bench/_quix_counter.py (quixstreams) are
child processes that read the input topics, count N events and report how
long that took. Both take their configuration from the same environment
variables (`Config.from_env`, set by throughput.py's `counter_app`), time the
same span with `Tally` (from the 1st event processed to the N-th,
time.perf_counter) and write the same JSON result file (`write_result`), so
the parent reads every counter alike.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    broker: str
    app_id: str
    mode: str
    events: int
    partitions: int
    result: str
    datadir: str
    uvloop: bool
    topics: tuple[str, ...] = ("churn.subscription", "churn.usage", "churn.support")

    @classmethod
    def from_env(cls) -> "Config":
        e = os.environ
        return cls(
            broker=e["BENCH_BROKER"], app_id=e["BENCH_APP_ID"], mode=e["BENCH_MODE"], events=int(e["BENCH_EVENTS"]),
            partitions=int(e["BENCH_PARTITIONS"]), result=e["BENCH_RESULT"], datadir=e["BENCH_DATADIR"],
            uvloop=e.get("BENCH_UVLOOP") == "1",
        )


class Tally:
    """Counts events and times the 1st to the `target`-th (time.perf_counter).

    The rate is (N - 1) / seconds: N events span N - 1 gaps. Start-up, group
    join and partition assignment come before the 1st event, off the clock.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first = self.last = 0.0

    def add(self) -> bool:
        """Count one event; True when it is the target-th."""
        self.count += 1
        if self.count == 1:
            self.first = time.perf_counter()
        if self.count == self.target:
            self.last = time.perf_counter()
            return True
        return False

    def result(self) -> dict:
        seconds = self.last - self.first
        return {"count": self.count, "seconds": seconds, "rate": (self.count - 1) / seconds}


def write_result(cfg: Config, payload: dict) -> None:
    """Write the result file at once (the parent polls for it: never half a file)."""
    tmp = cfg.result + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh)
    os.replace(tmp, cfg.result)
