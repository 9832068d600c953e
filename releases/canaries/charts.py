"""The canary dashboard's charts: pure builders from downsampled evaluation series to Plotly
figures (JSON-ready dicts), each with the same numbers as a table (the screen-reader
alternative, the no-JavaScript view and the CSV download).

No database and no clock here: releases.canaries.dashboard reads the series, the stage spans and
the events, and passes them in. Every chart draws the canary and production from the same
evaluation windows; the limits are the canary's frozen thresholds, drawn where they apply:

- error rate: the promotion limit and the rollback threshold are margins over production's
  rate, drawn as production + margin;
- the stage's error-rate difference with the interval the error-rate gate recorded, against the
  promotion margin and the rollback margin;
- latency p99 and quality: ratios to production, drawn as production × ratio;
- safety violations: counts against the promotion and rollback limits;
- the router's split: the configured percent against the canary's observed share of requests;
- the latency distribution of the current stage: both histograms overlaid (share per bucket);
- for a model that reports tokens (or a version that reports them): the guardrail block rate and
  the output-schema failure rate against production's with their promotion limits (production +
  margin) and rollback thresholds (the schema rule's margin; the guardrail rule's blocks a minute
  as the rate they make at the canary's traffic);
- availability, when either version reported an unavailable request in the range, with the
  promotion limit (production − margin);
- response length p50 and p95 (output tokens per response), when the windows recorded it;
  recorded, not judged;
- each custom metric the version declares (monitoring.custom): canary and production, with the
  promotion limit and rollback threshold on the worse side of production's value.

Stage boundaries are shaded bands labelled with their percent; events (promotions with their
signers, holds, warnings, the rollback) are markers on every time chart.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from monitoring import llm
from monitoring.availability import AVAILABILITY_PP
from monitoring.buckets import Bucket
from monitoring.evaluator import GUARDRAIL_PER_MIN, WINDOW_S

CANARY = "#d9480f"
PRODUCTION = "#1c7ed6"
PROMOTION = "#2b8a3e"
ROLLBACK = "#c92a2a"
BAND = "rgba(217, 72, 15, 0.15)"
MARKER_STYLE = {
    "promoted": ("triangle-up", "#2b8a3e"),
    "held": ("square", "#e67700"),
    "warning": ("diamond", "#f08c00"),
    "rolled_back": ("x", "#c92a2a"),
    "other": ("circle", "#495057"),
}
RANGES = {"stage": "This stage", "24h": "Last 24 h", "all": "Whole canary"}


@dataclass(frozen=True)
class StageBand:
    index: int
    label: str  # "5%", "cohort beta"
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Marker:
    at: datetime
    kind: str  # promoted | held | warning | rolled_back | other
    text: str


@dataclass(frozen=True)
class Distribution:
    """Cumulative latency buckets of the current stage, from its latest evaluation."""

    canary: Sequence[tuple[float, float]]
    production: Sequence[tuple[float, float]]


@dataclass
class Chart:
    key: str
    title: str
    description: str
    figure: dict[str, Any]
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    @property
    def script_id(self) -> str:
        return f"figure-{self.key}"

    def table_body(self) -> SafeString:
        """The rows as HTML table rows, escaped (built here: a template loop over every cell of
        a few hundred rows costs more than the whole chart)."""
        if not self.rows:
            empty = f'<td colspan="{len(self.columns)}">No data in this range.</td>'
            return mark_safe(f'<tr class="table__empty">{empty}</tr>')
        return mark_safe("".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in self.rows))

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        writer.writerows(["" if v is None else v for v in row] for row in self.rows)
        return out.getvalue()


def _cell(value: Any) -> str:
    """A table cell's HTML: numbers as they are (nothing to escape), text escaped."""
    if value is None:
        return ""
    if type(value) in (int, float):
        return str(value)
    return escape(value)


@dataclass(frozen=True)
class ChartInput:
    buckets: Sequence[Bucket]
    thresholds: dict[str, dict[str, float]]
    bands: Sequence[StageBand] = ()
    markers: Sequence[Marker] = ()
    distribution: Distribution | None = None
    segments: Sequence[str] = ()  # the segments whose counts the buckets carry
    segments_red: frozenset[str] = frozenset()  # segments red in the latest evaluation
    custom: dict[str, dict[str, Any]] = field(default_factory=dict)  # declared custom metrics, by name


def build_charts(data: ChartInput) -> list[Chart]:
    """Every chart of the canary page, in page order; the segments' panels last, worst first."""
    charts = [
        _error_rate(data), _difference(data), _latency(data), _latency_quantile(data, "p95"),
        _latency_quantile(data, "p50"), _quality(data), _safety(data), _tokens(data), _cost(data),
        *_llm_panels(data), _router(data),
    ]
    if data.distribution is not None:
        charts.append(_distribution(data.distribution))
    return charts + _custom(data) + _segments(data)


def _custom(data: ChartInput) -> list[Chart]:
    """One chart per declared custom metric: the canary's value against production's (a ratio in
    %, a rate per request, a histogram's mean), the limits drawn on the worse side of production's."""
    out = []
    for i, name in enumerate(sorted(data.custom)):
        decl = data.custom[name]
        found = [(k, k.custom_metric(name)) for k in data.buckets]
        found = [(k, v) for k, v in found if v is not None]
        x = [_iso(k.end) for k, _ in found]
        ratio = decl.get("kind") == "ratio"
        scale = _pct if ratio else _r
        canary = [scale(v.canary) for _, v in found]
        production = [scale(v.production) for _, v in found]
        sign = 1 if decl.get("worse") == "higher" else -1
        traces = [_line("Canary", x, canary, CANARY), _line("Production", x, production, PRODUCTION)]
        for label, key, colour in (("Promotion limit", "promote_tolerance", PROMOTION),
                                   ("Rollback threshold", "rollback_threshold", ROLLBACK)):
            limit = decl.get(key)
            if limit is None:
                continue
            if ratio:
                line = _plus(production, sign * limit)
                words_limit = f"production {'+' if sign > 0 else '−'} {limit:g} pp"
            else:
                line, words_limit = _times_by(production, 1 + sign * limit), f"production × {1 + sign * limit:g}"
            traces.append(_limit(f"{label} ({words_limit})", x, line, colour))
        unit = "%" if ratio else ("per request" if decl.get("kind") == "rate" else "mean")
        words = name.replace("_", " ")
        rows = [[_iso(k.end), c, _n(v.canary_count), p, _n(v.production_count)]
                for (k, v), c, p in zip(found, canary, production, strict=True)]
        out.append(Chart(f"custom_{i + 1}", f"{words.capitalize()} (custom metric), canary against production",
                         f"The canary's {words} per time bucket ({unit}; worse when {decl.get('worse')}), against "
                         "production's, each window weighted by its count, with the limits on the worse side.",
                         _figure(traces, data, y_title=f"{words} ({unit})"),
                         ["window_end", "canary_value", "canary_count", "production_value", "production_count"],
                         rows))
    return out


def segment_order(data: ChartInput) -> list[str]:
    """The segments worst first: those red in the latest evaluation, then by how far the canary's
    pooled error rate over the range exceeds production's in the same segment, then by name."""
    def key(name: str) -> tuple[bool, float, str]:
        totals = [0.0, 0.0, 0.0, 0.0]
        for bucket in data.buckets:
            seg = bucket.segment(name)
            if seg is not None:
                for i, v in enumerate((seg.canary_requests, seg.canary_errors, seg.production_requests,
                                       seg.production_errors)):
                    totals[i] += v
        gap = (totals[1] / totals[0] if totals[0] else 0.0) - (totals[3] / totals[2] if totals[2] else 0.0)
        return (name not in data.segments_red, -gap, name)

    return sorted(data.segments, key=key)


# --- the charts -----------------------------------------------------------------------------------


def _error_rate(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    canary = [_pct(k.canary_rate) for k in b]
    production = [_pct(k.production_rate) for k in b]
    spikes = [_pct(k.canary_rate_max) for k in b]
    promote = data.thresholds.get("promote", {}).get("error_rate_pp")
    rollback = data.thresholds.get("rollback", {}).get("error_rate_pp")
    traces = [
        _line("Canary", x, canary, CANARY),
        _line("Production", x, production, PRODUCTION),
        _line("Canary, worst window", x, spikes, CANARY, dash="dot", width=1),
        _limit("Promotion limit (production + margin)", x, _plus(production, promote), PROMOTION),
        _limit("Rollback threshold (production + margin)", x, _plus(production, rollback), ROLLBACK),
    ]
    rows = [[_iso(k.end), k.windows, _n(k.canary_requests), _n(k.canary_errors), _r(c), _n(k.production_requests),
             _n(k.production_errors), _r(p), _r(s)]
            for k, c, p, s in zip(b, canary, production, spikes, strict=True)]
    return Chart("error_rate", "Error rate, canary against production",
                 "Pooled error rate per time bucket (%), the canary's worst single window, and the limits "
                 "over production.",
                 _figure(traces, data, y_title="error rate (%)"),
                 ["window_end", "windows", "canary_requests", "canary_errors", "canary_error_rate_pct",
                  "production_requests", "production_errors", "production_error_rate_pct",
                  "canary_worst_window_pct"], rows)


def _difference(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    diff = [_r(k.difference_pp) for k in b]
    low = [_r(k.ci_low_pp) for k in b]
    high = [_r(k.ci_high_pp) for k in b]
    promote = data.thresholds.get("promote", {}).get("error_rate_pp")
    rollback = data.thresholds.get("rollback", {}).get("error_rate_pp")
    traces = [
        _trace("scatter", x, high, name="Interval, upper", mode="lines", line={"width": 0}, showlegend=False,
               hoverinfo="skip"),
        _trace("scatter", x, low, name="Confidence interval", mode="lines", line={"width": 0}, fill="tonexty",
               fillcolor=BAND),
        _line("Difference (canary − production), stage so far", x, diff, CANARY),
        _limit("Promotion margin", x, _flat(promote, x), PROMOTION),
        _limit("Rollback margin", x, _flat(rollback, x), ROLLBACK),
    ]
    rows = [[_iso(k.end), k.stage_max + 1, d, lo, hi] for k, d, lo, hi in zip(b, diff, low, high, strict=True)]
    return Chart("difference", "Error-rate difference with its interval",
                 "The error-rate gate's difference over the stage so far (percentage points) and its confidence "
                 "interval, against the promotion and rollback margins.",
                 _figure(traces, data, y_title="difference (pp)"),
                 ["window_end", "stage", "difference_pp", "interval_low_pp", "interval_high_pp"], rows)


def _latency(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    canary = [_ms(k.canary_p99_max) for k in b]
    canary_mean = [_ms(k.canary_p99_mean) for k in b]
    production = [_ms(k.production_p99_mean) for k in b]
    promote = data.thresholds.get("promote", {}).get("latency_p99_ratio")
    rollback = data.thresholds.get("rollback", {}).get("latency_p99_ratio")
    traces = [
        _line("Canary p99 (worst window)", x, canary, CANARY),
        _line("Canary p99 (mean)", x, canary_mean, CANARY, dash="dot", width=1),
        _line("Production p99", x, production, PRODUCTION),
        _limit("Promotion limit (production ×)", x, _times_by(production, promote), PROMOTION),
        _limit("Rollback threshold (production ×)", x, _times_by(production, rollback), ROLLBACK),
    ]
    rows = [[_iso(k.end), c, m, p] for k, c, m, p in zip(b, canary, canary_mean, production, strict=True)]
    return Chart("latency_p99", "Latency p99, canary against production",
                 "p99 latency per time bucket (ms): the canary's worst and mean window, production's mean, "
                 "and the limits.",
                 _figure(traces, data, y_title="p99 latency (ms)"),
                 ["window_end", "canary_p99_worst_ms", "canary_p99_mean_ms", "production_p99_ms"], rows)


def _latency_quantile(data: ChartInput, quantile: str) -> Chart:
    b = data.buckets
    x = _times(b)
    canary = [_ms(getattr(k, f"canary_{quantile}_mean")) for k in b]
    production = [_ms(getattr(k, f"production_{quantile}_mean")) for k in b]
    traces = [_line(f"Canary {quantile}", x, canary, CANARY),
              _line(f"Production {quantile}", x, production, PRODUCTION)]
    columns = ["window_end", f"canary_{quantile}_ms", f"production_{quantile}_ms"]
    rows = [[_iso(k.end), c, p] for k, c, p in zip(b, canary, production, strict=True)]
    if quantile == "p95":
        worst = [_ms(k.canary_p95_max) for k in b]
        traces.insert(1, _line("Canary p95 (worst window)", x, worst, CANARY, dash="dot", width=1))
        columns.insert(2, "canary_p95_worst_ms")
        rows = [[*row[:2], w, *row[2:]] for row, w in zip(rows, worst, strict=True)]
    return Chart(f"latency_{quantile}", f"Latency {quantile}, canary against production",
                 f"{quantile} latency per time bucket (ms), the mean over its windows. No gate is set on the "
                 f"{quantile}: the latency limits apply to the p99.",
                 _figure(traces, data, y_title=f"{quantile} latency (ms)"), columns, rows)


def _tokens(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    canary = [_r(k.canary_tokens_per_request) for k in b]
    production = [_r(k.production_tokens_per_request) for k in b]
    rollback = data.thresholds.get("rollback", {}).get("tokens_per_request_ratio")
    promote = data.thresholds.get("promote", {}).get("tokens_per_request_ratio", llm.TOKENS_RATIO)
    traces = [
        _line("Canary", x, canary, CANARY),
        _line("Production", x, production, PRODUCTION),
        _limit("Promotion limit (production ×)", x, _times_by(production, promote), PROMOTION),
        _limit("Rollback threshold (production ×)", x, _times_by(production, rollback), ROLLBACK),
    ]
    rows = [[_iso(k.end), _n(k.canary_tokens), c, _n(k.production_tokens), p]
            for k, c, p in zip(b, canary, production, strict=True)]
    return Chart("tokens_per_request", "Tokens per request, canary against production",
                 "Input and output tokens per request in each time bucket (LLM serving), the promotion "
                 "gate's limit, and the rollback threshold when the canary's thresholds set one.",
                 _figure(traces, data, y_title="tokens per request"),
                 ["window_end", "canary_tokens", "canary_tokens_per_request", "production_tokens",
                  "production_tokens_per_request"], rows)


def _cost(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    canary = [_r(k.canary_cost_per_1000) for k in b]
    production = [_r(k.production_cost_per_1000) for k in b]
    promote = data.thresholds.get("promote", {}).get("cost_per_request_ratio", llm.COST_RATIO)
    traces = [_line("Canary", x, canary, CANARY), _line("Production", x, production, PRODUCTION),
              _limit("Promotion limit (production ×)", x, _times_by(production, promote), PROMOTION)]
    rows = [[_iso(k.end), _r(k.canary_cost_usd), c, _r(k.production_cost_usd), p]
            for k, c, p in zip(b, canary, production, strict=True)]
    return Chart("cost_per_1000", "Cost per 1,000 requests, canary against production",
                 "Inference cost per 1,000 requests in each time bucket (USD), as the metric source reports it, "
                 "and the promotion gate's limit.",
                 _figure(traces, data, y_title="USD per 1,000 requests"),
                 ["window_end", "canary_cost_usd", "canary_usd_per_1000", "production_cost_usd",
                  "production_usd_per_1000"], rows)


def _llm_panels(data: ChartInput) -> list[Chart]:
    """The panels of the LLM serving metrics the range's evaluations carry: guardrail blocks and
    output-schema failures for a model that reports tokens (their gates are judged then) or
    reports them; availability once either version reported an unavailable request (its gate
    appears then); the response length when the windows recorded it."""
    b = data.buckets
    tokens = any(k.canary_tokens + k.production_tokens > 0 for k in b)
    out = []
    if tokens or any(k.canary_guardrail_blocks + k.production_guardrail_blocks > 0 for k in b):
        out.append(_guardrail(data))
    if tokens or any(k.canary_schema_failures + k.production_schema_failures > 0 for k in b):
        out.append(_schema(data))
    if any(k.canary_unavailable + k.production_unavailable > 0 for k in b):
        out.append(_availability(data))
    if any(k.canary_response_p50_mean is not None or k.canary_response_p95_mean is not None
           or k.production_response_p50_mean is not None for k in b):
        out.append(_response_length(data))
    return out


def _guardrail(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    canary = [_pct(k.share("canary", "guardrail")) for k in b]
    production = [_pct(k.share("production", "guardrail")) for k in b]
    promote = data.thresholds.get("promote", {}).get("guardrail_block_rate_pp", llm.GUARDRAIL_RATE_PP)
    per_min = data.thresholds.get("rollback", {}).get("guardrail_blocks_per_min", GUARDRAIL_PER_MIN)
    minutes = WINDOW_S / 60
    # The rollback rule counts blocks a minute over each window: at the bucket's mean canary
    # traffic per window, that many blocks are this share of its requests.
    rollback = [_pct(per_min * minutes * k.windows / k.canary_guardrail_requests)
                if k.canary_guardrail_requests > 0 and k.windows else None for k in b]
    traces = [
        _line("Canary", x, canary, CANARY),
        _line("Production", x, production, PRODUCTION),
        _limit("Promotion limit (production + margin)", x, _plus(production, promote), PROMOTION),
        _limit(f"Rollback threshold ({per_min:g} blocks a minute at the canary's traffic)", x, rollback, ROLLBACK),
    ]
    rows = [[_iso(k.end), _n(k.canary_guardrail_requests), _n(k.canary_guardrail_blocks), c,
             _r(k.canary_guardrail_blocks / k.windows / minutes) if k.windows else None,
             _n(k.production_guardrail_requests), _n(k.production_guardrail_blocks), p]
            for k, c, p in zip(b, canary, production, strict=True)]
    return Chart("guardrail_block_rate", "Guardrail block rate, canary against production",
                 "The share of requests a guardrail blocked in each time bucket (%), the promotion gate's "
                 f"limit (production + {promote:g} pp) and the rollback rule's {per_min:g} blocks a minute over a "
                 "window, drawn as the share it makes at the canary's traffic in the bucket.",
                 _figure(traces, data, y_title="blocked (%)"),
                 ["window_end", "canary_requests", "canary_guardrail_blocks", "canary_block_rate_pct",
                  "canary_blocks_per_min", "production_requests", "production_guardrail_blocks",
                  "production_block_rate_pct"], rows)


def _schema(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    canary = [_pct(k.share("canary", "schema")) for k in b]
    production = [_pct(k.share("production", "schema")) for k in b]
    promote = data.thresholds.get("promote", {}).get("schema_failure_rate_pp", llm.SCHEMA_RATE_PP)
    rollback = data.thresholds.get("rollback", {}).get("schema_failure_rate_pp", llm.SCHEMA_ROLLBACK_PP)
    traces = [
        _line("Canary", x, canary, CANARY),
        _line("Production", x, production, PRODUCTION),
        _limit("Promotion limit (production + margin)", x, _plus(production, promote), PROMOTION),
        _limit("Rollback threshold (production + margin)", x, _plus(production, rollback), ROLLBACK),
    ]
    rows = [[_iso(k.end), _n(k.canary_schema_requests), _n(k.canary_schema_failures), c,
             _n(k.production_schema_requests), _n(k.production_schema_failures), p]
            for k, c, p in zip(b, canary, production, strict=True)]
    return Chart("schema_failure_rate", "Output-schema failure rate, canary against production",
                 "The share of outputs that failed their output schema in each time bucket (%), the promotion "
                 f"gate's limit (production + {promote:g} pp) and the rollback threshold (production + "
                 f"{rollback:g} pp).",
                 _figure(traces, data, y_title="schema failures (%)"),
                 ["window_end", "canary_requests", "canary_schema_failures", "canary_failure_rate_pct",
                  "production_requests", "production_schema_failures", "production_failure_rate_pct"], rows)


def _availability(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    canary = [_pct(k.availability("canary")) for k in b]
    production = [_pct(k.availability("production")) for k in b]
    promote = data.thresholds.get("promote", {}).get("availability_pp", AVAILABILITY_PP)
    traces = [
        _line("Canary", x, canary, CANARY),
        _line("Production", x, production, PRODUCTION),
        _limit("Promotion limit (production − margin)", x, _plus(production, -promote), PROMOTION),
    ]
    rows = [[_iso(k.end), _n(k.canary_unavailable_requests), _n(k.canary_unavailable), c,
             _n(k.production_unavailable_requests), _n(k.production_unavailable), p]
            for k, c, p in zip(b, canary, production, strict=True)]
    return Chart("availability", "Availability, canary against production",
                 "The share of requests served, not failed as unavailable, in each time bucket (%), and the "
                 f"promotion gate's limit (production − {promote:g} pp). No rollback rule reads availability: "
                 "an unavailable request is an error too, and the error rate's rollback threshold applies.",
                 _figure(traces, data, y_title="availability (%)", rangemode="normal"),
                 ["window_end", "canary_requests", "canary_unavailable", "canary_availability_pct",
                  "production_requests", "production_unavailable", "production_availability_pct"], rows)


def _response_length(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    series = {
        "canary_p50": [_r(k.canary_response_p50_mean) for k in b],
        "canary_p95": [_r(k.canary_response_p95_mean) for k in b],
        "canary_p95_worst": [_r(k.canary_response_p95_max) for k in b],
        "production_p50": [_r(k.production_response_p50_mean) for k in b],
        "production_p95": [_r(k.production_response_p95_mean) for k in b],
    }
    traces = [
        _line("Canary p95", x, series["canary_p95"], CANARY),
        _line("Canary p95 (worst window)", x, series["canary_p95_worst"], CANARY, dash="dot", width=1),
        _line("Canary p50", x, series["canary_p50"], CANARY, dash="dash"),
        _line("Production p95", x, series["production_p95"], PRODUCTION),
        _line("Production p50", x, series["production_p50"], PRODUCTION, dash="dash"),
    ]
    rows = [[_iso(k.end), *values] for k, *values in zip(b, *series.values(), strict=True)]
    return Chart("response_tokens", "Response length p50 and p95, canary against production",
                 "Output tokens per response in each time bucket, the mean of its windows' quantiles. Recorded, "
                 "not judged: no gate is set on response length (tokens per request is judged).",
                 _figure(traces, data, y_title="output tokens per response"),
                 ["window_end", *(f"{name}_tokens" for name in series)], rows)


def _segments(data: ChartInput) -> list[Chart]:
    """One panel per segment, worst first: the segment's error rate against production's same
    segment, with the promotion limit and rollback threshold over it."""
    if not data.segments:
        return []
    keys = {name: f"segment_{i + 1}" for i, name in enumerate(sorted(data.segments))}  # stable across refreshes
    promote = data.thresholds.get("promote", {}).get("error_rate_pp")
    rollback = data.thresholds.get("rollback", {}).get("error_rate_pp")
    out = []
    for name in segment_order(data):
        found = [(k, k.segment(name)) for k in data.buckets]
        found = [(k, seg) for k, seg in found if seg is not None]
        x = [_iso(k.end) for k, _ in found]
        canary = [_pct(seg.canary_rate) for _, seg in found]
        production = [_pct(seg.production_rate) for _, seg in found]
        traces = [
            _line(f"Canary, {name}", x, canary, CANARY),
            _line(f"Production, {name}", x, production, PRODUCTION),
            _limit("Promotion limit (production + margin)", x, _plus(production, promote), PROMOTION),
            _limit("Rollback threshold (production + margin)", x, _plus(production, rollback), ROLLBACK),
        ]
        rows = [[_iso(k.end), _n(seg.canary_requests), _n(seg.canary_errors), c, _n(seg.production_requests),
                 _n(seg.production_errors), p, _ms(seg.canary_p99_mean), _ms(seg.production_p99_mean)]
                for (k, seg), c, p in zip(found, canary, production, strict=True)]
        red = " (red in the latest evaluation)" if name in data.segments_red else ""
        out.append(Chart(keys[name], f"Segment {name}: error rate against production's {name}{red}",
                         f"The canary's pooled error rate in segment {name} per time bucket (%), against "
                         f"production's in the same segment, with the limits over it; p99 in the table.",
                         _figure(traces, data, y_title="error rate (%)"),
                         ["window_end", "canary_requests", "canary_errors", "canary_error_rate_pct",
                          "production_requests", "production_errors", "production_error_rate_pct", "canary_p99_ms",
                          "production_p99_ms"], rows))
    return out


def _quality(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    canary = [_r(k.canary_quality) for k in b]
    production = [_r(k.production_quality) for k in b]
    promote = data.thresholds.get("promote", {}).get("quality_ratio")
    rollback = data.thresholds.get("rollback", {}).get("quality_ratio")
    traces = [
        _line("Canary", x, canary, CANARY),
        _line("Production", x, production, PRODUCTION),
        _limit("Promotion limit (production ×)", x, _times_by(production, promote), PROMOTION),
        _limit("Rollback threshold (production ×)", x, _times_by(production, rollback), ROLLBACK),
    ]
    rows = [[_iso(k.end), c, _n(k.canary_scored), p, _n(k.production_scored)]
            for k, c, p in zip(b, canary, production, strict=True)]
    return Chart("quality", "Quality score, canary against production",
                 "Mean quality score per time bucket, weighted by the scored requests, and the limits.",
                 _figure(traces, data, y_title="mean quality score"),
                 ["window_end", "canary_quality", "canary_scored", "production_quality", "production_scored"], rows)


def _safety(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    counts = [_n(k.safety_violations) for k in b]
    promote = data.thresholds.get("promote", {}).get("safety_violations")
    rollback = data.thresholds.get("rollback", {}).get("safety_violations")
    traces = [
        _trace("bar", x, counts, name="Canary violations", marker={"color": CANARY}),
        _limit("Promotion limit", x, _flat(promote, x), PROMOTION),
        _limit("Rollback threshold", x, _flat(rollback, x), ROLLBACK),
    ]
    rows = [[_iso(k.end), c] for k, c in zip(b, counts, strict=True)]
    return Chart("safety_violations", "Content-safety violations on the canary",
                 "Violations counted per time bucket; any violation is over the limit.",
                 _figure(traces, data, y_title="violations"), ["window_end", "canary_violations"], rows)


def _router(data: ChartInput) -> Chart:
    b = data.buckets
    x = _times(b)
    configured = [_r(k.traffic_percent) for k in b]
    observed = [_r(k.observed_share) for k in b]
    traces = [
        _line("Configured percent", x, configured, PRODUCTION, shape="hv"),
        _line("Observed canary share", x, observed, CANARY),
    ]
    rows = [[_iso(k.end), c, o] for k, c, o in zip(b, configured, observed, strict=True)]
    return Chart("router_split", "Router split: configured against observed",
                 "The percent the router was told and the canary's observed share of requests (%).",
                 _figure(traces, data, y_title="canary share (%)"),
                 ["window_end", "configured_percent", "observed_canary_share_pct"], rows)


def _distribution(dist: Distribution) -> Chart:
    bounds = sorted({le for le, _ in dist.canary} | {le for le, _ in dist.production})
    canary, production = _shares(dist.canary, bounds), _shares(dist.production, bounds)
    labels = [_bucket_label(bounds, i) for i in range(len(bounds))]
    traces = [
        _trace("bar", labels, canary, name="Canary", marker={"color": CANARY}, opacity=0.6),
        _trace("bar", labels, production, name="Production", marker={"color": PRODUCTION}, opacity=0.6),
    ]
    layout = _layout(y_title="share of requests (%)")
    layout.update({"barmode": "overlay", "xaxis": {"title": {"text": "latency bucket"}, "type": "category"}})
    figure = _assemble(traces, layout)
    rows = [[label, c, p] for label, c, p in zip(labels, canary, production, strict=True)]
    return Chart("latency_distribution", "Latency distribution in this stage",
                 "Share of requests per latency bucket over the current stage, canary and production overlaid.",
                 figure, ["latency_bucket", "canary_share_pct", "production_share_pct"], rows)


# --- figure plumbing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trace:
    """One trace: its style (Plotly trace properties as canonical JSON) and its data."""

    kind: str  # "scatter" | "bar"
    props: str
    x: list[Any]
    y: list[Any]
    text: list[str] | None = None


def _trace(kind: str, x: list[Any], y: list[Any], text: list[str] | None = None, **props: Any) -> _Trace:
    return _Trace(kind, json.dumps(props, sort_keys=True), x if y else [], y, text)


@functools.lru_cache(maxsize=256)
def _skeleton(traces: tuple[tuple[str, str], ...], layout: str) -> str:
    """The figure without its data, built and validated by plotly's graph objects once per style
    (building a validated figure costs tens of milliseconds; filling in its arrays costs nothing)."""
    kinds = {"scatter": go.Scatter, "bar": go.Bar}
    objects = [kinds[kind](**json.loads(props)) for kind, props in traces]
    return json.dumps(go.Figure(data=objects, layout=json.loads(layout)).to_plotly_json())


def _assemble(traces: list[_Trace], layout: dict[str, Any], *, shapes: list[dict] | None = None,
              annotations: list[dict] | None = None) -> dict[str, Any]:
    figure = json.loads(_skeleton(tuple((t.kind, t.props) for t in traces), json.dumps(layout, sort_keys=True)))
    for out, trace in zip(figure["data"], traces, strict=True):
        out["x"], out["y"] = trace.x, trace.y
        if trace.text is not None:
            out["text"] = trace.text
    if shapes is not None:
        figure["layout"]["shapes"] = shapes
    if annotations is not None:
        figure["layout"]["annotations"] = annotations
    return figure


def _figure(traces: list[_Trace], data: ChartInput, *, y_title: str, rangemode: str = "tozero") -> dict[str, Any]:
    layout = _layout(y_title=y_title)
    layout["yaxis"]["rangemode"] = rangemode
    shapes, annotations = [], []
    for band in data.bands:
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": _iso(band.start), "x1": _iso(band.end),
                       "y0": 0, "y1": 1, "fillcolor": "rgba(134, 142, 150, 0.08)" if band.index % 2 else
                       "rgba(134, 142, 150, 0.0)", "line": {"width": 0}, "layer": "below"})
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": _iso(band.start), "x1": _iso(band.start),
                       "y0": 0, "y1": 1, "line": {"width": 1, "color": "#adb5bd", "dash": "dot"}})
        annotations.append({"x": _iso(band.start), "xref": "x", "y": 1, "yref": "paper", "yanchor": "bottom",
                            "xanchor": "left", "showarrow": False, "text": band.label, "font": {"size": 10}})
    for kind in MARKER_STYLE:
        found = [m for m in data.markers if m.kind == kind]
        if not found:
            continue
        symbol, colour = MARKER_STYLE[kind]
        traces.append(_trace(
            "scatter", [_iso(m.at) for m in found], [1.0] * len(found), [m.text for m in found],
            name=_MARKER_NAMES[kind], yaxis="y2", mode="markers",
            marker={"symbol": symbol, "size": 11, "color": colour},
            hovertemplate="%{x}<br>%{text}<extra></extra>",
        ))
    layout["yaxis2"] = {"overlaying": "y", "range": [0, 1.08], "visible": False, "fixedrange": True}
    return _assemble(traces, layout, shapes=shapes, annotations=annotations)


_MARKER_NAMES = {"promoted": "Promotion", "held": "Hold", "warning": "Warning", "rolled_back": "Rollback",
                 "other": "Other event"}


def _layout(*, y_title: str) -> dict[str, Any]:
    return {
        "margin": {"l": 56, "r": 16, "t": 28, "b": 40}, "height": 320, "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.2}, "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "xaxis": {"type": "date"}, "template": {}, "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }


def _line(name: str, x: list[str], y: list[Any], colour: str, *, dash: str = "solid", width: float = 2,
          shape: str = "linear") -> _Trace:
    return _trace("scatter", x, y, name=name, mode="lines", connectgaps=False,
                  line={"color": colour, "dash": dash, "width": width, "shape": shape})


def _limit(name: str, x: list[str], y: list[Any], colour: str) -> _Trace:
    return _line(name, x, y, colour, dash="dash", width=1)


def _flat(value: float | None, x: list[str]) -> list[Any]:
    return [value] * len(x) if value is not None else []


def _times(buckets: Sequence[Bucket]) -> list[str]:
    return [_iso(k.end) for k in buckets]


@functools.lru_cache(maxsize=4096)
def _iso(value: datetime) -> str:
    """A bucket's time as the charts and tables write it (each chart writes the same few hundred)."""
    return value.isoformat(timespec="seconds")


def _r(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _n(value: float) -> float | int:
    return int(value) if float(value).is_integer() else _r(value)  # type: ignore[return-value]


def _pct(value: float | None) -> float | None:
    return _r(value * 100) if value is not None else None


def _ms(value: float | None) -> float | None:
    return _r(value * 1000) if value is not None else None


def _apply(values: list[Any], by: float | None, op: Callable[[float, float], float]) -> list[Any]:
    if by is None:
        return []
    return [None if v is None else _r(op(v, by)) for v in values]


def _plus(values: list[Any], margin: float | None) -> list[Any]:
    return _apply(values, margin, lambda v, m: v + m)


def _times_by(values: list[Any], ratio: float | None) -> list[Any]:
    return _apply(values, ratio, lambda v, r: v * r)


def _shares(cumulative: Sequence[tuple[float, float]], bounds: list[float]) -> list[float | None]:
    have = dict(cumulative)
    counts, last = [], 0.0
    for le in bounds:
        value = have.get(le, last)
        counts.append(max(0.0, value - last))
        last = value
    total = sum(counts)
    return [_r(c / total * 100, 4) if total > 0 else None for c in counts]


def _bucket_label(bounds: list[float], i: int) -> str:
    le = bounds[i]
    if math.isinf(le):
        return f"> {bounds[i - 1] * 1000:g} ms" if i else "all"
    return f"≤ {le * 1000:g} ms"
