"""monitoring.sequential: each piece against a brute-force computation, and the guarantee (Ville's
inequality through restarts, alternatives and production's confidence sequence) by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring import sequential as sq


def _mixture_brute(x: int, n: int, grid: np.ndarray) -> np.ndarray:
    """log of ∫ θ^x (1−θ)^(n−x) dθ / (p^x (1−p)^(n−x)) at each p of `grid`, integrated numerically."""
    theta = np.linspace(1e-9, 1 - 1e-9, 200_001)
    log_f = x * np.log(theta) + (n - x) * np.log1p(-theta)
    top = log_f.max()
    log_integral = top + np.log(np.trapezoid(np.exp(log_f - top), theta))
    return log_integral - x * np.log(grid) - (n - x) * np.log1p(-grid)


@pytest.mark.parametrize("x,n,alpha", [(0, 50, 0.05), (10, 1000, 0.01), (300, 30000, 0.001), (5, 6, 0.1)])
def test_upper_bound_is_the_largest_rate_the_mixture_does_not_reject(x, n, alpha):
    bound = sq.rate_upper_bound(x, n, alpha)
    grid = np.linspace(max(x / n, 1e-9), 1 - 1e-9, 20001)
    inside = grid[_mixture_brute(x, n, grid) < math.log(1 / alpha)]
    assert bound == pytest.approx(inside.max(), abs=(grid[1] - grid[0]) * 1.5)
    assert x / n <= bound <= 1


def test_upper_bound_with_no_requests_is_one():
    assert sq.rate_upper_bound(0, 0, 0.01) == 1.0


def test_batch_likelihood_ratio_is_the_product_of_per_request_factors():
    rng = np.random.default_rng(3)
    outcomes = rng.random(5000) < 0.03
    m, p1 = 0.02, 0.035
    brute = sum(math.log(p1 / m) if o else math.log((1 - p1) / (1 - m)) for o in outcomes)
    assert sq.batch_log_lr(int(outcomes.sum()), len(outcomes), m, p1) == pytest.approx(brute, rel=1e-9)
    assert sq.batch_log_lr(3, 100, 1.0, 1.0) == 0.0  # a null of 1 admits everything


def test_restarts_are_the_weighted_minimum_over_every_start():
    """`step` keeps two numbers per alternative; the rule is the maximum over every restart j of
    the evidence since j less j's cost, computed here from the whole history."""
    rng = np.random.default_rng(11)
    state, history = None, []
    n_c = x_c = n_p = x_p = 0
    for look in range(60):
        rate = 0.01 if look < 30 else 0.03  # an onset in the middle
        batch = int(rng.poisson(400))
        n_c, x_c = n_c + batch, x_c + int(rng.binomial(batch, rate))
        big = int(rng.poisson(40000))
        n_p, x_p = n_p + big, x_p + int(rng.binomial(big, 0.01))
        state, result = sq.step(state, canary=(n_c, x_c), production=(n_p, x_p), margin=0.005, alpha_stage=0.01)
        history.append(state.s)
        starts = [(0.0,) * len(sq.EXCESS)] + history[:-1]  # S at each restart, the stage's start first
        best = max(history[-1][i] - (starts[j][i] + sq.start_cost(j + 1))
                   for i in range(len(sq.EXCESS)) for j in range(len(starts)))
        assert result.log_evidence == pytest.approx(best, abs=1e-9)
    assert result.reject  # +2 pp for 30 looks of 400 requests is 4 × the 0.5 pp threshold's distance


def test_a_look_between_restarts_checks_without_restarting():
    state, _ = sq.step(None, canary=(1000, 10), production=(100000, 1000), margin=0.005, alpha_stage=0.01)
    later, _ = sq.step(state, canary=(1500, 40), production=(150000, 1500), margin=0.005, alpha_stage=0.01,
                       restart=False)
    assert later.starts == state.starts and later.b == state.b


def test_state_round_trips_and_rejects_garbage():
    state, _ = sq.step(None, canary=(1000, 10), production=(100000, 1000), margin=0.005, alpha_stage=0.01)
    assert sq.SequentialState.from_dict(state.to_dict()) == state
    assert sq.SequentialState.from_dict({"s": [1]}) is None
    assert sq.SequentialState.from_dict(None) is None


def test_stage_levels_spend_at_most_the_share():
    assert sum(sq.stage_alpha(sq.ERROR_ALPHA, i) for i in range(60)) <= sq.ERROR_ALPHA
    assert sum(math.exp(-sq.start_cost(j)) for j in range(1, 200_000)) < 1
    assert sq.ERROR_ALPHA + sq.SEGMENTS_ALPHA < sq.CANARY_ALPHA


def _false_alarms(runs: int, looks: int, alpha: float, rise: float, rng: np.random.Generator) -> tuple[int, int]:
    """Runs of a canary at production's rate + `rise`, looked at `looks` times: how many the
    sequential test rejects at some look, and how many a fixed-level test at each look would."""
    margin, p_p = 0.005, 0.01
    seq = naive = 0
    z = 1.2815515655446004  # one-sided 10 %: a fixed test's level at each look
    for _ in range(runs):
        n_c = np.cumsum(rng.poisson(300, looks))
        x_c = np.cumsum(rng.binomial(np.diff(np.concatenate([[0], n_c])), p_p + rise))
        n_p = np.cumsum(rng.poisson(3000, looks))
        x_p = np.cumsum(rng.binomial(np.diff(np.concatenate([[0], n_p])), p_p))
        state, hit, peek = None, False, False
        for t in range(looks):
            state, result = sq.step(state, canary=(n_c[t], x_c[t]), production=(n_p[t], x_p[t]), margin=margin,
                                    alpha_stage=alpha)
            hit = hit or result.reject
            pc, pp = x_c[t] / n_c[t], x_p[t] / n_p[t]
            se = math.sqrt(pc * (1 - pc) / n_c[t] + pp * (1 - pp) / n_p[t]) or 1.0
            peek = peek or (pc - pp - margin) / se > z
        seq += hit
        naive += peek
    return seq, naive


def test_ville_bound_holds_at_the_null_however_often_it_is_looked_at():
    """At the edge of the null (the canary exactly the threshold worse), over 60 looks: the
    sequential test rejects at most α of the runs; a test at a fixed 10 % level looked at every
    time rejects far more than its 10 %."""
    rng = np.random.default_rng(2026)
    alpha, runs = 0.2, 200
    seq, naive = _false_alarms(runs, 60, alpha, 0.005, rng)
    assert seq / runs <= alpha
    assert naive / runs > 0.3


def test_it_rejects_a_rise_well_beyond_the_threshold():
    rng = np.random.default_rng(5)
    seq, _ = _false_alarms(20, 60, 0.01, 0.02, rng)  # 4 × the threshold's distance
    assert seq == 20
