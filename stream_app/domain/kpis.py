"""The churn and MRR arithmetic of DOMAIN.md, and the ledger that feeds it.

Rolling-window KPIs ("customers at the start of the last 30 days", "MRR lost in
the last 90 days") must end at the event-time clock, survive restarts and
rebalances, and be summable across workers. We get all three from one idea:
each customer's state *contributes* a set of step functions of the day
(`contributions`): +1 to "customers at window start" from day `spell_start + W`,
-1 from `churn_day + W`, and so on. A partition's `Ledger` is the sum of its
customers' contributions; a KPI at day T is the sum of all steps at or before T.

Because contributions are a pure function of the state, the agent keeps the
ledger right by subtracting a customer's old contributions and adding the new
ones on every change, and rebuilds it after a rebalance by summing over the
table: nothing but the customer table needs to be persisted.

Conventions (cited in the README):
- customer churn rate = lost in window / customers at window start, customers
  who join and churn inside the window left out (ChartMogul);
- Stripe rolling churn = churned in window / (active at start + new in window);
- gross MRR churn = (churn + contraction) / MRR at start;
- net MRR churn = (churn + contraction - expansion - reactivation) / MRR at start;
- NRR = (start MRR + expansion - contraction - churn) / start MRR;
- quick ratio = (new + expansion) / (contraction + churn) (Baremetrics);
- ARPA = MRR / customers, LTV = ARPA / churn rate (ChartMogul);
- annualised churn = 1 - (1 - monthly)^12 (fight-churn).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .state import (
    ACTIVE,
    COHORT_AGES,
    TRIAL,
    CustomerState,
    active_on,
    day_of,
    month_of,
    month_start,
    mrr_on,
    paying_days,
)

# A step at this day is in force at any clock: current levels (customers now).
ALWAYS = -(10**9)
STICKINESS_DAYS = 30
FORGETTABLE_DAYS = 30
MOVEMENT_KINDS = ("new", "expansion", "contraction", "churn", "reactivation")
TENURE_BUCKETS = ((30, "0-30"), (60, "31-60"), (90, "61-90"), (float("inf"), "90+"))

Series = tuple  # ("active", plan) | ("start", W) | ("move", W, kind) | ("dau",) ...
Step = tuple[Series, int, float]


def tenure_bucket(days: float) -> str:
    """Early-life churn bucket of a tenure in days (DOMAIN: churn at 30/60/90 days).

    >>> [tenure_bucket(d) for d in (0, 30, 30.5, 75, 400)]
    ['0-30', '0-30', '31-60', '61-90', '90+']
    """
    for limit, label in TENURE_BUCKETS:
        if days <= limit:
            return label
    return "90+"  # pragma: no cover


def contributions(s: CustomerState, windows: Iterable[int]) -> Iterator[Step]:
    """The steps this customer adds to its partition's ledger.

    Windows are whole days ending at the clock's day T: "in the window" means
    days T-W+1 .. T, "at the start" means at the end of day T-W.

    Six groups, each a pure function of a few fields, so that a change swaps
    only the group it touched (`partition.PartitionBook.after`): the account
    (status, plan, MRR and their history: changes rarely), presence (the
    forgettable zone: moves with the day of last activity), risk (the at-risk
    gauges: moves with the score), purchases (per window: moves with a
    purchase), cohorts (retention by start month: moves with the account and
    when `prune` folds a month) and activity (one set of steps per day with
    usage: a new active day adds its own steps, nothing else moves).
    """
    yield from daily_free_steps(s, windows)
    days = s.usage_days()
    yield from day_steps(days)
    yield from mau_steps(days)


def daily_free_steps(s: CustomerState, windows: Iterable[int]) -> Iterator[Step]:
    """The account, presence, risk, purchase and cohort groups of `contributions`: all but the
    per-active-day steps, which a rebuild adds as day counts
    (`Ledger.add_days`, `partition.PartitionBook.load`)."""
    yield from account_steps(s, windows)
    yield from presence_steps(presence_key(s))
    yield from risk_steps(risk_key(s))
    yield from purchase_steps(s.bought(), windows)
    yield from cohort_steps(s)


def account_key(s: CustomerState) -> tuple:
    """Everything `account_steps` depends on: equal keys, equal steps.

    Nothing that moves with ordinary activity is in it (the day of last
    activity, the risk): most events leave it unchanged, and the ledger
    update is then skipped altogether.
    """
    return (s.status, s.plan, s.contractual, s.mrr, s.spell_start_t, s.cancel_effective_t,
            len(s.spells), len(s.mrr_changes), s.spells[0][1] if s.spells else None,
            s.mrr_changes[0][0] if s.mrr_changes else None)


def account_steps(s: CustomerState, windows: Iterable[int]) -> Iterator[Step]:
    """Steps from status, MRR, spells and MRR changes."""
    plan = s.plan_label()
    if s.status == ACTIVE:
        yield ("active", plan), ALWAYS, 1.0
        if s.mrr:
            yield ("mrr", plan), ALWAYS, s.mrr
        if s.cancel_effective_t is not None:
            yield ("pending_cancel",), ALWAYS, 1.0
            yield ("pending_cancel_mrr",), ALWAYS, s.mrr
    elif s.status == TRIAL:
        yield ("trial",), ALWAYS, 1.0

    spells = [(day_of(a), day_of(b), m) for a, b, m in s.spells]
    if s.spell_start_t is not None:
        spells.append((day_of(s.spell_start_t), None, s.mrr))
    changes = s.mrr_changes
    for w in windows:
        for start, end, mrr in spells:
            yield ("new", w), start, 1.0
            yield ("new", w), start + w, -1.0
            yield ("start", w), start + w, 1.0
            if end is None:
                continue
            yield ("start", w), end + w, -1.0
            # churned in the window: from the churn day for W days
            yield ("churned", w), end, 1.0
            yield ("churned", w), end + w, -1.0
            # ... and of the starting cohort: only once the window starts after the spell did
            first = max(end, start + w)
            if first < end + w:
                yield ("lost", w), first, 1.0
                yield ("lost", w), end + w, -1.0
                if mrr:
                    yield ("mrr_lost", w), first, mrr
                    yield ("mrr_lost", w), end + w, -mrr
        prev = 0.0
        for t, after, kind in changes:
            d = day_of(t)
            delta = after - prev
            prev = after
            if delta:
                yield ("mrr_start", w), d + w, delta
                yield ("move", w, kind), d, abs(delta)
                yield ("move", w, kind), d + w, -abs(delta)


def purchase_steps(days: tuple[tuple[int, int], ...], windows: Iterable[int]) -> Iterator[Step]:
    """Steps from the purchases per day: purchases in the window, and whether
    the customer bought at least once (a purchasing customer) or more than
    once (a repeat customer) in it. The Stripe article's repeat customer rate
    is repeat / purchasing, its purchase frequency purchases / purchasing.

    >>> sorted((k[0], d, x) for k, d, x in purchase_steps(((10, 1), (15, 2)), (30,)))  # doctest: +NORMALIZE_WHITESPACE
    [('purchasers', 10, 1.0), ('purchasers', 45, -1.0), ('purchases', 10, 1.0), ('purchases', 15, 2.0),
     ('purchases', 40, -1.0), ('purchases', 45, -2.0), ('repeat', 15, 1.0), ('repeat', 45, -1.0)]
    """
    if not days:
        return
    for w in windows:
        for d, n in days:
            yield ("purchases", w), d, float(n)
            yield ("purchases", w), d + w, -float(n)
        for at_least, series in ((1, ("purchasers", w)), (2, ("repeat", w))):
            for start, end in count_runs(days, w, at_least):
                yield series, start, 1.0
                yield series, end, -1.0


def count_runs(days: Iterable[tuple[int, int]], window: int, at_least: int) -> list[tuple[int, int]]:
    """The days [start, end) on which the window of `window` days ending that
    day holds at least `at_least` of the counted (day, count) pairs.

    >>> count_runs(((1, 1), (5, 1), (40, 3)), 30, 2)
    [(5, 31), (40, 70)]
    """
    edges: dict[int, int] = {}
    for d, n in days:
        edges[d] = edges.get(d, 0) + n
        edges[d + window] = edges.get(d + window, 0) - n
    runs: list[tuple[int, int]] = []
    level, start = 0, None
    for d in sorted(edges):
        level += edges[d]
        if level >= at_least and start is None:
            start = d
        elif level < at_least and start is not None:
            runs.append((start, d))
            start = None
    return runs


def cohort_key(s: CustomerState) -> tuple | None:
    """Everything `cohort_steps` reads: equal keys, equal steps."""
    if s.started_t is None:
        return None
    return (s.started_t, s.status, s.spell_start_t, s.spells, s.mrr_changes, s.retained_through, s.retained, s.retained_mrr)


def cohort_steps(s: CustomerState) -> Iterator[Step]:
    """Cohort retention as ChartMogul shows it, as differences between ages.

    The customer is in the cohort of the month they first started paying
    (or buying). The cell (cohort, age) counts them -- and its MRR twin their
    MRR -- when active at the end of the month `age` months later; during
    that month, while active now. Ages 0..23.

    Series ("cohort", c, k) holds what changes in month k: each change of the
    customer's level (active, MRR) at its day, in the series of the age of
    its month. A cell is the sum of the series of ages 0..k (`cohort_cells`):
    every change up to the end of month k, so it follows the level during
    the month and keeps the month-end level after. A customer who never
    changes adds one step, not one per month. Ages that `prune` has folded
    (`state.fold_retention`) come from the record as one step each at the
    month's first day; the rest from the spells and MRR changes left.

    Started on 1970-01-20, churned on 02-10: +1 at age 0, -1 at age 1 (the
    cells: 1 at age 0, 1 in February until 02-09, then 0, and 0 from March):

    >>> from stream_app.domain.state import new_state
    >>> s = new_state("c"); s.started_t = 19 * 86400.0; s.spells = ((19 * 86400.0, 40 * 86400.0, 0.0),); s.status = "cancelled"
    >>> [(k[2], d, x) for k, d, x in cohort_steps(s) if k[0] == "cohort"]
    [(0, 19, 1.0), (1, 40, -1.0)]
    """
    if s.started_t is None:
        return
    first = month_of(day_of(s.started_t))
    folded = s.retained_through
    active, mrr = 0, 0.0
    if folded >= 0:  # one step per change of the month-end levels the record holds
        bits = s.retained & ((2 << folded) - 1)
        changed = (bits ^ (bits << 1)) & ((2 << folded) - 1)
        while changed:
            age = (changed & -changed).bit_length() - 1
            yield ("cohort", first, age), month_start(first + age), 1.0 if bits >> age & 1 else -1.0
            changed &= changed - 1
        active = bits >> folded & 1
        for age, month_mrr in s.retained_mrr_items():  # held where the MRR changed
            yield ("cohort_mrr", first, age), month_start(first + age), month_mrr - mrr
            mrr = month_mrr
    age = folded + 1
    if age >= COHORT_AGES:
        return
    # from the first month not folded: the level at its first day, then every change
    boundary = month_start(first + age)
    spells = paying_days(s)
    level = active_on(spells, boundary)
    if level != active:
        yield ("cohort", first, age), boundary, float(level - active)
    now = mrr_on(s, boundary)
    if now != mrr:
        yield ("cohort_mrr", first, age), boundary, now - mrr
    last = month_start(first + COHORT_AGES)
    for a, b in spells:
        for day, delta in ((a, 1.0), (b, -1.0)):
            if day is not None and boundary < day < last:
                yield ("cohort", first, month_of(day) - first), day, delta
    prev = 0.0
    for t, after, _ in s.mrr_changes:
        day = day_of(t)
        if boundary < day < last and after != prev:
            yield ("cohort_mrr", first, month_of(day) - first), day, after - prev
        prev = after


def cohort_cells(values: dict[Series, float], latest: int) -> dict[tuple[str, int, int], float]:
    """The cohort table at the clock's month `latest`: each cell the sum of its
    cohort's series up to its age (`cohort_steps`), for the 24 cohorts up to
    `latest` and their ages up to it (bounded labels: at most 24 x 24).

    >>> cohort_cells({("cohort", 10, 0): 5.0, ("cohort", 10, 2): -2.0, ("cohort", -12, 0): 1.0}, 12)
    {('cohort', 10, 0): 5.0, ('cohort', 10, 1): 5.0, ('cohort', 10, 2): 3.0}
    """
    changes: dict[tuple[str, int], dict[int, float]] = {}
    for series, x in values.items():
        if series[0] in ("cohort", "cohort_mrr") and latest - COHORT_AGES < series[1] <= latest:
            changes.setdefault(series[:2], {})[series[2]] = x
    out: dict[tuple[str, int, int], float] = {}
    for (kind, cohort), by_age in sorted(changes.items()):
        total = 0.0
        for age in range(min(COHORT_AGES - 1, latest - cohort) + 1):
            total += by_age.get(age, 0.0)
            out[(kind, cohort, age)] = _clean(total)
    return out


def presence_key(s: CustomerState) -> tuple | None:
    """The day from which a paying customer is in the forgettable zone (no usage for 30 days)."""
    if s.status != ACTIVE:
        return None
    last = day_of(max(s.last_activity_t or s.spell_start_t, s.spell_start_t))
    return (last + FORGETTABLE_DAYS,)


def presence_steps(key: tuple | None) -> Iterator[Step]:
    if key is not None:
        yield ("forgettable",), key[0], 1.0


def risk_key(s: CustomerState) -> tuple | None:
    """What the at-risk gauges read of a paying customer: risk, band and MRR."""
    if s.status != ACTIVE or s.risk is None:
        return None
    return (s.risk_band, s.risk, s.mrr)


def risk_steps(key: tuple | None) -> Iterator[Step]:
    if key is not None:
        band, risk, mrr = key
        yield ("at_risk", band), ALWAYS, 1.0
        yield ("at_risk_mrr", band), ALWAYS, mrr
        yield ("expected_loss",), ALWAYS, risk * mrr


def activity_steps(days: tuple[int, ...]) -> Iterator[Step]:
    """Steps from the days with usage: daily and monthly actives, active-day sums."""
    yield from day_steps(days)
    yield from mau_steps(days)


def day_steps(days: Iterable[int]) -> Iterator[Step]:
    """Per active day, on its own: a daily active for that day, an active day for 30 days."""
    for d in days:
        yield ("dau",), d, 1.0
        yield ("dau",), d + 1, -1.0
        yield ("active_days",), d, 1.0
        yield ("active_days",), d + STICKINESS_DAYS, -1.0


def mau_runs(days: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Monthly active: the union of [d, d + 30) over active days, as runs.

    >>> mau_runs((1, 5, 40))
    ((1, 35), (40, 70))
    """
    runs: list[tuple[int, int]] = []
    run_start = run_end = None
    for d in sorted(days):
        if run_end is not None and d <= run_end:
            run_end = d + STICKINESS_DAYS
        else:
            if run_start is not None:
                runs.append((run_start, run_end))
            run_start, run_end = d, d + STICKINESS_DAYS
    if run_start is not None:
        runs.append((run_start, run_end))
    return tuple(runs)


def mau_steps(days: Iterable[int], runs: tuple[tuple[int, int], ...] | None = None) -> Iterator[Step]:
    for start, end in (mau_runs(days) if runs is None else runs):
        yield ("mau",), start, 1.0
        yield ("mau",), end, -1.0


class Ledger:
    """Sum of step functions, one per series, evaluated at a day.

    >>> ledger = Ledger()
    >>> ledger.add([(("start", 30), 10, 1.0), (("start", 30), 20, -1.0)])
    >>> [ledger.value(("start", 30), day) for day in (9, 10, 19, 20)]
    [0.0, 1.0, 1.0, 0.0]
    """

    __slots__ = ("steps", "base", "folded_to", "active")

    def __init__(self) -> None:
        self.steps: dict[Series, dict[int, float]] = {}
        self.base: dict[Series, float] = {}
        self.folded_to = ALWAYS
        # customers with usage, per day: the daily actives and the 30-day sum
        # of active days, kept as one count per day instead of four steps per
        # customer and day (what `day_steps` would add)
        self.active: dict[int, int] = {}

    def add_days(self, days: Iterable[int], sign: int = 1) -> None:
        """Count (or uncount) one customer's active days: the same figures as
        `day_steps(days)`, at one dict update per day.

        >>> a, b = Ledger(), Ledger()
        >>> a.add_days((3, 5)); b.add(day_steps((3, 5)))
        >>> all(a.values(d) == b.values(d) for d in range(0, 40))
        True
        """
        active = self.active
        for d in days:
            n = active.get(d, 0) + sign
            if n:
                active[d] = n
            else:
                del active[d]

    def add(self, steps: Iterable[Step], sign: float = 1.0) -> None:
        for series, day, delta in steps:
            if day <= self.folded_to:
                self.base[series] = self.base.get(series, 0.0) + sign * delta
                continue
            per_day = self.steps.get(series)
            if per_day is None:
                per_day = self.steps[series] = {}
            per_day[day] = per_day.get(day, 0.0) + sign * delta

    def value(self, series: Series, day: int) -> float:
        total = self.base.get(series, 0.0)
        for d, delta in self.steps.get(series, {}).items():
            if d <= day:
                total += delta
        return _clean(total)

    def values(self, day: int) -> dict[Series, float]:
        out = {k: v for k, v in self.base.items()}
        for series, per_day in self.steps.items():
            total = out.get(series, 0.0)
            for d, delta in per_day.items():
                if d <= day:
                    total += delta
            out[series] = total
        if self.active:
            active = self.active
            out[("dau",)] = out.get(("dau",), 0.0) + active.get(day, 0)
            out[("active_days",)] = out.get(("active_days",), 0.0) + sum(
                active.get(d, 0) for d in range(day - STICKINESS_DAYS + 1, day + 1))
        return {k: _clean(v) for k, v in out.items()}

    def fold(self, day: int) -> None:
        """Fold steps at or before `day` into the base; the clock never goes back past it."""
        if day <= self.folded_to:
            return
        for series, per_day in self.steps.items():
            old = [d for d in per_day if d <= day]
            if old:
                self.base[series] = self.base.get(series, 0.0) + sum(per_day.pop(d) for d in old)
        self.folded_to = day
        # a day older than the 30-day window can count again only through a
        # customer's swap, which removes what it added: keep them (bounded by
        # the usage rings, pruned with them) rather than guess


def _clean(x: float) -> float:
    """Round away float residue of many +/- steps (money to a millionth)."""
    r = round(x, 6)
    return 0.0 if r == 0 else r


def merge(values: Iterable[dict[Series, float]]) -> dict[Series, float]:
    """Sum ledger values of several partitions (what Prometheus' sum() does across workers)."""
    out: dict[Series, float] = {}
    for v in values:
        for k, x in v.items():
            out[k] = out.get(k, 0.0) + x
    return out


# ---------------------------------------------------------------------------
# The formulas (fractions 0..1; None where the denominator is zero)
# ---------------------------------------------------------------------------


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def customer_churn_rate(lost: float, start: float) -> float | None:
    """Lost in the period over customers at its start (DOMAIN example: 25 of 500).

    >>> customer_churn_rate(25, 500)
    0.05
    """
    return _ratio(lost, start)


def stripe_rolling_churn(churned: float, start: float, new: float) -> float | None:
    """Stripe: churned in 30 days / (active 30 days ago + new in those 30 days).

    >>> stripe_rolling_churn(30, 500, 100)
    0.05
    """
    return _ratio(churned, start + new)


def customer_retention_rate(end: float, new: float, start: float) -> float | None:
    """CRR = (customers at end - new customers) / customers at start.

    >>> customer_retention_rate(525, 50, 500)
    0.95
    """
    return _ratio(end - new, start)


def gross_mrr_churn(churn: float, contraction: float, mrr_start: float) -> float | None:
    return _ratio(churn + contraction, mrr_start)


def net_mrr_churn(churn: float, contraction: float, expansion: float, reactivation: float, mrr_start: float) -> float | None:
    """Negative is good: expansion outgrew the losses.

    >>> net_mrr_churn(100, 50, 200, 0, 10_000)
    -0.005
    """
    return _ratio(churn + contraction - expansion - reactivation, mrr_start)


def net_revenue_retention(mrr_start: float, expansion: float, contraction: float, churn: float) -> float | None:
    return _ratio(mrr_start + expansion - contraction - churn, mrr_start)


def quick_ratio(new: float, expansion: float, contraction: float, churn: float) -> float | None:
    """Baremetrics quick ratio; above 4 is healthy growth.

    >>> quick_ratio(300, 100, 50, 50)
    4.0
    """
    return _ratio(new + expansion, contraction + churn)


def arpa(mrr: float, customers: float) -> float | None:
    return _ratio(mrr, customers)


def lifetime_value(arpa_: float | None, monthly_churn: float | None) -> float | None:
    """LTV = ARPA / monthly churn; unstable for small bases (few churns swing it)."""
    if arpa_ is None or not monthly_churn:
        return None
    return arpa_ / monthly_churn


def annualised(monthly: float | None) -> float | None:
    """1 - (1 - monthly)^12: 4 % monthly loses 39 % of customers a year.

    >>> round(annualised(0.04), 3)
    0.387
    """
    return None if monthly is None else 1 - (1 - monthly) ** 12


def stickiness(active_days_sum: float, monthly_active: float, days: int = STICKINESS_DAYS) -> float | None:
    """Mean daily actives over monthly actives (NetHunt's DAU/MAU, averaged over the month)."""
    return _ratio(active_days_sum / days, monthly_active)


def repeat_customer_rate(repeat: float, purchasing: float) -> float | None:
    """Customers with more than one purchase / all purchasing customers (Stripe).

    >>> repeat_customer_rate(10, 40)
    0.25
    """
    return _ratio(repeat, purchasing)


def purchase_frequency(purchases: float, purchasing: float) -> float | None:
    """Purchases / unique purchasing customers (Stripe).

    >>> purchase_frequency(60, 40)
    1.5
    """
    return _ratio(purchases, purchasing)


def retention(cells: dict[tuple[int, int], float]) -> dict[tuple[int, int], float]:
    """Each cohort's cells over its age-0 cell (ChartMogul's cohort table in per
    cent of the starting month); cohorts with nothing at age 0 are left out.

    >>> retention({(5, 0): 40.0, (5, 1): 30.0, (6, 0): 0.0, (6, 1): 2.0})
    {(5, 0): 1.0, (5, 1): 0.75}
    """
    return {(c, a): x / cells[(c, 0)] for (c, a), x in cells.items() if cells.get((c, 0))}


def figures(v: dict[Series, float], window: int) -> dict[str, float | None]:
    """The domain's figures for one window from (summed) ledger values."""
    customers = sum(x for k, x in v.items() if k[0] == "active")
    mrr = sum(x for k, x in v.items() if k[0] == "mrr")
    g = lambda *k: v.get(k, 0.0)  # noqa: E731
    move = {kind: g("move", window, kind) for kind in MOVEMENT_KINDS}
    rate = customer_churn_rate(g("lost", window), g("start", window))
    monthly = None if rate is None else 1 - (1 - rate) ** (30 / window)
    a = arpa(mrr, customers)
    return {
        "customers": customers,
        "mrr": mrr,
        "customers_start": g("start", window),
        "customers_lost": g("lost", window),
        "customers_churned": g("churned", window),
        "customers_new": g("new", window),
        "mrr_start": g("mrr_start", window),
        "mrr_lost": g("mrr_lost", window),
        "customer_churn_rate": rate,
        "stripe_rolling_churn": stripe_rolling_churn(g("churned", window), g("start", window), g("new", window)),
        "customer_retention_rate": customer_retention_rate(customers, g("new", window), g("start", window)),
        "mrr_churn_rate": _ratio(g("mrr_lost", window), g("mrr_start", window)),
        "gross_mrr_churn": gross_mrr_churn(move["churn"], move["contraction"], g("mrr_start", window)),
        "net_mrr_churn": net_mrr_churn(move["churn"], move["contraction"], move["expansion"], move["reactivation"], g("mrr_start", window)),
        "net_revenue_retention": net_revenue_retention(g("mrr_start", window), move["expansion"], move["contraction"], move["churn"]),
        "quick_ratio": quick_ratio(move["new"], move["expansion"], move["contraction"], move["churn"]),
        "arpa": a,
        "ltv": lifetime_value(a, monthly),
        "annualised_churn": annualised(monthly),
        "stickiness": stickiness(g("active_days"), g("mau")),
        "forgettable": g("forgettable"),
        "purchasing_customers": g("purchasers", window),
        "repeat_customers": g("repeat", window),
        "purchases": g("purchases", window),
        "repeat_customer_rate": repeat_customer_rate(g("repeat", window), g("purchasers", window)),
        "purchase_frequency": purchase_frequency(g("purchases", window), g("purchasers", window)),
        **{f"mrr_{k}": x for k, x in move.items()},
    }
