"""The per-partition processor: a batch of records in; table writes, alerts,
training examples and effects out. No Faust here: the agent (agents.py), the
tests and the benches all run this one.

For each batch of one partition, in read order:

1. decode and validate every record (`contract.decode`); rejections are handed
   back for the dead-letter topic; clock ticks raise the partition's clock;
2. fold each customer's events into its state (`state.apply`), the customer's
   past observation days closed first (`labels.py`: the snapshot of a day is
   the customer at its end, so it is taken before a later day's event changes
   the customer);
3. the visits the clock has made due (`schedule.next_visit`: deadlines, check-
   ins of silent customers) join the customers the batch touched;
4. once per customer: transitions the clock made due (`state.advance`), the
   silent days closed, labels of waiting snapshots, one score at the
   customer's newest time (if it had events or a check-in is due), the alert
   decision, one ledger swap, and one write per table, only for what changed.

A score uses what has been read. In a backlog one topic can be read days of
event time ahead of another (Kafka orders a partition's messages within a
topic, not across topics), so an alert decided then may miss tickets or
payments still unread on the slower topic; the next batch scores again with
them. States, figures and labels do not depend on the read order (they wait
for the event-time clock); live, every input is read within seconds of the
others.

Writes go through the `customers` and `risk` mappings (a Faust Table in the
worker: each assignment is a changelog record); alerts and examples are
returned for the agent to send. Everything a batch does is decided by the
records and the tables, so a replay after a crash, with other batch
boundaries, ends in the same states.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from ..config import DAY, Settings
from ..domain.partition import Before, PartitionBook
from ..domain.purchases import WINBACK_BANDS, Params, PurchaseModel, fit_summaries, winback_counts
from ..domain.state import CustomerState, Effects, Rules, advance, apply, compact, day_of, new_state, next_deadline, prune
from ..ingest.contract import TOPICS, Limits, Rejection, decode, decode_tick
from ..risk.alerts import AlertConfig, decide, sweep_trigger
from ..risk.features import features, monthly_value
from ..risk.health import health_risk
from ..risk.labels import (
    Example,
    Policy,
    as_stored,
    expire,
    next_observation_day,
    observe,
    oldest_expiry,
    on_churn,
    on_purchase,
    snapshot_time,
)
from ..risk.model import Assessment, ChurnModel
from ..risk.schedule import checkin_at, next_visit
from ..risk.scoring import RiskMemory, example_message, update_risk
from .metrics import Metrics

__all__ = ["Record", "Output", "Processor", "Replay"]

_log = logging.getLogger(__name__)

_END_OF_DAY = 1e-3  # a snapshot's features are taken this long before its day ends
MAX_CATCH_UP = 400  # visits caught up for one customer at once (a year of daily check-ins)


class Record(NamedTuple):
    """One consumed message, as the processor needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(slots=True)
class Output:
    """What a batch produced besides table writes, for the agent to send and count."""

    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, JSON)
    examples: list[tuple[bytes, bytes]] = field(default_factory=list)
    rejected: list[tuple[Record, Rejection]] = field(default_factory=list)
    applied: list[Record] = field(default_factory=list)  # records applied, in this call or held before
    processed: Counter = field(default_factory=Counter)  # topic -> events applied
    duplicates: Counter = field(default_factory=Counter)
    scores: int = 0
    visits: int = 0  # customers visited without an event of theirs in the batch
    customer_writes: int = 0
    risk_writes: int = 0


class _Visit:
    """One customer's work in one batch."""

    __slots__ = ("state", "before", "memory", "events", "trigger", "changed", "book_changed",
                 "churned", "popped")

    def __init__(self, state: CustomerState, before: Before) -> None:
        self.state = state
        self.before = before
        self.memory: RiskMemory | None = None
        self.events = 0
        self.trigger: str | None = None
        self.changed = False
        self.book_changed = False
        self.churned = False
        self.popped = False


class Processor:
    """A worker's per-partition logic over its two tables."""

    def __init__(
        self,
        settings: Settings,
        customers: MutableMapping[str, CustomerState],
        risk: MutableMapping[str, RiskMemory],
        *,
        metrics: Metrics | None = None,
        model: ChurnModel | None = None,
        clock_topic: str | None = None,
        wall: Callable[[], float] = time.time,
        caught_up: Callable[[str, int], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.rules = Rules.from_settings(settings)
        self.policy = Policy(settings.horizon_days, 0.0, settings.snapshot_every_days)
        self.windows = tuple(settings.windows_days)
        self.limits = Limits(max_bytes=settings.max_event_bytes, max_future_s=settings.max_future_s)
        self.alert_cfg = AlertConfig(
            upper=settings.alert_upper, lower=settings.alert_lower, step=settings.alert_step,
            cooldown_s=settings.alert_cooldown_days * DAY, min_expected_loss=settings.alert_min_expected_loss,
        )
        self.customers = customers
        self.risk = risk
        self.metrics = metrics or Metrics()
        self.model = model or ChurnModel(settings.model_kind, min_labels=settings.min_labels)
        self.clock_topic = clock_topic
        self.wall = wall
        # (topic, partition) -> read to its end: an input found so holds no
        # event back (`_mark_caught_up`); None: only the agent's timer says so
        self.caught_up = caught_up
        self.books: dict[int, PartitionBook] = {}
        # BG/NBD's population parameters, fitted from the books' purchase
        # summaries once per event-time day (`_refit`); None until enough buyers
        self.bgnbd: Params | None = None
        self._refit_days: dict[int, int] = {}  # partition -> the newest of its clock days a refit ran for
        self._fitted_day, self._fitted_changes = -1, 0  # when BG/NBD was last fitted, and the summaries' changes then
        self.purchase_model = PurchaseModel(min_labels=settings.min_labels)
        # metric children bound once: (processed, duplicate, late) per input topic
        m = self.metrics
        self._counters = {t: (m.events.labels(topic=t), m.duplicates.labels(topic=t), m.late.labels(topic=t)) for t in TOPICS}

    def _next_visit(self, st: CustomerState) -> float | None:
        return next_visit(st, self.rules, self.policy, self.alert_cfg.lower)

    # -- books ----------------------------------------------------------------------------
    def new_book(self, partition: int) -> PartitionBook:
        return PartitionBook(partition, self.windows, self.settings.allowed_lateness_s, TOPICS)

    def rebuild(self, partitions: Iterable[int], items: Iterable[tuple[str, CustomerState]],
                chunk: int = 5000) -> Iterator[int]:
        """Derive the books of `partitions` from the (recovered) customer table.

        A generator: it yields after every `chunk` customers, so the caller
        can give the event loop a turn (a million customers take seconds).
        The books are installed only when complete.
        """
        fresh = {p: self.new_book(p) for p in partitions if p not in self.books}
        if not fresh:
            return
        n = 0
        for _, st in items:
            book = fresh.get(st.partition)
            if book is not None:
                book.load(st, self._next_visit(st))
            n += 1
            if n % chunk == 0:
                yield n
        self.books.update(fresh)
        yield n

    def ensure_books(self, partitions: Iterable[int]) -> None:
        """Rebuild the missing books at once (tests, benches, replays: no event loop to yield to)."""
        for _ in self.rebuild(partitions, self.customers.items()):
            pass

    # -- one batch ----------------------------------------------------------------------
    def process(self, partition: int, records: Sequence[Record], out: Output | None = None,
                sweep_limit: int | None = None) -> Output:
        """Process one partition's records; the book must exist.

        Events are applied in event-time order across the input topics, as
        far as every input has been read (`_release`): one that runs ahead of
        a slower input waits in the book (`Output.held`) until that input
        catches up or is found caught up with its topic.
        """
        out = out if out is not None else Output()
        book = self.books[partition]
        now_wall = self.wall()
        inputs_read = False
        for rec in records:
            if rec.topic == self.clock_topic:
                self._tick(book, rec, out)
                continue
            inputs_read = True
            ev = decode(rec.topic, rec.key, rec.value, now=now_wall, limits=self.limits)
            if isinstance(ev, Rejection):
                out.rejected.append((rec, ev))
                continue
            book.receive(rec.topic, ev["_t"], (rec, ev))
            book.last_event_wall = time.monotonic()
        if book.held_count:
            self.mark_caught_up(partition)
        visits: dict[str, _Visit] = {}
        s = self.settings
        for rec, ev in book.release(s.allowed_lateness_s, s.input_hold_max, s.batch_max_events):
            cid = ev["customer_id"]
            v = visits.get(cid)
            if v is None:
                v = visits[cid] = self._open(book, cid, partition)
            book.observe(ev["_t"], rec.topic)
            self._fold(book, v, ev, rec.topic, rec.offset, book.clock, out)
            out.applied.append(rec)
        if sweep_limit is not None and not (visits or book.held_count or inputs_read):
            # an idle partition's tick (no event read, applied or held):
            # nothing waits behind this sweep, so it may do more
            sweep_limit = max(sweep_limit, s.sweep_idle_visits)
        self._finish(book, visits, out, sweep_limit)
        today = day_of(book.clock) if book.clock is not None else None
        if today is not None and today > self._refit_days.get(partition, -1):
            # after the visits: the summary has every purchase applied so far.
            # Per partition, not once per newest day: in a backlog the partition
            # ahead reaches the last day first, and refits that waited for a
            # newer day never came while the others caught up; a CDNOW replay
            # then ended with no BG/NBD fit at all in some runs (lookup ROC AUC
            # 0.64-0.68 instead of 0.78; bench/cdnow_live.py)
            self._refit_days[partition] = today
            self.refit(max(self._refit_days.values()))
        book.fold()
        return out

    def refit(self, today: int, force: bool = False) -> Params | None:
        """Judge and maybe refit the purchase model, and fit BG/NBD to this
        worker's buyers: called when a partition's clock enters a new day
        (`today` is the newest day of any partition), the BG/NBD fit
        runs when a week has passed since the last one or 2 % of the buyers'
        histories changed (a population's parameters move slowly; a fit is
        some 30 ms, every day of a year's backlog would be seconds), or when
        `force`d.

        Each partition's buyers are taken as of that partition's own clock
        day: in a backlog one partition may be weeks of event time ahead of
        another, and one clock for all would read the laggards' customers as
        silent or the leaders' as buying in the future (CDNOW through a
        worker: a 0 for the paper's a 0.79). The population is the worker's
        partitions, a hash sample of all customers: two workers fit nearly
        the same parameters, not exactly, so a buyer's risk (never a KPI)
        can differ in the last digits after a rebalance. Too few buyers, or
        too few repeat buyers, to tell the population's rhythm: no fit
        (buyers are scored by the churn model or the rules)."""
        self.purchase_model.refit()
        self.metrics.set_purchase_model(self.purchase_model)
        parts = [(b.buyers, day_of(b.clock)) for b in self.books.values() if b.buyers.cells and b.clock is not None]
        if not parts:
            return self.bgnbd
        buyers = sum(sum(summary.cells.values()) for summary, _ in parts)
        repeaters = sum(n for summary, _ in parts for (_f, _o, x), n in summary.cells.items() if x > 0)
        if buyers < self.settings.bgnbd_min_buyers or repeaters * 5 < buyers:
            return self.bgnbd
        changes = sum(summary.changes for summary, _ in parts)
        if not (force or self.bgnbd is None or today - self._fitted_day >= 7
                or abs(changes - self._fitted_changes) >= 0.02 * buyers):
            return self.bgnbd
        try:
            self.bgnbd = fit_summaries(parts, init=self.bgnbd)
        except (ValueError, FloatingPointError, ArithmeticError, RuntimeError) as exc:  # keep the last good fit
            self.metrics.bgnbd_fit_failures.inc()
            _log.warning("BG/NBD refit on day %d failed (%s); keeping %s", today, exc, self.bgnbd)
            return self.bgnbd
        self._fitted_day, self._fitted_changes = today, changes
        self.metrics.set_bgnbd(self.bgnbd, buyers)
        st = self.settings
        bands = Counter()
        for summary, day in parts:
            bands.update(winback_counts(summary, day, self.bgnbd, self.purchase_model, st.horizon_days,
                                        st.inactivity_days, st.winback_days, st.winback_bands))
        for band in WINBACK_BANDS:
            self.metrics.winback.labels(band=band).set(bands.get(band, 0.0))
        return self.bgnbd

    def mark_caught_up(self, partition: int) -> bool:
        """Inputs read to their end hold nothing back (`PartitionBook.idle`);
        whether one was newly found so. The agent's timer calls this for
        every partition; `process` too, before it holds events back.

        Live, a sparse input (support tickets) is usually read to its end
        and its newest event is hours old: found only by the timer
        (`clock_tick_s`), it held the busy inputs' events up to a second."""
        if self.caught_up is None:
            return False
        book = self.books[partition]
        idle, caught_up = book.idle, self.caught_up
        found = False
        for topic in book.inputs:
            if topic not in idle and caught_up(topic, partition):
                idle.add(topic)
                found = True
        return found

    def more(self, partition: int) -> bool:
        """Held events of the partition could be applied now (more than one
        batch was released at once: call `process` again, no new records)."""
        return self.books[partition].releasable(self.settings.allowed_lateness_s, self.settings.input_hold_max)

    def tick(self, partition: int, t: float, out: Output | None = None, sweep_limit: int | None = None) -> Output:
        """The worker's clock reached `t` for an idle partition: run its due visits."""
        out = out if out is not None else Output()
        book = self.books[partition]
        book.raise_to(t)
        return self.process(partition, (), out, sweep_limit)

    def _tick(self, book: PartitionBook, rec: Record, out: Output) -> None:
        """Move the partition's clock as far as the tick and the events allow
        (`contract.decode_tick`); a bad tick goes back for the dead-letter topic.

        The ceiling is the worker's clock (its partitions' clocks follow their
        input events), and only for a partition that has read all its inputs
        (the rule `clock.tick_for` follows, checked again on receipt)
        and holds none of them unapplied: no tick moves a partition ahead of
        events it has yet to read or apply."""
        clocks = [b.clock for b in self.books.values() if b.clock is not None]
        settled = len(book.idle) == len(book.inputs) and not book.held_events()
        ceiling = max(clocks) if clocks and settled else None
        t = decode_tick(rec.value, now=self.wall(), limits=self.limits, ceiling=ceiling)
        if isinstance(t, Rejection):
            out.rejected.append((rec, t))
        elif t is not None:
            book.raise_to(t)

    # -- per customer -------------------------------------------------------------------
    def _open(self, book: PartitionBook, cid: str, partition: int) -> _Visit:
        st = self.customers.get(cid)
        if st is None:
            st = new_state(cid, partition)
        st.partition = partition
        return _Visit(st, book.before(st, self._next_visit(st)))

    def _memory(self, v: _Visit) -> RiskMemory:
        if v.memory is None:
            v.memory = self.risk.get(v.state.customer_id) or RiskMemory()
        return v.memory

    def _fold(self, book: PartitionBook, v: _Visit, ev: dict, topic: str, offset: int | None, clock: float | None,
              out: Output) -> None:
        st = v.state
        t = ev["_t"]
        # what fell due before this event happens first, as it would have live
        self._catch_up(book, v, min(t, clock) if clock is not None else None, t, out)
        # the days before this event end as the customer stands now (or, if a
        # transition falls first, before it)
        upto = day_of(t) - 1
        deadline = next_deadline(st, self.rules)
        if deadline is not None and deadline <= max(t, clock if clock is not None else t):
            upto = min(upto, day_of(deadline) - 1)
        self._close_days(v, upto, clock, out)
        st, effects = apply(st, ev, self.rules, clock, offset)
        if effects.duplicate:
            out.duplicates[topic] += 1
            self._counters[topic][1].inc()
            return
        v.changed = True
        v.events += 1
        v.trigger = ev["event_id"]
        if st.is_buyer and ev["type"] == "purchase":
            self._bought(v, t, out)
        out.processed[topic] += 1
        processed, _, late = self._counters[topic]
        processed.inc()
        if effects.late:
            late.inc()
        if effects.movements or effects.churn is not None:
            self._effects(v, effects, out)

    def _bought(self, v: _Visit, t: float, out: Output) -> None:
        """A buyer's purchase decides the snapshots before it (`labels.on_purchase`)."""
        st = v.state
        if st.label_due_t is None and v.memory is None:
            return  # no snapshot waits (`oldest_expiry`), none was taken in this visit: the book need not be read
        book = self._book(v)
        if not book.size or book.day_list()[0] >= day_of(t):
            return
        examples = on_purchase(book, t, self.policy)
        if examples:
            st.labelled_through = max(st.labelled_through, day_of(examples[-1].snapshot_t) - 1)
            st.label_due_t = oldest_expiry(book, self.policy)
            self._examples(v, examples, out)
            v.book_changed = True

    def _effects(self, v: _Visit, effects: Effects, out: Output) -> None:
        self.metrics.record_effects(effects)
        if effects.churn is not None and not v.state.contractual:
            # a buyer's lapse decides no label: its snapshots ask "no
            # purchase within H", answered by its next purchase or expiry
            v.state.alert = None
            v.churned = True
        elif effects.churn is not None:
            book = self._book(v)
            if book.size:
                v.state.labelled_through = max(v.state.labelled_through, book.day_list()[-1])
            v.state.label_due_t = None
            self._examples(v, on_churn(book, effects.churn.at, self.policy), out)
            v.state.alert = None  # the alert was right; a "resolved" would read as a recovery
            v.book_changed = v.churned = True

    def _close_days(self, v: _Visit, upto: int, clock: float | None, out: Output) -> None:
        """Observe the customer at the end of each of its observation days up to
        `upto` that are not decided yet, from its current state (unchanged since).

        A snapshot whose horizon the partition clock has already passed (a
        long silence) is labelled at once: no churn can still be read for it,
        and the customer was live throughout, or it would not be observed.
        """
        st = v.state
        through = st.observed_through
        if upto <= through:
            return
        st.observed_through = upto
        every = self.policy.every_days
        first = next_observation_day(st.customer_id, through, every)
        if first > upto or through < 0:
            # no observation day passed (or a new customer): nothing to
            # remember; closing these days again later gives the same result
            return
        v.changed = True
        if not st.watched(snapshot_time(first) - _END_OF_DAY, self.rules):  # not live then: nothing to observe
            return
        policy = self.policy
        horizon = policy.horizon_days * DAY
        book = self._book(v) if first <= upto else None
        buyer = st.is_buyer
        for day in range(first, upto + 1, every):
            t = snapshot_time(day)
            if not st.watched(t - _END_OF_DAY, self.rules):
                break
            x = self.features_at(st, t - _END_OF_DAY)
            if clock is not None and t + horizon <= clock:
                # a buyer silent since: no purchase within the horizon
                label = buyer and not (st.last_purchase_t is not None and t < st.last_purchase_t <= t + horizon)
                self._examples(v, [Example(as_stored(x), label, t, clock, st.model_score)], out)
            else:
                if clock is not None and book.size >= policy.capacity:
                    self._labels_due(v, clock, out)
                observe(book, day, x, st.model_score, policy)
            v.book_changed = True

    def _book(self, v: _Visit):
        """The customer's label book, less what its label cursor says is labelled."""
        book = self._memory(v).labels
        book.forget_through(v.state.labelled_through)
        return book

    def _labels_due(self, v: _Visit, clock: float, out: Output) -> None:
        """Label the snapshots whose horizon the clock has passed (every input
        is past it, so no churn can still be read for them) and move the
        label cursor, written with the state; the book itself is rewritten
        only when it next gains a snapshot (`labels.LabelBook.forget_through`)."""
        st = v.state
        book = self._book(v)
        examples = expire(book, clock, self.policy, label=st.is_buyer)
        if examples:
            st.labelled_through = max(st.labelled_through, day_of(examples[-1].snapshot_t) - 1)
            self._examples(v, examples, out)
        due = oldest_expiry(book, self.policy)
        if due != st.label_due_t:
            st.label_due_t = due
            v.changed = True
        if examples:
            v.changed = True

    def _examples(self, v: _Visit, examples: list[Example], out: Output) -> None:
        if v.state.is_buyer and self.bgnbd is not None:
            # a buyer's label ("no purchase within H") trains the purchase
            # model, here; the churn model does not score buyers once BG/NBD
            # does, and its trainer would spend most of a shop's labels on them
            for ex in examples:
                self.purchase_model.add(ex.features, ex.label)
            self.metrics.purchase_labels.inc(len(examples))
            self.metrics.set_purchase_model(self.purchase_model)
            return
        key = v.state.customer_id.encode()
        for ex in examples:
            out.examples.append((key, example_message(v.state.customer_id, ex)))
            self.metrics.examples.labels(label="churned" if ex.label else "stayed").inc()

    def _finish(self, book: PartitionBook, visits: dict[str, _Visit], out: Output, sweep_limit: int | None) -> None:
        clock = book.clock
        # the budget counts visits of silent customers only: a customer this
        # batch already visits, or one popped too early, costs nothing (it
        # once did, so which customers a set pop returned changed the count)
        left = sweep_limit
        while clock is not None and (left is None or left > 0):
            popped = book.pop_due(clock, left)
            if not popped:
                break
            for cid in popped:
                v = visits.get(cid)
                if v is None:
                    st = self.customers.get(cid)
                    if st is None or st.partition != book.partition:
                        continue
                    at = self._next_visit(st)
                    if at is None or at > clock:
                        book.defer(cid, clock, at)
                        continue
                    v = visits[cid] = _Visit(st, book.before(st, at))
                    out.visits += 1
                    if left is not None:
                        left -= 1
                v.popped = True
            if left is None:
                break
        for v in visits.values():
            self._visit(book, v, clock, out)

    def _visit(self, book: PartitionBook, v: _Visit, clock: float | None, out: Output) -> None:
        st = v.state
        cid = st.customer_id
        if clock is not None:
            self._catch_up(book, v, clock, clock, out)
            self._close_days(v, day_of(clock) - 1, clock, out)
            # deterministic in the state and the clock: done again after a
            # restart if not written with the next change
            prune(st, clock, self.rules)
            compact(st, clock)
            if v.memory is not None or (st.label_due_t is not None and st.label_due_t <= clock):
                self._labels_due(v, clock, out)
        if v.events and st.watched(st.last_event_t if clock is None else max(clock, st.last_event_t), self.rules):
            self._score(v, st.last_event_t if clock is None else max(clock, st.last_event_t), v.trigger, out)
        book.after(v.before, st)
        if v.changed:
            self.customers[cid] = st
            out.customer_writes += 1
        if v.book_changed:  # a snapshot kept, or the book emptied by a churn
            self.risk[cid] = v.memory
            out.risk_writes += 1
        book.schedule(cid, None if v.popped else v.before.visit, self._next_visit(st))

    def _catch_up(self, book: PartitionBook, v: _Visit, clock: float | None, until: float, out: Output) -> None:
        """The customer's visits that fell due before `until`, in time order, as
        they would have happened live: transitions the clock decides, and
        check-ins (each scored at its own time, with its alert decision and
        the book's labels). A batch that spans days of event time (a backlog)
        thus raises the alerts a live stream would have, a day at a time."""
        st = v.state
        for _ in range(MAX_CATCH_UP):
            deadline = next_deadline(st, self.rules)
            if deadline is not None and (clock is None or deadline > clock or deadline > until):
                deadline = None
            checkin = checkin_at(st, self.rules, self.policy, self.alert_cfg.lower)
            if checkin is not None and (clock is None or checkin > until):
                checkin = None
            if deadline is None and checkin is None:
                return
            if deadline is not None and (checkin is None or deadline <= checkin):
                self._close_days(v, day_of(deadline) - 1, clock, out)
                st, effects = advance(st, deadline, self.rules)
                v.changed = True
                if effects.movements or effects.churn is not None:
                    self._effects(v, effects, out)
                continue
            self._close_days(v, day_of(checkin) - 1, clock, out)
            self._score(v, checkin, sweep_trigger(day_of(checkin)), out)

    def features_at(self, st: CustomerState, now: float) -> dict[str, float]:
        return features(st, now, inactivity_days=self.settings.inactivity_days, bgnbd=self.bgnbd,
                        horizon_days=self.policy.horizon_days)

    def assess(self, st: CustomerState, x: dict[str, float]) -> Assessment:
        """The risk of `st` with features `x`: the churn model's (or the
        rules'), and for a buyer P(no purchase within the horizon), from
        BG/NBD or the purchase model once it ranks the labels better
        (`purchases.PurchaseModel`), with the rules' reasons."""
        a = self.model.assess(x)
        if st.is_buyer and self.bgnbd is not None:
            reasons = a.reasons if a.scored_by == "rules" else health_risk(x)[1]
            pm = self.purchase_model
            if pm.serving:
                return Assessment(pm.score(x), "purchase_model", reasons, a.model_score)
            return Assessment(x["bgnbd_no_purchase"], "bgnbd", reasons, a.model_score)
        return a

    def _score(self, v: _Visit, now: float, trigger: str | None, out: Output) -> None:
        """One score at `now`: the customer's risk, the model's score, and the
        alert decision (live customers only: a lapsed buyer is ranked for
        win-back, not alerted on)."""
        st = v.state
        if not st.watched(now, self.rules):
            if st.risk is not None:
                update_risk(st, None)  # a buyer past the win-back window: no longer ranked
            st.scored_t = now
            v.changed = True
            return
        x = self.features_at(st, now)
        a = self.assess(st, x)
        out.scores += 1
        self.metrics.scored.labels(scored_by=a.scored_by).inc()
        update_risk(st, a)
        st.model_score, st.scored_t = a.model_score, now
        v.changed = True
        if not st.is_customer:
            return
        st.alert, alert = decide(
            st.alert, a.risk, monthly_value(st, now), now, a.reasons, self.alert_cfg,
            customer_id=st.customer_id, event_id=trigger, model_version=self.model.version,
            scored_by=a.scored_by, emitted_at=self.wall(),
        )
        if alert is not None:
            out.alerts.append((st.customer_id.encode(), orjson.dumps(alert)))
            self.metrics.alerts.labels(state=alert["state"], play=alert["recommended_play"]).inc()


class Replay:
    """The processor over plain dicts, fed events in the order given: one
    partition, no Kafka. What tests, benches and offline backfills use to run
    exactly the worker's logic in-process.

    `caught_up`: every input counts as read up to what was fed after each
    batch, as the worker's ticks mark an input caught up with its topic (the
    right model for a feed in event-time order, which is how events arrive
    live). Without it the clock waits for the slowest input, as in a backlog
    where one topic is read far ahead of another, until `finish`.
    """

    def __init__(self, settings: Settings | None = None, *, batch: int = 1, caught_up: bool = False,
                 metrics: Metrics | None = None, model: ChurnModel | None = None) -> None:
        self.settings = settings or Settings()
        self.customers: dict[str, CustomerState] = {}
        self.risk: dict[str, RiskMemory] = {}
        self.processor = Processor(self.settings, self.customers, self.risk, metrics=metrics, model=model,
                                   wall=lambda: 4e9)
        self.processor.ensure_books([0])
        self.book = self.processor.books[0]
        self.offsets = dict.fromkeys(TOPICS, 0)
        self.pending: list[Record] = []
        self.batch = batch
        self.caught_up = caught_up
        self.alerts: list[dict] = []
        self.examples: list[dict] = []
        self.totals = Output()  # counts summed over every batch (the lists stay empty)

    def feed(self, event: dict) -> None:
        from ..ingest.contract import topic_for_type

        topic = topic_for_type(event["type"])
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        self.pending.append(Record(topic, 0, offset, event["customer_id"].encode(), orjson.dumps(event)))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        self._collect(self.processor.process(0, self.pending))
        self.pending = []
        if self.caught_up:
            self.book.idle.update(TOPICS)
        self._drain()

    def finish(self) -> None:
        """Everything read: no input holds the clock back any more (what the worker's ticks do)."""
        self.flush()
        self.book.idle.update(TOPICS)
        if self.book.clock is not None:
            self._collect(self.processor.tick(0, self.book.clock))
        self._drain()

    def _drain(self) -> None:
        while self.processor.more(0):
            self._collect(self.processor.process(0, ()))

    def values(self) -> dict:
        from ..domain.kpis import merge

        return merge([self.book.ledger.values(day_of(self.book.clock))])

    def _collect(self, out: Output) -> None:
        if out.rejected:
            raise ValueError(f"rejected: {[(r.offset, rej.reason, rej.detail) for r, rej in out.rejected]}")
        self.alerts += [orjson.loads(v) for _, v in out.alerts]
        self.examples += [orjson.loads(v) for _, v in out.examples]
        t = self.totals
        t.processed.update(out.processed)
        t.duplicates.update(out.duplicates)
        t.scores += out.scores
        t.visits += out.visits
        t.customer_writes += out.customer_writes
        t.risk_writes += out.risk_writes
