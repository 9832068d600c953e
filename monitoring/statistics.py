"""The statistics behind gates and rollback triggers (pure functions, standard library only).

Promotion gates (over the stage so far) are green only when the point estimate meets the
threshold *and* the evidence is sufficient:

- error rate: canary − production ≤ margin (0.1 pp) with the one-sided upper confidence bound of
  the difference (Agresti–Caffo adjusted Wald, confidence `1 − ALPHA`) also ≤ margin, and at
  least the sample size a non-inferiority test of that margin needs at `POWER`;
- latency p99 and quality: the ratio meets the limit, the sample is large enough (p99: at least
  `TAIL_EVENTS` requests expected beyond the 99th percentile; quality: the two-sample size for the
  tolerance at `POWER`), and the Mann-Whitney rank test on the histogram buckets does not show a
  material shift in the wrong direction (one-sided p < ALPHA *and* probability of superiority
  A ≥ `MATERIAL_A`, Vargha–Delaney's "medium" effect; Kayenta's judge uses the same rank test);
- safety: zero violations, and enough requests that the rule-of-three upper bound (3/n) is
  below 1 %; anomaly alerts: none fired on the canary at any time during the stage (an alert
  that fired and cleared between two looks counts).
The quality sample size uses the larger of the canary's and production's spread, never the
canary's alone (three scores in one bucket have no spread, and would need "1"), and is at least
`QUALITY_MIN_SCORED`. Until the evidence is there the gate is `insufficient`, with the sample
size it needs and the time to reach it at the current canary traffic, unless the evidence of harm
is already overwhelming: a point estimate past the limit with the canary worse than production
at the rollback's level (`ROLLBACK_ALPHA`, on at least `MIN_ROLLBACK_EVENTS` events) makes the
gate `red` at once, with that evidence.

THE ROLLBACK RULE (checked every cadence on the last 5-minute window). A canary's error rate
during its stages is judged by the anytime-valid sequential test of monitoring.sequential
instead (its false-rollback probability is bounded by construction); the fixed-level error rule
below (last window, last two windows pooled, stage so far) judges the post-promotion watch,
against the previous version's fixed baseline. A trigger fires when
1. magnitude: the point estimate is beyond the frozen rollback threshold (error > prod + 0.5 pp,
   p99 > prod × 1.5, quality < prod × 0.9), and
2. evidence: the canary is worse than production at all, at a level `ROLLBACK_ALPHA` (10⁻⁶)
   for each test. The tests are exact for rare events: errors and p99 tail exceedances
   (requests slower than production's p99 bucket) use the conditional binomial test of two
   Poisson rates; quality uses the rank test (or a z-test of means when only sums are pushed);
3. floor: at least `MIN_ROLLBACK_EVENTS` (5) canary events behind it (errors, or requests beyond
   production's p99, or scored requests), so a handful of requests never rolls back.
It does not wait for the breach itself to be significant (a test against 0.5 pp rather than 0):
a severe breach passes the evidence test within one window at any traffic that yields five
errors, and a marginal one once the window holds enough requests. A content-safety violation is
the one exception the pattern makes: any violation rolls back, without statistics.
Why two windows for errors: at small stages of a model with modest traffic (1 % of 1,000 req/s
is ~3,000 requests a window) one window cannot tell a +0.75 pp error rise from noise at a level
that keeps false rollbacks rare; ten minutes of it usually can, and ten minutes is still
within the two windows a breach must be caught in. The stage so far catches, later, a
sustained rise at traffic too low for even two windows to show it: such a canary would
otherwise sit at its stage with a red gate, serving the regression. Latency and quality keep
to one window: their tests reach the evidence within it at every stage the benchmark runs.
Why 10⁻⁶: the false-rollback budget is 1 % of identical canaries over a full standard schedule
(5 compared stages × 24 h × 60 ticks × 3 metrics, errors on three spans). Bonferroni over those
~36,000 tests (3 × 10⁻⁷ each) ignores that consecutive windows overlap and that beyond the
smallest stages the magnitude condition alone is far rarer than the evidence level; the level
in force is calibrated instead on simulated identical canaries, and keeps the measured
false-rollback rate well inside the budget (README, Evaluation engine).
SEGMENTS. The same rule judges each segment label the metrics carry (cohort, region, tier, a
declared subgroup) on its own: the canary's segment against production's same segment, so a
canary that improves the average while degrading one segment (Simpson's paradox: the canary's
mix of segments differs from production's, or one segment's loss is hidden by the others' gain)
is caught. With k segments each test runs at `segment_alpha(ROLLBACK_ALPHA, k)` (Bonferroni):
the chance that any segment's evidence reaches its level is at most that of one aggregate test,
whatever k. That bounds the evidence condition only: a segment's point estimate, on 1/k of the
traffic, passes the threshold more often than the aggregate's, so the segments' false rollbacks
are measured rather than bounded (bench/decision_quality.py: with 4 segments, 0.3-0.7 % of
identical canaries over a full schedule at 1,000 req/s, about four times the aggregate's own,
within the 1 % budget). A segment's promotion gates only veto: a
segment is red when it is worse than production beyond the promotion tolerance at the gate's
confidence shared the same way (`segment_alpha(ALPHA, k)`), or with overwhelming evidence; a
segment short of evidence does not hold the stage (the aggregate gates set the sample size).
bench/decision_quality.py measures the false-rollback and detection rates of this rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

ALPHA = 0.05  # one-sided, promotion evidence
POWER = 0.8
MATERIAL_A = 0.64  # Vargha–Delaney "medium" probability of superiority
TAIL_EVENTS = 10  # requests beyond the 99th percentile before a p99 means anything
ROLLBACK_ALPHA = 1e-6
MIN_ROLLBACK_EVENTS = 5
SAFETY_MIN_REQUESTS = 300  # rule of three: 0 violations in 300 → rate < 1 % at 95 %
QUALITY_MIN_SCORED = 100  # scored canary requests before a quality gate can be green

_N = NormalDist()


def z_quantile(p: float) -> float:
    return _N.inv_cdf(p)


def normal_sf(z: float) -> float:
    """P(Z > z), accurate in the far tail (erfc, not 1 − cdf)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# --- proportions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProportionComparison:
    canary_rate: float
    production_rate: float
    difference: float  # canary − production
    ci_low: float  # two-sided (1 − 2·alpha) interval = the two one-sided bounds
    ci_high: float
    z_pooled: float  # the classical pooled two-proportion z (chi-square with 1 df = z²)
    p_two_sided: float
    p_worse: float  # conditional binomial test: P(canary this bad or worse | rates equal)

    def to_dict(self) -> dict[str, Any]:
        # The fields in declaration order, as dataclasses.asdict gives them, written out: every
        # evaluation stores several of these, and asdict's recursive copy cost six times as much.
        return {
            "canary_rate": _round(self.canary_rate), "production_rate": _round(self.production_rate),
            "difference": _round(self.difference), "ci_low": _round(self.ci_low), "ci_high": _round(self.ci_high),
            "z_pooled": _round(self.z_pooled), "p_two_sided": _round(self.p_two_sided),
            "p_worse": _round(self.p_worse),
        }


def compare_proportions(
    x_c: int, n_c: int, x_p: int, n_p: int, *, alpha: float = ALPHA
) -> ProportionComparison:
    """Canary vs production error proportions. The interval is Agresti–Caffo's (add one success
    and one failure to each group), which keeps sane coverage at zero or few errors."""
    if n_c <= 0 or n_p <= 0:
        raise ValueError("both groups need requests")
    pc, pp = x_c / n_c, x_p / n_p
    ac, ap = (x_c + 1) / (n_c + 2), (x_p + 1) / (n_p + 2)
    se_adj = math.sqrt(ac * (1 - ac) / (n_c + 2) + ap * (1 - ap) / (n_p + 2))
    z = z_quantile(1 - alpha)
    diff_adj = ac - ap
    pooled = (x_c + x_p) / (n_c + n_p)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_p))
    z_pooled = (pc - pp) / se_pooled if se_pooled > 0 else 0.0
    return ProportionComparison(
        canary_rate=pc, production_rate=pp, difference=pc - pp,
        ci_low=diff_adj - z * se_adj, ci_high=diff_adj + z * se_adj,
        z_pooled=z_pooled, p_two_sided=2 * normal_sf(abs(z_pooled)),
        p_worse=poisson_rate_test(x_c, n_c, x_p, n_p),
    )


def binom_sf(x: int, m: int, p: float) -> float:
    """P(X ≥ x) for X ~ Binomial(m, p), summed outward from x until the terms vanish (they
    shrink geometrically away from the mode, so this takes O(√(m·p)) terms). Each term is the
    previous one times the ratio of neighbouring probabilities, relative to the first term, whose
    logarithm alone needs the log-gamma function: the sum neither underflows nor costs three
    log-gammas a term."""
    if x <= 0:
        return 1.0
    if x > m or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    odds = p / (1.0 - p)

    def log_pmf(k: int) -> float:
        return (math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1)
                + k * math.log(p) + (m - k) * math.log1p(-p))

    upper = x > (m + 1) * p  # the upper tail is the small side: sum it directly
    k = x if upper else x - 1  # otherwise 1 − P(X ≤ x − 1), the lower tail summed downward
    first, total, term = log_pmf(k), 0.0, 1.0
    while True:
        total += term
        if term < total * 1e-16:
            break
        if upper:
            if k >= m:
                break
            term *= (m - k) / (k + 1) * odds
            k += 1
        else:
            if k <= 0:
                break
            term *= k / (m - k + 1) / odds
            k -= 1
    tail = math.exp(first + math.log(total))
    return min(1.0, tail) if upper else max(0.0, 1.0 - tail)


def poisson_rate_test(x_c: int, n_c: int, x_p: int, n_p: int) -> float:
    """One-sided p-value that the canary's event rate exceeds production's: conditional on the
    total number of events, the canary's share is Binomial(total, n_c / (n_c + n_p)) when the
    rates are equal. Exact for rare events, whatever the group sizes."""
    total = x_c + x_p
    if total == 0 or n_c <= 0 or n_p <= 0:
        return 1.0
    return binom_sf(x_c, total, n_c / (n_c + n_p))


def rollback_evidence(p_worse: float | None, events: float, *, alpha: float = ROLLBACK_ALPHA) -> bool:
    """Conditions 2 and 3 of the rollback rule (the magnitude, condition 1, is the caller's): the
    canary is worse than production at `alpha` (`ROLLBACK_ALPHA`, or its share for one of several
    segments), on at least `MIN_ROLLBACK_EVENTS` events."""
    return p_worse is not None and p_worse < alpha and events >= MIN_ROLLBACK_EVENTS


def error_rollback(difference: float, p_worse: float, errors: float, margin: float, *,
                   alpha: float = ROLLBACK_ALPHA) -> bool:
    """The whole rule for error rates: the canary's rate less production's past `margin` (both
    fractions), `p_worse` their conditional test, on `errors` canary errors."""
    return difference > margin and rollback_evidence(p_worse, errors, alpha=alpha)


def segment_alpha(alpha: float, segments: int) -> float:
    """The per-test level for one of `segments` segments judged alongside each other: Bonferroni's
    share of the family's level, so that judging more segments does not mean more false alarms
    (the chance that any segment of an identical canary trips is at most `alpha`)."""
    return alpha / max(segments, 1)


def smallest_rollback_errors(n_c: int, x_p: int, n_p: int, margin: float) -> int | None:
    """The fewest canary errors in `n_c` requests that the error-rate rollback fires on, against
    production's `x_p` errors in `n_p`. None when not even every request failing would do. Each
    condition only gets easier as the errors grow (the conditional test's p-value falls with
    them), so a bisection finds it."""
    if n_c <= 0 or n_p <= 0:
        return None

    def fires(x: int) -> bool:
        return error_rollback(x / n_c - x_p / n_p, poisson_rate_test(x, n_c, x_p, n_p), x, margin)

    if not fires(n_c):
        return None
    lo, hi = max(MIN_ROLLBACK_EVENTS, int(n_c * (x_p / n_p + margin))), n_c
    while lo < hi:
        mid = (lo + hi) // 2
        if fires(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


# --- histograms -----------------------------------------------------------------------------------


Buckets = Sequence[tuple[float, float]]  # cumulative (upper bound `le`, count), ascending, last +Inf


def bucket_counts(buckets: Buckets) -> list[float]:
    """Per-bucket (non-cumulative) counts from Prometheus-style cumulative buckets."""
    out, previous = [], 0.0
    for _, cumulative in buckets:
        out.append(max(0.0, cumulative - previous))
        previous = max(previous, cumulative)
    return out


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q·n.
    None without observations; the highest finite bound when the rank falls in the +Inf bucket."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def histogram_mean_var(buckets: Buckets) -> tuple[float, float] | None:
    """Mean and variance from bucket midpoints (the +Inf bucket counted at the last finite bound)."""
    counts = bucket_counts(buckets)
    n = sum(counts)
    if n <= 0:
        return None
    mids, low = [], 0.0
    for le, _ in buckets:
        mids.append(low if math.isinf(le) else (low + le) / 2)
        if not math.isinf(le):
            low = le
    mean = sum(c * m for c, m in zip(counts, mids, strict=True)) / n
    var = sum(c * (m - mean) ** 2 for c, m in zip(counts, mids, strict=True)) / max(n - 1, 1)
    return mean, var


def count_above(buckets: Buckets, bound: float) -> float:
    """Observations above the smallest bucket bound ≥ `bound` (what a histogram can tell)."""
    total = buckets[-1][1] if buckets else 0.0
    for le, count in buckets:
        if le >= bound:
            return max(0.0, total - count)
    return 0.0


@dataclass(frozen=True)
class RankTest:
    u: float  # Mann-Whitney U of the canary
    z: float
    p_greater: float  # one-sided: canary stochastically greater
    p_less: float  # one-sided: canary stochastically smaller
    a: float  # probability of superiority P(canary > prod) + ½ P(tie) = U / (n_c n_p)
    rank_biserial: float  # 2A − 1, the effect size
    n_c: int
    n_p: int

    def to_dict(self) -> dict[str, Any]:
        # The fields in declaration order, as dataclasses.asdict gives them (see ProportionComparison).
        return {
            "u": _round(self.u), "z": _round(self.z), "p_greater": _round(self.p_greater),
            "p_less": _round(self.p_less), "a": _round(self.a), "rank_biserial": _round(self.rank_biserial),
            "n_c": _round(self.n_c), "n_p": _round(self.n_p),
        }


def mann_whitney_buckets(canary: Sequence[float], production: Sequence[float]) -> RankTest | None:
    """Mann-Whitney U on two histograms with the same buckets (per-bucket counts). Every bucket is
    one tie group; normal approximation with tie and continuity correction (as scipy's
    `mannwhitneyu(method="asymptotic")`)."""
    if len(canary) != len(production):
        raise ValueError("histograms need the same buckets")
    n1, n2 = sum(canary), sum(production)
    if n1 <= 0 or n2 <= 0:
        return None
    u, below, tie_term = 0.0, 0.0, 0.0
    for c, p in zip(canary, production, strict=True):
        u += c * (below + p / 2.0)
        below += p
        t = c + p
        tie_term += t**3 - t
    n = n1 + n2
    mu = n1 * n2 / 2.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        z_g = z_l = 0.0
        p_g = p_l = 1.0
    else:
        sd = math.sqrt(var)
        z_g = (u - mu - 0.5) / sd
        z_l = (u - mu + 0.5) / sd
        p_g, p_l = normal_sf(z_g), normal_sf(-z_l)
    a = u / (n1 * n2)
    return RankTest(u=u, z=(u - mu) / math.sqrt(var) if var > 0 else 0.0, p_greater=p_g, p_less=p_l, a=a,
                    rank_biserial=2 * a - 1, n_c=int(n1), n_p=int(n2))


# --- sample size and time -------------------------------------------------------------------------


def proportion_sample_size(
    p_base: float, margin: float, *, ratio: float, alpha: float = ALPHA, power: float = POWER
) -> int:
    """Canary requests a one-sided non-inferiority test of `margin` needs (true difference 0),
    with `ratio` production requests per canary request. The base rate is floored at 0.1 %:
    with no errors observed yet, the variance is not zero, it is unknown."""
    if margin <= 0:
        raise ValueError("margin must be positive")
    p = min(max(p_base, 0.001), 0.999)
    k = max(ratio, 1e-9)
    zsum = z_quantile(1 - alpha) + z_quantile(power)
    return math.ceil(zsum**2 * p * (1 - p) * (1 + 1 / k) / margin**2)


def mean_sample_size(
    var_c: float, var_p: float, delta: float, *, ratio: float, alpha: float = ALPHA, power: float = POWER
) -> int:
    """Canary observations a one-sided test of a mean shift `delta` needs (two-sample, known
    variances, `ratio` production observations per canary observation)."""
    if delta <= 0:
        raise ValueError("delta must be positive")
    k = max(ratio, 1e-9)
    zsum = z_quantile(1 - alpha) + z_quantile(power)
    return math.ceil(zsum**2 * (var_c + var_p / k) / delta**2)


def p99_sample_size(q: float = 0.99, tail_events: int = TAIL_EVENTS) -> int:
    return math.ceil(tail_events / (1 - q))


def time_to_sufficiency(have: float, need: float, rate_per_s: float | None) -> float | None:
    """Seconds until `need` observations at the current rate; 0 when there; None when the
    canary gets no traffic (it never will at this rate)."""
    if have >= need:
        return 0.0
    if not rate_per_s or rate_per_s <= 0:
        return None
    return (need - have) / rate_per_s


def _round(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.6g}")
    return value
