"""A downstream consumer as users write it (confluent-kafka, librdkafka) reads
every alert of a run from churn.alerts: the example in docs/examples, run as a
process against a real broker fed by a real worker. Each alert it prints is
checked here against schemas/churn.alerts.json again, and the set is compared
with what a plain read of every partition holds. With the embedded broker's
settings its first alert comes within seconds (with librdkafka's defaults it
waits on the group join: ~24 s on a fresh broker, minutes against the demo);
a message that breaks the contract is reported and makes it exit 1."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time

import jsonschema
import orjson
import pytest

from stream_app.runtime import kafka_io
from stream_app.runtime.children import die_with_parent
from stream_app.runtime.topics import bootstrap_servers
from tests.integration.conftest import REPO, processed, replay, send, simulate, wait_for

pytestmark = pytest.mark.integration
EXAMPLE = REPO / "docs" / "examples" / "alerts_consumer.py"
SCHEMA = json.loads((REPO / "schemas" / "churn.alerts.json").read_text())
# first alert within this many seconds of the consumer's start: ~4 s with the
# embedded broker's settings; with librdkafka's defaults ~24 s on a fresh broker
# (nothing within 20 s in two more runs), minutes against a running demo
FIRST_ALERT_WITHIN_S = 15


async def every_alert(url: str) -> list[tuple[bytes, dict]]:
    """(key, alert) of every record of churn.alerts, all partitions, to the high-water mark."""
    return [(m.key, orjson.loads(m.value)) for m in await kafka_io.read(bootstrap_servers(url), "churn.alerts")]


def emitted(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("churn_alerts_emitted_total"))


def run_example(broker_url: str, group: str) -> tuple[subprocess.CompletedProcess, float | None]:
    """Run the example until 8 s without a message; also when its first line came.

    Everything is read through the one buffered reader that took the first
    line: `communicate()` after a `readline()` reads the pipe underneath it
    and loses what the readline buffered beyond its line (on a loaded machine
    the example had printed 8 alerts by then, and 7 went missing)."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--broker", bootstrap_servers(broker_url), "--group", group, "--embedded", "--idle-timeout", "8"],
            stdout=subprocess.PIPE, stderr=err, text=True, **die_with_parent(),
        )
        deadline = threading.Timer(120, proc.kill)
        deadline.start()
        try:
            first = proc.stdout.readline()
            first_after = time.monotonic() - started if first else None
            out = first + proc.stdout.read()
            proc.wait()
        finally:
            deadline.cancel()
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err.read()), first_after


def test_a_confluent_kafka_consumer_reads_every_alert_valid_and_keyed(broker, workers, app_id, tmp_path):
    path = tmp_path / "sim.jsonl"
    n_events = simulate(path, 80, 120, 11)
    assert replay(broker, path).returncode == 0
    w = workers(app_id)
    wait_for(lambda: processed(w.metrics()) >= n_events, 180, "the simulated run processed", w)

    # the run is over when the worker's alert counter stops moving and the topic holds that many
    seen: list[float] = []
    def settled():
        n = emitted(w.metrics())
        seen.append(n)
        return n > 0 and seen[-4:] == [n] * 4 and len(asyncio.run(every_alert(broker.url))) == n
    wait_for(settled, 120, "the run's alerts all on churn.alerts", w, every=2)
    on_topic = asyncio.run(every_alert(broker.url))
    assert len(on_topic) >= 20, f"the run raised only {len(on_topic)} alerts"
    assert all(key == alert["customer_id"].encode() for key, alert in on_topic)

    done, first_after = run_example(broker.url, "crm-sync")
    assert done.returncode == 0, done.stderr[-3000:]
    assert first_after is not None and first_after < FIRST_ALERT_WITHIN_S, f"first alert after {first_after} s"
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    for alert in printed:
        jsonschema.validate(alert, SCHEMA)
    assert sorted(a["alert_id"] for a in printed) == sorted(a["alert_id"] for _, a in on_topic)
    canonical = lambda alerts: sorted(orjson.dumps(a, option=orjson.OPT_SORT_KEYS) for a in alerts)  # noqa: E731
    assert canonical(printed) == canonical(a for _, a in on_topic)
    assert f"{len(on_topic)} alerts valid, 0 invalid" in done.stderr
    assert {a["state"] for a in printed} >= {"raised"}

    # the same group again: it committed its offsets, so it reads only what is new,
    # here two messages that break the contract (schema, key)
    good = on_topic[0][1]
    send(broker.url, [
        ("churn.alerts", good["customer_id"].encode(), orjson.dumps({**good, "risk": 1.5})),
        ("churn.alerts", b"someone-else", orjson.dumps(good)),
    ])
    again, _ = run_example(broker.url, "crm-sync")
    assert again.returncode == 1, again.stderr[-3000:]
    assert again.stdout == ""
    assert "0 alerts valid, 2 invalid" in again.stderr
    assert "risk: 1.5 is greater than the maximum of 1" in again.stderr
    assert f"keyed by 'someone-else', not by its customer {good['customer_id']!r}" in again.stderr
