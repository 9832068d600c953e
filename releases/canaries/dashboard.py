"""The canary dashboard's read model: what the charts of one canary are drawn from, read with a
fixed set of queries whatever the number of evaluations (the series are downsampled in the
database by monitoring.series), then handed to the pure builders of releases.canaries.charts.

Queries: the bucketed evaluation series (1), the canary's audited events in the range (1), the
promotion signatures (1) and, when the caller has not read it already, the latest evaluation (1),
whose judged segments name the per-segment panels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from governance.audit.models import AuditEvent
from monitoring.buckets import Bucket, Span, span_for
from monitoring.custom import gate_label as custom_gate_label
from monitoring.models import Evaluation
from monitoring.samples import le_parse
from monitoring.series import SEGMENTS_MAX, evaluation_buckets, stage_summaries
from monitoring.statistics import ALPHA
from releases.canaries import charts, history, selectors
from releases.canaries.models import Canary
from releases.canaries.presenters import stage_label

BUCKETS = 240  # points per series: what a chart a screen wide shows
RANGE_DEFAULT = "stage"
MARKER_LIMIT = 500
_EVENTS = {
    "canary.started": "promoted", "canary.promoted": "promoted", "canary.completed": "promoted",
    "canary.held": "held", "canary.suspended": "held", "canary.rolled_back": "rolled_back",
    "canary.aborted": "rolled_back", "canary.resumed": "other", "canary.running": "other",
}
_EVENT_WORDS = {
    "canary.started": "Started", "canary.promoted": "Promoted", "canary.completed": "Completed",
    "canary.held": "Held", "canary.suspended": "Suspended", "canary.rolled_back": "Rolled back",
    "canary.aborted": "Aborted", "canary.resumed": "Resumed", "canary.running": "Running again",
}


@dataclass
class Dashboard:
    range_key: str
    span: Span
    buckets: list[Bucket]
    charts: list[charts.Chart]
    latest_window_end: datetime | None

    def chart(self, key: str) -> charts.Chart | None:
        return next((c for c in self.charts if c.key == key), None)

    def payload(self) -> dict[str, Any]:
        """What the page's refresh receives: every figure by key, and the newest window shown."""
        return {
            "range": self.range_key,
            "latest_window_end": self.latest_window_end.isoformat() if self.latest_window_end else None,
            "charts": {c.key: c.figure for c in self.charts},
        }


def range_key(raw: str | None) -> str:
    return raw if raw in charts.RANGES else RANGE_DEFAULT


def chart_span(canary: Canary, key: str, *, now: datetime) -> Span:
    """The time range a range key names: the current stage, the last 24 h, or the whole canary."""
    end = canary.ended_at or now
    if key == "24h":
        start = end - timedelta(hours=24)
    elif key == "stage" and canary.stage_entered_at is not None and canary.ended_at is None:
        start = canary.stage_entered_at
    else:
        start = canary.initiated_at
    return span_for(start, end, buckets=BUCKETS, min_width_s=max(int(settings.EVALUATION_CADENCE_S), 1))


def canary_dashboard(canary: Canary, *, key: str, now: datetime, latest: Evaluation | None = None,
                     latest_known: bool = False) -> Dashboard:
    """The charts of one canary over the range `key` names. `latest`: the canary's newest
    evaluation when the caller has it (`latest_known` True even when it is None)."""
    span = chart_span(canary, key, now=now)
    # Windows are judged every cadence and written at once: buckets ended two cadences ago are final.
    cadence = timedelta(seconds=max(int(settings.EVALUATION_CADENCE_S), 1))
    if not latest_known:
        latest = selectors.latest_evaluation(canary)
    segments, red = _segments(latest)
    custom = {name: {k: v for k, v in decl.items() if k != "promql"}
              for name, decl in ((canary.metrics or {}).get("custom") or {}).items()}
    buckets = evaluation_buckets(canary.pk, span, closed_before=min(now, span.end) - 2 * cadence,
                                 cache_key=_cache_key(canary), segments=segments, custom=sorted(custom))
    data = charts.ChartInput(
        buckets=buckets, thresholds=canary.thresholds, bands=_bands(canary, buckets),
        markers=_markers(canary, span, buckets), distribution=_distribution(canary, latest),
        segments=segments, segments_red=red, custom=custom,
    )
    return Dashboard(key, span, buckets, charts.build_charts(data), buckets[-1].end if buckets else None)


def _cache_key(canary: Canary) -> str:
    return f"{canary.pk}:{canary.initiated_at.timestamp():.6f}"


def _closed_stages(canary: Canary, *, now: datetime) -> int:
    """How many of the canary's first stages take no more evaluations: every one once the canary
    ended, else those before the current stage; an evaluation judged as the canary moved on is
    written within two cadences, so a stage counts as closed only after them."""
    settle = timedelta(seconds=2 * max(int(settings.EVALUATION_CADENCE_S), 1))
    if canary.ended_at is not None:
        return len(canary.stages) + 1 if canary.ended_at < now - settle else 0
    if canary.stage_entered_at is None or canary.stage_entered_at >= now - settle:
        return max(canary.stage_index - 1, 0)
    return canary.stage_index


def _segments(latest: Evaluation | None) -> tuple[list[str], frozenset[str]]:
    """The segments the latest evaluation judged (its `inputs.segments`, monitoring.evaluator
    judge_segments), at most SEGMENTS_MAX by name, and those it found red."""
    by_segment = (((latest.inputs or {}).get("segments") or {}).get("by_segment") or {}) if latest else {}
    if not isinstance(by_segment, dict):
        return [], frozenset()
    names = sorted(str(name) for name in by_segment)[:SEGMENTS_MAX]
    red = frozenset(n for n in names if isinstance(by_segment[n], dict) and by_segment[n].get("red"))
    return names, red


def _bands(canary: Canary, buckets: list[Bucket]) -> list[charts.StageBand]:
    """Stage spans from the buckets (to the resolution of one bucket), labelled with their percent."""
    stages = selectors.canary_stages(canary)
    bands: list[charts.StageBand] = []
    for bucket in buckets:
        index = bucket.stage_max
        if bands and bands[-1].index == index:
            bands[-1] = charts.StageBand(index, bands[-1].label, bands[-1].start, bucket.end)
            continue
        label = f"stage {index + 1}: {stage_label(stages[index])}" if index < len(stages) else f"stage {index + 1}"
        bands.append(charts.StageBand(index, label, bucket.start, bucket.end))
    return bands


def _markers(canary: Canary, span: Span, buckets: list[Bucket]) -> list[charts.Marker]:
    signers: dict[int, list[str]] = {}
    for stage_index, name, role in canary.approvals.filter(
        signed_at__gte=span.start - timedelta(days=7), signed_at__lte=span.end,
    ).values_list("stage_index", "printed_name", "role"):
        signers.setdefault(stage_index, []).append(f"{name} ({role})")
    events = (
        AuditEvent.objects.filter(object_type="canary", object_id=str(canary.pk), action__in=list(_EVENTS),
                                  created_at__gte=span.start,
                                  created_at__lte=span.end + timedelta(seconds=span.width_s))
        .order_by("-seq").values_list("created_at", "action", "payload")[:MARKER_LIMIT]
    )
    stages = selectors.canary_stages(canary)
    markers = []
    for at, action, payload in events:
        kind = _EVENTS[action]
        text = _EVENT_WORDS[action]
        index = payload.get("stage_index")
        if kind == "promoted" and isinstance(index, int):
            label = stage_label(stages[index]) if index < len(stages) else ""
            text += f" to stage {index + 1} ({label})"
            if signers.get(index):
                text += "; signed by " + ", ".join(signers[index])
        reason = payload.get("reason")
        if reason:
            text += f": {str(reason)[:200]}"
        markers.append(charts.Marker(at, kind, text))
    for bucket in buckets:
        if bucket.warnings:
            markers.append(charts.Marker(bucket.end, "warning",
                                         f"{bucket.warnings} window(s) with an early warning"))
    return markers


def _distribution(canary: Canary, latest: Evaluation | None) -> charts.Distribution | None:
    """The current stage's latency histograms, from the stage numbers its latest evaluation stored."""
    if latest is None or latest.stage_index != canary.stage_index:
        return None
    stage = ((latest.inputs or {}).get("raw") or {}).get("stage") or {}
    try:
        pair = [[(le_parse(le), float(c)) for le, c in (stage.get(role) or {}).get("latency_buckets") or []]
                for role in ("canary", "production")]
    except (TypeError, ValueError):
        return None
    if not pair[0] or not pair[1]:
        return None
    return charts.Distribution(pair[0], pair[1])


# --- beside each gate: the evidence the evaluation recorded ------------------------------------------


@dataclass(frozen=True)
class GateEvidence:
    name: str
    label: str
    status: str
    canary: str
    production: str
    difference: str
    interval: str
    limit: str
    test: str
    significance: str
    samples: str
    sufficiency: str
    detail: str


def gate_evidence(evaluation: Evaluation | None) -> list[GateEvidence]:
    """Each gate of the evaluation with what it was judged on, as its `inputs` recorded it:
    canary and production values, the difference and its interval, the test and its p-value,
    both sample sizes against the one required, and the time to sufficiency."""
    if evaluation is None:
        return []
    inputs = evaluation.inputs or {}
    details = inputs.get("gates") or {}
    stage = inputs.get("stage") or {}
    rows = []
    for gate in evaluation.gate_list():
        info = details.get(gate.name) or {}
        build = _EVIDENCE.get(gate.name, _plain)
        values = build(gate, info, stage)
        size = info.get("sample_size") or {}
        samples = " / ".join(f"{_count(size.get(role))}" for role in ("canary", "production") if role in size)
        if samples and info.get("required") is not None:
            samples += f" (needs {_count(info['required'])})"
        rows.append(GateEvidence(
            name=gate.name, label=GATE_LABELS.get(gate.name) or custom_gate_label(gate.name)
            or gate.name.replace("_", " ").capitalize(),
            status=gate.status.value, limit=_g(gate.limit), samples=samples or "—",
            sufficiency=_sufficiency(info), detail=gate.detail,
            **values,
        ))
    return rows


def data_age(evaluation: Evaluation | None, *, now: datetime) -> dict[str, Any] | None:
    """How old the data behind the newest evaluation is: its age when judged, plus the time since."""
    if evaluation is None:
        return None
    at_evaluation = (evaluation.inputs or {}).get("data_age_s")
    since = max((now - evaluation.window_end).total_seconds(), 0.0)
    total = since + (at_evaluation or 0)
    return {"at_evaluation_s": at_evaluation, "since_window_s": round(since), "total": timedelta(seconds=round(total))}


GATE_LABELS = {
    "error_rate": "Error rate", "latency_p99": "Latency p99", "quality": "Quality score",
    "safety_violations": "Content-safety violations", "anomaly_alerts": "Anomaly alerts",
    "router_share": "Router split",
}


def _error(gate: Any, info: dict, stage: dict) -> dict[str, str]:
    ci = info.get("ci_pp")
    conf = info.get("confidence")
    return {
        "canary": _pct(info.get("canary_rate")), "production": _pct(info.get("production_rate")),
        "difference": _signed(gate.value, " pp") if gate.value is not None else "—",
        "interval": f"[{_g(ci[0])}, {_g(ci[1])}] pp" + (f" at {conf:.0%}" if conf else "") if ci else "—",
        "test": info.get("test") or "—", "significance": _p(info.get("p_worse"), "canary worse"),
    }


def _latency(gate: Any, info: dict, stage: dict) -> dict[str, str]:
    rank = info.get("rank_test") or {}
    ci = (info.get("ci") or {}).get("interval")
    return {
        "canary": _ms(info.get("canary_p99_s")), "production": _ms(info.get("production_p99_s")),
        "difference": f"×{gate.value:g}" if gate.value is not None else "—",
        "interval": f"P(canary slower) [{_g(ci[0])}, {_g(ci[1])}]" if ci else "—",
        "test": info.get("test") or "—", "significance": _p(rank.get("p_greater"), "canary slower"),
    }


def _quality(gate: Any, info: dict, stage: dict) -> dict[str, str]:
    rank = info.get("rank_test") or {}
    ci = info.get("ci")
    return {
        "canary": _g((stage.get("canary") or {}).get("quality_mean")),
        "production": _g((stage.get("production") or {}).get("quality_mean")),
        "difference": f"×{gate.value:g}" if gate.value is not None else "—",
        "interval": f"[×{_g(ci[0])}, ×{_g(ci[1])}]" if ci else "—",
        "test": info.get("test") or "—", "significance": _p(rank.get("p_less"), "canary lower"),
    }


def _safety(gate: Any, info: dict, stage: dict) -> dict[str, str]:
    upper = info.get("upper_bound_rate")
    return {
        "canary": _count(gate.value), "production": _count((stage.get("production") or {}).get("safety_violations")),
        "difference": "—", "interval": f"rate < {upper:.3%} (95%)" if upper is not None else "—",
        "test": info.get("test") or "—", "significance": "—",
    }


def _router(gate: Any, info: dict, stage: dict) -> dict[str, str]:
    observed, configured = info.get("observed_share"), info.get("configured_share")
    return {
        "canary": _pct(observed) + " observed" if observed is not None else "—",
        "production": _pct(configured) + " configured" if configured is not None else "—",
        "difference": "—", "interval": "—", "test": "z on the observed share" if "z" in info else "—",
        "significance": f"z = {info['z']:g}" if "z" in info else "—",
    }


def _plain(gate: Any, info: dict, stage: dict) -> dict[str, str]:
    return {"canary": _g(gate.value), "production": "—", "difference": "—", "interval": "—", "test": "—",
            "significance": "—"}


_EVIDENCE = {"error_rate": _error, "latency_p99": _latency, "quality": _quality, "safety_violations": _safety,
             "router_share": _router}


def _g(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "—"


def _count(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, int | float) else "—"


def _pct(value: Any) -> str:
    return f"{value * 100:.3g}%" if isinstance(value, int | float) else "—"


def _ms(value: Any) -> str:
    return f"{value * 1000:.0f} ms" if isinstance(value, int | float) else "—"


def _signed(value: Any, unit: str) -> str:
    return f"{value:+.4g}{unit}" if isinstance(value, int | float) else "—"


def _p(value: Any, meaning: str) -> str:
    if not isinstance(value, int | float):
        return "—"
    verdict = f" — significant at {ALPHA:g}" if value < ALPHA else ""
    return f"p = {value:.2g} ({meaning}){verdict}"


def _sufficiency(info: dict) -> str:
    if "time_to_sufficiency_s" not in info:
        return "—"
    seconds = info.get("time_to_sufficiency_s")
    if seconds is None:
        return "no canary traffic to get there"
    if seconds <= 0:
        return "reached"
    return f"about {timedelta(seconds=round(seconds))} at current traffic"


# --- the post-canary report -----------------------------------------------------------------------


@dataclass
class StageReport:
    number: int
    label: str
    percent: int
    summary: Bucket | None
    time: timedelta | None
    entered_at: datetime | None = None
    left_at: datetime | None = None
    decision: str = ""


@dataclass
class CanaryReport:
    canary: Canary
    outcome: str
    decided_by: str
    stages: list[StageReport]
    anomalies: list[charts.Marker]
    split: charts.Chart

    def data(self) -> dict[str, Any]:
        """The report as JSON-ready data: what the API returns and the evidence bundle's PDF prints."""
        c = self.canary
        return {
            "canary": {"id": c.pk, "model": c.model.name, "version": c.version.version,
                       "baseline": c.baseline.version, "schedule": c.schedule, "risk_tier": c.risk_tier,
                       "state": c.state, "initiated_at": _ts(c.initiated_at), "ended_at": _ts(c.ended_at),
                       "end_reason": c.end_reason},
            "decision": {"outcome": self.outcome, "decided_by": self.decided_by},
            "stages": [_stage_data(stage) for stage in self.stages],
            "anomalies": [{"at": _ts(m.at), "kind": m.kind, "text": m.text} for m in self.anomalies],
            "traffic_split": [{"window_end": end, "configured_percent": configured, "observed_canary_share_pct": seen}
                              for end, configured, seen in self.split.rows],
        }


def canary_report(canary: Canary, *, now: datetime) -> CanaryReport:
    """What the canary did, stage by stage against production: the traffic split over time, each
    stage's pooled numbers for both sides, the anomalies (warnings, holds, red evaluations, the
    rollback; not the windows that merely lacked samples) and how each stage ended, with the time
    it took. The report page, `GET /api/v1/canaries/{id}/report/` and the evidence bundle's PDF
    are all drawn from this."""
    summaries = stage_summaries(canary.pk, closed_below=_closed_stages(canary, now=now), cache_key=_cache_key(canary))
    [past] = history.canary_history([canary], now=now)
    times = {item["index"]: item for item in past.stage_times}
    stages = []
    for index, stage in enumerate(selectors.canary_stages(canary)):
        if index in summaries or index in times:
            moved = times.get(index) or {}
            stages.append(StageReport(index + 1, stage_label(stage), stage.percent, summaries.get(index),
                                      moved.get("duration"), moved.get("entered_at"), moved.get("left_at"),
                                      moved.get("decision") or ""))
    board = canary_dashboard(canary, key="all", now=now)
    span = board.span
    anomalies = [m for m in _markers(canary, span, board.buckets) if m.kind not in ("promoted", "other")]
    for index, summary in summaries.items():
        if summary.red:
            anomalies.append(charts.Marker(summary.end, "red", f"stage {index + 1}: {summary.red} evaluation(s) "
                                                               "with a red gate"))
    anomalies.sort(key=lambda m: m.at)
    split = board.chart("router_split")
    assert split is not None
    return CanaryReport(canary, past.outcome, past.decided_by, stages, anomalies, split)


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _side(s: Bucket, role: str) -> dict[str, Any]:
    return {
        "requests": getattr(s, f"{role}_requests"), "errors": getattr(s, f"{role}_errors"),
        "error_rate": getattr(s, f"{role}_rate"), "p99_s_mean": getattr(s, f"{role}_p99_mean"),
        "p99_s_worst": getattr(s, f"{role}_p99_max"), "quality_mean": getattr(s, f"{role}_quality"),
        "quality_scored": getattr(s, f"{role}_scored"),
    }


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 6) if top is not None and bottom else None


def _stage_data(stage: StageReport) -> dict[str, Any]:
    s = stage.summary
    out: dict[str, Any] = {
        "number": stage.number, "label": stage.label, "percent": stage.percent,
        "entered_at": _ts(stage.entered_at), "left_at": _ts(stage.left_at),
        "time_s": stage.time.total_seconds() if stage.time is not None else None, "decision": stage.decision,
        "windows": 0, "canary": None, "production": None, "comparison": None,
        "safety_violations": 0, "warnings": 0, "red_evaluations": 0,
    }
    if s is not None:
        difference = (s.canary_rate - s.production_rate) * 100 if (
            s.canary_rate is not None and s.production_rate is not None) else None
        out.update(
            windows=s.windows, canary=_side(s, "canary"), production=_side(s, "production"),
            comparison={"error_rate_difference_pp": round(difference, 6) if difference is not None else None,
                        "p99_ratio": _ratio(s.canary_p99_mean, s.production_p99_mean),
                        "quality_ratio": _ratio(s.canary_quality, s.production_quality)},
            safety_violations=s.safety_violations, warnings=s.warnings, red_evaluations=s.red,
        )
    return out
