"""The risk model's view of a customer: `features(state, now) -> dict[str, float]`.

Why a fixed, named feature set: river's adaptive random forest crashes when a
feature it has split on disappears from a later input (river #1560), and a
linear model silently treats a missing key as 0, which is not always "no
signal". So every name in `FEATURES` is present in every dict, and a value that
is unknown (no CSAT answer yet, no renewal for a purchase-only customer) takes
the neutral value in `NEUTRAL` plus, where the difference matters, a `_known`
flag.

Everything is computed at event time `now` from `CustomerState` alone, so the
same state and clock give the same features live and in a replay. Rates are
taken over the days the monitor has actually observed (`first_seen_t`), not
the full window: a customer first seen 3 days ago has not "used the product
30 times less" than last month, we simply do not know last month.

The signals follow DOMAIN.md ("Signals that a customer is at risk"); purchase-
only customers get RFM and a BG/NBD-style P(alive) instead of subscription
signals (see `p_alive`).

>>> from stream_app.domain.state import CustomerState
>>> s = CustomerState("c1", status="active", contractual=True, plan="pro", mrr=99.0,
...                   first_seen_t=0.0, spell_start_t=0.0, last_activity_t=9 * DAY)
>>> f = features(s, 10 * DAY)
>>> set(f) == set(FEATURES)
True
>>> f["tenure_days"], f["days_since_last_activity"], f["plan_tier"], f["csat_known"]
(10.0, 1.0, 2.0, 0.0)
"""

from __future__ import annotations

import math

from ..config import DAY
from ..domain.purchases import History, Params, p_no_purchase_one
from ..domain.state import ACTIVE, CustomerState, bad_csat_at, day_of

__all__ = ["FEATURES", "NEUTRAL", "features", "p_alive", "monthly_value", "PLAN_TIERS"]

# Plan names seen in the wild, ranked; unknown names are ranked by their MRR
# (see `_plan_tier`), so a new plan does not need a code change.
PLAN_TIERS: dict[str, float] = {
    "free": 0.0, "starter": 1.0, "basic": 1.0, "team": 2.0, "pro": 2.0,
    "business": 3.0, "enterprise": 4.0,
}

BILLING_CYCLE_DAYS = 30.0  # Settings.billing_cycle_days default
RECENT_DAYS = 30.0  # "recent" downgrade / price increase
MAX_DAYS = 365.0  # day counts are capped so one dormant account cannot dominate the scaler
PRIOR_GAP_DAYS = 30.0  # inter-purchase gap assumed before a second purchase shows the real one
INACTIVITY_DAYS = 90.0  # Settings.inactivity_days default
HORIZON_DAYS = 30.0  # labels.DEFAULT_HORIZON_DAYS: "about to lapse" means within it
OVERDUE_TICKET_DAYS = 7.0  # a ticket open longer than a week is overdue

# MBG/NBD priors (population-level, not fitted; see `p_alive`).
PA_R, PA_ALPHA, PA_A, PA_B = 1.0, 20.0, 1.0, 9.0

#: The value each feature takes when nothing is known: "no signal", not "zero".
NEUTRAL: dict[str, float] = {
    # account
    "tenure_days": 0.0,
    "early_life": 0.0,
    "mrr": 0.0,
    "log_mrr": 0.0,
    "plan_tier": 0.0,
    "contractual": 0.0,
    # activity
    "days_since_last_activity": 0.0,
    "inactive_log_days": 0.0,
    "no_activity_7d": 0.0,
    "usage_7d": 0.0,
    "usage_30d": 0.0,
    "usage_90d": 0.0,
    "usage_trend": 1.0,
    "usage_trend_90d": 1.0,
    "usage_trend_log": 0.0,
    "usage_trend_90d_log": 0.0,
    "active_days_30d": 0.0,
    "stickiness": 0.0,
    "feature_breadth": 0.0,
    "sessions_first_14d": 0.0,
    "onboarding_rate": 0.0,
    "onboarding_incomplete": 0.0,
    # support
    "open_tickets": 0.0,
    "tickets_30d": 0.0,
    "csat": 4.0,
    "csat_known": 0.0,
    "csat_low": 0.0,
    "nps": 8.0,
    "nps_known": 0.0,
    "nps_detractor": 0.0,
    "tickets_90d": 0.0,
    "ticket_trend_log": 0.0,
    "days_since_last_ticket": MAX_DAYS,
    "csat_mean": 4.0,
    "csat_answers": 0.0,
    "bad_csat_recent": 0.0,
    "overdue_tickets": 0.0,
    "oldest_open_ticket_days": 0.0,
    # payment
    "failed_payments": 0.0,
    "dunning_days": 0.0,
    "in_dunning": 0.0,
    "payment_failures_total": 0.0,
    "days_since_payment_failure": MAX_DAYS,
    # price / plan
    "recent_downgrade": 0.0,
    "price_increase_recent": 0.0,
    "days_since_price_change": MAX_DAYS,
    "price_change_90d": 0.0,
    "price_change_log_ratio": 0.0,
    "days_since_price_increase": MAX_DAYS,
    # contract
    "days_to_renewal": BILLING_CYCLE_DAYS / 2,
    "renewal_within_7d": 0.0,
    "cancel_pending": 0.0,
    # purchase-only (RFM)
    "recency_days": 0.0,
    "frequency": 0.0,
    "monetary": 0.0,
    "mean_gap_days": PRIOR_GAP_DAYS,
    "recency_gap_ratio": 0.0,
    "p_alive": 1.0,
    "lapse_within_30d": 0.0,
    # purchase-only, BG/NBD (`purchases.py`, parameters fitted from the stream):
    # P(no purchase within the horizon), and the history it is computed
    # from, log-shaped (a linear model can then weigh recency against
    # frequency and age differently from BG/NBD's own assumptions)
    "bgnbd_no_purchase": 0.0,
    "bgnbd_log_no_purchase": 0.0,
    "log_recency_days": 0.0,
    "log_repeat_days": 0.0,
    "log_buyer_age_days": 0.0,
}

FEATURES: tuple[str, ...] = tuple(NEUTRAL)


def _days(a: float, b: float) -> float:
    """Whole-day-ish distance, clipped to [0, MAX_DAYS]."""
    d = (a - b) / DAY
    return 0.0 if d < 0.0 else (MAX_DAYS if d > MAX_DAYS else d)


def _plan_tier(plan: str | None, mrr: float) -> float:
    if plan is None:
        return 0.0
    tier = PLAN_TIERS.get(plan.lower())
    if tier is not None:
        return tier
    return 0.0 if mrr <= 0 else (1.0 if mrr < 50 else (2.0 if mrr < 150 else 3.0))


def p_alive(repeats: int, t_x_days: float, age_days: float,
            r: float = PA_R, alpha: float = PA_ALPHA, a: float = PA_A, b: float = PA_B) -> float:
    """Probability that a purchase-only customer is still "alive" (MBG/NBD form).

    Why a closed form with fixed priors: the monitor has no batch fitting step,
    and what the churn model needs is a well-shaped, monotone summary of
    "how overdue is this customer given their own rhythm", not a fitted CLV
    model. We use the BG/NBD family (Fader, Hardie & Lee 2005) in its modified
    form (MBG/NBD, Batislam et al. 2007), which, unlike plain BG/NBD, lets a
    customer with no repeat purchase be dead too::

        P(alive | x, t_x, T) = 1 / (1 + a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x))

    with x = repeat purchases, t_x = time of the last purchase and T = age,
    both in days since the first purchase. Priors (population-level, not
    fitted): r = 1, alpha = 20 days (a prior rate of one purchase per 20 days,
    weak: worth one purchase), a = 1, b = 9 (a 10 % chance of dropping out after
    any purchase). The more regular purchases a customer made, the faster
    their P(alive) falls once they go quiet: exactly the lengthening-gap
    signal of DOMAIN.md.

    >>> round(p_alive(0, 0.0, 0.0), 3)  # just bought for the first time
    0.9
    >>> p_alive(10, 100.0, 110.0) > p_alive(10, 100.0, 160.0)  # overdue: less alive
    True
    >>> p_alive(10, 100.0, 400.0) < 0.01
    True
    """
    x = max(0, int(repeats))
    t_x = max(0.0, t_x_days)
    age = max(t_x, age_days)
    log_ratio = (r + x) * (math.log(alpha + age) - math.log(alpha + t_x))
    if log_ratio > 700.0:  # exp overflow: certainly dead
        return 0.0
    return 1.0 / (1.0 + a / (b + x) * math.exp(log_ratio))


def monthly_value(state: CustomerState, now: float) -> float:
    """Money at stake per month, for expected-loss prioritisation.

    Contractual customers: their MRR. Purchase-only customers have no MRR,
    yet losing them loses revenue; their average spend per 30 days since the
    first purchase (at least one month) stands in, so alerts can rank both.

    >>> from stream_app.domain.state import CustomerState
    >>> monthly_value(CustomerState("c", contractual=True, mrr=99.0), 0.0)
    99.0
    >>> monthly_value(CustomerState("c", purchases=3, purchase_amount=120.0, first_purchase_t=0.0), 60 * DAY)
    60.0
    """
    if state.contractual:
        return float(state.mrr)
    if not state.purchases or state.first_purchase_t is None:
        return 0.0
    months = max(1.0, (now - state.first_purchase_t) / DAY / 30.0)
    return state.purchase_amount / months


def _price_change_log_ratio(state: CustomerState, now: float, within_days: float = 180.0) -> float:
    """How much the price moved at the newest MRR change of the last
    `within_days` days: log(MRR after / MRR before), 0 without one.

    The newest change left the current MRR behind it, so its "before" is
    the MRR less its delta. A 30 % rise on a small plan and on a large one
    are the same shock, hence a ratio; its log is symmetric in rises and cuts.

    >>> from stream_app.domain.state import CustomerState
    >>> s = CustomerState("c", mrr=130.0, plan_changes=((5 * DAY, "pro", 30.0),))
    >>> round(_price_change_log_ratio(s, 10 * DAY), 4), _price_change_log_ratio(s, 300 * DAY)
    (0.2624, 0.0)
    """
    if not state.plan_changes:
        return 0.0
    t, _plan, delta = state.plan_changes[-1]
    before = state.mrr - delta
    if t > now or now - t > within_days * DAY or before <= 0.0 or state.mrr <= 0.0:
        return 0.0
    return max(-5.0, min(5.0, math.log(state.mrr / before)))


def features(state: CustomerState, now: float, *, inactivity_days: float = INACTIVITY_DAYS,
             bgnbd: Params | None = None, horizon_days: float = HORIZON_DAYS) -> dict[str, float]:
    """The fixed feature dict of one customer at event time `now`.

    Pure and total: every key of `FEATURES`, always a float, never NaN, for any
    state (even a customer the monitor has never seen an event for), so the
    same function serves the daily snapshot, the alert scoring and the replay.

    Some signals appear twice, raw and reshaped (log of a ratio, a threshold
    flag): a linear model can only add, and "no activity for a week" or "usage
    halved" are thresholds and ratios, not sums. `inactivity_days` is the
    monitor's inactivity-churn rule (Settings.inactivity_days): a purchase-only
    customer that close to it is about to be counted lost, and saying so is a
    feature, not a leak, because the rule is known in advance. `bgnbd` is the
    population's BG/NBD fit (weeks; None until the worker has one), for
    P(no purchase within `horizon_days`).

    >>> from stream_app.domain.state import CustomerState
    >>> f = features(CustomerState("nobody"), 0.0)
    >>> f == NEUTRAL
    True
    """
    f = dict(NEUTRAL)
    if state.first_seen_t is None:
        return f
    today = day_of(now)
    observed = max(1.0, min(_days(now, state.first_seen_t) + 1.0, 90.0))  # days of history we hold

    # -- account -----------------------------------------------------------
    start = state.spell_start_t if state.spell_start_t is not None else (
        state.trial_start_t if state.trial_start_t is not None else state.first_seen_t)
    tenure = _days(now, start)
    f["tenure_days"] = tenure
    f["early_life"] = 1.0 if tenure <= 90.0 else 0.0
    mrr = float(state.mrr or 0.0)
    f["mrr"] = mrr
    f["log_mrr"] = math.log1p(max(0.0, mrr))
    f["contractual"] = 1.0 if state.contractual else 0.0
    f["plan_tier"] = _plan_tier(state.plan, mrr) if state.contractual else 0.0

    # -- activity ------------------------------------------------------------
    last = state.last_activity_t
    inactive = _days(now, last if last is not None else start)
    f["days_since_last_activity"] = inactive
    f["inactive_log_days"] = math.log1p(inactive)
    u7 = u30 = u90 = active = 0
    for d, v in state.usage_items():  # one pass over the ring
        age = today - d
        if 0 <= age < 90:
            u90 += v
            if age < 30:
                u30 += v
                active += 1
                if age < 7:
                    u7 += v
    f["usage_7d"] = float(u7)
    f["usage_30d"] = float(u30)
    f["usage_90d"] = float(u90)
    f["no_activity_7d"] = 1.0 if u7 == 0 else 0.0
    w7, w30, w90 = min(7.0, observed), min(30.0, observed), min(90.0, observed)
    # Smoothed rate ratios: +0.1 a day keeps a quiet customer's ratio near 1
    # instead of jumping between 0 and infinity on single sessions.
    trend = min(4.0, (u7 / w7 + 0.1) / (u30 / w30 + 0.1))
    f["usage_trend"] = trend
    f["usage_trend_log"] = math.log(trend)
    if observed > 37.0:
        # last 30 days vs the days before them: the slow decay of a fading account
        trend90 = min(4.0, (u30 / 30.0 + 0.1) / ((u90 - u30) / (w90 - 30.0) + 0.1))
        f["usage_trend_90d"] = trend90
        f["usage_trend_90d_log"] = math.log(trend90)
    f["active_days_30d"] = float(active)
    f["stickiness"] = active / w30  # DAU/MAU of one account (NetHunt)
    f["feature_breadth"] = float(len(state.features))
    f["sessions_first_14d"] = float(state.sessions_first_14d)
    onboarding = state.sessions_first_14d / max(1.0, min(14.0, tenure + 1.0))
    f["onboarding_rate"] = onboarding
    if state.contractual and 3.0 <= tenure <= 100.0 and onboarding < 0.3:
        f["onboarding_incomplete"] = 1.0  # early-life churn: never got going

    # -- support -------------------------------------------------------------
    # counts, recency and trend of tickets: a burst of tickets this month
    # after a quiet quarter is trouble starting; CSAT both last and mean
    # (one bad answer vs a pattern)
    f["open_tickets"] = float(len(state.open_tickets))
    t30 = state.tickets_in(today, 30)
    t90 = state.tickets_in(today, 90)
    f["tickets_30d"] = float(t30)
    f["tickets_90d"] = float(t90)
    if t90:
        # smoothed like the usage trend: a rate of 0.02 tickets a day is "quiet"
        f["ticket_trend_log"] = math.log((t30 / w30 + 0.02) / ((t90 - t30) / max(1.0, w90 - 30.0) + 0.02)) \
            if observed > 37.0 else math.log((t30 / w30 + 0.02) / 0.02)
    if state.last_ticket_t is not None:
        f["days_since_last_ticket"] = _days(now, state.last_ticket_t)
    if state.csat is not None:
        f["csat"] = float(state.csat)
        f["csat_known"] = 1.0
        f["csat_low"] = 1.0 if state.csat <= 2 else 0.0
    if state.csat_n:
        f["csat_mean"] = state.csat_sum / state.csat_n
        f["csat_answers"] = float(state.csat_n)
    f["bad_csat_recent"] = bad_csat_at(state, now)
    # tickets left open: how long the oldest has waited, and how many are
    # past a week (a common support SLA); unknown ages (a state from before
    # they were kept) count as neither
    if state.open_ticket_ts and len(state.open_ticket_ts) == len(state.open_tickets):
        ages = [_days(now, t) for t in state.open_ticket_ts]
        f["oldest_open_ticket_days"] = max(ages)
        f["overdue_tickets"] = float(sum(1 for a in ages if a > OVERDUE_TICKET_DAYS))
    if state.nps is not None:
        f["nps"] = float(state.nps)
        f["nps_known"] = 1.0
        f["nps_detractor"] = 1.0 if state.nps <= 6 else 0.0

    # -- payment ---------------------------------------------------------------
    f["failed_payments"] = float(state.failed_payments)
    if state.first_failed_t is not None:
        f["dunning_days"] = _days(now, state.first_failed_t)
    f["in_dunning"] = 1.0 if state.failed_payments > 0 else 0.0
    # a recovered failure still says something about the card (and the
    # next renewal): how many there were, and how long ago the last
    f["payment_failures_total"] = float(max(state.failures_total, state.failed_payments))
    if state.last_failed_t is not None:
        f["days_since_payment_failure"] = _days(now, state.last_failed_t)

    # -- price / plan ------------------------------------------------------------
    # A price shock's churn comes weeks to months later (DOMAIN: price is the
    # first stated reason), so besides the 30-day flags a 90-day one.
    recent = now - RECENT_DAYS * DAY
    quarter = now - 90.0 * DAY
    # Price changes only: downgrades and same-plan increases; an upgrade is
    # the customer's own choice, not a shock.
    last_change = None
    for t, _plan, delta in state.plan_changes:
        if delta < 0 and t <= now:
            last_change = t if last_change is None else max(last_change, t)
            if t >= recent:
                f["recent_downgrade"] = 1.0
    lp = state.last_price_increase_t
    if lp is not None and lp <= now:
        last_change = lp if last_change is None else max(last_change, lp)
        f["days_since_price_increase"] = _days(now, lp)
        if lp >= recent:
            f["price_increase_recent"] = 1.0
    f["price_change_log_ratio"] = _price_change_log_ratio(state, now)
    if last_change is not None:
        f["days_since_price_change"] = _days(now, last_change)
        f["price_change_90d"] = 1.0 if last_change >= quarter else 0.0

    # -- contract ----------------------------------------------------------------
    if state.contractual and state.status == ACTIVE:
        anchor = state.last_renewal_t if state.last_renewal_t is not None else start
        cycle = BILLING_CYCLE_DAYS * DAY
        into = (now - anchor) % cycle if now >= anchor else 0.0
        to_renewal = (cycle - into) / DAY
        f["days_to_renewal"] = to_renewal
        f["renewal_within_7d"] = 1.0 if to_renewal <= 7.0 else 0.0
    if state.cancel_effective_t is not None and state.cancel_effective_t > now and state.status == ACTIVE:
        f["cancel_pending"] = 1.0

    # -- purchase-only: RFM and P(alive) -------------------------------------------
    if not state.contractual and state.purchases and state.first_purchase_t is not None:
        first = state.first_purchase_t
        lastp = state.last_purchase_t if state.last_purchase_t is not None else first
        recency = _days(now, lastp)
        n = state.purchases
        gap = (lastp - first) / DAY / (n - 1) if n >= 2 and lastp > first else PRIOR_GAP_DAYS
        gap = max(1.0, gap)
        f["recency_days"] = recency
        f["frequency"] = float(n)
        f["monetary"] = float(state.purchase_amount)
        f["mean_gap_days"] = gap
        f["recency_gap_ratio"] = min(20.0, recency / gap)
        f["p_alive"] = p_alive(n - 1, _days(lastp, first), _days(now, first))
        if state.status == ACTIVE and inactive >= inactivity_days - HORIZON_DAYS:
            f["lapse_within_30d"] = 1.0
        history = History.of(first, lastp, state.purchase_day_count or n)
        age = max(0, today - history.first_day)
        f["log_recency_days"] = math.log1p(recency)
        f["log_repeat_days"] = math.log1p(history.repeats)
        f["log_buyer_age_days"] = math.log1p(age)
        if bgnbd is not None:
            quiet = bgnbd_no_purchase(bgnbd, history, today, horizon_days)
            f["bgnbd_no_purchase"] = quiet
            f["bgnbd_log_no_purchase"] = math.log(max(quiet, 1e-9))
    return f


def bgnbd_no_purchase(params: Params, history: History, today: int, horizon_days: float) -> float:
    """BG/NBD's P(no purchase within `horizon_days`) for a buyer on day `today`,
    in the fit's units (weeks) and its day convention (`PurchaseSummary.arrays`:
    whole days from the first purchase day).

    >>> p = Params(r=0.243, alpha=4.414, a=0.793, b=2.426)  # CDNOW
    >>> round(bgnbd_no_purchase(p, History(0, 0, 0), 273, 30.0), 3)  # one purchase, 39 weeks ago
    0.977
    """
    week = 7.0
    T = max(0, today - history.first_day) / week
    t_x = min((history.last_day - history.first_day) / week, T)
    value = p_no_purchase_one(params, horizon_days / week, history.repeats, t_x, T)
    return min(1.0, max(0.0, value)) if value == value else 1.0
