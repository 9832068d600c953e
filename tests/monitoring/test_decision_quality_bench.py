"""bench/decision_quality.py simulates the error-rate rollback rule with numpy copies of the
product's functions. These tests hold the copies to the product (a copy that drifts from
monitoring.sequential or monitoring.evaluator.rollback_triggers fails here) and run the bench's
paths on tiny sizes."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from monitoring import sequential as sq
from monitoring import statistics as st
from monitoring.evaluator import rollback_triggers
from monitoring.samples import Sample
from monitoring.thresholds import DEFAULT_THRESHOLDS


@pytest.fixture(scope="module")
def dq():
    path = Path(__file__).resolve().parents[2] / "bench" / "decision_quality.py"
    spec = importlib.util.spec_from_file_location("bench_decision_quality", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sequential_copy_and_the_fixed_level_copy_agree_with_the_product(dq):
    rng = np.random.default_rng(11)
    dq.check_vectorised(rng)  # raises on any disagreement
    cases, fired = dq.check_fixed(rng, 300)
    # The random cases exercise both verdicts, so agreement means something.
    assert cases == 300 and 20 < fired < 280


def test_the_fixed_level_copy_fires_exactly_where_rollback_triggers_does(dq):
    rollback = DEFAULT_THRESHOLDS["rollback"]
    rng = np.random.default_rng(5)
    for _ in range(200):
        n_c, n_p = int(rng.integers(500, 10_000)), int(rng.integers(50_000, 500_000))
        x_c, x_p = int(rng.binomial(n_c, rng.uniform(0.01, 0.03))), int(rng.binomial(n_p, 0.01))
        fired, _, _ = rollback_triggers({"canary": Sample(requests=n_c, errors=x_c),
                                         "production": Sample(requests=n_p, errors=x_p)}, rollback, safety=False)
        want = any(t.metric == "error_rate" for t in fired)
        got = dq.fixed_fires(np.array([float(x_c)]), np.array([float(n_c)]), np.array([float(x_p)]),
                             np.array([float(n_p)]), st.ROLLBACK_ALPHA)[0]
        assert bool(got) == want, (x_c, n_c, x_p, n_p)


def test_the_watch_look_waits_for_the_stage_s_first_evaluation(dq):
    sim = dq.SeqSim(2, sq.stage_alpha(sq.ERROR_ALPHA, 0))
    n, x = np.array([5000.0, 5000.0]), np.array([500.0, 500.0])  # 10 % errors: overwhelming
    assert not sim.check(n, x).any()  # the product's watch has no memory of this stage yet
    sim.evaluate(n / 2, x / 2, np.array([1e6, 1e6]), np.array([1e4, 1e4]))
    assert sim.check(n, x).all()


def test_the_bench_paths_on_tiny_sizes(dq):
    rng = np.random.default_rng(3)
    dq.LOOK_S = 10
    aa = dq.run_error_aa(4, 1000.0, 0.05, 4, rng)
    assert aa["runs"] == 4 and aa["false"] == sum(aa["by_stage"].values())
    reg = dq.run_error_regressions(4, 1000.0, 0.05, 4, rng, horizon_s=180.0)
    # Four times the threshold at the 50 % stage of a 1,000 req/s model is decided within 3 minutes.
    assert np.isfinite(reg[(4.0, 50)]).all() and (reg[(4.0, 50)] <= 180 + dq.CADENCE_S).all()
    assert ("segment", 50) in reg and set(reg[("rules", 4.0, 50)]) <= {
        "sequential", "sequential (watch)", "fixed-level", "segment (sequential)", "segment (fixed-level)"}
    fair = dq.run_fairness(2, 1000.0, rng, horizon_min=10)
    assert set(fair) == set(dq.STAGES) and np.isfinite(fair[50]).all()  # +2 pp against a 1 pp tolerance: held
