"""Fairness gate: the disparity between subgroups must not grow beyond the frozen tolerance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canaryhub.errors import ValidationFailed
from monitoring.evaluator import decide
from monitoring.samples import Sample
from monitoring.thresholds import thresholds_with_defaults

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def s(requests, errors):
    return Sample(requests=requests, errors=errors, last_seen=NOW - timedelta(seconds=5), present=True)


def run(groups, fairness):
    thresholds = thresholds_with_defaults({"fairness": fairness} if fairness else None)
    parts = {n: {"window": {"canary": c, "production": p}, "stage": {"canary": c, "production": p}}
             for n, (c, p) in groups.items()}
    c = s(sum(c.requests for c, _ in groups.values()), sum(c.errors for c, _ in groups.values()))
    p = s(sum(p.requests for _, p in groups.values()), sum(p.errors for _, p in groups.values()))
    pair = {"canary": c, "production": p}
    return decide(thresholds=thresholds, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
                  traffic_percent=10, random_split=True, stage_elapsed_s=3600, segments=parts)


def gate(d):
    return next(g for g in d.gates if g.name == "fairness")


FAIR = {"metric": "error_rate", "tolerance": 0.2}
CASES = [
    # Production: 1.0 % and 1.2 % in two groups (0.2 pp apart).
    ("same disparity", {"a": (s(50_000, 500), s(500_000, 5000)), "b": (s(50_000, 600), s(500_000, 6000))}, "green"),
    # The canary widens the gap to 1.0 pp: group b at 2.0 %, a better at 1.0 %.
    ("gap widens", {"a": (s(50_000, 500), s(500_000, 5000)), "b": (s(50_000, 1000), s(500_000, 6000))}, "red"),
    ("too few per group", {"a": (s(150, 1), s(500_000, 5000)), "b": (s(150, 3), s(500_000, 6000))}, "insufficient"),
    ("not yet conclusive", {"a": (s(2000, 20), s(500_000, 5000)), "b": (s(2000, 30), s(500_000, 6000))},
     "insufficient"),
]


@pytest.mark.parametrize("name,groups,expected", CASES, ids=[c[0] for c in CASES])
def test_fairness_gate_table(name, groups, expected):
    d = run(groups, FAIR)
    assert gate(d).status.value == expected, gate(d).detail
    if expected == "red":
        assert "b worst, a best" in gate(d).detail and d.verdict.value == "red"
        assert d.inputs["fairness"]["growth"] == pytest.approx(0.8)


def test_the_gate_is_judged_only_for_versions_that_declare_fairness():
    groups = {"a": (s(50_000, 500), s(500_000, 5000)), "b": (s(50_000, 1000), s(500_000, 6000))}
    assert "fairness" not in {g.name for g in run(groups, None).gates}


def test_quality_disparity_in_score_points():
    def q(n, mean):
        return Sample(requests=n, quality_sum=mean * n, quality_count=n, last_seen=NOW, present=True)

    groups = {"a": (q(20_000, 0.85), q(200_000, 0.85)), "b": (q(20_000, 0.70), q(200_000, 0.84))}
    d = run(groups, {"metric": "quality", "tolerance": 0.05})
    assert gate(d).status.value == "red" and d.inputs["fairness"]["growth"] == pytest.approx(0.14)


@pytest.mark.parametrize("fairness,field", [
    ({"metric": "latency", "tolerance": 1}, "thresholds.fairness.metric"),
    ({"metric": "error_rate", "tolerance": 0}, "thresholds.fairness.tolerance"),
    ({"metric": "error_rate", "tolerance": 9}, "thresholds.fairness.tolerance"),
    ({"metric": "quality", "tolerance": 0.1, "label": "x"}, "thresholds.fairness.label"),
    ("strict", "thresholds.fairness"),
])
def test_fairness_configuration_is_validated(fairness, field):
    with pytest.raises(ValidationFailed) as refused:
        thresholds_with_defaults({"fairness": fairness})
    assert field in refused.value.errors
