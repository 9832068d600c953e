"""Custom metrics a version declares beyond the built-in six: validation and pure decisions.

A version's metric configuration (`metrics`, set by platform engineers only and changed only
through a reviewed MetricConfigChange; frozen on a canary at initiation) may carry
`"custom": {name: declaration}`, at most MAX_CUSTOM of them. A declaration:

- `kind`: `ratio` (numerator events out of denominator trials, e.g. refusals of answers: a
  proportion), `rate` (events per request, may exceed one: e.g. tool calls or retries) or
  `histogram` (an observed value per request, judged on its mean);
- `worse`: `higher` or `lower`, the direction that is a regression;
- `promote_tolerance` and `rollback_threshold`: how much worse than production the canary may
  be. `ratio`: percentage points of the proportion; `rate` and `histogram`: a fraction of
  production's value (0.2 = 20 % worse). The rollback threshold is at least the tolerance;
- `promql` (required with the `prometheus` provider, refused with `push`): the counters it is read
  from, as metric selectors (a metric name with optional label matchers; no functions, no
  placeholders: the query around them is CanaryHub's). `ratio`: `numerator` and `denominator`;
  `rate`: `events` (the requests are the built-in requests counter's); `histogram`: `buckets`,
  a `_bucket` series. The provider wraps each in `sum by (model, version, segment, ...)`, over
  the window (`increase(...[$w])`) and as a cumulative counter, in one query per metric
  for every canary declaring it, against the deployment's Prometheus only. With `push`, windows
  carry `custom: {name: {...}}` (`numerator`/`denominator`, `events`, or `buckets`).

Every custom metric is a promotion gate over the stage so far (green only with the sample a
one-sided test of the tolerance needs at 80 % power, insufficient before; red when the point
estimate is past the tolerance with that sample, or with overwhelming evidence before it) and a
rollback trigger over the last window by the fixed-level rule of the built-in error rate and
latency: the point estimate past the rollback threshold, worse than production at 10⁻⁶, on at
least five events. The better direction never rolls back. With two or more segments, each custom
metric is judged in each segment against production's same segment too (`judge_segment`, called
by monitoring.evaluator.judge_segments), at the segments' share of the levels (10⁻⁶ / k and
0.05 / k): a segment's trigger rolls back naming the segment, a segment past the tolerance with
confidence turns the `segments` gate red naming it. The Prometheus query keeps the segment label
(`prometheus_segment_values` reads the same answer segment by segment); pushed windows carry
`segment`. Custom metrics are not part of the post-promotion watch.

Values a provider reads are kept in `Sample.custom`: `{name: {"x": events, "n": trials}}` for a
ratio, `{"x": events}` for a rate (its trials are the sample's requests), `{"buckets": [[le, c]...]}`
for a histogram.
"""

from __future__ import annotations

import math
import re
from typing import Any

from canaryhub.errors import ValidationFailed
from monitoring import statistics as st
from monitoring.evaluations import Gate, GateStatus
from monitoring.samples import Buckets, Sample, custom_json, le_parse

MAX_CUSTOM = 10  # custom metrics per version
NAME_MAX = 40
SELECTOR_MAX = 300
KINDS = ("ratio", "rate", "histogram")
DIRECTIONS = ("higher", "lower")
SOURCES = {"ratio": ("numerator", "denominator"), "rate": ("events",), "histogram": ("buckets",)}
# The largest tolerance or threshold: percentage points for a ratio, a fraction for the others.
MAX_LIMIT = {"ratio": 100.0, "rate": 10.0, "histogram": 10.0}
GATE_PREFIX = "custom."
WARNING_FRACTION = 0.8  # as the built-in metrics: within 20 % of the rollback threshold warns
# Names a custom metric may not take: the built-in metrics, gates, triggers and record keys.
RESERVED = frozenset({
    "requests", "errors", "error_rate", "latency", "latency_p99", "quality", "safety_violations", "anomaly_alerts",
    "tokens", "tokens_in", "tokens_out", "tokens_per_request", "cost", "cost_usd", "cost_per_request",
    "guardrail_blocks", "guardrail_block_rate", "schema_failures", "schema_failure_rate", "router_share",
    "segments", "fairness", "post_promotion", "custom",
})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# A metric selector: a metric name and optional label matchers with double-quoted values.
_LABEL_VALUE = r'"(?:[^"\\$\n]|\\.)*"'
_SELECTOR = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{\s*(?:[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=|!=|=~|!~)\s*' + _LABEL_VALUE
    + r'\s*(?:,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=|!=|=~|!~)\s*' + _LABEL_VALUE + r'\s*)*,?\s*)?\})?$')
# Labels the provider aggregates by: a selector may not match on them (it reads every canary's).
_OWN_LABELS = re.compile(r'[{,]\s*(model|version|segment|le)\s*(?:=|!=|=~|!~)')


# --- validation -----------------------------------------------------------------------------------


def custom_with_defaults(value: Any, *, provider: str, path: str = "metrics.custom") -> dict[str, dict[str, Any]]:
    """Validate `metrics.custom` for a version whose provider is `provider`; the clean
    declarations, or ValidationFailed with one message per offending field (dotted paths)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed.field(path, "must be an object of metric name to declaration")
    errors: dict[str, list[str]] = {}
    if len(value) > MAX_CUSTOM:
        raise ValidationFailed.field(path, f"at most {MAX_CUSTOM} custom metrics")
    clean: dict[str, dict[str, Any]] = {}
    for name, decl in value.items():
        where = f"{path}.{str(name)[:NAME_MAX + 1]}"
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > NAME_MAX:
            errors.setdefault(where, []).append(
                f"a name is a lower-case slug (letters, digits, _; starting with a letter) of at most {NAME_MAX} "
                "characters")
            continue
        if name in RESERVED:
            errors.setdefault(where, []).append("is the name of a built-in metric")
            continue
        one = _declaration(decl, provider=provider, path=where, errors=errors)
        if one is not None:
            clean[name] = one
    if errors:
        raise ValidationFailed("invalid custom metrics", errors=errors)
    return clean


def _declaration(decl: Any, *, provider: str, path: str, errors: dict[str, list[str]]) -> dict[str, Any] | None:
    if not isinstance(decl, dict):
        errors.setdefault(path, []).append("must be an object with kind, worse, promote_tolerance, "
                                           "rollback_threshold (and promql with the prometheus provider)")
        return None
    before = sum(len(v) for v in errors.values())
    allowed = ("kind", "worse", "promote_tolerance", "rollback_threshold", "promql")
    for key in decl:
        if key not in allowed:
            errors.setdefault(f"{path}.{key}", []).append(f"unknown field; expected one of {', '.join(allowed)}")
    kind, worse = decl.get("kind"), decl.get("worse")
    if kind not in KINDS:
        errors.setdefault(f"{path}.kind", []).append(f"must be one of {', '.join(KINDS)}")
        return None
    if worse not in DIRECTIONS:
        errors.setdefault(f"{path}.worse", []).append(f"must be one of {', '.join(DIRECTIONS)}")
    limits = {}
    unit = "percentage points" if kind == "ratio" else "a fraction of production's value"
    for key in ("promote_tolerance", "rollback_threshold"):
        raw = decl.get(key)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) \
                or not 0 < raw <= MAX_LIMIT[kind]:
            errors.setdefault(f"{path}.{key}", []).append(
                f"must be a number above 0 and at most {MAX_LIMIT[kind]:g} ({unit})")
            continue
        limits[key] = float(raw)
    if len(limits) == 2 and limits["rollback_threshold"] < limits["promote_tolerance"]:
        errors.setdefault(f"{path}.rollback_threshold", []).append("must not be below promote_tolerance")
    promql = decl.get("promql")
    source: dict[str, str] | None = None
    if provider == "prometheus":
        source = _promql(promql, kind=kind, path=f"{path}.promql", errors=errors)
    elif promql is not None:
        errors.setdefault(f"{path}.promql", []).append(
            "only with the prometheus provider; with push, windows carry the metric's values")
    if sum(len(v) for v in errors.values()) > before:
        return None
    out: dict[str, Any] = {"kind": kind, "worse": worse, **limits}
    if source is not None:
        out["promql"] = source
    return out


def _promql(value: Any, *, kind: str, path: str, errors: dict[str, list[str]]) -> dict[str, str] | None:
    fields = SOURCES[kind]
    if not isinstance(value, dict):
        errors.setdefault(path, []).append(f"must be an object with {' and '.join(fields)} (metric selectors)")
        return None
    for key in value:
        if key not in fields:
            errors.setdefault(f"{path}.{key}", []).append(f"unknown field; a {kind} reads {' and '.join(fields)}")
    out = {}
    for key in fields:
        problem = selector_problem(value.get(key), histogram=kind == "histogram")
        if problem:
            errors.setdefault(f"{path}.{key}", []).append(problem)
        else:
            out[key] = value[key].strip()
    return out if len(out) == len(fields) else None


def selector_problem(raw: Any, *, histogram: bool = False) -> str | None:
    """Why `raw` is not an acceptable counter selector, or None. Only a metric name with label
    matchers: no functions, no ranges, no placeholders (the window is CanaryHub's), no matching on
    the labels the provider groups by."""
    if not isinstance(raw, str) or not raw.strip():
        return "must be a metric selector, e.g. model_refusals_total{reason=\"policy\"}"
    raw = raw.strip()
    if len(raw) > SELECTOR_MAX:
        return f"at most {SELECTOR_MAX} characters"
    if "$" in raw:
        return "no placeholders: CanaryHub adds the window and groups by model, version and segment"
    if raw.count("{") != raw.count("}") or raw.count("{") > 1:
        return "unbalanced braces"
    if not _SELECTOR.match(raw):
        return "must be a metric name with optional label matchers (name{label=\"value\", ...}), nothing else"
    if _OWN_LABELS.search(raw):
        return "must not match on model, version, segment or le: one query reads every canary's series"
    if histogram and not raw.split("{", 1)[0].endswith("_bucket"):
        return "a histogram reads a _bucket series"
    return None


def observation_custom_problem(value: Any, requests: int, *, max_count: float,
                               max_buckets: int) -> tuple[str, str] | None:
    """Why the `custom` values of a pushed window are not acceptable, as (field path, message)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return "custom", "must be an object of metric name to values"
    if len(value) > MAX_CUSTOM:
        return "custom", f"at most {MAX_CUSTOM} custom metrics"
    for name, one in value.items():
        path = f"custom.{str(name)[:NAME_MAX + 1]}"
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > NAME_MAX or name in RESERVED:
            return path, f"a custom metric's name: a lower-case slug of at most {NAME_MAX} characters, not built-in"
        if not isinstance(one, dict) or not one or set(one) - {"numerator", "denominator", "events", "buckets"}:
            return path, "must be an object with numerator and denominator, events, or buckets"
        for key in ("numerator", "denominator", "events"):
            if key in one:
                v = one[key]
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= max_count:
                    return f"{path}.{key}", f"must be a whole number from 0 to {max_count:g}"
        if ("numerator" in one) != ("denominator" in one):
            return path, "a ratio needs numerator and denominator"
        if "numerator" in one and one["numerator"] > one["denominator"]:
            return f"{path}.numerator", "must not exceed denominator"
        if "buckets" in one:
            problem = _buckets_problem(one["buckets"], requests, max_count=max_count, max_buckets=max_buckets)
            if problem:
                return f"{path}.buckets", problem
    return None


def _buckets_problem(raw: Any, requests: int, *, max_count: float, max_buckets: int) -> str | None:
    if not isinstance(raw, list) or not raw or len(raw) > max_buckets:
        return f"must be a list of 1 to {max_buckets} [upper bound, cumulative count] pairs"
    last_le, last_c = -math.inf, 0.0
    for i, pair in enumerate(raw):
        if not isinstance(pair, list) or len(pair) != 2:
            return "each bucket is [upper bound, cumulative count]"
        le_raw, c = pair
        last = i == len(raw) - 1
        if last and le_raw != "+Inf":
            return 'the last bucket must be "+Inf"'
        if not last and (isinstance(le_raw, bool) or not isinstance(le_raw, (int, float))
                         or not math.isfinite(le_raw)):
            return 'bounds are finite numbers; only the last is "+Inf"'
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or not 0 <= c <= max_count:
            return "counts are finite numbers, not negative"
        le = math.inf if last else float(le_raw)
        if le <= last_le or c < last_c:
            return "bounds must ascend and counts be cumulative"
        last_le, last_c = le, c
    if last_c > requests:
        return "the bucket total (the +Inf count) must not exceed requests"
    return None


# --- values ---------------------------------------------------------------------------------------


def values_from_push(raw: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """One pushed window's `custom` as Sample.custom values."""
    out: dict[str, dict[str, Any]] = {}
    for name, one in (raw or {}).items():
        if "numerator" in one:
            out[name] = {"x": float(one["numerator"]), "n": float(one["denominator"])}
        elif "events" in one:
            out[name] = {"x": float(one["events"])}
        elif "buckets" in one:
            out[name] = {"buckets": [(le_parse(le), float(c)) for le, c in one["buckets"]]}
    return out


# --- decisions ------------------------------------------------------------------------------------


def gate_name(name: str) -> str:
    return GATE_PREFIX + name


def gate_label(gate: str) -> str | None:
    """A custom metric's gate in words ("Refusal rate (custom metric)"), None for other gates."""
    if not gate.startswith(GATE_PREFIX):
        return None
    return gate[len(GATE_PREFIX):].replace("_", " ").capitalize() + " (custom metric)"


def _counts(decl: dict[str, Any], s: Sample, name: str) -> tuple[float, float] | None:
    """(events, trials) of a ratio or rate, the events counted in the worse direction for a ratio
    (a ratio where lower is worse counts the trials that were not events)."""
    v = s.custom.get(name) or {}
    if decl["kind"] == "ratio":
        if "x" not in v or not v.get("n"):
            return None
        x, n = float(v["x"]), float(v["n"])
        return (x if decl["worse"] == "higher" else max(n - x, 0.0)), n
    if "x" not in v or s.requests <= 0:
        return None
    return float(v["x"]), float(s.requests)


def _hist(s: Sample, name: str) -> Buckets | None:
    buckets = (s.custom.get(name) or {}).get("buckets")
    return buckets if buckets and buckets[-1][1] > 0 else None


def gate(name: str, decl: dict[str, Any], stage: dict[str, Sample], *, alpha: float = st.ALPHA,
         rollback_alpha: float = st.ROLLBACK_ALPHA) -> tuple[Gate, dict[str, Any]]:
    """The promotion gate of one custom metric over the stage so far: its bounds one-sided at
    `alpha`, overwhelming evidence at `rollback_alpha` (a segment's shares of them, for one of
    several segments). What it read goes in the second value; `confident` there says the bound
    nearer production is past the tolerance too."""
    c, p = stage["canary"], stage["production"]
    kind, tol = decl["kind"], decl["promote_tolerance"]
    gname = gate_name(name)
    info: dict[str, Any] = {"kind": kind, "worse": decl["worse"], "tolerance": tol}
    if kind == "histogram":
        return _histogram_gate(gname, decl, c, p, info, alpha=alpha, rollback_alpha=rollback_alpha)
    cc, pc = _counts(decl, c, name), _counts(decl, p, name)
    if cc is None or pc is None or cc[1] <= 0 or pc[1] <= 0:
        return Gate(gname, GateStatus.INSUFFICIENT, None, tol, "no data yet"), info
    (x_c, n_c), (x_p, n_p) = cc, pc
    info["sample_size"] = {"canary": n_c, "production": n_p}
    if kind == "ratio":
        cmp = st.compare_proportions(int(x_c), int(n_c), int(x_p), int(n_p), alpha=alpha)
        need = st.proportion_sample_size(cmp.production_rate, tol / 100, ratio=n_p / n_c)
        diff, low, high = cmp.difference * 100, cmp.ci_low * 100, cmp.ci_high * 100
        overwhelming = diff > tol and st.rollback_evidence(cmp.p_worse, x_c, alpha=rollback_alpha)
        info.update({"test": "two-proportion, one-sided Agresti-Caffo bounds", "difference_pp": _r(diff),
                     "ci_pp": [_r(low), _r(high)], "p_worse": _r(cmp.p_worse), "required": need,
                     "overwhelming": overwhelming})
        shown_c, shown_p = _shown(decl, cmp.canary_rate), _shown(decl, cmp.production_rate)
        text = (f"{_word(decl)} {shown_c:.2%} vs production {shown_p:.2%}: "
                f"{diff:+.3f} pp worse (upper bound {high:+.3f} pp, tolerance {tol:g} pp) over {int(n_c)}")
        value, past, within = diff, diff > tol, diff <= tol and high <= tol
        lower_past = low > tol
    else:
        rc, rp = x_c / n_c, x_p / n_p
        # Log rate ratio in the worse direction, normal approximation with half-event corrections.
        sign = 1 if decl["worse"] == "higher" else -1
        log_ratio = sign * (math.log((x_c + 0.5) / n_c) - math.log((x_p + 0.5) / n_p))
        se = math.sqrt(1 / (x_c + 0.5) + 1 / (x_p + 0.5))
        z = st.z_quantile(1 - alpha)
        worse_by = math.exp(log_ratio) - 1 if rp > 0 else (math.inf if rc > 0 else 0.0)
        upper, lower = math.exp(log_ratio + z * se) - 1, math.exp(log_ratio - z * se) - 1
        p_worse = (st.poisson_rate_test(int(x_c), int(n_c), int(x_p), int(n_p)) if sign > 0
                   else st.poisson_rate_test(int(x_p), int(n_p), int(x_c), int(n_c)))
        # Events the canary needs so that the interval of the log ratio fits inside the tolerance.
        # (With no events yet the rate is unknown, not zero: the pooled rate is floored.)
        zsum = z + st.z_quantile(st.POWER)
        pooled = max((x_c + x_p) / (n_c + n_p), 1e-3)
        need = math.ceil(zsum**2 * (1 + n_c / n_p) / math.log1p(tol) ** 2 / pooled)
        overwhelming = worse_by > tol and st.rollback_evidence(p_worse, x_c if sign > 0 else x_p,
                                                               alpha=rollback_alpha)
        info.update({"test": "ratio of Poisson rates, normal approximation on the log ratio",
                     "canary_per_request": _r(rc), "production_per_request": _r(rp), "worse_by": _r(worse_by),
                     "ci": [_r(lower), _r(upper)], "p_worse": _r(p_worse), "required": need,
                     "overwhelming": overwhelming})
        text = (f"{_word(decl)} {rc:.4g} vs production {rp:.4g} per request: "
                f"{_pct(worse_by)} worse (upper bound {_pct(upper)}, tolerance {tol:.0%}) over {int(n_c)} requests")
        value, past, within = worse_by, worse_by > tol, worse_by <= tol and upper <= tol
        lower_past = lower > tol
    enough = n_c >= need
    info["confident"] = past and lower_past
    if past and (lower_past or enough or overwhelming):
        status = GateStatus.RED
    elif within and enough:
        status = GateStatus.GREEN
    else:
        status = GateStatus.INSUFFICIENT
        text += f"; needs {need}"
    return Gate(gname, status, _r(value), tol, text[:500]), info


def _histogram_gate(gname: str, decl: dict[str, Any], c: Sample, p: Sample, info: dict[str, Any], *,
                    alpha: float, rollback_alpha: float) -> tuple[Gate, dict[str, Any]]:
    name = gname[len(GATE_PREFIX):]
    tol = decl["promote_tolerance"]
    hc, hp = _hist(c, name), _hist(p, name)
    mc, mp = (st.histogram_mean_var(hc) if hc else None), (st.histogram_mean_var(hp) if hp else None)
    if mc is None or mp is None or mp[0] == 0:
        return Gate(gname, GateStatus.INSUFFICIENT, None, tol, "no data yet"), info
    n_c, n_p = hc[-1][1], hp[-1][1]  # type: ignore[index]
    sign = 1 if decl["worse"] == "higher" else -1
    worse_by = sign * (mc[0] - mp[0]) / abs(mp[0])
    var_c, var_p = max(mc[1], mp[1], 1e-12), max(mp[1], 1e-12)
    se = math.sqrt(var_c / n_c + var_p / n_p) / abs(mp[0])
    z = st.z_quantile(1 - alpha)
    need = st.mean_sample_size(var_c, var_p, max(tol * abs(mp[0]), 1e-12), ratio=n_p / n_c)
    p_worse = _rank_p_worse(hc, hp, sign)  # type: ignore[arg-type]
    overwhelming = worse_by > tol and st.rollback_evidence(p_worse, n_c, alpha=rollback_alpha)
    info.update({"test": "difference of means (bucket midpoints); Mann-Whitney U for evidence",
                 "canary_mean": _r(mc[0]), "production_mean": _r(mp[0]), "worse_by": _r(worse_by),
                 "ci": [_r(worse_by - z * se), _r(worse_by + z * se)], "p_worse": _r(p_worse),
                 "sample_size": {"canary": n_c, "production": n_p}, "required": need, "overwhelming": overwhelming})
    text = (f"{_word(decl)} mean {mc[0]:.4g} vs production {mp[0]:.4g}: {_pct(worse_by)} worse "
            f"(upper bound {_pct(worse_by + z * se)}, tolerance {tol:.0%}) over {int(n_c)}")
    enough = n_c >= need
    info["confident"] = worse_by > tol and worse_by - z * se > tol
    if worse_by > tol and (worse_by - z * se > tol or enough or overwhelming):
        status = GateStatus.RED
    elif worse_by <= tol and worse_by + z * se <= tol and enough:
        status = GateStatus.GREEN
    else:
        status = GateStatus.INSUFFICIENT
        text += f"; needs {need}"
    return Gate(gname, status, _r(worse_by), tol, text[:500]), info


def trigger(name: str, decl: dict[str, Any], window: dict[str, Sample], *,
            alpha: float = st.ROLLBACK_ALPHA) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The rollback rule of one custom metric over the last window: the point estimate past the
    rollback threshold in the worse direction, the canary worse than production at `alpha`, on at
    least MIN_ROLLBACK_EVENTS events. Returns (the trigger as {metric, value, limit, detail} or
    None, what was measured). Short of it, a value within 20 % of the threshold on as many events
    is an early warning, recorded as `warning` in what was measured."""
    c, p = window["canary"], window["production"]
    limit = decl["rollback_threshold"]
    sign = 1 if decl["worse"] == "higher" else -1
    if decl["kind"] == "histogram":
        hc, hp = _hist(c, name), _hist(p, name)
        mc, mp = (st.histogram_mean_var(hc) if hc else None), (st.histogram_mean_var(hp) if hp else None)
        if mc is None or mp is None or mp[0] == 0:
            return None, {}
        worse_by = sign * (mc[0] - mp[0]) / abs(mp[0])
        p_worse = _rank_p_worse(hc, hp, sign)  # type: ignore[arg-type]
        events = hc[-1][1]  # type: ignore[index]
        detail = {"canary_mean": _r(mc[0]), "production_mean": _r(mp[0]), "worse_by": _r(worse_by),
                  "p_worse": _r(p_worse), "observations": events, "limit": limit}
        words = f"mean {mc[0]:.4g} vs production {mp[0]:.4g} ({_pct(worse_by)} worse > {limit:.0%}"
        value = worse_by
    else:
        cc, pc = _counts(decl, c, name), _counts(decl, p, name)
        if cc is None or pc is None:
            return None, {}
        (x_c, n_c), (x_p, n_p) = cc, pc
        if decl["kind"] == "ratio":
            cmp = st.compare_proportions(int(x_c), int(n_c), int(x_p), int(n_p))
            value, p_worse, events = cmp.difference * 100, cmp.p_worse, x_c
            detail = {"canary": [x_c, n_c], "production": [x_p, n_p], "difference_pp": _r(value),
                      "p_worse": _r(p_worse), "limit_pp": limit}
            words = (f"{_shown(decl, cmp.canary_rate):.2%} vs production {_shown(decl, cmp.production_rate):.2%} "
                     f"({value:+.2f} pp worse > {limit:g} pp")
        else:
            rc, rp = x_c / n_c, x_p / n_p
            if sign > 0:
                p_worse, events = st.poisson_rate_test(int(x_c), int(n_c), int(x_p), int(n_p)), x_c
                value = rc / rp - 1 if rp > 0 else (math.inf if rc > 0 else 0.0)
            else:
                p_worse, events = st.poisson_rate_test(int(x_p), int(n_p), int(x_c), int(n_c)), x_p
                value = rp / rc - 1 if rc > 0 else (math.inf if rp > 0 else 0.0)
            detail = {"canary": [x_c, n_c], "production": [x_p, n_p], "worse_by": _r(value),
                      "p_worse": _r(p_worse), "limit": limit}
            words = f"{rc:.4g} vs production {rp:.4g} per request ({_pct(value)} worse > {limit:.0%}"
    if value > limit and st.rollback_evidence(p_worse, events, alpha=alpha):
        fired = {"metric": name, "value": value if math.isfinite(value) else 1e300, "limit": limit,
                 "detail": f"{_word(decl, name)} {words}; p={p_worse:.1e}, {int(events)} events)"}
        return fired, detail
    if value >= WARNING_FRACTION * limit and events >= st.MIN_ROLLBACK_EVENTS:
        unit = " pp" if decl["kind"] == "ratio" else ""
        shown = f"{value:+.2f} pp" if decl["kind"] == "ratio" else _pct(value)
        detail["warning"] = {"metric": name, "value": value if math.isfinite(value) else 1e300, "limit": limit,
                             "detail": f"{name.replace('_', ' ')} {shown} worse than production, within 20% of the "
                                       f"{limit:g}{unit} rollback threshold"}
    return None, detail


def _rank_p_worse(hc: Buckets, hp: Buckets, sign: int) -> float | None:
    bounds = sorted({le for le, _ in hc} | {le for le, _ in hp})
    rank = st.mann_whitney_buckets(st.bucket_counts(_align(hc, bounds)), st.bucket_counts(_align(hp, bounds)))
    if rank is None:
        return None
    return rank.p_greater if sign > 0 else rank.p_less


def _align(buckets: Buckets, bounds: list[float]) -> Buckets:
    have = dict(buckets)
    out, last = [], 0.0
    for le in bounds:
        last = have.get(le, last)
        out.append((le, last))
    return out


def _word(decl: dict[str, Any], name: str | None = None) -> str:
    prefix = f"{name.replace('_', ' ')}: " if name else ""
    return prefix + {"ratio": "share", "rate": "events", "histogram": "value"}[decl["kind"]]


def _shown(decl: dict[str, Any], bad_share: float) -> float:
    """A ratio's value as declared (numerator / denominator) from the share counted as worse."""
    return bad_share if decl["worse"] == "higher" else 1 - bad_share


def _pct(value: float) -> str:
    return "∞" if not math.isfinite(value) else f"{value:+.1%}"


def _r(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    return value


def judge(decls: dict[str, dict[str, Any]], window: dict[str, Sample], stage: dict[str, Sample]
          ) -> tuple[list[Gate], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Every declared custom metric: its promotion gate over the stage so far, its rollback
    trigger over the last window, its early warning, and the numbers they read (for the
    evaluation's inputs)."""
    gates: list[Gate] = []
    fired: list[dict[str, Any]] = []
    warned: list[dict[str, Any]] = []
    record: dict[str, Any] = {}
    for name in sorted(decls):
        decl = decls[name]
        g, gate_info = gate(name, decl, stage)
        t, window_info = trigger(name, decl, window)
        gates.append(g)
        if t is not None:
            fired.append(t)
        if "warning" in window_info:
            warned.append(window_info["warning"])
        record[name] = {
            "declaration": {k: v for k, v in decl.items() if k != "promql"},
            "window": {role: values_json_one(s, name) for role, s in window.items()},
            "stage": {role: values_json_one(s, name) for role, s in stage.items()},
            "gate": gate_info, "rollback": window_info, "fired": t is not None,
        }
    return gates, fired, warned, record


def judge_segment(decls: dict[str, dict[str, Any]], window: dict[str, Sample], stage: dict[str, Sample], *,
                  alpha_gate: float, alpha_roll: float
                  ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """Every declared custom metric in one segment, against production's same segment, as the
    evaluator judges the built-in metrics of a segment (monitoring.evaluator.judge_segments): the
    rollback rule over the window at `alpha_roll` (the family's level shared among the k segments
    judged) and the promotion gate over the stage as a veto, red only when past the tolerance with
    confidence at `alpha_gate` (the promotion level over k) or with overwhelming evidence at
    `alpha_roll`; short of evidence a segment holds nothing (the canary as a whole's gate sets the
    sample size). Returns the rollback triggers that fired, why the segment is red (one line per
    metric) and what each metric read, for the segment's record. No early warnings: those are
    the canary as a whole's."""
    fired: list[dict[str, Any]] = []
    reds: list[str] = []
    record: dict[str, Any] = {}
    for name in sorted(decls):
        decl = decls[name]
        _, gate_info = gate(name, decl, stage, alpha=alpha_gate, rollback_alpha=alpha_roll)
        t, window_info = trigger(name, decl, window, alpha=alpha_roll)
        window_info.pop("warning", None)
        red = _segment_red(name, decl, gate_info)
        if t is not None:
            fired.append(t)
        if red is not None:
            reds.append(red)
        record[name] = {
            "window": {role: values_json_one(s, name) for role, s in window.items()},
            "stage": {role: values_json_one(s, name) for role, s in stage.items()},
            "gate": gate_info, "rollback": window_info, "red": red, "fired": t is not None,
        }
    return fired, reds, record


def _segment_red(name: str, decl: dict[str, Any], info: dict[str, Any]) -> str | None:
    """Why one segment's custom metric vetoes promotion (from its gate's numbers), or None."""
    if not (info.get("confident") or info.get("overwhelming")):
        return None
    tol, label = decl["promote_tolerance"], f"{name.replace('_', ' ')} (custom)"
    if decl["kind"] == "ratio":
        low = info["ci_pp"][0]
        return f"{label} {info['difference_pp']:+.2f} pp worse (lower bound {low:+.2f} pp) > {tol:g} pp"
    worse_by, low = info["worse_by"], info["ci"][0]
    return (f"{label} {_pct(worse_by if worse_by is not None else math.inf)} worse "
            f"(lower bound {_pct(low if low is not None else math.inf)}) > {tol:.0%}")


def values_json_one(s: Sample, name: str) -> dict[str, Any] | None:
    """One custom metric's values of a sample, as recorded (with the requests a rate divides by),
    and as one number: `value` (a ratio's numerator / denominator, a rate's events per request, a
    histogram's mean) over `count` (its denominator, requests or observations), so that the
    canary's charts pool windows as a weighted mean (monitoring.series)."""
    v = s.custom.get(name)
    if v is None:
        return None
    out = custom_json({name: v})[name]
    if "n" in v:
        value, count = (v["x"] / v["n"] if v["n"] else None), v["n"]
    elif "x" in v:
        out["requests"] = s.requests
        value, count = (v["x"] / s.requests if s.requests > 0 else None), s.requests
    else:
        buckets = v.get("buckets")
        mean = st.histogram_mean_var(buckets) if buckets else None
        value, count = (mean[0] if mean else None), (buckets[-1][1] if buckets else 0.0)
    out["value"], out["count"] = _r(value), count
    return out


# --- Prometheus -----------------------------------------------------------------------------------

_BY = "model, version, segment"


def promql_for(decl: dict[str, Any], window_s: int) -> str:
    """One query for one declared metric, for every canary that declares it: each selector over
    the window and as a cumulative counter, grouped by model, version and segment (and `le` for a
    histogram), the span and the part told apart by two labels CanaryHub adds."""
    by = f"{_BY}, le" if decl["kind"] == "histogram" else _BY
    parts = []
    for part, selector in sorted(decl["promql"].items()):
        for span, inner in (("window", f"increase({selector}[{int(window_s)}s])"), ("total", selector)):
            parts.append(f'label_replace(label_replace(sum by ({by}) ({inner}), "canaryhub_span", "{span}", "", ""), '
                         f'"canaryhub_part", "{part}", "", "")')
    return " or ".join(parts)


def prometheus_queries(decls_by_target: dict[int, dict[str, dict[str, Any]]], window_s: int) -> dict[str, str]:
    """The distinct queries the declared metrics of every target need: {query: query}."""
    out: dict[str, str] = {}
    for decls in decls_by_target.values():
        for decl in decls.values():
            if decl.get("promql"):
                q = promql_for(decl, window_s)
                out[q] = q
    return out


def prometheus_values(decl: dict[str, Any], answer: list[dict[str, Any]], *, model: str, version: str,
                      segments: tuple[str, ...] | None) -> dict[str, dict[str, Any]]:
    """One version's values of one declared metric from its query's answer, summed over its
    segments (those of `segments`, or all): {"window": values, "total": values}."""
    return _fold(decl, _rows(answer, model=model, version=version, segments=segments))


def prometheus_segment_values(decl: dict[str, Any], answer: list[dict[str, Any]], *, model: str, version: str,
                              segments: tuple[str, ...] | None) -> dict[str, dict[str, dict[str, Any]]]:
    """The same values segment by segment, from the same answer (the query keeps the segment
    label): {segment: {"window": values, "total": values}}, a series without the label under ""."""
    by_segment: dict[str, list[tuple[dict[str, str], float]]] = {}
    for m, value in _rows(answer, model=model, version=version, segments=segments):
        by_segment.setdefault(m.get("segment", ""), []).append((m, value))
    return {seg: _fold(decl, rows) for seg, rows in by_segment.items()}


def _rows(answer: list[dict[str, Any]], *, model: str, version: str,
          segments: tuple[str, ...] | None) -> list[tuple[dict[str, str], float]]:
    """The answer's series of one version (in `segments`, or all), as (labels, finite value)."""
    out = []
    for r in answer:
        m = r.get("metric", {})
        if m.get("model") != model or m.get("version") != version:
            continue
        if segments is not None and m.get("segment", "") not in segments:
            continue
        try:
            value = float(r["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            out.append((m, value))
    return out


def _fold(decl: dict[str, Any], rows: list[tuple[dict[str, str], float]]) -> dict[str, dict[str, Any]]:
    sums: dict[str, dict[str, float]] = {"window": {}, "total": {}}
    buckets: dict[str, dict[float, float]] = {"window": {}, "total": {}}
    for m, value in rows:
        span = m.get("canaryhub_span")
        if span not in sums:
            continue
        if decl["kind"] == "histogram":
            le = le_parse(m.get("le"))
            buckets[span][le] = buckets[span].get(le, 0.0) + value
        else:
            part = m.get("canaryhub_part", "")
            sums[span][part] = sums[span].get(part, 0.0) + value
    out: dict[str, dict[str, Any]] = {}
    for span in ("window", "total"):
        if decl["kind"] == "histogram":
            if buckets[span]:
                out[span] = {"buckets": sorted(buckets[span].items())}
        elif decl["kind"] == "ratio":
            if "denominator" in sums[span]:
                out[span] = {"x": float(round(sums[span].get("numerator", 0.0))),
                             "n": float(round(sums[span]["denominator"]))}
        elif "events" in sums[span]:
            out[span] = {"x": float(round(sums[span]["events"]))}
    return out
