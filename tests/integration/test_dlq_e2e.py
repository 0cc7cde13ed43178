"""`churnmon dlq`: what a worker rejected can be listed, and re-published once
the cause is fixed. Here the fix is on the monitor's side (a size limit that
was too tight): the re-published event is then applied; an event that is
still wrong comes back to churn.dlq saying where it was re-sent from; and a
second re-publication of a fixed event is dropped as a duplicate."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
import pytest

from stream_app.runtime.children import die_with_parent
from stream_app.tools.dlq import read
from stream_app.runtime.topics import bootstrap_servers
from tests.integration.conftest import REPO, lookup, send, wait_for

pytestmark = pytest.mark.integration

BIG = {"event_id": "big-1", "customer_id": "cus-big", "type": "subscription_started", "ts": "2025-06-01T00:00:00Z",
       "plan": "pro", "mrr": 120.0, "note": "x" * 500}
SMALL = {"event_id": "ok-1", "customer_id": "cus-ok", "type": "subscription_started", "ts": "2025-06-01T00:00:00Z",
         "plan": "basic", "mrr": 30.0}


def churnmon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream_app", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, **die_with_parent())


def counter(w, prefix: str) -> float:
    return sum(v for k, v in w.metrics().items() if k.startswith(prefix))


def test_list_dry_run_and_republish_after_a_fix(broker, workers, app_id):
    tight = workers(app_id, CHURNMON_MAX_EVENT_BYTES="400")
    send(broker.url, [
        ("churn.subscription", b"cus-big", orjson.dumps(BIG)),
        ("churn.usage", b"cus-junk", b"{this is not json"),
        ("churn.subscription", b"cus-ok", orjson.dumps(SMALL)),
    ])
    wait_for(lambda: counter(tight, "churn_events_rejected_total") >= 2, 60, "two rejections", tight)
    # applied once every input of its partition is read that far (a tick finds the others caught up)
    wait_for(lambda: tight.get("/customers/cus-ok")[0] == 200, 30, "the valid event applied", tight)
    assert lookup(tight, "cus-ok")["status"] == "active"

    listed = churnmon("dlq", "list", "--broker", broker.url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("2 dead-lettered records"), listed.stdout
    assert "too_large" in listed.stdout and "not_json" in listed.stdout and "churn.subscription[" in listed.stdout

    # the fix: a worker with the default (larger) size limit
    tight.stop()
    fixed = workers(app_id)
    # serving lookups once it owns the partitions and has recovered them (503 until then)
    wait_for(lambda: fixed.get("/customers/cus-ok")[0] == 200, 60, "the new worker to answer lookups", fixed)
    dry = churnmon("dlq", "republish", "--broker", broker.url, "--reason", "too_large", "--dry-run")
    assert dry.returncode == 0 and "would re-publish 1 records" in dry.stdout, dry.stdout + dry.stderr
    status, _ = fixed.get("/customers/cus-big")
    assert status == 404  # the dry run sent nothing

    done = churnmon("dlq", "republish", "--broker", broker.url, "--reason", "too_large")
    assert done.returncode == 0 and "re-published 1 records" in done.stdout, done.stdout + done.stderr
    big = wait_for(lambda: fixed.get("/customers/cus-big")[0] == 200 and lookup(fixed, "cus-big"), 60, "the fixed event applied", fixed)
    assert big["status"] == "active" and big["mrr"] == 120.0

    # still wrong: dead-lettered again, with where it was re-published from
    again = churnmon("dlq", "republish", "--broker", broker.url, "--reason", "not_json")
    assert again.returncode == 0, again.stderr
    letters = wait_for(lambda: (d := asyncio.run(read(bootstrap_servers(broker.url)))) and len(d) == 3 and d, 60, "the junk back on churn.dlq", fixed)
    back = [d for d in letters if d.republished_from]
    assert len(back) == 1 and back[0].reason == "not_json" and back[0].republished_from.startswith("churn.dlq/")

    # re-publishing the fixed event twice changes nothing: the event id is remembered
    dup_before = counter(fixed, "churn_events_duplicate_total")
    assert churnmon("dlq", "republish", "--broker", broker.url, "--reason", "too_large").returncode == 0
    wait_for(lambda: counter(fixed, "churn_events_duplicate_total") == dup_before + 1, 60, "the second copy dropped as a duplicate", fixed)
    assert lookup(fixed, "cus-big")["mrr"] == 120.0
