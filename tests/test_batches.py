"""`take_batches` on a real Faust agent stream (Faust's test context: no broker).

The margins are wide on purpose (a batch due at 10 ms is checked after
300 ms; one held to 3 s is checked at 300 ms), so a slow machine does not
flip the outcome.
"""

import asyncio

import faust
import pytest

from stream_app.runtime.batches import take_batches


def run_agent(backlog, puts: int, max_events: int, checks: list[float]) -> list[list[list[bytes]]]:
    """Put *puts* events into an agent reading with take_batches; the batches
    seen at each time in *checks* (seconds after the puts)."""
    app = faust.App("take-batches-test", broker="kafka://127.0.0.1:1", store="memory://")
    topic = app.topic("input", value_serializer="raw")
    batches: list[list[bytes]] = []

    @app.agent(topic)
    async def agent(stream):
        async for events in take_batches(stream, max_events, within=0.01, catchup_s=3.0, backlog=backlog):
            batches.append([e.value for e in events])

    async def main():
        seen = []
        async with agent.test_context() as agent_:
            for i in range(puts):
                await agent_.put(b"%d" % i)
            waited = 0.0
            for t in checks:
                await asyncio.sleep(t - waited)
                waited = t
                seen.append([list(b) for b in batches])
        return seen

    return asyncio.run(main())


def test_live_a_batch_closes_after_within():
    (seen,) = run_agent(lambda events: 0, puts=3, max_events=100, checks=[0.3])
    # every event handed over by 300 ms; one batch or two (a loaded machine can
    # let `within` run out between two puts: seen once in a parallel suite)
    assert [v for b in seen for v in b] == [b"0", b"1", b"2"]


def test_a_batch_keeps_filling_while_enough_records_wait_to_fill_it():
    at_300ms, at_4s = run_agent(lambda events: 100, puts=7, max_events=5, checks=[0.3, 4.0])
    assert at_300ms == [[b"0", b"1", b"2", b"3", b"4"]]  # full at once; the rest waits for more
    assert at_4s == [[b"0", b"1", b"2", b"3", b"4"], [b"5", b"6"]]  # closed when catchup_s ran out


def test_a_batch_closes_after_within_when_too_few_records_wait_to_fill_it():
    (seen,) = run_agent(lambda events: 97 - len(events), puts=3, max_events=100, checks=[0.3])
    # 94 waiting, 97 wanted: not held for catchup_s (3 s); every event handed
    # over by 300 ms, in one batch or two (see the test above)
    assert [v for b in seen for v in b] == [b"0", b"1", b"2"]


@pytest.mark.parametrize("max_events", [1, 4])
def test_no_batch_exceeds_max_events_and_nothing_is_lost(max_events):
    (seen,) = run_agent(lambda events: 0, puts=10, max_events=max_events, checks=[0.5])
    assert all(len(b) <= max_events for b in seen)
    assert [v for b in seen for v in b] == [b"%d" % i for i in range(10)]
