"""Pure gate and rollback decisions (monitoring.evaluator), table-tested."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from monitoring.evaluator import decide
from monitoring.thresholds import DEFAULT_THRESHOLDS

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def lat(median_bucket: int, n: float) -> list[tuple[float, float]]:
    """n requests, ~all at or below bucket `median_bucket` of a fixed ladder."""
    bounds = [0.1, 0.2, 0.3, 0.4, 0.6, 1.0, math.inf]
    out, cum = [], 0.0
    for i, b in enumerate(bounds):
        if i == median_bucket:
            cum += n * 0.985
        elif i == median_bucket + 1:
            cum += n * 0.015
        out.append((b, cum))
    return out


def qual(mean_bucket: int, n: float) -> list[tuple[float, float]]:
    bounds = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, math.inf]
    return [(b, n if i >= mean_bucket else 0.0) for i, b in enumerate(bounds)]


def sample(requests=100_000, errors=100, lat_bucket=1, q_bucket=4, q_mean=0.85, safety=0, alerts=0, age_s=10):
    from monitoring.samples import Sample

    return Sample(requests=requests, errors=errors, latency_buckets=lat(lat_bucket, requests),
                  quality_sum=q_mean * requests, quality_count=requests, quality_buckets=qual(q_bucket, requests),
                  safety_violations=safety, anomaly_alerts=alerts, last_seen=NOW - timedelta(seconds=age_s),
                  present=True)


def run(canary, production, *, percent=10, error=None, errors_in_row=0, window=None):
    window = window or {"canary": canary, "production": production}
    return decide(thresholds=DEFAULT_THRESHOLDS, window=window, stage={"canary": canary, "production": production},
                  now=NOW, staleness_limit_s=300, traffic_percent=percent, random_split=True, stage_elapsed_s=3600,
                  source_error=error, consecutive_errors=errors_in_row)


def gates(decision):
    return {g.name: g.status.value for g in decision.gates}


PROD = dict(requests=900_000, errors=900)
CASES = [
    # (name, canary kwargs, expected gate statuses (subset), rollback metrics)
    ("healthy", dict(errors=100), {"error_rate": "green", "latency_p99": "green", "quality": "green",
                                   "safety_violations": "green", "anomaly_alerts": "green", "router_share": "green"}, []),
    ("tiny sample", dict(requests=50, errors=0), {"error_rate": "insufficient", "latency_p99": "insufficient",
                                                   "safety_violations": "insufficient"}, []),
    ("error breach", dict(errors=2000), {"error_rate": "red"}, ["error_rate"]),
    ("error above gate, below rollback", dict(errors=400), {"error_rate": "red"}, []),
    ("latency regression", dict(lat_bucket=4), {"latency_p99": "red"}, ["latency_p99"]),
    ("quality drop", dict(q_bucket=1, q_mean=0.6), {"quality": "red"}, ["quality"]),
    ("one safety violation", dict(safety=1), {"safety_violations": "red"}, ["safety_violations"]),
    ("anomaly alert", dict(alerts=1), {"anomaly_alerts": "red"}, []),
    # The gate is red (the lower bound is past the margin) but five events are the floor for a rollback.
    ("handful of requests all failing", dict(requests=3, errors=3), {"error_rate": "red"}, []),
]


@pytest.mark.parametrize("name,canary,expected,rollback", CASES, ids=[c[0] for c in CASES])
def test_gate_and_rollback_table(name, canary, expected, rollback):
    d = run(sample(**canary), sample(**PROD))
    assert {k: gates(d)[k] for k in expected} == expected
    assert sorted(t.metric for t in d.rollback) == sorted(rollback)
    if expected.get("error_rate") == "green":
        info = d.inputs["gates"]["error_rate"]
        assert info["ci_pp"][1] <= 0.1 and info["required"] <= 100_000 and info["time_to_sufficiency_s"] == 0


def test_insufficient_gate_reports_sample_size_and_time_to_sufficiency():
    d = run(sample(requests=2000, errors=2), sample(**PROD))
    info = d.inputs["gates"]["error_rate"]
    assert gates(d)["error_rate"] == "insufficient"
    assert info["required"] > 2000 and info["time_to_sufficiency_s"] > 0  # 2000 requests in an hour


def test_stale_data_marks_every_gate_stale_and_never_rolls_back():
    d = run(sample(errors=50_000, age_s=400), sample(**PROD, age_s=400))
    assert set(gates(d).values()) == {"stale"} and not d.rollback and d.verdict.value == "stale"


def test_source_errors_hold_then_fail_closed_after_four():
    for n in (1, 2, 3):
        d = decide(thresholds=DEFAULT_THRESHOLDS, window=None, stage=None, now=NOW, staleness_limit_s=300,
                   traffic_percent=5, random_split=True, stage_elapsed_s=60, source_error="timeout",
                   consecutive_errors=n)
        assert not d.fail_closed and set(gates(d).values()) == {"stale"}
    d = decide(thresholds=DEFAULT_THRESHOLDS, window=None, stage=None, now=NOW, staleness_limit_s=300,
               traffic_percent=5, random_split=True, stage_elapsed_s=60, source_error="timeout", consecutive_errors=4)
    assert d.fail_closed and "4 consecutive" in d.rollback_reason


def test_router_share_far_from_configured_percent_holds_the_stage():
    d = run(sample(requests=30_000, errors=30), sample(**PROD), percent=10)  # 3.2 % observed vs 10 %
    assert gates(d)["router_share"] == "red" and d.verdict.value == "red" and not d.rollback


def test_early_warning_near_the_rollback_threshold():
    # +0.42 pp: above the promotion gate, within 20 % of the 0.5 pp rollback threshold.
    d = run(sample(errors=520), sample(**PROD))
    assert [w.metric for w in d.warnings] == ["error_rate"] and not d.rollback


def _errors_only(requests, errors):
    from monitoring.samples import Sample

    return Sample(requests=requests, errors=errors, last_seen=NOW - timedelta(seconds=10), present=True)


def test_error_rise_too_weak_for_one_window_rolls_back_on_two_windows_pooled():
    # 1.83 % vs 1.00 % on ~3,000 canary requests: beyond the 0.5 pp threshold, but p ≈ 3e-5 in one
    # window. The window before shows the same rise: ten minutes together give p ≈ 6e-9.
    window = {"canary": sample(requests=3000, errors=55), "production": sample(requests=297_000, errors=2970)}
    alone = run(window["canary"], window["production"], percent=1, window=window)
    assert not alone.rollback
    earlier = {"canary": _errors_only(3000, 55), "production": _errors_only(297_000, 2970)}
    pooled = decide(thresholds=DEFAULT_THRESHOLDS, window=window, stage=window, now=NOW, staleness_limit_s=300,
                    traffic_percent=1, random_split=True, stage_elapsed_s=600, earlier=earlier)
    assert [t.metric for t in pooled.rollback] == ["error_rate"]
    assert "over the last two windows" in pooled.rollback_reason and "110 errors in 6000 requests" in pooled.rollback_reason
    two = pooled.inputs["rollback_window"]["error_rate_two_windows"]
    assert two["canary"] == [110, 6000] and two["production"] == [5940, 594_000] and two["p_worse"] < 1e-6


def test_a_healthy_window_before_dilutes_the_pooled_evidence():
    # The same last window after a healthy one: 85 errors in 6,000 (+0.42 pp) is within the threshold.
    window = {"canary": sample(requests=3000, errors=55), "production": sample(requests=297_000, errors=2970)}
    earlier = {"canary": _errors_only(3000, 30), "production": _errors_only(297_000, 2970)}
    d = decide(thresholds=DEFAULT_THRESHOLDS, window=window, stage=window, now=NOW, staleness_limit_s=300,
               traffic_percent=1, random_split=True, stage_elapsed_s=600, earlier=earlier)
    assert not d.rollback and d.inputs["rollback_window"]["error_rate_two_windows"]["canary"] == [85, 6000]


def test_a_sustained_rise_too_weak_for_two_windows_rolls_back_on_the_stage_so_far():
    # 300 req/s at 1 %: ~900 canary requests a window. +0.8 pp is nowhere near significant in one or two
    # windows, but an hour of it (10,800 requests, 194 errors against ~108 expected) is.
    window = {"canary": sample(requests=900, errors=16), "production": sample(requests=89_100, errors=891)}
    earlier = {"canary": _errors_only(900, 16), "production": _errors_only(89_100, 891)}
    stage = {"canary": sample(requests=10_800, errors=194), "production": sample(requests=1_069_200, errors=10_692)}
    d = decide(thresholds=DEFAULT_THRESHOLDS, window=window, stage=stage, now=NOW, staleness_limit_s=300,
               traffic_percent=1, random_split=True, stage_elapsed_s=3600, earlier=earlier)
    assert [t.metric for t in d.rollback] == ["error_rate"] and "over the stage so far" in d.rollback_reason
    tests = d.inputs["rollback_window"]
    assert tests["error_rate_two_windows"]["p_worse"] > 1e-6 and tests["error_rate_stage"]["canary"] == [194, 10_800]
    # The same stage with a healthy rate: nothing.
    stage["canary"] = sample(requests=10_800, errors=110)
    assert not decide(thresholds=DEFAULT_THRESHOLDS, window=window, stage=stage, now=NOW, staleness_limit_s=300,
                      traffic_percent=1, random_split=True, stage_elapsed_s=3600, earlier=earlier).rollback


# --- gate honesty -------------------------------------------------------------------------------------


def _scored(n, bucket, mean, requests=100_000, errors=100):
    from monitoring.samples import Sample

    return Sample(requests=requests, errors=errors, latency_buckets=lat(1, requests), quality_sum=mean * n,
                  quality_count=n, quality_buckets=qual(bucket, n), last_seen=NOW - timedelta(seconds=10),
                  present=True)


def _spread_quality(n, requests=900_000):
    """Production's scores spread over the ladder (a real spread, mean ~0.8)."""
    from monitoring.samples import Sample

    bounds = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, math.inf]
    shares = [0.05, 0.1, 0.15, 0.2, 0.25, 0.25, 0.0]
    cum, buckets = 0.0, []
    for b, share in zip(bounds, shares, strict=True):
        cum += share * n
        buckets.append((b, cum))
    return Sample(requests=requests, errors=900, latency_buckets=lat(1, requests), quality_sum=0.8 * n,
                  quality_count=n, quality_buckets=buckets, last_seen=NOW - timedelta(seconds=10), present=True)


HONESTY = [
    # (name, canary, production, gate, expected status)
    # Three scores in one bucket: no spread of their own; production's spread sets the sample size.
    ("3 scores in one bucket", lambda: _scored(3, 4, 0.85), lambda: _spread_quality(90_000), "quality", "insufficient"),
    ("30 scores in one bucket", lambda: _scored(30, 4, 0.85), lambda: _spread_quality(90_000), "quality",
     "insufficient"),
    ("enough scores", lambda: _scored(20_000, 4, 0.85), lambda: _spread_quality(90_000), "quality", "green"),
    # Overwhelming harm on a sample short of the target: red with the evidence, not insufficient.
    ("quality collapse on 150 scores", lambda: _scored(150, 0, 0.45), lambda: _spread_quality(90_000), "quality",
     "red"),
    ("errors 40 % on 150 requests", lambda: sample(requests=150, errors=60), lambda: sample(**PROD), "error_rate",
     "red"),
    ("errors +0.3 pp on 150 requests", lambda: sample(requests=150, errors=1), lambda: sample(**PROD), "error_rate",
     "insufficient"),
    ("latency ×4 on 300 requests", lambda: sample(requests=300, lat_bucket=5), lambda: sample(**PROD), "latency_p99",
     "red"),
    ("latency same on 300 requests", lambda: sample(requests=300), lambda: sample(**PROD), "latency_p99",
     "insufficient"),
]


@pytest.mark.parametrize("name,canary,production,gate,expected", HONESTY, ids=[c[0] for c in HONESTY])
def test_gate_honesty_table(name, canary, production, gate, expected):
    d = run(canary(), production())
    assert gates(d)[gate] == expected, d.gates
    info = d.inputs["gates"][gate]
    if gate == "quality" and expected == "insufficient":
        assert info["required"] >= 100  # never "required 1" on a collapsed spread
    if expected == "red":  # short of the sample target: red on the evidence, which the record names
        assert info["overwhelming"] is True and info["required"] > (d.inputs["stage"]["canary"]["quality_count"]
                                                                  if gate == "quality" else 150)


def test_an_alert_counted_during_the_stage_blocks_promotion_though_none_fires_now():
    canary = sample(alerts=1)  # the stage sample carries every alert seen during the stage
    window = {"canary": sample(alerts=0), "production": sample(**PROD)}
    d = run(canary, sample(**PROD), window=window)
    gate = next(g for g in d.gates if g.name == "anomaly_alerts")
    assert gate.status.value == "red" and "during this stage" in gate.detail and d.verdict.value == "red"


# --- the sequential test beside the fixed-level rule ---------------------------------------------------


def _look(canary, production, memory=None, percent=1):
    stage = {"canary": _errors_only(*canary), "production": _errors_only(*production)}
    return decide(thresholds=DEFAULT_THRESHOLDS, window=stage, stage=stage, now=NOW, staleness_limit_s=300,
                  traffic_percent=percent, random_split=True, stage_elapsed_s=600, sequential=memory)


def test_the_test_restarts_so_a_rise_after_hours_of_a_healthy_stage_is_caught_in_minutes():
    # Two hours at 10 req/s and 1 %, then 4 %: the stage's errors as a whole are still near 1 %.
    memory, n, x, n_p, x_p = None, 0, 0, 0, 0
    for minute in range(122):
        n, x, n_p, x_p = n + 600, x + (6 if minute < 120 else 24), n_p + 59_400, x_p + 594
        d = _look((n, x), (n_p, x_p), memory=memory)
        memory = d.sequential
        assert bool(d.rollback) == (minute == 121)
    # The same stage in one look, without the memory of the restarts: nothing to see.
    assert not _look((n, x), (n_p, x_p)).rollback


def test_a_new_stage_starts_a_new_test():
    first = _look((3000, 80), (297_000, 2970))
    other_stage = {**first.sequential, "stage_index": 3}
    d = _look((6000, 160), (594_000, 5940), memory=other_stage)
    assert d.sequential["stage_index"] == 0 and d.sequential["canary"]["starts"] == 2
