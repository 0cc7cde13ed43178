"""The online churn-risk model and its live quality figures.

`ChurnModel` wraps a river pipeline that scores feature dicts (`features.py`)
and learns from the delayed labels of `labels.py`. Two things matter more
than the choice of learner:

- scoring never changes the model (river #1011): a pipeline whose scaler moved
  on every score would drift with traffic instead of labels, and two workers
  would score the same customer differently. `score` runs in river's pure
  inference mode (`_pure_inference`);
- until it has seen `min_labels` labels of both classes it is not trusted, and
  `assess` falls back to the transparent rule score of `health.py`.

`Quality` is progressive validation done live: every label is compared with
the score the model gave *when the snapshot was taken* (stored in the label
book), before the model learns from it.

A model travels between workers as data: its counters (`meta`) and, for
the logistic model, its weights, the scaler's statistics and the order of
its inputs (`linear_state`). `stream_app/risk/snapshots.py` frames, signs and
checks them; nothing here reads bytes.

>>> m = ChurnModel(min_labels=2)
>>> x = {"a": 1.0}
>>> m.learn(x, True); m.learn({"a": 0.0}, False)
>>> m.ready, m.labels_seen
(True, 2)
>>> m.publish(created_at=0.0)
>>> m2 = ChurnModel.from_meta(m.meta()); m2.load_linear_state(m.linear_state())
>>> m2.version, m2.score(x) == m.score(x)
(1, True)
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, NamedTuple

from river import compose, drift, forest, linear_model, metrics, optim, preprocessing, proba, stats, tree, utils
from river.tree import nodes as tree_nodes
from river.tree.splitter import GaussianSplitter

from ..config import MODEL_KINDS
from . import plaindata
from .features import FEATURES, NEUTRAL
from .health import FACTORS, health_risk
from .reasons import REASON_CATEGORY

__all__ = ["ChurnModel", "CandidateModel", "Selection", "Quality", "Assessment", "MODEL_KINDS", "CANDIDATES",
           "make_pipeline", "with_health_factors"]

LINEAR_KINDS = ("logreg", "linear")
#: the candidates of `select`, in the order they are reported
CANDIDATES = ("rules", "linear", "tree")

HF_PREFIX = "hf_"  # model inputs derived from the health-score factors
HF_INPUTS: tuple[str, ...] = tuple(HF_PREFIX + name for name, _ in FACTORS)
CLIP = 5.0  # standard deviations
PRIOR_RATE = 0.03  # prior P(churn within the horizon): a typical monthly churn rate
RULES_PRIOR_WEIGHT = 5.0  # initial log-odds per unit of health-factor contribution
LINEAR_LR = 0.002  # `linear`: SGD step (weights start at 0). Of 0.0002 .. 0.02, scored 128 labels before learning them, 0.002 ranked best on two populations
LINEAR_L2 = 0.0001
TREE_DEPTH = 8  # `tree`: at most 256 leaves
TREE_GRACE = 100  # labels a leaf sees between split attempts
TREE_DELTA = 0.01  # Hoeffding bound confidence (1e-3 .. 1e-6 split less and ranked worse on the simulated year)
_KEYS = frozenset(NEUTRAL)


def with_health_factors(x: dict) -> dict:
    """Add each health-score factor as a model input (``hf_<feature>``).

    The factors are thresholds and ramps written from the domain (no activity
    for more than 5 days, CSAT of 2 or less, ...); a linear model cannot build
    those from raw values, but it can weigh them, so the learnt model starts
    from the rules' knowledge and corrects their weights with labels.
    """
    full = x if _KEYS <= x.keys() else {**NEUTRAL, **x}
    out = dict(x)
    for name, rule in FACTORS:
        out[HF_PREFIX + name] = rule(full)
    return out


def clip_scaled(x: dict) -> dict:
    """Cap standardised inputs at +-5 sd.

    Online scaling sees rare features (a first failed payment, a first price
    change) with a variance near zero; unclipped, one such value is a z-score
    in the hundreds and saturates the logistic model for days.
    """
    return {k: (CLIP if v > CLIP else (-CLIP if v < -CLIP else v)) for k, v in x.items()}


def base_feature(name: str) -> str:
    """The feature an input is derived from (``hf_csat`` -> ``csat``)."""
    return name[len(HF_PREFIX):] if name.startswith(HF_PREFIX) else name


def make_pipeline(kind: str = "logreg", seed: int = 42):
    """The river pipeline for a model kind (`select` has none: it is its
    candidates, `CandidateModel`).

    `logreg`: health factors, then the raw features standardised and clipped
    alongside the factors as they are (already 0..1), then a logistic
    regression. Cheap, and weight x input is an exact per-feature explanation.

    It starts *as* the rule score instead of from zero: intercept at the
    logit of `PRIOR_RATE` and every health-factor weight at
    `RULES_PRIOR_WEIGHT`, so its first ranking is the health score's and the
    labels only have to correct it. Without the warm start the first months
    of labels are spent rediscovering the rules, and the model ranks worse
    than them until month 4 or 5 of the simulated year.

    The learning rates are small on purpose: labels arrive in bursts (all of
    a day's negatives when its horizon passes, up to H positives at once when
    a customer churns) and a large step lets each burst drag the model. Of
    the rates tried on the simulated year (0.0005 .. 0.0001,
    bench/model_quality.py), 0.0001 with an intercept rate of 0.0003 ranked
    best over the whole year.

    `arf`: health factors | a small adaptive random forest (5 trees, depth
    <= 12, 20 MB per tree) for non-linear effects; bounded because a
    table-backed worker must not grow without limit. Its per-tree drift
    detectors are off: they watch each tree's 0/1 error in label-arrival
    order, and the label bursts above look like drift to them at any ADWIN
    delta tried (down to 1e-7), so trees were reset all year long (ROC AUC
    0.55 on the simulated year, 0.85 without). Drift is watched once, by
    `Quality`, per class and per day; rebuild the model when it fires.
    """
    if kind in LINEAR_KINDS:
        if kind == "logreg":
            lr = linear_model.LogisticRegression(
                optimizer=optim.SGD(0.0001),
                intercept_lr=0.0003,
                intercept_init=math.log(PRIOR_RATE / (1.0 - PRIOR_RATE)),
            )
            for name in HF_INPUTS:
                lr._weights[name] = RULES_PRIOR_WEIGHT
        else:
            # `linear`: the same inputs, but every weight starts at 0: what it
            # knows comes from the labels, the rules' thresholds are inputs it
            # may weigh or ignore. A larger step than logreg's (it starts from
            # nothing), a little L2 so the many correlated inputs share weight.
            lr = linear_model.LogisticRegression(
                optimizer=optim.SGD(LINEAR_LR),
                intercept_lr=LINEAR_LR,
                l2=LINEAR_L2,
                intercept_init=math.log(PRIOR_RATE / (1.0 - PRIOR_RATE)),
            )
        scaled = (
            compose.Discard(*HF_INPUTS)
            | preprocessing.StandardScaler()
            | compose.FuncTransformer(clip_scaled)
        )
        return (
            compose.FuncTransformer(with_health_factors)
            | compose.TransformerUnion(scaled, compose.Select(*HF_INPUTS))
            | lr
        )
    if kind == "tree":
        # the raw features only: a tree finds its own thresholds. Split on
        # Hellinger distance, which is insensitive to class imbalance: with
        # 3-4 % churners, information gain hardly ever split (ROC AUC 0.51 on
        # the simulated year, 0.75 with Hellinger). Majority-class leaves
        # (their churn rate is the score): naive Bayes leaves put 10 % of
        # the customers at exactly 0 or 1. Bounded by depth (at most
        # 2**TREE_DEPTH leaves; a leaf at the bottom drops its split
        # statistics), so its memory and snapshot stay small. Plain Hoeffding
        # tree, not the adaptive one: the per-node ADWIN of the adaptive tree
        # watches the 0/1 error in label-arrival order, which the label
        # bursts make look like drift (see `arf` below).
        return tree.HoeffdingTreeClassifier(
            grace_period=TREE_GRACE, delta=TREE_DELTA, max_depth=TREE_DEPTH,
            leaf_prediction="mc", split_criterion="hellinger",
        )
    if kind == "arf":
        return compose.FuncTransformer(with_health_factors) | forest.ARFClassifier(
            n_models=5,
            max_depth=12,
            max_size=20.0,
            memory_estimate_period=20_000,
            drift_detector=drift.NoDrift(),
            warning_detector=drift.NoDrift(),
            seed=seed,
        )
    raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")


@contextlib.contextmanager
def _pure_inference() -> Iterator[None]:
    """Score without learning, whatever the river version.

    river documents `compose.pure_inference_mode` for this; the installed
    0.26.1 lists it in `compose.__all__` but does not define it, and instead
    learns during predict only inside `compose.learn_during_predict()`. So use
    the former when present, otherwise make sure the latter's switch is off
    for the duration of the call (it is a class-level flag).
    """
    ctx = getattr(compose, "pure_inference_mode", None)
    if callable(ctx):
        with ctx():
            yield
        return
    flag = getattr(compose.Pipeline, "_LEARN_UNSUPERVISED_DURING_PREDICT", None)
    if flag:
        compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT = False
    try:
        yield
    finally:
        if flag:
            compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT = flag


def _sigmoid(z: float) -> float:
    if z < -30.0:  # river's sigmoid bounds
        return 0.0
    return 1.0 if z > 30.0 else 1.0 / (1.0 + math.exp(-z))


class Assessment(NamedTuple):
    """A risk with who produced it and why (reasons: (feature, contribution, category)).

    `model_score` is the model's own score even while the rules are the ones
    alerting (None when not computed): the label book keeps it, so the
    model's live quality is the model's.
    """

    risk: float
    scored_by: str  # "model" | "rules"
    reasons: list[tuple[str, float, str]]
    model_score: float | None = None


class ChurnModel:
    """One online churn model: score, learn, explain, snapshot, restore.

    `ChurnModel("select", ...)` builds a `CandidateModel` (several candidates,
    the best serving), so every caller builds models the same way.
    """

    def __new__(cls, kind: str = "logreg", *args: Any, **kwargs: Any) -> "ChurnModel":
        if cls is ChurnModel and kind == "select":
            cls = CandidateModel
        return object.__new__(cls)

    def __init__(self, kind: str = "logreg", *, min_labels: int = 500, seed: int = 42) -> None:
        self.kind = kind
        self.seed = seed
        self.min_labels = min_labels
        self.pipeline = make_pipeline(kind, seed)
        self.labels_seen = 0
        self.positives = 0
        self.version = 0
        self.created_at: float | None = None

    # -- the river contract ---------------------------------------------------
    def score(self, x: Mapping[str, float]) -> float:
        """P(churn within the horizon | x); never changes the model.

        The logistic model's logit is summed here with `math.fsum` (exact,
        so independent of order) instead of river's dot product, whose
        order follows a hash map's and differs between a model and its
        restored copy in the last bit: a worker that loads a snapshot must
        score exactly as the trainer that wrote it, or replays and
        thresholds stop being reproducible.
        """
        if self.kind in LINEAR_KINDS:
            terms, intercept = self._linear_terms(x)
            return _sigmoid(math.fsum(terms.values()) + intercept)
        with _pure_inference():
            proba = self.pipeline.predict_proba_one(dict(x))
        p = float(proba.get(True, 0.0)) if proba else 0.0
        return 0.0 if p != p else min(1.0, max(0.0, p))

    def _linear_terms(self, x: Mapping[str, float]) -> tuple[dict[str, float], float]:
        """Weight x transformed input of every model input, and the intercept."""
        steps = list(self.pipeline.steps.values())
        lr = steps[-1]
        z = dict(x)
        with _pure_inference():
            for step in steps[:-1]:
                z = step.transform_one(z)
        w = lr.weights
        return {k: w.get(k, 0.0) * v for k, v in z.items()}, lr.intercept

    def learn(self, x: Mapping[str, float], y: bool) -> None:
        self.pipeline.learn_one(dict(x), bool(y))
        self.labels_seen += 1
        self.positives += 1 if y else 0

    @property
    def ready(self) -> bool:
        """Enough labels of both classes to be trusted over the rules."""
        neg = self.labels_seen - self.positives
        return self.labels_seen >= self.min_labels and self.positives > 0 and neg > 0

    # -- explanations -------------------------------------------------------------
    def contributions(self, x: Mapping[str, float]) -> list[tuple[str, float]]:
        """Per-feature push on the risk, largest first.

        Logistic regression: weight x scaled value, in log-odds (exact: they
        sum, with the intercept, to the logit of `score`). Forest: the drop in
        score when the feature is set to its neutral value (a perturbation
        estimate; one extra prediction per feature, fine at alert rates).
        Inputs derived from a feature (its health factor) are summed into it,
        so a reason always names a feature of `features.FEATURES`.
        """
        x = dict(x)
        out: dict[str, float] = {}
        if self.kind in LINEAR_KINDS:
            terms, _ = self._linear_terms(x)
            for k, c in terms.items():
                b = base_feature(k)
                out[b] = out.get(b, 0.0) + c
        else:
            base = self.score(x)
            for k in x:
                neutral = NEUTRAL.get(k)
                if neutral is None or x[k] == neutral:
                    out[k] = 0.0
                    continue
                out[k] = base - self.score({**x, k: neutral})
        return sorted(out.items(), key=lambda kv: -kv[1])

    def assess(self, x: Mapping[str, float]) -> Assessment:
        """The risk an alert should use: the model once `ready`, else the rules;
        with the model's score either way, computed once."""
        if self.ready:
            if self.kind in LINEAR_KINDS:  # one pass: the terms give both the score and the reasons
                terms, intercept = self._linear_terms(x)
                score = _sigmoid(math.fsum(terms.values()) + intercept)
                merged: dict[str, float] = {}
                for k, c in terms.items():
                    b = base_feature(k)
                    merged[b] = merged.get(b, 0.0) + c
                contributions = sorted(merged.items(), key=lambda kv: -kv[1])
            else:
                score, contributions = self.score(x), self.contributions(x)
            reasons = [(k, c, REASON_CATEGORY.get(k, "account")) for k, c in contributions if c > 0]
            return Assessment(score, "model", reasons, score)
        risk, factors = health_risk(x)
        return Assessment(risk, "rules", factors, self.score(x))

    def candidates(self) -> dict[str, dict[str, Any]]:
        """Candidates side by side (`CandidateModel`); a single model has none."""
        return {}

    # -- persistence (stream_app/risk/snapshots.py frames, signs and checks) -------------
    def publish(self, created_at: float | None = None) -> None:
        """A new model version for scorers: bump `version`, stamp `created_at`."""
        self.version += 1
        self.created_at = time.time() if created_at is None else created_at

    def meta(self) -> dict[str, Any]:
        """The model's identity and counters (everything but its learnt state)."""
        return {
            "kind": self.kind,
            "seed": self.seed,
            "min_labels": self.min_labels,
            "version": self.version,
            "labels_seen": self.labels_seen,
            "positives": self.positives,
            "created_at": self.created_at,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "ChurnModel":
        """A model with `meta`'s identity and counters and a fresh pipeline."""
        m = cls(meta["kind"], min_labels=meta["min_labels"], seed=meta["seed"])
        m.version = meta["version"]
        m.labels_seen = meta["labels_seen"]
        m.positives = meta["positives"]
        m.created_at = meta["created_at"]
        return m

    def _linear_parts(self):
        """(StandardScaler, LogisticRegression) of a `logreg` pipeline (see `make_pipeline`)."""
        if self.kind not in LINEAR_KINDS:
            raise ValueError(f"a {self.kind} model has no linear state")
        steps = list(self.pipeline.steps.values())
        union, lr = steps[1], steps[-1]
        scaled = next(t for t in union.transformers.values() if isinstance(t, compose.Pipeline))
        scaler = next(t for t in scaled.steps.values() if isinstance(t, preprocessing.StandardScaler))
        return scaler, lr

    def linear_state(self) -> dict[str, Any]:
        """The logistic model as plain data: its inputs in order with their
        weights, the intercept, the optimizer's step count, and the scaler's
        per-feature count, mean and variance. Orders are kept (weights and
        statistics are ordered maps), so a model rebuilt from this scores and
        goes on learning bit for bit like the original.
        """
        scaler, lr = self._linear_parts()
        features = list(scaler.counts)
        return {
            "inputs": list(lr._weights.keys()),
            "weights": [float(w) for w in lr._weights.values()],
            "intercept": float(lr.intercept),
            "optimizer_steps": int(lr.optimizer.n_iterations),
            "scaler": {
                "features": features,
                "counts": [int(scaler.counts[f]) for f in features],
                "means": [float(scaler.means[f]) for f in features],
                "vars": [float(scaler.vars[f]) for f in features],
            },
        }

    def load_linear_state(self, state: Mapping[str, Any]) -> None:
        """Set the pipeline's learnt state from `linear_state` output (checked by the caller)."""
        scaler, lr = self._linear_parts()
        lr._weights.clear()
        for name, w in zip(state["inputs"], state["weights"]):
            lr._weights[name] = float(w)
        lr.intercept = float(state["intercept"])
        lr.optimizer.n_iterations = int(state["optimizer_steps"])
        sc = state["scaler"]
        scaler.counts.clear()
        scaler.means.clear()
        scaler.vars.clear()
        for f, n, mean, var in zip(sc["features"], sc["counts"], sc["means"], sc["vars"]):
            scaler.counts[f] = int(n)
            scaler.means[f] = float(mean)
            scaler.vars[f] = float(var)

    def state(self) -> Any:
        """The learnt state as plain data (JSON-compatible): the linear
        kinds' `linear_state`, a tree's object graph (`plaindata.dump`)."""
        if self.kind in LINEAR_KINDS:
            return self.linear_state()
        if self.kind == "tree":
            return plaindata.dump(self.pipeline)
        raise ValueError(f"a {self.kind} model does not travel as data")

    def load_state(self, state: Any) -> None:
        """Set the learnt state from `state` output; raises ValueError when
        it is not a model of this kind (a tree is checked node by node)."""
        if self.kind in LINEAR_KINDS:
            self.load_linear_state(state)
            return
        if self.kind == "tree":
            try:
                t = plaindata.load(state, TREE_CLASSES)
            except plaindata.PlainDataError as exc:
                raise ValueError(f"tree: {exc}") from None
            problem = tree_problem(t)
            if problem:
                raise ValueError(f"tree: {problem}")
            self.pipeline = t
            return
        raise ValueError(f"a {self.kind} model does not travel as data")


# ---------------------------------------------------------------------------
# Candidates side by side: the best progressive-validation score serves
# ---------------------------------------------------------------------------

SELECT_BINS = 480  # score bins of the selection's AUC, evenly spaced in log-odds
SELECT_LOGIT = 12.0  # the bins span log-odds -12 .. 12 (probabilities 6e-6 .. 1 - 6e-6)
SELECT_HALF_LIFE = 20_000  # labels after which a label's weight in the selection has halved
SELECT_EVERY = 100  # labels between two choices
# ROC AUC a challenger must lead the serving candidate by to replace it. It
# is judged at label time, but a learnt candidate serves at snapshot time, up
# to a horizon earlier, as the model it was then: on the simulated
# populations (2,000 customers x 180 days, bench/model_quality.py) the linear
# candidate's label-time ROC AUC exceeded its snapshot-time one by 0.01-0.10
# (20-day windows after it began to serve), and every switch made at a lead
# of 0.005-0.05 left the served risk ranking below the rules over the run.
# Measured on four populations and one seed, not proven elsewhere: see
# docs/PERFORMANCE.md, "the rules floor".
SELECT_MARGIN = 0.07
# churners a learnt candidate must have been scored on before it may serve:
# an AUC over a few hundred positives is noisy (its standard error is near
# 0.02 at 150 for AUCs around 0.8, and a churn labels up to H/every
# snapshots of one customer at once, so the positives are not independent);
# with 150, payment-price switched to the linear model on day 33 and back
# two days later, on early labels that were mostly churners
SELECT_MIN_POSITIVES = 500
SELECT_LAG = 128  # labels between scoring a label and learning it (see CandidateModel)


def _bin(p: float) -> int:
    """The selection bin of a score (monotone in the score; ties share one)."""
    p = min(1.0, max(0.0, float(p))) if p == p else 0.0
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return SELECT_BINS - 1
    z = math.log(p / (1.0 - p))
    i = int((z + SELECT_LOGIT) / (2.0 * SELECT_LOGIT) * SELECT_BINS)
    return 0 if i < 0 else (SELECT_BINS - 1 if i >= SELECT_BINS else i)


class Selection:
    """Which candidate serves: each one's progressive-validation ROC AUC.

    Every label is scored by every candidate *before* any of them learns it
    (`CandidateModel.learn`), and counted here in the candidate's score
    histogram (`SELECT_BINS` bins in log-odds, so the ranking of the small
    probabilities churn models live in is kept; ties within a bin count
    half, as tied scores do in ROC AUC). Old labels fade: a label's weight
    halves every `SELECT_HALF_LIFE` labels (Gama et al. 2013's fading
    factor for prequential evaluation), so a candidate that was better on
    last year's population does not keep serving on this year's.

    The choice is made every `SELECT_EVERY` labels among the candidates
    that are ready (`min_labels` labels of both classes, and
    `SELECT_MIN_POSITIVES` churners for a learnt one); a challenger replaces
    the serving candidate only when its AUC leads by `SELECT_MARGIN`, so
    two candidates of equal skill do not take turns, and a learnt one
    whose label-time lead is only what it learnt since the snapshots were
    scored does not serve (its snapshot-time score is what the customer
    gets, see `SELECT_MARGIN`). Plain numbers
    throughout: the selection travels in the model snapshot (`state`).

    >>> s = Selection(("a", "b"), serving="b")
    >>> for i in range(1000):
    ...     y = i % 10 == 0
    ...     s.update("a", y, 0.9 if y else 0.1); s.update("b", y, 0.5)
    >>> s.choose({"a", "b"}), s.serving, s.switches, round(s.auc("a"), 3), s.auc("b")
    (True, 'a', 1, 1.0, 0.5)
    """

    def __init__(self, names: tuple[str, ...], serving: str | None = None) -> None:
        self.names = tuple(names)
        self.serving = serving or self.names[0]
        self.switches = 0
        self.labels = 0
        self.weight = 1.0  # weight of the next label (grows; the histograms are rescaled)
        self.pos = {n: [0.0] * SELECT_BINS for n in self.names}
        self.neg = {n: [0.0] * SELECT_BINS for n in self.names}

    _GROWTH = 2.0 ** (1.0 / SELECT_HALF_LIFE)

    def update(self, name: str, y: bool, p: float) -> None:
        """Candidate `name` scored `p` for a label `y` (call for every candidate, then `tick`)."""
        (self.pos if y else self.neg)[name][_bin(p)] += self.weight

    def tick(self) -> None:
        """One label done: the next weighs a little more (old ones fade)."""
        self.labels += 1
        self.weight *= self._GROWTH
        if self.weight > 1e100:
            for hist in (*self.pos.values(), *self.neg.values()):
                for i, v in enumerate(hist):
                    hist[i] = v / self.weight
            self.weight = 1.0

    def auc(self, name: str) -> float:
        """The candidate's faded ROC AUC (0.5 when a class is missing)."""
        pos, neg = self.pos[name], self.neg[name]
        p_total, n_total = sum(pos), sum(neg)
        if p_total <= 0.0 or n_total <= 0.0:
            return 0.5
        below = 0.0
        acc = 0.0
        for p, n in zip(pos, neg):
            acc += p * (below + 0.5 * n)
            below += n
        return acc / (p_total * n_total)

    def choose(self, ready: set[str]) -> bool:
        """Serve the best ready candidate (with the margin); True if it changed."""
        scores = {n: self.auc(n) for n in self.names if n in ready}
        if not scores:
            return False
        best = max(scores, key=lambda n: (scores[n], -self.names.index(n)))
        current = scores.get(self.serving)
        if best == self.serving or (current is not None and scores[best] < current + SELECT_MARGIN):
            return False
        self.serving = best
        self.switches += 1
        return True

    def state(self) -> dict[str, Any]:
        return {"names": list(self.names), "serving": self.serving, "switches": self.switches,
                "labels": self.labels, "weight": self.weight,
                "pos": [self.pos[n] for n in self.names], "neg": [self.neg[n] for n in self.names]}

    @classmethod
    def from_state(cls, st: Mapping[str, Any]) -> "Selection":
        s = cls(tuple(st["names"]), st["serving"])
        s.switches, s.labels, s.weight = int(st["switches"]), int(st["labels"]), float(st["weight"])
        s.pos = {n: [float(v) for v in h] for n, h in zip(s.names, st["pos"])}
        s.neg = {n: [float(v) for v in h] for n, h in zip(s.names, st["neg"])}
        return s


class CandidateModel(ChurnModel):
    """The rules, a logistic regression and a tree, side by side; the best serves.

    All candidates see the same delayed labels: each label is scored by
    every candidate (re-scored at label time, from the snapshot's features,
    before any candidate learns it: progressive validation, the same for
    all), counted in the `Selection`, then the learning candidates learn it
    `SELECT_LAG` labels later. The lag is what makes the comparison fair:
    a churn labels up to H/every snapshots of one customer at once, and a
    candidate that had just learnt the first would score its near-copies
    with the answer in hand (a logistic model with a large step gained
    0.1 ROC AUC that way, a tree much less). The waiting labels travel in
    the snapshot with the rest.
    The rules (`health.py`) are a candidate like the others: they serve
    first, and keep serving only while nothing learnt ranks better by
    `SELECT_MARGIN`. While they serve, the risk is their own 0..1 score,
    not a map of it fitted to the recent labels: any map that moves with
    the labels reorders snapshots taken at different times, and served so
    (the churn rate of their score, refitted every 100 labels) the rules
    ranked the simulated populations 0.012-0.017 ROC AUC below their own
    score pooled over a run, even where nothing learnt ever served. So the
    served risk ranks exactly as the rules do; it is a probability only
    once a learnt candidate serves.

    What serves decides the score, the reasons and `scored_by`: the rules'
    risk and factors ("rules"), or the learnt candidate's probability and
    contributions ("model": exact log-odds terms for the logistic model,
    the drop in score when a feature is set to its neutral value for the
    tree). `version` is the snapshot's, as for every kind.
    """

    def __init__(self, kind: str = "select", *, min_labels: int = 500, seed: int = 42) -> None:
        self.kind = "select"
        self.seed = seed
        self.min_labels = min_labels
        self.pipeline = None
        self.members = {name: ChurnModel(name, min_labels=min_labels, seed=seed) for name in CANDIDATES if name != "rules"}
        self.selection = Selection(CANDIDATES)
        self.pending: deque[tuple[list[float], bool]] = deque()  # scored, not learnt yet (oldest first)
        self.labels_seen = 0
        self.positives = 0
        self.version = 0
        self.created_at: float | None = None

    @property
    def serving(self) -> str:
        return self.selection.serving

    def candidate_score(self, name: str, x: Mapping[str, float]) -> float:
        if name == "rules":
            return health_risk(x)[0]
        return self.members[name].score(x)

    def score(self, x: Mapping[str, float]) -> float:
        if self.serving == "rules":
            return health_risk(x)[0]
        return self.members[self.serving].score(x)

    def learn(self, x: Mapping[str, float], y: bool) -> None:
        sel = self.selection
        for name in CANDIDATES:
            sel.update(name, y, self.candidate_score(name, x))
        sel.tick()
        self.pending.append(([float(x.get(k, NEUTRAL[k])) for k in FEATURES], bool(y)))
        if len(self.pending) > SELECT_LAG:
            values, label = self.pending.popleft()
            old = dict(zip(FEATURES, values))
            for m in self.members.values():
                m.learn(old, label)
        self.labels_seen += 1
        self.positives += 1 if y else 0
        if self.labels_seen % SELECT_EVERY == 0:
            sel.choose({"rules"} | {n for n, m in self.members.items() if m.ready and m.positives >= SELECT_MIN_POSITIVES})

    @property
    def ready(self) -> bool:
        """A learnt candidate has enough labels of both classes to compete
        with the rules (whether it serves is the selection's call: `serving`)."""
        return any(m.ready for m in self.members.values())

    def contributions(self, x: Mapping[str, float]) -> list[tuple[str, float]]:
        if self.serving == "rules":
            return [(name, c) for name, c, _ in health_risk(x)[1]]
        return self.members[self.serving].contributions(x)

    def assess(self, x: Mapping[str, float]) -> Assessment:
        if self.serving == "rules":
            risk, factors = health_risk(x)
            return Assessment(risk, "rules", factors, risk)
        a = self.members[self.serving].assess(x)
        return Assessment(a.risk, "model", a.reasons, a.risk)

    def candidates(self) -> dict[str, dict[str, Any]]:
        """Each candidate's live figures (for /metrics): serving or not, faded ROC AUC, labels."""
        sel = self.selection
        return {n: {"serving": n == sel.serving, "roc_auc": sel.auc(n), "labels": sel.labels} for n in CANDIDATES}

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "serving": self.serving, "switches": self.selection.switches}

    def state(self) -> dict[str, Any]:
        return {"selection": self.selection.state(), "pending": [[v, y] for v, y in self.pending],
                "members": {n: {"meta": m.meta(), "state": m.state()} for n, m in self.members.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Set every candidate and the selection (checked by the caller, `snapshots`)."""
        members = {}
        for name, body in state["members"].items():
            m = ChurnModel.from_meta(body["meta"])
            m.load_state(body["state"])
            members[name] = m
        self.members = members
        self.selection = Selection.from_state(state["selection"])
        self.pending = deque((list(map(float, v)), bool(y)) for v, y in state["pending"])


# ---------------------------------------------------------------------------
# The tree as data: which classes it is made of, and what each must hold
# ---------------------------------------------------------------------------

TREE_CLASSES: dict[str, type] = {c.__name__: c for c in (
    tree.HoeffdingTreeClassifier, tree_nodes.branch.NumericBinaryBranch,
    tree_nodes.htc_nodes.LeafMajorityClass, tree_nodes.htc_nodes.LeafNaiveBayes,
    tree_nodes.htc_nodes.LeafNaiveBayesAdaptive, GaussianSplitter, proba.Gaussian, stats.Var, stats.Mean,
)}
TREE_MAX_NODES = 4096
_LEAVES = (tree_nodes.htc_nodes.LeafMajorityClass, tree_nodes.htc_nodes.LeafNaiveBayes,
           tree_nodes.htc_nodes.LeafNaiveBayesAdaptive)
_FEATURE_SET = frozenset(FEATURES)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _class_weights(d: Any) -> bool:
    return isinstance(d, dict) and all(isinstance(k, bool) and _finite(v) and v >= 0 for k, v in d.items())


def _gaussian_problem(g: Any) -> str | None:
    if type(g) is not proba.Gaussian:
        return "a splitter estimator is not a Gaussian"
    var = g.__dict__.get("_var")
    mean = getattr(var, "mean", None)
    if type(var) is not stats.Var or type(mean) is not stats.Mean or not isinstance(var.ddof, int):
        return "a Gaussian without its variance and mean"
    if not all(_finite(v) for v in (var._S, mean.n, mean._mean)):
        return "a Gaussian with a non-finite statistic"
    return None


def _leaf_problem(leaf: Any) -> str | None:
    d = leaf.__dict__
    if not _class_weights(d.get("stats")) or not isinstance(d.get("depth"), int):
        return "a leaf without class weights or depth"
    if not _finite(d.get("_last_split_attempt_at", 0.0)):
        return "a leaf with a bad split counter"
    for k in ("_mc_correct_weight", "_nb_correct_weight"):
        if k in d and not _finite(d[k]):
            return "a leaf with a bad accuracy counter"
    splitters = d.get("splitters")  # None: a leaf that no longer grows
    if splitters is not None and not isinstance(splitters, dict) or not isinstance(d.get("_disabled_attrs"), set):
        return "a leaf without its splitters"
    if d.get("splitter") is not None and type(d["splitter"]) is not GaussianSplitter:
        return "a leaf with a splitter that is not Gaussian"
    prototype = [("", d["splitter"])] if d.get("splitter") is not None else []
    for f, sp in list((splitters or {}).items()) + prototype:
        if (f not in _FEATURE_SET and f != "") or type(sp) is not GaussianSplitter:
            return f"a splitter on {str(f)[:40]!r}, not a model feature"
        sd = sp.__dict__
        if not isinstance(sd.get("n_splits"), int) or not 1 <= sd["n_splits"] <= 100:
            return "a splitter with a bad n_splits"
        lo, hi, dists = sd.get("_min_per_class"), sd.get("_max_per_class"), sd.get("_att_dist_per_class")
        if not all(isinstance(m, dict) and all(isinstance(k, bool) and _finite(v) for k, v in m.items()) for m in (lo, hi)):
            return "a splitter with bad bounds"
        if not isinstance(dists, dict) or not all(isinstance(k, bool) for k in dists) or set(dists) != set(lo) or set(lo) != set(hi):
            return "a splitter whose classes do not match"
        for g in dists.values():
            problem = _gaussian_problem(g)
            if problem:
                return problem
    return None


def tree_problem(t: Any) -> str | None:
    """What is wrong with a loaded tree (None = fine to score and learn with).

    Structure and types, node by node: numeric binary branches on model
    features with finite thresholds, leaves with class weights and Gaussian
    split statistics, at most `TREE_MAX_NODES` nodes and `TREE_DEPTH` levels
    (plus one: a leaf below the deepest branch).
    """
    if type(t) is not tree.HoeffdingTreeClassifier:
        return "the body is not a Hoeffding tree"
    d = t.__dict__
    if d.get("max_depth") != TREE_DEPTH or d.get("_leaf_prediction") not in ("mc", "nb", "nba"):
        return "a tree with other settings than this release's"
    for k in ("grace_period", "delta", "tau", "nb_threshold", "_train_weight_seen_by_model"):
        if not _finite(d.get(k)):
            return f"tree.{k} must be a finite number"
    if type(d.get("splitter")) is not GaussianSplitter or d.get("nominal_attributes") not in (None, [], ()):
        return "a tree with another splitter than Gaussian, or nominal attributes"
    if d.get("_split_criterion") not in ("info_gain", "gini", "hellinger"):
        return "a tree with an unknown split criterion"
    stack, seen = [(d.get("_root"), 0)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if node is None and seen == 1:
            return None  # an empty tree (nothing learnt yet)
        if seen > TREE_MAX_NODES or depth > TREE_DEPTH + 1:
            return f"more than {TREE_MAX_NODES} nodes or {TREE_DEPTH} levels"
        if type(node) is tree_nodes.branch.NumericBinaryBranch:
            nd = node.__dict__
            if nd.get("feature") not in _FEATURE_SET or not _finite(nd.get("threshold")):
                return "a branch on an unknown feature or a non-finite threshold"
            children = nd.get("children")
            if not isinstance(children, list) or len(children) != 2 or not _class_weights(nd.get("stats")):
                return "a branch without two children or class weights"
            stack.extend((c, depth + 1) for c in children)
        elif type(node) in _LEAVES:
            problem = _leaf_problem(node)
            if problem:
                return problem
        else:
            return f"a node of type {type(node).__name__}"
    return None


# ---------------------------------------------------------------------------
# Quality
# ---------------------------------------------------------------------------


def _stretch(p: float) -> float:
    """Monotone map of [0, 1] onto itself that spreads small probabilities.

    river's ROCAUC discretises scores on evenly spaced thresholds in [0, 1];
    churn probabilities mostly sit below 0.1, where even 100 thresholds give
    a handful of points. AUC depends on ranks only, so scoring it on
    sigmoid(logit(p) / 4) loses nothing and keeps the approximation close.
    """
    p = min(1.0 - 1e-9, max(1e-9, p))
    return 1.0 / (1.0 + math.exp(-math.log(p / (1.0 - p)) / 4.0))


@dataclass
class _Bin:
    n: int = 0
    sum_p: float = 0.0
    pos: int = 0


class Quality:
    """Live model quality from (label, score-at-snapshot-time) pairs.

    - ROC AUC: cumulative (river ROCAUC on stretched scores, see `_stretch`)
      and rolling over `window` labels (river RollingROCAUC, exact in window);
    - log loss: cumulative and rolling (river LogLoss, utils.Rolling);
    - Brier score (mean squared error of the probability), cumulative;
    - calibration: `bins` equal-width bins of the score, each with count,
      mean predicted and observed churn rate;
    - top-decile lift over the last `lift_window` labels: churn rate among the
      top 10 % of scores / overall churn rate (fight-churn);
    - drift: ADWIN on the model's absolute error |y - p|, one detector per
      class, fed with the class's mean error per event-time day when the
      label times are given (`update(y, p, t)`), per label otherwise;
      `drift` is True after the update that detected a change,
      `drift_events` counts them.

    Why per class and per day: labels arrive in bursts (a churn labels up to
    H positives of one customer at once, the daily expiry thousands of
    negatives), so a per-label error stream changes its mean with every
    burst and ADWIN fires on the arrival order, not on the model (over a
    hundred "drifts" in the simulated year). A class's daily mean error moves
    only when the model's fit, or the world, does.

    >>> q = Quality(window=100)
    >>> for i in range(200): q.update(i % 10 == 0, 0.9 if i % 10 == 0 else 0.05)
    >>> r = q.report(); r["labels"], r["roc_auc_rolling"], round(r["top_decile_lift"], 1)
    (200, 1.0, 10.0)
    """

    def __init__(self, window: int = 20000, bins: int = 10, lift_window: int = 20000,
                 n_thresholds: int = 50, adwin_delta: float = 0.002) -> None:
        self.window = window
        self.auc = metrics.ROCAUC(n_thresholds=n_thresholds)
        self.auc_rolling = metrics.RollingROCAUC(window_size=window)
        self.logloss = metrics.LogLoss()
        self.logloss_rolling = utils.Rolling(metrics.LogLoss, window_size=window)
        self.brier_sum = 0.0
        self.labels = 0
        self.positives = 0
        self.bins = [_Bin() for _ in range(bins)]
        self.recent: deque[tuple[float, bool]] = deque(maxlen=lift_window)
        self.adwin = {True: drift.ADWIN(delta=adwin_delta), False: drift.ADWIN(delta=adwin_delta)}
        self.drift = False
        self.drift_events = 0
        self._day: int | None = None
        self._day_err = {True: [0.0, 0], False: [0.0, 0]}  # class -> [sum of errors, count]

    def update(self, y: bool, p: float, t: float | None = None) -> None:
        """Add one label `y` for a snapshot scored `p`; `t` = when it was labelled."""
        y = bool(y)
        p = min(1.0, max(0.0, float(p)))
        self.labels += 1
        self.positives += y
        self.auc.update(y, _stretch(p))
        self.auc_rolling.update(y, p)
        proba = {True: p, False: 1.0 - p}
        self.logloss.update(y, proba)
        self.logloss_rolling.update(y, proba)
        self.brier_sum += (p - y) ** 2
        b = self.bins[min(len(self.bins) - 1, int(p * len(self.bins)))]
        b.n += 1
        b.sum_p += p
        b.pos += y
        self.recent.append((p, y))
        err = abs(y - p)
        if t is None:
            self._detect(y, err)
            return
        day = int(t // 86400)
        if self._day is None or day > self._day:
            # a new day: the previous one is complete. Labels from partitions
            # whose clocks trail join the current day instead of reopening theirs.
            if self._day is not None:
                self.flush()
            self._day = day
        acc = self._day_err[y]
        acc[0] += err
        acc[1] += 1

    def flush(self) -> None:
        """Feed the pending day's mean errors to the drift detectors (the day is over)."""
        self.drift = False
        for cls, acc in self._day_err.items():
            if acc[1]:
                self._detect(cls, acc[0] / acc[1], keep=True)
                acc[0], acc[1] = 0.0, 0

    def _detect(self, cls: bool, err: float, keep: bool = False) -> None:
        detector = self.adwin[cls]
        detector.update(err)
        hit = bool(detector.drift_detected)
        self.drift = (self.drift or hit) if keep else hit
        self.drift_events += hit

    @property
    def brier(self) -> float:
        return self.brier_sum / self.labels if self.labels else 0.0

    def top_decile_lift(self) -> float:
        """Churn rate of the top 10 % of recent scores / recent churn rate (0 if undefined)."""
        n = len(self.recent)
        pos = sum(y for _, y in self.recent)
        if n < 10 or pos == 0:
            return 0.0
        k = max(1, n // 10)
        top = sorted(self.recent, key=lambda py: -py[0])[:k]
        return (sum(y for _, y in top) / k) / (pos / n)

    def calibration(self) -> list[dict[str, float]]:
        k = len(self.bins)
        return [
            {
                "lo": i / k,
                "hi": (i + 1) / k,
                "count": b.n,
                "mean_predicted": b.sum_p / b.n if b.n else 0.0,
                "observed_rate": b.pos / b.n if b.n else 0.0,
            }
            for i, b in enumerate(self.bins)
        ]

    def report(self) -> dict[str, Any]:
        """All figures as a plain dict (for /metrics gauges and the bench)."""
        return {
            "labels": self.labels,
            "positives": self.positives,
            "roc_auc": float(self.auc.get()),
            "roc_auc_rolling": float(self.auc_rolling.get()),
            "log_loss": float(self.logloss.get()),
            "log_loss_rolling": float(self.logloss_rolling.get()),
            "brier": self.brier,
            "top_decile_lift": self.top_decile_lift(),
            "calibration": self.calibration(),
            "drift": self.drift,
            "drift_events": self.drift_events,
        }
