"""Subscription customers: the lifecycle whose churn the monitor must foresee.

A subscription customer's daily latent risk is ``base + episode levels +
onboarding (+ support frustration)``. Each day it may be billed (trial end,
monthly renewal, recovery of a failed payment), may start a risk episode or
upgrade, may cancel (cancellation.py), and uses the product and support as its
risk allows. Every cause of churn acts through events the monitor reads, days
to weeks before the churn: that is what makes churn learnable. A few churned
customers are won back and are loyal from then on.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, NamedTuple

from . import cancellation
from .cancellation import H_MAX
from .clock import DAY, WORK_HI, WORK_LO, format_ts
from .customer import ACTIVE, DUNNING, GONE, LOST, PENDING, TRIAL, Customer, Traits
from .draws import derive_seed, pick, poisson
from .episodes import EPISODE_KINDS, EPISODE_USAGE, Episode, levels_on, start_rates
from .ground_truth import Truth
from .scenarios import PLAN_WEIGHTS, PLANS, SimConfig
from .support import SupportHistory

if TYPE_CHECKING:
    from .population import Simulation

class Today(NamedTuple):
    """What one day of one customer's life is decided on: computed once, then
    read by billing, the churn decision and usage alike."""

    day: int
    base: int  # epoch at which the simulated day starts (the start's time of day)
    age: int  # days since it became a customer (hidden tenure included)
    levels: dict[str, float]  # risk episodes' levels by kind
    onb: float  # onboarding trouble's level
    onb_risk: float  # the risk it adds (SimConfig.onboarding_risk)
    risk: float  # latent risk, 0-1
    lo: int  # earliest second of the day for the customer's own activity
    fresh: bool  # started (or came back) today
    mark: int  # where its events of the day start in the day's buffer


_new_today = tuple.__new__


class SubscriptionCustomer(Customer):
    """One subscriber's lifecycle, advanced a day at a time by `step`."""

    contractual = True

    __slots__ = ("anchor",  # second of the day it signed up at: its billing happens then
                 "ep_weights", "ep_total", "eps", "support", "immortal", "counting", "trial_failed",
                 "next_renewal", "trial_end", "end_day", "fail_day", "recover_day",
                 "churn_epoch", "churn_kind", "reason")

    def __init__(self, sim: "Simulation", idx: int, rnd: random.Random, traits: Traits, start_day: int) -> None:
        super().__init__(sim, idx, rnd, traits, start_day)
        cfg = sim.cfg
        self.ep_weights = start_rates(traits.price_sens, traits.support_trouble, traits.eng, cfg.episode_rates)
        self.ep_total = sum(self.ep_weights)
        self.eps: list[Episode] = []
        self.support = SupportHistory(rnd, self.cid, idx, traits.support_trouble)
        self.immortal = False  # won back: loyal from then on
        self.counting = True  # its risk still counts towards Truth.latent_risk
        self.trial_failed = False
        self.next_renewal: int | None = None
        self.trial_end: int | None = None
        self.end_day: int | None = None  # first day it is gone
        self.fail_day: int | None = None
        self.recover_day: int | None = None
        self.churn_epoch: int | None = None
        self.churn_kind: str | None = None
        self.reason: str | None = None
        if traits.is_new:
            self._sign_up(sim, cfg)
        else:
            self._open_book(sim)

    # ------------------------------------------------------------------ the start
    def _open_book(self, sim: "Simulation") -> None:
        """An established customer in the opening book: announced in the first
        hour of day 0, with a hidden tenure, so its renewals and early-life
        effects are not synchronised with the others'."""
        r = self.rnd
        self.anchor = r.randrange(0, 3600)
        self.next_renewal = self.start_day + r.randint(1, 30)
        self.started_at = format_ts(sim.start_epoch + self.start_day * DAY + self.anchor)
        if r.random() < 0.15:  # a risk episode already under way at day 0 (its
            # plan change, if any, happened before the stream: not emitted)
            self._new_episode(sim, self.start_day - r.randint(0, 90))
        sim.emit(self.anchor, self.cid, "subscription_started", {"plan": self.plan, "mrr": self.mrr})

    def _sign_up(self, sim: "Simulation", cfg: SimConfig) -> None:
        """A new customer: a trial, or a subscription paid from the first day."""
        r = self.rnd
        self.anchor = r.randrange(WORK_LO, 21 * 3600)
        self.started_at = format_ts(sim.start_epoch + self.start_day * DAY + self.anchor)
        if self.traits.trial_draw < cfg.trial_share:
            self.state = TRIAL
            self.trial_end = self.start_day + 14
            sim.emit(self.anchor, self.cid, "trial_started", {"plan": self.plan})
        else:
            self.next_renewal = self.start_day + 30
            sim.emit(self.anchor, self.cid, "subscription_started", {"plan": self.plan, "mrr": self.mrr})
            sim.emit(self.anchor + 1, self.cid, "payment_succeeded", {"amount": self.mrr})

    # ------------------------------------------------------------------ risk
    def _new_episode(self, sim: "Simulation", day: int, emit_at: int | None = None) -> None:
        """A risk episode starts; a price episode starts with a price increase
        or a downgrade, emitted as a ``plan_changed`` at `emit_at` (None: it
        happened before the stream)."""
        r = self.rnd
        kind = pick(r, EPISODE_KINDS, self.ep_weights)
        ramp = r.randint(10, 45)
        plateau = r.randint(10, 60)
        peak = 0.25 + 0.65 * r.random()
        resolves = r.random() < (0.75 if peak < 0.5 else 0.3)
        trigger = None
        if kind == "price":
            if self.plan == "basic" or r.random() < 0.5:
                trigger = "price_increase"
                self.mrr = round(self.mrr * (1.12 + 0.18 * r.random()), 2)
            else:
                trigger = "downgrade"
                self.plan = PLANS[PLANS.index(self.plan) - 1]
                self.mrr = sim.price(self.plan, day)
            if emit_at is not None:
                sim.emit(emit_at, self.cid, "plan_changed", {"plan": self.plan, "mrr": self.mrr})
        self.eps.append(Episode(kind, day, ramp, plateau, peak, resolves, trigger))

    def _levels(self, day: int) -> dict[str, float]:
        out, keep = levels_on(self.eps, day)
        if len(keep) != len(self.eps):
            self.eps = keep
        return out

    def _onboard_level(self, age: int) -> float:
        """Risk of a failed onboarding by age: some in the first week, most in
        days 7-100 (early-life churn at the 30/60/90-day renewals), a little after."""
        if self.traits.onboard_ok or self.immortal:
            return 0.0
        if age < 7:
            return 0.2
        if age < 100:
            return 0.55
        return 0.12

    def _signals(self, levels: dict[str, float], age: int) -> list[str]:
        """The risk signals behind the customer's risk today (Truth.drivers)."""
        sig: list[str] = []
        if self._onboard_level(age) >= 0.5:
            sig.append("onboarding_failed")
        for ep in self.eps:
            kind = ep.kind
            if levels.get(kind, 0.0) < 0.15:
                continue
            if kind == "price":
                s = [ep.trigger]
            elif kind == "customer_service":
                s = ["support_trouble", "usage_decay"]
            else:
                s = ["usage_decay"]
            for x in s:
                if x not in sig:
                    sig.append(x)
        if self.support.frust_risk >= 0.15 and "support_trouble" not in sig:
            sig.append("support_trouble")
        return sig

    def _begin_day(self, sim: "Simulation", day: int) -> Today:
        """Today's risk, counted towards Truth.latent_risk while the first life lasts."""
        cfg = sim.cfg
        traits = self.traits
        age = day - self.start_day + traits.tenure0
        levels = self._levels(day) if self.eps else {}
        ep_sum = sum(levels.values())
        onb = self._onboard_level(age)
        onb_risk = onb * cfg.onboarding_risk
        raw = 0.05 + cfg.engagement_risk * (1.0 - traits.eng) + ep_sum + onb_risk
        if cfg.support_frustration:
            raw += self.support.frustration(cfg, day)
        risk = min(1.0, raw)
        if self.immortal:
            risk = 0.05
        if self.counting:
            self.risk_sum += risk
            self.risk_days += 1
        lo = WORK_LO
        fresh = (day == self.start_day and traits.tenure0 == 0) or day == self.react_day
        if fresh:  # nothing before today's subscription_started / trial_started
            lo = max(lo, self.anchor + 60)
        # tuple.__new__ rather than Today(...), every customer-day: a
        # NamedTuple's own __new__ is a Python function (0.33 against 0.11 us)
        return _new_today(Today, (day, sim.start_epoch + day * DAY, age, levels, onb, onb_risk, risk, lo, fresh,
                                  len(sim.buf)))

    # ------------------------------------------------------------------ the day
    def step(self, sim: "Simulation", day: int) -> bool:
        if self.end_day is not None and day >= self.end_day:
            self.state = GONE
            return False
        today = self._begin_day(sim, day)
        if (day == sim.rise_day and self.plan == sim.cfg.price_rise_plan
                and self.state in (ACTIVE, DUNNING) and not today.fresh):
            self._price_rise(sim, day)
        # billing on its days only: one call fewer on all the others
        due = day == self.next_renewal or day == self.trial_end or day == self.recover_day
        if due and not self._bill(sim, today):
            return False
        cancelled_at = None
        if self.state == ACTIVE and not self.immortal and not today.fresh:
            # at most two episodes at once; a customer doing well (risk < 0.25)
            # sometimes moves up a plan, the more engaged the likelier (expansion)
            r = self.rnd
            if len(self.eps) < 2 and r.random() < self.ep_total:
                self._new_episode(sim, day, emit_at=r.randrange(WORK_LO, WORK_HI))
            elif today.risk < 0.25 and self.plan != "business" and r.random() < 0.0012 * self.traits.eng:
                self._upgrade(sim, day)
            u = r.random()  # today's cancellation draw
            if u < H_MAX:  # else no hazard could make it one (most days)
                cancelled_at = self._maybe_cancel(sim, today, u)
        self._use(sim, today)
        if cancelled_at is not None:  # effective now: the day's use ends with the cancellation
            sec, payload = cancelled_at
            sim.drop_since(today.mark, sec)
            sim.emit(sec, self.cid, "subscription_cancelled", payload)
        return True

    def _price_rise(self, sim: "Simulation", day: int) -> None:
        """The plan's list price rises today: a ``plan_changed`` at midnight
        (same plan, new ``mrr``), then the customer's reaction.

        Why a reaction per customer: price-sensitive customers either move to
        the cheaper plan (contraction, they stay) or start a price episode that
        may end in a ``price`` cancellation weeks later; the others accept it.
        Drawn from a stream of its own so the rest of the customer's life is
        only changed by the reaction, not by the draws.
        """
        cfg = sim.cfg
        rr = random.Random(derive_seed(cfg.seed, ("price_rise", self.idx)))
        self.mrr = round(self.mrr * cfg.price_rise_factor, 2)
        sim.emit(0, self.cid, "plan_changed", {"plan": self.plan, "mrr": self.mrr})
        price_sens = self.traits.price_sens
        if self.immortal or rr.random() >= 0.1 + 0.8 * price_sens:
            return
        if self.plan != PLANS[0] and rr.random() < 0.25:
            self.plan = PLANS[PLANS.index(self.plan) - 1]
            self.mrr = sim.price(self.plan, day)
            sim.emit(1, self.cid, "plan_changed", {"plan": self.plan, "mrr": self.mrr})
            return
        peak = 0.3 + 0.6 * price_sens
        self.eps.append(Episode("price", day, rr.randint(3, 20), rr.randint(20, 60), peak, rr.random() < 0.3, "price_rise"))

    # ------------------------------------------------------------------ billing
    def _bill(self, sim: "Simulation", today: Today) -> bool:
        """Today's billing, if any is due; False when a trial ends unconverted."""
        if self.state == TRIAL:
            if today.day == self.trial_end:
                return self._end_trial(sim, today)
        elif self.state == ACTIVE and today.day == self.next_renewal:
            self._renew(sim, today)
        elif self.state == DUNNING and today.day == self.recover_day:
            sec = self.rnd.randrange(WORK_LO, WORK_HI)
            sim.emit(sec, self.cid, "payment_succeeded", {"amount": self.mrr})
            sim.emit(sec + 1, self.cid, "subscription_renewed", {})
            self.state = ACTIVE
        return True

    def _end_trial(self, sim: "Simulation", today: Today) -> bool:
        """A trial converts (most likely after a good onboarding) or ends in
        silence, which is not paid churn (Truth drivers trial_not_converted)."""
        p_conv = 0.12 + 0.6 * self.traits.onboard_ok + 0.25 * self.traits.eng
        if self.rnd.random() < p_conv:
            self.mrr = sim.price(self.plan, today.day)  # a price rise during the trial applies
            sim.emit(self.anchor, self.cid, "trial_converted", {"plan": self.plan, "mrr": self.mrr})
            sim.emit(self.anchor + 1, self.cid, "payment_succeeded", {"amount": self.mrr})
            self.converted_at = format_ts(today.base + self.anchor)
            self.state = ACTIVE
            self.next_renewal = today.day + 30
            return True
        self.trial_failed = True
        self.counting = False
        self.drivers = ["trial_not_converted"]
        self.state = GONE
        return False

    def _renew(self, sim: "Simulation", today: Today) -> None:
        """A monthly renewal: the payment fails the more often the less
        reliable the payment method (and the riskier the customer); a failure
        is recovered within the grace period or becomes involuntary churn."""
        r = self.rnd
        cfg = sim.cfg
        reliability, risk = self.traits.reliability, today.risk
        p_fail = 0.0 if self.immortal else (
            0.02 + cfg.payment_fail_scale * 0.3 * (1.0 - reliability) ** 2 + 0.04 * risk)
        if r.random() >= p_fail:
            sim.emit(self.anchor, self.cid, "subscription_renewed", {})
            sim.emit(self.anchor + 1, self.cid, "payment_succeeded", {"amount": self.mrr})
        else:
            sim.emit(self.anchor, self.cid, "payment_failed", {"amount": self.mrr})
            self.fail_day = today.day
            p_rec = min(0.97, max(0.05, 0.4 + 0.55 * reliability - 0.35 * risk))
            if r.random() < p_rec:
                self.state = DUNNING
                self.recover_day = today.day + r.randint(1, max(1, min(cfg.grace_days - 1, 29)))
            else:
                self.state = LOST
                self.end_day = today.day + cfg.grace_days
                self.churn_epoch = today.base + self.anchor + cfg.grace_days * DAY
                self.churn_kind = "involuntary"
                self.reason = None
                self.drivers = ["payment_failed"] + [
                    s for s in self._signals(today.levels, today.age) if s != "payment_failed"
                ]
                self._maybe_win_back(sim, self.end_day, 0.12)
        self.next_renewal += 30

    # ------------------------------------------------------------------ plan and churn
    def _upgrade(self, sim: "Simulation", day: int) -> None:
        """Expansion: one plan up, at today's list price."""
        self.plan = PLANS[PLANS.index(self.plan) + 1]
        self.mrr = sim.price(self.plan, day)
        sim.emit(self.rnd.randrange(WORK_LO, WORK_HI), self.cid, "plan_changed", {"plan": self.plan, "mrr": self.mrr})

    def _maybe_cancel(self, sim: "Simulation", today: Today, u: float) -> tuple[int, dict] | None:
        """Whether the customer cancels today, `u` being the day's uniform
        draw; (second, payload) when the cancellation takes effect at once
        (the caller emits it after the day's use), None otherwise (no
        cancellation, or one effective at the end of the paid period, already
        emitted)."""
        r = self.rnd
        h_co, h_vol, window = cancellation.hazards(today.risk, self.next_renewal - today.day, self.plan)
        if u >= h_co + h_vol:
            return None
        # after anything this customer already did today (billing, plan change)
        first = max([max(7 * 3600, today.lo)] + [sec + 1 for sec in sim.seconds_since(today.mark)])
        sec = r.randrange(first, 22 * 3600) if first < 22 * 3600 else min(first, DAY - 1)
        causes = list(today.levels.items())
        if today.onb_risk > 0:
            causes.append(("onboarding", today.onb_risk))
        if self.support.frust_risk > 0:  # tickets left open, bad ratings
            causes.append(("customer_service", self.support.frust_risk))
        reason, risk_driven, immediate_p = cancellation.reason(r, u, h_co, window, causes)
        drivers = self._signals(today.levels, today.age) if risk_driven else []
        payload = cancellation.payload(r, reason)
        immediate = r.random() < immediate_p
        if immediate:
            self.churn_epoch = today.base + sec
            self.end_day = today.day + 1
        else:
            self.end_day = self.next_renewal
            self.churn_epoch = sim.start_epoch + self.next_renewal * DAY + self.anchor
            payload["effective_at"] = format_ts(self.churn_epoch)
            self.state = PENDING  # cancelled, not yet churned: still uses the product a little
            sim.emit(sec, self.cid, "subscription_cancelled", payload)
        self.churn_kind = "voluntary"
        self.reason = reason
        self.drivers = drivers
        self._maybe_win_back(sim, self.end_day, 0.04)
        return (sec, payload) if immediate else None

    # ------------------------------------------------------------------ win-back
    def _maybe_win_back(self, sim: "Simulation", churn_day: int, p: float) -> None:
        """With probability `p` the customer comes back 20-150 days after its
        churn (if that is inside the period): the population loop calls
        `reactivate` on `react_day`."""
        r = self.rnd
        if r.random() < p:
            d = churn_day + r.randint(20, 150)
            if d < sim.cfg.days:
                self.react_day = d

    def reactivate(self, sim: "Simulation", day: int) -> None:
        """Won-back customer: new subscription, modelled as loyal from now on."""
        r = self.rnd
        self.immortal = True
        self.counting = False
        self.eps = []
        self.support.open_tickets = []
        self.end_day = None
        self.state = ACTIVE
        self.anchor = r.randrange(WORK_LO, 21 * 3600)
        self.plan = pick(r, PLANS, PLAN_WEIGHTS)
        self.mrr = sim.price(self.plan, day)
        self.next_renewal = day + 30
        self.reactivated_at = format_ts(sim.start_epoch + day * DAY + self.anchor)
        sim.emit(self.anchor, self.cid, "subscription_started", {"plan": self.plan, "mrr": self.mrr})
        sim.emit(self.anchor + 1, self.cid, "payment_succeeded", {"amount": self.mrr})

    # ------------------------------------------------------------------ use of the product
    def _use(self, sim: "Simulation", today: Today) -> None:
        """Sessions (Poisson around the customer's own rate), each maybe using
        one of its features, rarely an add-on purchase; support; NPS: what the
        monitor sees of the customer's risk before any churn. Fewer and
        shorter sessions with episodes under way, at weekends, once cancelled
        or after a lost payment, and while onboarding has failed.

        One method, not one per kind of use: it runs for every customer
        every day, where each Python call more costs the simulator ~0.6 %
        (bench/simulator_speed.py)."""
        r = self.rnd
        t = self.traits
        cid = self.cid
        emit = sim.emit
        damp = self._usage_damping(sim, today.levels) if today.levels else 0.0
        mult = sim.weekday_mult[today.day % 7]
        state = self.state
        if state == PENDING:
            mult *= 0.35
        elif state == LOST:
            mult *= max(0.0, 0.6 * (1.0 - (today.day - self.fail_day) / sim.cfg.grace_days))
        if today.onb:
            mult *= 0.2 if today.age < 100 else 0.5
        lo, hi = today.lo, WORK_HI
        n = poisson(r, t.base_rate * (1.0 - damp) * mult)
        if n and lo < hi:
            k = max(1, int(round(t.kmax * (1.0 - 0.85 * damp) * (0.5 if today.onb else 1.0))))
            durf = 1.0 - 0.5 * damp
            dur_mu, features = t.dur_mu, t.features
            for _ in range(n):
                sec = r.randrange(lo, hi)
                dur = max(10, int(math.exp(r.gauss(dur_mu, 0.7)) * durf))
                emit(sec, cid, "session", {"duration_s": dur})
                if r.random() < 0.45:
                    fsec = min(DAY - 1, sec + r.randrange(0, dur + 1))
                    emit(fsec, cid, "feature_used", {"feature": features[r.randrange(k)]})
            if r.random() < 0.003 * (1.0 - damp):
                emit(r.randrange(lo, hi), cid, "purchase", {"amount": float((19, 49, 99, 149)[r.randrange(4)])})
        self.support.day(sim, today.day, lo, today.levels, today.risk, state == PENDING or state == LOST)
        if (today.age % 90) == t.nps_phase and lo < hi and r.random() < 0.45:
            score = int(round(r.gauss(9.9 - 9.0 * today.risk, 1.1)))
            emit(r.randrange(lo, hi), cid, "nps", {"score": min(10, max(0, score))})

    def _usage_damping(self, sim: "Simulation", levels: dict[str, float]) -> float:
        """How far the episodes suppress use (SimConfig.usage_damping scales it)."""
        damp = 0.0
        scale = sim.cfg.usage_damping
        for kind, lvl in levels.items():
            damp += lvl * EPISODE_USAGE[kind] * scale
        return 0.92 if damp > 0.92 else damp

    # ------------------------------------------------------------------ truth
    def to_truth(self, sim: "Simulation") -> Truth:
        drivers = list(self.drivers)
        if self.churn_epoch is None and not self.trial_failed:  # at risk, censored: what is still active
            last = sim.cfg.days - 1
            drivers = self._signals(self._levels(last), last - self.start_day + self.traits.tenure0)
        return self._truth(sim, drivers, self.risk_sum, self.risk_days,
                           churned_epoch=self.churn_epoch, kind=self.churn_kind, reason=self.reason)
