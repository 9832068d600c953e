"""Thresholds and metric configuration of a version: defaults and validation (pure functions).

The defaults are the numbers of the canary pattern (promotion gates §4.2, rollback triggers
§4.3). A version may make them stricter, never looser: a regulated release cannot quietly widen
the gates it will be judged by.
"""

from __future__ import annotations

import copy
import math
import string
from typing import Any

from canaryhub.errors import ValidationFailed
from monitoring.custom import custom_with_defaults

DEFAULT_THRESHOLDS: dict[str, dict[str, float | int]] = {
    "promote": {
        "error_rate_pp": 0.1,
        "latency_p99_ratio": 1.2,
        "quality_ratio": 0.98,
        "safety_violations": 0,
        "anomaly_alerts": 0,
    },
    "rollback": {
        "error_rate_pp": 0.5,
        "latency_p99_ratio": 1.5,
        "quality_ratio": 0.9,
        "safety_violations": 0,
    },
}

# For each key: (kind, lowest allowed, highest allowed). The bound on the pattern's side is the
# pattern's own number: thresholds only tighten.
_BOUNDS: dict[str, dict[str, tuple[str, float, float]]] = {
    "promote": {
        "error_rate_pp": ("number", 0.0, 0.1),
        "latency_p99_ratio": ("number", 1.0, 1.2),
        "quality_ratio": ("number", 0.98, 1.0),
        "safety_violations": ("integer", 0, 0),
        "anomaly_alerts": ("integer", 0, 0),
        # LLM serving gates, optional (monitoring.llm applies its defaults when a version leaves
        # them out): tokens and cost per request vs production's, guardrail block rate above it.
        "tokens_per_request_ratio": ("number", 1.0, 1.2),
        "cost_per_request_ratio": ("number", 1.0, 1.2),
        "guardrail_block_rate_pp": ("number", 0.0, 0.5),
        "schema_failure_rate_pp": ("number", 0.0, 0.1),
        "availability_pp": ("number", 0.0, 0.1),  # availability below production's (monitoring.availability)
    },
    "rollback": {
        "error_rate_pp": ("number", 0.0, 0.5),
        "latency_p99_ratio": ("number", 1.0, 1.5),
        "quality_ratio": ("number", 0.9, 1.0),
        "safety_violations": ("integer", 0, 0),
        # LLM serving rules, optional (monitoring.evaluator applies the pattern's numbers when a
        # version leaves them out): tokens per request vs production's, guardrail blocks a minute.
        "tokens_per_request_ratio": ("number", 1.0, 1.5),
        "guardrail_blocks_per_min": ("number", 0.0, 10.0),
        "schema_failure_rate_pp": ("number", 0.0, 0.5),  # output-schema failures vs production's
    },
}

# A version subject to fairness requirements declares a "fairness" section: the metric whose
# disparity between subgroups (the segment label's values) is judged, and how much more disparity
# than production's the canary may show (error rate: percentage points between the worst and the
# best subgroup; quality: score points). Frozen on the canary with the other thresholds.
FAIRNESS_METRICS = {"error_rate": 5.0, "quality": 0.5}  # metric -> the largest tolerance allowed


def _fairness(value: Any, errors: dict[str, list[str]]) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        errors.setdefault("thresholds.fairness", []).append("must be an object with metric and tolerance")
        return None
    for key in value:
        if key not in ("metric", "tolerance"):
            errors.setdefault(f"thresholds.fairness.{key}", []).append("unknown field; expected metric or tolerance")
    metric, tolerance = value.get("metric"), value.get("tolerance")
    if metric not in FAIRNESS_METRICS:
        errors.setdefault("thresholds.fairness.metric", []).append(
            f"must be one of {', '.join(FAIRNESS_METRICS)}")
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or not 0 < tolerance <= FAIRNESS_METRICS[metric]:
        errors.setdefault("thresholds.fairness.tolerance", []).append(
            f"must be a number above 0 and at most {FAIRNESS_METRICS[metric]:g}")
        return None
    return {"metric": metric, "tolerance": float(tolerance)}


METRIC_NAMES = ("requests", "errors", "latency_p99", "quality", "safety_violations", "anomaly_alerts")
QUERY_PLACEHOLDERS = frozenset({"model", "version", "segment", "window"})
PROVIDERS = ("prometheus", "push")


def thresholds_with_defaults(value: Any) -> dict[str, dict[str, float | int]]:
    """Validate a (possibly partial) thresholds document and fill in the pattern's defaults.

    Raises ValidationFailed with one message per offending field (dotted paths).
    """
    if value is None:
        return copy.deepcopy(DEFAULT_THRESHOLDS)
    if not isinstance(value, dict):
        raise ValidationFailed.field("thresholds", "must be an object with 'promote' and/or 'rollback'")
    errors: dict[str, list[str]] = {}
    for section in value:
        if section not in _BOUNDS and section != "fairness":
            errors.setdefault(f"thresholds.{section}", []).append(
                "unknown section; expected promote, rollback or fairness")
    result: dict[str, Any] = copy.deepcopy(DEFAULT_THRESHOLDS)
    if "fairness" in value:
        fairness = _fairness(value["fairness"], errors)
        if fairness is not None:
            result["fairness"] = fairness
    for section, bounds in _BOUNDS.items():
        given = value.get(section, {})
        if not isinstance(given, dict):
            errors.setdefault(f"thresholds.{section}", []).append("must be an object")
            continue
        for key in given:
            if key not in bounds:
                errors.setdefault(f"thresholds.{section}.{key}", []).append(
                    f"unknown threshold; expected one of {', '.join(bounds)}"
                )
        for key, (kind, low, high) in bounds.items():
            if key not in given:
                continue
            raw = given[key]
            path = f"thresholds.{section}.{key}"
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
                errors.setdefault(path, []).append("must be a finite number")
                continue
            if kind == "integer" and float(raw) != int(raw):
                errors.setdefault(path, []).append("must be a whole number")
                continue
            if not low <= raw <= high:
                errors.setdefault(path, []).append(
                    f"must be between {low:g} and {high:g} (the pattern allows tightening, never loosening)"
                )
                continue
            result[section][key] = int(raw) if kind == "integer" else float(raw)
    if not errors:
        promote, rollback = result["promote"], result["rollback"]
        if rollback["error_rate_pp"] < promote["error_rate_pp"]:
            errors["thresholds.rollback.error_rate_pp"] = ["must not be below the promotion gate's"]
        if rollback["latency_p99_ratio"] < promote["latency_p99_ratio"]:
            errors["thresholds.rollback.latency_p99_ratio"] = ["must not be below the promotion gate's"]
        if rollback["quality_ratio"] > promote["quality_ratio"]:
            errors["thresholds.rollback.quality_ratio"] = ["must not be above the promotion gate's"]
        if rollback.get("tokens_per_request_ratio", 1.5) < promote.get("tokens_per_request_ratio", 1.0):
            errors["thresholds.rollback.tokens_per_request_ratio"] = ["must not be below the promotion gate's"]
        if rollback.get("schema_failure_rate_pp", 0.5) < promote.get("schema_failure_rate_pp", 0.0):
            errors["thresholds.rollback.schema_failure_rate_pp"] = ["must not be below the promotion gate's"]
    if errors:
        raise ValidationFailed("invalid thresholds", errors=errors)
    return result


def metrics_with_defaults(value: Any, *, default_provider: str) -> dict[str, Any]:
    """Validate the metric-source configuration: `{"provider": ..., "queries": {metric: promql}}`
    and, when the version declares them, `"custom": {name: declaration}` (monitoring.custom).

    Query overrides are PromQL templates; they may use the placeholders $model, $version,
    $segment and $window (string.Template syntax, which leaves PromQL's braces alone).
    """
    if value is None:
        return {"provider": default_provider, "queries": {}}
    if not isinstance(value, dict):
        raise ValidationFailed.field("metrics", "must be an object with 'provider' and optional 'queries'")
    errors: dict[str, list[str]] = {}
    for key in value:
        if key not in ("provider", "queries", "custom"):
            errors.setdefault(f"metrics.{key}", []).append("unknown field; expected provider, queries or custom")
    provider = value.get("provider", default_provider)
    if provider not in PROVIDERS:
        errors.setdefault("metrics.provider", []).append(f"must be one of {', '.join(PROVIDERS)}")
    queries = value.get("queries", {})
    clean: dict[str, str] = {}
    if not isinstance(queries, dict):
        errors.setdefault("metrics.queries", []).append("must be an object of metric name to PromQL")
        queries = {}
    for name, query in queries.items():
        path = f"metrics.queries.{name}"
        if name not in METRIC_NAMES:
            errors.setdefault(path, []).append(f"unknown metric; expected one of {', '.join(METRIC_NAMES)}")
            continue
        if not isinstance(query, str) or not query.strip() or len(query) > 2000:
            errors.setdefault(path, []).append("must be a non-empty PromQL string of at most 2000 characters")
            continue
        problem = _template_problem(query)
        if problem:
            errors.setdefault(path, []).append(problem)
            continue
        clean[name] = query.strip()
    custom: dict[str, Any] = {}
    if provider in PROVIDERS:
        try:
            custom = custom_with_defaults(value.get("custom"), provider=provider)
        except ValidationFailed as exc:
            for path, messages in (exc.errors or {}).items():
                errors.setdefault(path, []).extend(messages)
    if errors:
        raise ValidationFailed("invalid metric configuration", errors=errors)
    return {"provider": provider, "queries": clean, **({"custom": custom} if custom else {})}


def _template_problem(query: str) -> str | None:
    template = string.Template(query)
    if not template.is_valid():
        return "not a valid template; placeholders are $model, $version, $segment, $window (write $$ for $)"
    unknown = sorted(set(template.get_identifiers()) - QUERY_PLACEHOLDERS)
    if unknown:
        return f"unknown placeholder(s) {', '.join(unknown)}; allowed: {', '.join(sorted(QUERY_PLACEHOLDERS))}"
    depth = 0
    for ch in query:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return "unbalanced brackets"
    return "unbalanced brackets" if depth else None
