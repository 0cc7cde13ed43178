"""The harness the integration tests and the benchmarks share
(stream_app/tools/harness.py) and `children.stop`: what a test or a bench
concludes from /metrics, a wait or a stopped process rests on them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from stream_app.runtime.children import die_with_parent, stop
from stream_app.tools.harness import Proc, metric_sum, parse_metrics, spawn, wait_for

EXPOSITION = """\
# HELP churn_events_processed_total Events processed.
# TYPE churn_events_processed_total counter
churn_events_processed_total{topic="churn.usage",partition="1"} 3.0
churn_events_processed_total{partition="0",topic="churn.usage"} 4.0
churn_events_processed_created{partition="0",topic="churn.usage"} 1.7e9
# TYPE churn_mrr gauge
churn_mrr 120.5
churn_mrr_lost 7.0
"""


def test_parse_metrics_keys_samples_by_name_and_sorted_labels():
    m = parse_metrics(EXPOSITION)
    assert m['churn_events_processed_total{partition="1",topic="churn.usage"}'] == 3.0
    assert m['churn_events_processed_total{partition="0",topic="churn.usage"}'] == 4.0
    assert m["churn_mrr"] == 120.5 and m["churn_mrr_lost"] == 7.0


def test_metric_sum_adds_one_metric_and_no_longer_name_sharing_its_prefix():
    assert metric_sum(EXPOSITION, "churn_events_processed_total") == 7.0
    assert metric_sum(EXPOSITION, "churn_mrr") == 120.5  # not churn_mrr_lost
    assert metric_sum(EXPOSITION, "churn_absent") == 0.0


def test_wait_for_returns_the_first_truthy_answer_and_counts_oserror_as_not_yet():
    answers = iter([OSError("refused"), 0, {}, "up"])

    def cond():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert wait_for(cond, 5, "an answer", every=0.01) == "up"


def test_wait_for_names_what_it_waited_for_and_the_log_tail(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("started\nsomething went wrong\n")
    proc = Proc("w", subprocess.Popen([sys.executable, "-c", "pass"]), log)
    proc.proc.wait()
    with pytest.raises(AssertionError, match=r"(?s)waiting for the moon.*last: False.*something went wrong"):
        wait_for(lambda: False, 0.05, "the moon", proc, every=0.01)


def test_problems_folds_repeated_warnings_and_check_reports_an_exit(tmp_path):
    p = spawn("noisy", [sys.executable, "-c", "import sys\nfor i in range(3): print(f'[2026-01-01 00:00:0{i},000] [12] WARNING lag {i} s')\n"
                        "print('ERROR: gone'); sys.exit(3)"], tmp_path / "noisy.log", {})
    p.proc.wait(timeout=30)
    assert p.problems() == ["3 x WARNING lag N s", "1 x ERROR: gone"]
    with pytest.raises(AssertionError, match="noisy exited with 3"):
        p.check()


def test_spawn_passes_our_settings_on_unless_the_child_is_to_run_on_its_own(tmp_path, monkeypatch):
    """own_settings: none of our CHURNMON_* variables reach the child, only
    `env`'s (a demo under test on its defaults); other variables still do."""
    for name in [k for k in os.environ if k.startswith("CHURNMON_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CHURNMON_BROKER", "ours:9092")
    monkeypatch.setenv("UNRELATED_VARIABLE", "kept")
    show = ("import os\nprint(sorted((k, v) for k, v in os.environ.items()"
            " if k.startswith('CHURNMON_') or k == 'UNRELATED_VARIABLE'))")
    seen = {}
    for own in (False, True):
        log = tmp_path / f"own-{own}.log"
        p = spawn("env", [sys.executable, "-c", show], log, {"CHURNMON_APP_ID": "given"}, own_settings=own)
        assert p.proc.wait(timeout=30) == 0, p.log_tail()
        seen[own] = log.read_text().strip()
    assert seen[False] == str([("CHURNMON_APP_ID", "given"), ("CHURNMON_BROKER", "ours:9092"), ("UNRELATED_VARIABLE", "kept")])
    assert seen[True] == str([("CHURNMON_APP_ID", "given"), ("UNRELATED_VARIABLE", "kept")])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped by its parent) is gone too
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_stop_takes_the_childs_whole_process_group_along(tmp_path):
    pids = tmp_path / "pids"
    child = subprocess.Popen(["sh", "-c", f"sleep 60 & echo $! > {pids}; wait"], **die_with_parent())
    wait_for(lambda: pids.exists() and pids.read_text().strip(), 10, "the grandchild's pid", every=0.05)
    grandchild = int(pids.read_text())
    stop(child, timeout=10)
    assert child.returncode is not None
    wait_for(lambda: _gone(grandchild), 5, "the grandchild gone", every=0.05)


def test_stop_kills_a_child_that_ignores_sigterm():
    child = subprocess.Popen([sys.executable, "-c", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                              "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, **die_with_parent())
    assert child.stdout.readline() == b"ready\n"
    started = time.monotonic()
    stop(child, timeout=0.5)
    assert child.returncode == -signal.SIGKILL and time.monotonic() - started < 10
