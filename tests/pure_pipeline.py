"""The worker's per-event path without Kafka: contract -> state -> partition book.

Unit tests and the KPI fixture use it to check the arithmetic in-process; the
integration tests check that the real worker produces the same figures.
"""

from __future__ import annotations

from stream_app.config import Settings
from stream_app.contract import TOPICS, decode, topic_for_type
from stream_app.kpis import merge
from stream_app.partition import PartitionBook
from stream_app.state import Rules, advance, apply, day_of, new_state, next_deadline, prune

import orjson


class PurePipeline:
    """One partition, one topic order (event time): the reference semantics."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.rules = Rules.from_settings(self.settings)
        self.book = PartitionBook(0, self.rules, tuple(self.settings.windows_days), self.settings.allowed_lateness_s, TOPICS)
        self.customers = {}
        self.effects = []

    def feed(self, event: dict) -> None:
        raw = orjson.dumps(event)
        topic = topic_for_type(event["type"])
        ev = decode(topic, event["customer_id"].encode(), raw, now=ev_now(event))
        assert isinstance(ev, dict), ev
        self.book.observe(ev["_t"], topic)
        self.sweep()
        st = self.customers.get(ev["customer_id"]) or new_state(ev["customer_id"], 0)
        before = self.book.before(st)
        st, effects = apply(st, ev, self.rules, self.book.clock)
        self.customers[st.customer_id] = st
        self.book.after(before, st)
        self.effects.append(effects)

    def sweep(self) -> None:
        clock = self.book.clock
        if clock is None:
            return
        for cid in self.book.pop_due(clock):
            st = self.customers[cid]
            deadline = next_deadline(st, self.rules)
            if deadline is None:
                continue
            if deadline > clock:
                self.book.due.setdefault(day_of(deadline), set()).add(cid)
                continue
            before = self.book.before(st)
            st, effects = advance(st, clock, self.rules)
            prune(st, clock, self.rules)
            self.book.after(before, st)
            self.effects.append(effects)

    def finish(self) -> None:
        """Everything read: no input holds the clock back any more (what the worker's ticks do)."""
        self.book.idle.update(TOPICS)
        self.sweep()

    def values(self):
        return merge([self.book.ledger.values(day_of(self.book.clock))])


def ev_now(event: dict) -> float:
    """A wall clock far enough ahead that no fixture event is 'in the future'."""
    return 4e9
