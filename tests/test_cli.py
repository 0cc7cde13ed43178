"""Bad input to any command: one line naming the problem, exit status 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.tools.broker import free_port

REPO = Path(__file__).resolve().parents[1]


def churnmon(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


@pytest.mark.parametrize(
    "args, env, says",
    [
        (["replay", "/nonexistent.jsonl", "--broker", "kafka://127.0.0.1:1"], {}, "no such file"),
        (["simulate", "--start", "yesterday", "--out", "/tmp/x.jsonl"], {}, "--start 'yesterday' is not an RFC 3339"),
        (["simulate", "--customers", "0"], {}, "--customers"),
        (["simulate", "--scenario", "churny", "--out", "/tmp/x.jsonl"], {},
         "--scenario 'churny': one of default, usage-decay, support-trouble, payment-price, purchase-only"),
        (["simulate", "--format", "hubspot", "--out", "/tmp/x.jsonl"], {}, "--format 'hubspot': one of contract, stripe, segment, zendesk"),
        (["worker"], {"CHURNMON_SEGMENT_CUSTOMER": "accountId"}, "segment_customer must be groupId or userId"),
        (["worker"], {"CHURNMON_SEGMENT_MAPPING_FILE": "/nonexistent.toml"}, "segment mapping file /nonexistent.toml"),
        (["worker", "--broker", "localhost:9092"], {}, "broker must look like kafka://host:port"),
        (["worker"], {"CHURNMON_PARTITIONS": "many"}, "CHURNMON_PARTITIONS='many' is not a valid int"),
        (["simulate"], {"CHURNMON_BROKER": ""}, "simulate needs --broker"),
        (["frobnicate"], {}, "No such command"),
        (["alerts", "--broker", "kafka://127.0.0.1:1"], {}, "cannot reach the broker"),
        (["replay", __file__, "--broker", "kafka://127.0.0.1:1"], {}, "cannot reach the broker"),
        (["alerts", "--broker", "kafka://127.0.0.1:1", "--state", "bogus"], {}, "--state must be raised, escalated or resolved"),
        (["worker", "--kafka-security-protocol", "SASL_SSL"], {}, "needs kafka_sasl_username and kafka_sasl_password"),
        (["worker", "--lookup-token-file", "/nonexistent"], {}, "--lookup-token-file /nonexistent: cannot read it"),
        (["dlq", "list", "--broker", "kafka://127.0.0.1:1", "--reason", "gremlins"], {}, "--reason must be one of"),
        (["dlq", "republish"], {"CHURNMON_BROKER": ""}, "dlq needs --broker"),
        (["dlq", "list", "--broker", "kafka://127.0.0.1:1", "--topic", "churn.nope"], {}, "--topic must be one of"),
        # trust boundaries: an open lookup on a reachable address, an unsigned pickled model kind, unreadable secrets
        (["worker", "--web-bind", "0.0.0.0"], {}, "without a token"),
        (["worker"], {"CHURNMON_WEB_HOST": "hostname"}, "--lookup-insecure"),
        (["worker"], {"CHURNMON_MODEL_KIND": "arf"}, "publishes signed snapshots: set CHURNMON_MODEL_SIGNING_KEY_FILE"),
        (["worker"], {"CHURNMON_LOOKUP_TOKEN_FILE": "/nonexistent"}, "CHURNMON_LOOKUP_TOKEN_FILE=/nonexistent: cannot read it"),
        (["worker"], {"CHURNMON_MODEL_SIGNING_KEY": "short"}, "model_signing_key must be at least 16 bytes"),
        (["worker"], {"CHURNMON_LOOKUP_INSECURE": "maybe"}, "CHURNMON_LOOKUP_INSECURE='maybe' is not a valid bool"),
    ],
)
def test_bad_input_gets_one_line_and_status_2(args, env, says):
    done = churnmon(*args, env=env)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], done.stderr


def test_worker_says_when_the_broker_is_unreachable():
    done = churnmon("worker", "--broker", f"kafka://127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "cannot reach the broker" in done.stderr and "Traceback" not in done.stderr


def test_replay_dead_letters_invalid_lines_or_stops_in_strict_mode(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_id": "1", "customer_id": "c", "type": "session", "ts": "2025-01-01T00:00:00Z"}\nnot json\n')
    done = churnmon("replay", str(bad), "--broker", "kafka://127.0.0.1:1", "--strict")
    assert done.returncode == 2 and f"{bad}:2: not_json" in done.stderr


def test_simulate_writes_events_and_truth(tmp_path):
    out, truth = tmp_path / "e.jsonl", tmp_path / "t.jsonl"
    done = churnmon("simulate", "--customers", "20", "--days", "30", "--out", str(out), "--truth", str(truth))
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0 and truth.read_text().count("\n") >= 20


def test_simulate_writes_a_named_scenario(tmp_path):
    """--scenario picks the population: payment-price raises the pro plan's price midway."""
    import orjson

    out = tmp_path / "e.jsonl"
    done = churnmon("simulate", "--scenario", "payment-price", "--customers", "60", "--days", "40", "--out", str(out))
    assert done.returncode == 0, done.stderr
    evs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    risen = [e["mrr"] for e in evs if e["type"] == "plan_changed" and e["ts"] == "2025-01-21T00:00:00Z"]
    assert risen and 128.7 in risen and all(m >= 128.7 for m in risen), risen


@pytest.mark.parametrize("fmt", ["stripe", "segment", "zendesk"])
def test_simulate_writes_the_population_as_a_source_publishes_it(fmt, tmp_path):
    """Every line is a record the source's adapter maps (the round trip itself: tests/test_source_formats.py)."""
    import orjson

    from stream_app.config import Settings
    from stream_app.ingest.sources import SOURCES, run

    out = tmp_path / f"{fmt}.jsonl"
    done = churnmon("simulate", "--customers", "20", "--days", "40", "--format", fmt, "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = out.read_bytes().splitlines()
    assert f"wrote {len(lines)} {fmt} records to {out}" in done.stderr and len(lines) > 10
    source = SOURCES[fmt]
    results = [run(source, line, source.config(Settings()), 65536) for line in lines]
    assert all(hasattr(r, "events") and r.events for r in results)
