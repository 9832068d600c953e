import math

import pytest

from canaryhub.errors import ValidationFailed
from monitoring.thresholds import DEFAULT_THRESHOLDS, metrics_with_defaults, thresholds_with_defaults


def test_defaults_are_the_patterns_numbers():
    assert DEFAULT_THRESHOLDS == {
        "promote": {"error_rate_pp": 0.1, "latency_p99_ratio": 1.2, "quality_ratio": 0.98, "safety_violations": 0, "anomaly_alerts": 0},
        "rollback": {"error_rate_pp": 0.5, "latency_p99_ratio": 1.5, "quality_ratio": 0.9, "safety_violations": 0},
    }
    assert thresholds_with_defaults(None) == DEFAULT_THRESHOLDS
    assert thresholds_with_defaults({}) == DEFAULT_THRESHOLDS


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"promote": {"error_rate_pp": 0.2}}, "thresholds.promote.error_rate_pp"),  # looser than the pattern
        ({"promote": {"latency_p99_ratio": 1.3}}, "thresholds.promote.latency_p99_ratio"),
        ({"promote": {"quality_ratio": 0.9}}, "thresholds.promote.quality_ratio"),
        ({"rollback": {"error_rate_pp": 0.6}}, "thresholds.rollback.error_rate_pp"),
        ({"rollback": {"safety_violations": 1}}, "thresholds.rollback.safety_violations"),
        ({"promote": {"error_rate_pp": "0.1"}}, "thresholds.promote.error_rate_pp"),
        ({"promote": {"error_rate_pp": True}}, "thresholds.promote.error_rate_pp"),
        ({"promote": {"error_rate_pp": math.nan}}, "thresholds.promote.error_rate_pp"),
        ({"promote": {"error_rate_pp": -0.1}}, "thresholds.promote.error_rate_pp"),
        ({"promote": {"safety_violations": 0.5}}, "thresholds.promote.safety_violations"),
        ({"promote": {"typo": 1}}, "thresholds.promote.typo"),
        ({"gates": {}}, "thresholds.gates"),
        ({"promote": []}, "thresholds.promote"),
        ({"promote": {"error_rate_pp": 0.1}, "rollback": {"error_rate_pp": 0.05}}, "thresholds.rollback.error_rate_pp"),
        ({"promote": {"quality_ratio": 0.98}, "rollback": {"quality_ratio": 0.99}}, "thresholds.rollback.quality_ratio"),
    ],
)
def test_invalid_thresholds_name_the_field(value, field):
    with pytest.raises(ValidationFailed) as exc:
        thresholds_with_defaults(value)
    assert field in exc.value.errors


def test_not_an_object():
    with pytest.raises(ValidationFailed) as exc:
        thresholds_with_defaults([1])
    assert "thresholds" in exc.value.errors


def test_tightening_is_accepted():
    t = thresholds_with_defaults({"promote": {"error_rate_pp": 0.05, "latency_p99_ratio": 1.1}, "rollback": {"quality_ratio": 0.95}})
    assert t["promote"]["error_rate_pp"] == 0.05 and t["rollback"]["quality_ratio"] == 0.95


def test_metrics_defaults_and_overrides():
    assert metrics_with_defaults(None, default_provider="push") == {"provider": "push", "queries": {}}
    m = metrics_with_defaults(
        {"provider": "prometheus", "queries": {"errors": 'sum by (segment) (rate(errs_total{model="$model",version="$version"}[$window]))'}},
        default_provider="push",
    )
    assert m["provider"] == "prometheus" and "errors" in m["queries"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"provider": "datadog"}, "metrics.provider"),
        ({"queries": {"nonsense": "up"}}, "metrics.queries.nonsense"),
        ({"queries": {"errors": ""}}, "metrics.queries.errors"),
        ({"queries": {"errors": 5}}, "metrics.queries.errors"),
        ({"queries": {"errors": "rate(x{model=\"$tenant\"}[5m])"}}, "metrics.queries.errors"),
        ({"queries": {"errors": "rate(x[5m]"}}, "metrics.queries.errors"),
        ({"queries": {"errors": "rate(x[5m]) $"}}, "metrics.queries.errors"),
        ({"queries": []}, "metrics.queries"),
        ({"other": 1}, "metrics.other"),
    ],
)
def test_invalid_metrics_name_the_field(value, field):
    with pytest.raises(ValidationFailed) as exc:
        metrics_with_defaults(value, default_provider="push")
    assert field in exc.value.errors
