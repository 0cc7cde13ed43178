"""Scale-out: workers share the input partitions through the Kafka consumer
group, and the figures they report add up to what one worker reports.

Two workers start together; a third joins a third of the way through the
stream and one of the first two leaves (SIGTERM) two thirds of the way, so
partitions move twice while events are flowing. At the end the ledger gauges
summed over the live workers equal a single worker's that read the same
events, every sampled customer's fingerprint equals the single worker's, and
any worker answers the lookup for any customer (Faust forwards the request
to the owner), given the bearer token. The scaled group uses the RocksDB
store, each worker with its own data directory.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.integration.conftest import (
    figures_differ, ledger_gauges, lookup, processed, replay, simulate, state_differences, summed, wait_for,
)

# `solo`: `make test` runs it after the parallel phase, alone. Under the
# parallel suite (three test files at a time on 2 CPUs) it failed in 2 of 2
# fresh-clone runs early on 2026-12-01, with exactness bugs found and fixed
# later that day (docs/RELIABILITY.md, Scale-out); alone it is the one run
# whose timing (joins and leaves while events flow) the figures below were
# taken under.
pytestmark = [pytest.mark.integration, pytest.mark.solo]

CUSTOMERS, DAYS, SEED = 240, 100, 11
TOKEN = "scale-out-test-token"


def test_two_then_three_workers_add_up_to_one(broker, workers, app_id, tmp_path):
    path = tmp_path / "sim.jsonl"
    n_events = simulate(path, CUSTOMERS, DAYS, SEED)
    done = replay(broker, path)
    assert done.returncode == 0, done.stderr

    rocks = {"CHURNMON_STORE": os.environ.get("SCALE_STORE", "rocksdb://"), "CHURNMON_LOOKUP_TOKEN": TOKEN}
    first, second = workers(app_id, **rocks), workers(app_id, **rocks)
    reference = workers(app_id + "-single")

    def progress(*ws) -> float:
        return sum(processed(w.metrics()) for w in ws)

    wait_for(lambda: progress(first, second) >= n_events * 0.3, 240, "the pair to be a third of the way", first)
    third = workers(app_id, **rocks)  # joins: the group rebalances mid-stream
    wait_for(lambda: third.metrics().get("churn_partitions_assigned", 0) > 0, 60, "the third worker to be given partitions", third)
    wait_for(lambda: progress(first, second, third) >= n_events * 0.6, 240, "two thirds of the stream", third)
    # The leave comes once the join's rebalance has ended for all three: their
    # assignments add up to the 8 partitions and each has processed (books
    # rebuilt, a clock on /metrics) since. On the embedded broker a leave
    # while a member was still recovering from the join was followed by no
    # rebalance at all: that member's consumer never fetched again and
    # neither remaining worker exported figures for the 4 minutes the test
    # waited (3 runs, the last with only the assignments checked). Passing
    # runs rebalanced 4 s after the leave; Kafka rebalances on any leave.
    def group_settled():
        ms = [w.metrics() for w in (first, second, third)]
        return (sum(m.get("churn_partitions_assigned", 0) for m in ms) == 8
                and all(m.get("churn_partitions_assigned", 0) > 0 and m.get("churn_event_time_clock_seconds") for m in ms))
    wait_for(group_settled, 60, "all three workers processing their partitions after the join", third)
    first.stop(signal.SIGTERM)  # leaves: its partitions move to the other two
    live = [second, third]

    wait_for(lambda: processed(reference.metrics()) >= n_events, 300, "the single worker to finish", reference)
    expected = summed(ledger_gauges(reference.metrics()))
    assert expected['churn_window_customers_start{window="30d"}'] > 50

    def converged():
        got = summed(*(ledger_gauges(w.metrics()) for w in live))
        return got == expected and got
    try:
        wait_for(converged, 240, "the scaled group's figures to equal the single worker's", second)
    except AssertionError:
        got = summed(*(ledger_gauges(w.metrics()) for w in live))
        gaps = {w.name: {k: v for k, v in w.metrics().items() if k.startswith("churn_input_offset_gaps_total")} for w in live}
        raise AssertionError(f"summed figures differ (single, scaled): {figures_differ(expected, got)}; "
                             f"input offsets that never reached an agent: {gaps}") from None

    dups = sum(v for w in live for k, v in w.metrics().items() if k.startswith("churn_events_duplicate_total"))
    print(f"scale-out: {n_events} events; processed by the live pair {progress(*live):.0f}, redeliveries dropped {dups:.0f}")
    owned = [w.metrics()["churn_partitions_assigned"] for w in live]
    assert sum(owned) == 8 and all(o > 0 for o in owned), owned

    # any worker answers for any customer, with the single worker's state
    sample = [f"cus_{i:06d}" for i in range(CUSTOMERS)]
    wrong = {}
    for cid in sample:
        want = lookup(reference, cid)
        got = {w.port: lookup(w, cid) for w in live}
        if {g["fingerprint"] for g in got.values()} != {want["fingerprint"]}:
            wrong[cid] = {w.port: state_differences(reference, w, cid) for w in live}
    assert not wrong, f"{len(wrong)} of {len(sample)} customers differ: {wrong}"

    # and no input record skipped past an agent on the way, the leaver's
    # included: one that came again at a later rebalance leaves the figures
    # exact, but a worker that kept the partition would have stalled on it
    skipped = [line for w in (first, second, third) for line in w.log.read_text(errors="replace").splitlines() if "never reached the agent" in line]
    assert not skipped, "\n".join(skipped)

    # the lookup needs the bearer token, also when the request would be forwarded
    for w in live:
        status, body = w.get(f"/customers/{sample[0]}", token=None)
        assert status == 401 and b"Bearer" in body
        assert w.get(f"/customers/{sample[0]}", token="wrong")[0] == 401
    assert TOKEN not in "".join(w.log.read_text() for w in live)
