"""When a partition gets a clock tick (`clock.tick_for`), without Kafka."""

from types import SimpleNamespace

from stream_app.runtime.clock import Tick, tick_for


def book(clock=10.0, idle=("a", "b"), inputs=("a", "b"), wall=0.0, due=False):
    return SimpleNamespace(clock=clock, idle=set(idle), inputs=inputs, last_event_wall=wall, has_due=lambda: due)


def tick(b, caught_up_now=False, upstream_read=True, clock=20.0, idle_since=5.0, last_tick=None):
    return tick_for(b, caught_up_now=caught_up_now, upstream_read=upstream_read, clock=clock, idle_since=idle_since, last_tick=last_tick)


def test_a_quiet_partition_moves_to_the_worker_clock_once():
    assert tick(book()) == Tick(20.0)
    assert tick(book(), last_tick=20.0) is None


def test_a_partition_with_recent_events_or_a_backlog_keeps_its_own_clock():
    assert tick(book(wall=6.0)) is None  # an event since idle_since
    assert tick(book(idle=("a",))) is None  # input b still has a backlog
    assert tick(book(clock=20.0)) is None  # already there
    assert tick(book(), clock=None) is None


def test_events_still_upstream_hold_the_clock_back_but_due_visits_still_run():
    assert tick(book(), upstream_read=False) is None
    assert tick(book(due=True), upstream_read=False) == Tick(None)  # visits at its own clock
    assert tick(book(due=True), last_tick=20.0) == Tick(20.0)  # the budget left some due: again, same clock


def test_no_book_or_just_caught_up_gets_a_tick():
    assert tick(None) == Tick(None)  # rebuild the book
    assert tick(book(wall=6.0, idle=("a",)), caught_up_now=True) == Tick(None)  # release held events
    assert tick(book(wall=6.0), caught_up_now=True) == Tick(20.0)
