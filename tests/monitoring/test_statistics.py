"""monitoring.statistics against scipy on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from monitoring import statistics as st


@pytest.mark.parametrize("x,m,p", [(5, 100, 0.01), (0, 10, 0.3), (12, 40, 0.1), (300, 20000, 0.01), (1, 1, 0.5),
                                   (50, 60, 0.9), (3, 5000, 0.0004),
                                   # Many events (a custom rate's tool calls), at, past and far past the mode.
                                   (6000, 66_000, 1 / 11), (6400, 66_000, 1 / 11), (7000, 66_000, 1 / 11),
                                   (20_000, 66_000, 1 / 11), (5000, 66_000, 1 / 11), (60_000, 66_000, 0.9),
                                   (100_000, 100_000, 0.999), (2, 3, 0.99)])
def test_binomial_tail_matches_scipy(x, m, p):
    assert st.binom_sf(x, m, p) == pytest.approx(sp.binom.sf(x - 1, m, p), rel=1e-9, abs=1e-300)


def test_poisson_rate_test_is_the_conditional_binomial_test():
    expected = sp.binomtest(9, 9 + 40, 1000 / (1000 + 99000), alternative="greater").pvalue
    assert st.poisson_rate_test(9, 1000, 40, 99000) == pytest.approx(expected, rel=1e-9)


def test_pooled_z_squared_is_scipys_chi_square_without_correction():
    cmp = st.compare_proportions(30, 1000, 200, 10000)
    chi2, p, _, _ = sp.chi2_contingency([[30, 970], [200, 9800]], correction=False)
    assert cmp.z_pooled**2 == pytest.approx(chi2, rel=1e-9)
    assert cmp.p_two_sided == pytest.approx(p, rel=1e-9)
    assert cmp.ci_low < cmp.difference < cmp.ci_high


@pytest.mark.parametrize("q", [0.5, 0.95, 0.999999])
def test_normal_quantiles_match_scipy(q):
    assert st.z_quantile(q) == pytest.approx(sp.norm.ppf(q), rel=1e-9)
    assert st.normal_sf(st.z_quantile(q)) == pytest.approx(1 - q, rel=1e-6)


@pytest.mark.parametrize("canary,production", [
    ([5, 10, 30, 20, 2], [8, 15, 25, 10, 1]),
    ([0, 3, 40, 50, 7], [10, 30, 40, 15, 5]),
    ([1, 0, 0, 0, 0], [0, 0, 2, 0, 3]),
])
def test_mann_whitney_on_buckets_matches_scipy(canary, production):
    x = np.repeat(np.arange(len(canary)), canary)
    y = np.repeat(np.arange(len(production)), production)
    ours = st.mann_whitney_buckets(canary, production)
    greater = sp.mannwhitneyu(x, y, alternative="greater", method="asymptotic", use_continuity=True)
    less = sp.mannwhitneyu(x, y, alternative="less", method="asymptotic", use_continuity=True)
    assert ours.u == pytest.approx(greater.statistic)
    assert ours.p_greater == pytest.approx(greater.pvalue, rel=1e-9)
    assert ours.p_less == pytest.approx(less.pvalue, rel=1e-9)
    assert ours.a == pytest.approx(greater.statistic / (len(x) * len(y)))


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.1, 10.0), (0.2, 60.0), (0.5, 99.0), (1.0, 100.0), (math.inf, 100.0)]
    assert st.histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.1 * 40 / 50)
    assert st.histogram_quantile(0.99, buckets) == pytest.approx(0.5)
    assert st.histogram_quantile(0.99, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert st.count_above(buckets, 0.45) == 1.0


def test_sample_size_gives_the_stated_power():
    # Simulate the non-inferiority test at the computed n: it should pass about POWER of the time.
    p, margin = 0.01, 0.005
    n = st.proportion_sample_size(p, margin, ratio=1.0)
    rng = np.random.default_rng(3)
    passes = 0
    for _ in range(400):
        xc, xp = rng.binomial(n, p), rng.binomial(n, p)
        passes += st.compare_proportions(int(xc), n, int(xp), n).ci_high <= margin
    assert 0.7 <= passes / 400 <= 0.92
    assert st.time_to_sufficiency(100, 1100, 10.0) == 100.0
    assert st.time_to_sufficiency(2000, 1100, 10.0) == 0.0
    assert st.time_to_sufficiency(0, 1100, 0.0) is None


@pytest.mark.parametrize("n_c,x_p,n_p", [(3000, 2970, 297_000), (6000, 5940, 594_000), (900, 891, 89_100),
                                         (40, 5, 5000), (150_000, 150, 150_000)])
def test_smallest_rollback_errors_is_the_first_count_the_trigger_fires_on(n_c, x_p, n_p):
    from monitoring.statistics import MIN_ROLLBACK_EVENTS, ROLLBACK_ALPHA, poisson_rate_test, smallest_rollback_errors

    def fires(x):
        return x >= MIN_ROLLBACK_EVENTS and x / n_c - x_p / n_p > 0.005 and poisson_rate_test(x, n_c, x_p, n_p) < ROLLBACK_ALPHA

    first = next((x for x in range(n_c + 1) if fires(x)), None)
    assert smallest_rollback_errors(n_c, x_p, n_p, 0.005) == first
    assert smallest_rollback_errors(3, 10, 1000, 0.005) is None  # five errors are the floor: three requests never do


def test_rollback_sensitivity_reads_an_evaluations_window_numbers():
    from monitoring.evaluator import rollback_sensitivity

    rows = rollback_sensitivity({
        "window": {"canary": {"requests": 3000, "errors": 45}, "production": {"requests": 297_000, "errors": 2970}},
        "rollback_window": {"error_rate_two_windows": {"canary": [88, 6000], "production": [5940, 594_000]}},
    }, {"error_rate_pp": 0.5})
    assert [(r["span"], r["requests"], r["rise_pp"], r["production_pct"]) for r in rows] == [
        ("one window", 3000, 1.03333, 1.0), ("two windows", 6000, 0.7, 1.0)]
    assert rollback_sensitivity({"source": "test"}, {"error_rate_pp": 0.5}) == []
