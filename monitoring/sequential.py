"""The error-rate rollback trigger as an anytime-valid sequential test (pure functions, standard
library only).

WHAT IS TESTED. For one canary (or one segment of it) during one stage, the null hypothesis is
"the canary's error rate is at most production's plus the rollback threshold":
H0: p_c ≤ p_p + δ (δ = the frozen rollback threshold, 0.5 pp by default). A rollback is a rejection
of H0: the canary is shown to be worse than production *by more than the threshold*, not merely
worse. An identical canary (an A/A test) lies deep inside H0, and so does every canary whose rise
stays within the threshold.

THE STATISTIC. Production's rate is unknown; it is bounded above, at every moment of the stage at
once, by a time-uniform confidence sequence (`rate_upper_bound`: Robbins' Beta(1, 1) mixture for
a Bernoulli rate), so that with probability ≥ 1 − α_p, p_p + δ ≤ m_t := U_t + δ for every t. The
canary's requests are then tested one by one against the rate m (fixed for a batch by the
previous look: predictable) with the likelihood ratio of an alternative p₁ = m + e against m. For
one request with outcome X ∈ {0, 1} that factor is p₁/m or (1 − p₁)/(1 − m); under H0 (p_c ≤ m)
its expectation is ≤ 1, so the product over the canary's requests is a non-negative
supermartingale (a test martingale, as the mixture SPRT of Lindon, Sanden and Shirikian, KDD 2022,
and Johari et al.'s always-valid p-values), and only the counts matter: a batch of n requests
with x errors multiplies it by (p₁/m)^x ((1 − p₁)/(1 − m))^(n − x) (`batch_log_lr`). Ville's
inequality: the probability that a test martingale EVER reaches 1/α is at most α, however often
it is looked at and for however long. Looking every 10 seconds costs nothing in validity.

ONSETS IN THE MIDDLE OF A STAGE. A product started when the stage began has drifted far below 1
after hours of a healthy canary, and would climb back slowly. The test therefore restarts: every
look j of the stage starts a new product (the log-likelihood ratio since j, S_t − S_j), and the
j-th start is given the share w_j = j^(−1.1) / ζ(1.1) of the level (Σ w_j = 1, for a stage of any
length). Rejecting when S_t − S_j ≥ log(1/(α w_j)) for some j is a union of Ville bounds, so
P(false rollback) ≤ Σ α w_j = α; and it needs only two numbers per alternative, S_t and
B_t = min_j (S_j + log 1/w_j) (a weighted CUSUM). Several alternatives (e = ½, 1, 2, 4 × δ, so
that rises from ×1.5 to ×5 the threshold distance each meet one close to them) are run side by
side at α/K each.

SPENDING THE BUDGET (α-spending, one canary, the whole schedule). The false-rollback budget is
1 % of canaries over a full schedule, whatever its length:
- error rate of the canary as a whole: 0.4 %; of its segments together: 0.4 % (each of k
  segments 0.4 %/k). The remaining 0.2 % is the share of the latency and quality triggers, which
  keep their fixed-level rule (monitoring.statistics), calibrated and measured by
  bench/decision_quality.py rather than bounded by construction;
- over stages: stage i (0, 1, 2, ...) gets 2^−(i+1) of a share, so any number of stages fits;
- within a stage: ¼ to production's confidence sequence, ¾ to the canary's test, split over the
  K alternatives and over the restarts as above.
With at most one rollback per canary, the union of these events bounds the probability that an
identical canary — or any canary within the threshold — is ever rolled back by the error-rate
triggers at 0.8 %, by construction and not by simulation.

WHAT IT COSTS. The null is the threshold, not zero: a rise of ×1.5 the threshold distance is only
0.5 δ beyond the null, and no test can separate it from the null on a few thousand requests. At
the small stages of a model with modest traffic, a marginal breach takes longer than ten minutes
to prove; severe ones are proved in seconds. bench/decision_quality.py measures both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

CANARY_ALPHA = 0.01  # the whole budget: false rollbacks of an identical canary over a full schedule
ERROR_ALPHA = 0.004  # the canary as a whole, error rate, all stages
SEGMENTS_ALPHA = 0.004  # all its segments together, error rate, all stages
PRODUCTION_SHARE = 0.25  # of a stage's level, to production's confidence sequence
NULL_FRACTION = 1.0  # the null: the canary at most production + this × the threshold
EXCESS = (0.5, 1.0, 2.0, 4.0)  # alternatives: the canary beyond the null by these × the threshold
START_EXPONENT = 1.1
_ZETA = sum(k ** -START_EXPONENT for k in range(1, 200_000)) + 200_000 ** (1 - START_EXPONENT) / (
    START_EXPONENT - 1)  # ζ(1.1) ≈ 10.5844 (the tail of the sum by its integral)
MIN_EVENTS = 5  # canary errors in the stage before anything rolls back


def stage_alpha(alpha: float, stage_index: int) -> float:
    """A share's level at stage `stage_index` (0-based): 2^−(i+1) of it, so every stage of a
    schedule of any length has a level and together they spend at most `alpha`."""
    return alpha * 2.0 ** -(max(stage_index, 0) + 1)


def start_cost(j: int) -> float:
    """log(1/w_j): what the j-th restart of a stage (1, 2, ...) adds to the threshold."""
    return math.log(_ZETA) + START_EXPONENT * math.log(max(j, 1))


def rate_upper_bound(x: float, n: float, alpha: float) -> float:
    """A time-uniform upper confidence bound for a Bernoulli rate after `x` events in `n` trials:
    the largest p whose Beta(1, 1)-mixture martingale (Robbins), ∫ θ^x (1 − θ)^(n − x) dθ divided
    by p^x (1 − p)^(n − x), is still below 1/alpha. The confidence sequence {p : M_n(p) < 1/alpha}
    holds at every n at once with probability ≥ 1 − alpha. 1 with no trials."""
    if n <= 0:
        return 1.0
    x = min(max(x, 0.0), n)
    level = math.log(1 / alpha) - (math.lgamma(x + 1) + math.lgamma(n - x + 1) - math.lgamma(n + 2))

    def below(p: float) -> bool:  # log M_n(p) < log(1/alpha)
        return -(x * math.log(p) + (n - x) * math.log1p(-p)) < level

    lo, hi = max(x / n, 1e-300), 1.0
    for _ in range(48):  # M_n(p) grows with p beyond x/n: bisect
        mid = (lo + hi) / 2
        if below(mid):
            lo = mid
        else:
            hi = mid
    return hi


def null_rate(x_p: float, n_p: float, margin: float, alpha_p: float) -> float:
    """The rate the canary is tested against: production's upper confidence bound plus the
    threshold (a fraction; `NULL_FRACTION` of it), at most 1."""
    return min(1.0, rate_upper_bound(x_p, n_p, alpha_p) + NULL_FRACTION * margin)


def alternatives(m: float, margin: float) -> list[float]:
    """The alternatives p₁ = m + e·margin, kept below 1."""
    return [min(m + e * margin, (1 + m) / 2) for e in EXCESS]


def batch_log_lr(x: float, n: float, m: float, p1: float) -> float:
    """log of the likelihood ratio of p₁ against m for a batch of `n` requests with `x` errors:
    the product of the per-request factors (p₁/m)^X ((1 − p₁)/(1 − m))^(1 − X)."""
    if n <= 0:
        return 0.0
    if m >= 1.0 or p1 <= m:
        return 0.0
    x = min(max(x, 0.0), n)
    return x * math.log(p1 / m) + (n - x) * (math.log1p(-p1) - math.log1p(-m))


@dataclass(frozen=True)
class SequentialState:
    """The test's memory over a stage, as of the last look that updated it: the canary's counts
    so far (`requests`, `errors`), the rate the next batch is tested against (`m`), and per
    alternative the log-likelihood ratio since the stage began (`s`) and the weighted minimum
    over the restarts (`b`); `starts` restarts so far."""

    requests: float
    errors: float
    m: float
    s: tuple[float, ...]
    b: tuple[float, ...]
    starts: int

    def to_dict(self) -> dict[str, Any]:
        # The fields in declaration order, as dataclasses.asdict gives them, the tuples as lists,
        # written out: asdict's recursive copy cost several times as much at every evaluation.
        return {"requests": self.requests, "errors": self.errors, "m": self.m, "s": list(self.s),
                "b": list(self.b), "starts": self.starts}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SequentialState | None:
        if not data:
            return None
        try:
            s, b = tuple(float(v) for v in data["s"]), tuple(float(v) for v in data["b"])
            if len(s) != len(EXCESS) or len(b) != len(EXCESS):
                return None
            return cls(float(data["requests"]), float(data["errors"]), float(data["m"]), s, b, int(data["starts"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class SequentialResult:
    reject: bool
    log_evidence: float  # the largest S_t − B_t over the alternatives
    log_threshold: float  # log(K / α_canary)
    alternative: float  # the excess (× the threshold) whose test is strongest
    m: float  # the rate the last batch was tested against
    production_upper: float  # production's upper confidence bound now
    alpha: float  # the stage's level for this test (canary and production together)

    def to_dict(self) -> dict[str, Any]:
        # The fields in declaration order, as dataclasses.asdict gives them (see SequentialState).
        return {
            "reject": _round(self.reject), "log_evidence": _round(self.log_evidence),
            "log_threshold": _round(self.log_threshold), "alternative": _round(self.alternative),
            "m": _round(self.m), "production_upper": _round(self.production_upper), "alpha": _round(self.alpha),
        }


def levels(alpha_stage: float) -> tuple[float, float]:
    """(production's confidence level, the canary's test level) of a stage's α."""
    return alpha_stage * PRODUCTION_SHARE, alpha_stage * (1 - PRODUCTION_SHARE)


def step(state: SequentialState | None, *, canary: tuple[float, float], production: tuple[float, float],
         margin: float, alpha_stage: float, restart: bool = True) -> tuple[SequentialState, SequentialResult]:
    """One look: the canary's stage counts (`canary` = (requests, errors)) and production's,
    against the state of the previous look (None: the stage's first). The new batch is tested
    against the previous look's rate m (on the first look, production's bound now: production's
    requests are independent of the canary's, so the factor still has expectation ≤ 1 under H0).
    `restart`: this look starts a new product (the evaluator's looks do; a look between them that
    only checks, the rollback watch's, does not, and its state is not kept)."""
    alpha_p, alpha_c = levels(alpha_stage)
    n_c, x_c = canary
    n_p, x_p = production
    m_now = null_rate(x_p, n_p, margin, alpha_p)
    k = len(EXCESS)
    if state is None or n_c < state.requests or x_c < state.errors:  # new stage, or counters reset
        state = SequentialState(0.0, 0.0, m_now, (0.0,) * k, (start_cost(1),) * k, 1)
    dn, dx = n_c - state.requests, x_c - state.errors
    s = tuple(si + batch_log_lr(dx, dn, state.m, p1) for si, p1 in zip(state.s, alternatives(state.m, margin),
                                                                          strict=True))
    gaps = [si - bi for si, bi in zip(s, state.b, strict=True)]
    best = max(range(k), key=lambda i: gaps[i])
    threshold = math.log(k / alpha_c)
    result = SequentialResult(reject=gaps[best] >= threshold and x_c >= MIN_EVENTS, log_evidence=gaps[best],
                              log_threshold=threshold, alternative=EXCESS[best], m=state.m,
                              production_upper=m_now - NULL_FRACTION * margin, alpha=alpha_stage)
    starts = state.starts + 1 if restart else state.starts
    b = tuple(min(bi, si + start_cost(starts)) for si, bi in zip(s, state.b, strict=True)) if restart else state.b
    return SequentialState(n_c, x_c, m_now, s, b, starts), result


def _round(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.6g}")
    return value
