"""The canary dashboard's read model: what the charts of one canary are drawn from, read with a
fixed set of queries whatever the number of evaluations (the series are downsampled in the
database by monitoring.series), then handed to the pure builders of releases.canaries.charts.

Queries: the bucketed evaluation series (1), the canary's audited events in the range (1), the
promotion signatures (1) and, when the caller has not read it already, the latest evaluation (1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from governance.audit.models import AuditEvent
from monitoring.buckets import Bucket, Span, span_for
from monitoring.models import Evaluation
from monitoring.samples import le_parse
from monitoring.series import evaluation_buckets
from releases.canaries import charts, selectors
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
    buckets = evaluation_buckets(canary.pk, span)
    if not latest_known:
        latest = selectors.latest_evaluation(canary)
    data = charts.ChartInput(
        buckets=buckets, thresholds=canary.thresholds, bands=_bands(canary, buckets),
        markers=_markers(canary, span, buckets), distribution=_distribution(canary, latest),
    )
    return Dashboard(key, span, buckets, charts.build_charts(data), buckets[-1].end if buckets else None)


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
