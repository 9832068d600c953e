"""Reads of the monitor for pages and evidence: the measured SLOs (pattern §10.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from monitoring import charts
from monitoring.models import NotificationDelivery, SloHistogram, SloMeasurement
from monitoring.services import SLO_TARGETS_S

SLO_LABELS = {
    "rollback": "Rollback: first window past the threshold (or the decision by hand) → router confirmed at 0%",
    "staleness": "Metric staleness: age of the data at each evaluation",
    "promotion": "Promotion: last signature → router confirmed at the new percent",
    "notification": "Notification: event → delivered by the channel",
}


@dataclass(frozen=True)
class SloFigures:
    slo: str
    label: str
    target_s: float
    count: int
    median_s: float | None
    p95_s: float | None
    max_s: float | None
    breaches: int

    @property
    def met(self) -> bool | None:
        """Whether every measured event met the target (None: nothing measured yet)."""
        return None if self.count == 0 else self.breaches == 0

    def as_dict(self) -> dict[str, Any]:
        return {"slo": self.slo, "label": self.label, "target_s": self.target_s, "count": self.count,
                "median_s": self.median_s, "p95_s": self.p95_s, "max_s": self.max_s, "breaches": self.breaches}


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)


def _figures(slo: str, values: list[float]) -> SloFigures:
    target = SLO_TARGETS_S[slo]
    return SloFigures(slo, SLO_LABELS[slo], target, len(values), _quantile(values, 0.5), _quantile(values, 0.95),
                      round(max(values), 1) if values else None, sum(1 for v in values if v > target))


def slo_figures(*, canary_ids: list[int] | None = None) -> list[SloFigures]:
    """Each SLO's measured figures: over every canary, or over `canary_ids` (the evidence of one
    canary). Staleness is kept as a histogram over every evaluation, so it has no per-canary
    figures: for one canary it is left out."""
    measured = SloMeasurement.objects.all()
    deliveries = NotificationDelivery.objects.filter(status="sent", latency_s__isnull=False).exclude(channel="feed")
    if canary_ids is not None:
        measured = measured.filter(canary_id__in=canary_ids)
        deliveries = deliveries.filter(event__canary_id__in=canary_ids)
    by_slo: dict[str, list[float]] = {"rollback": [], "promotion": []}
    for slo, seconds in measured.values_list("slo", "seconds"):
        by_slo.setdefault(slo, []).append(seconds)
    out = [_figures("rollback", by_slo["rollback"])]
    if canary_ids is None:
        hist = SloHistogram.objects.filter(slo="staleness").first()
        out.append(_staleness(hist))
    out += [_figures("promotion", by_slo["promotion"]),
            _figures("notification", list(deliveries.values_list("latency_s", flat=True)))]
    return out


def _staleness(hist: SloHistogram | None) -> SloFigures:
    """Quantiles from the histogram's buckets: the upper bound of the bucket they fall in."""
    target = SLO_TARGETS_S["staleness"]
    if hist is None or hist.count == 0:
        return SloFigures("staleness", SLO_LABELS["staleness"], target, 0, None, None, None, 0)
    bounds = sorted((float(le), n) for le, n in hist.buckets.items())

    def bound(q: float) -> float | None:
        for le, n in bounds:
            if n >= q * hist.count:
                return le
        return None  # beyond the largest bucket

    return SloFigures("staleness", SLO_LABELS["staleness"], target, hist.count, bound(0.5), bound(0.95), None,
                      hist.over_target)


def slo_recent(*, limit: int = 50) -> list[SloMeasurement]:
    return list(SloMeasurement.objects.select_related("canary", "canary__model", "canary__version")[:limit])


def slo_measurements(*, canary_id: int) -> list[dict[str, Any]]:
    """One canary's measured rollbacks and promotions, oldest first (its evidence)."""
    return [
        {"slo": m.slo, "generation": m.generation, "started_at": m.started_at.isoformat(),
         "finished_at": m.finished_at.isoformat(), "seconds": round(m.seconds, 3), "target_s": m.target_s,
         "breached": m.breached, "detail": m.detail}
        for m in SloMeasurement.objects.filter(canary_id=canary_id).order_by("finished_at", "id")
    ]


CHART_POINTS = 500  # the newest events drawn per SLO; the table above counts them all


def slo_charts() -> list[charts.SloChart]:
    """The SLO page's charts: each SLO's newest measured events (rollback, promotion, notification
    delivery) as points against its target, and the staleness distribution."""
    out = []
    for slo in ("rollback", "promotion"):
        points = list(SloMeasurement.objects.filter(slo=slo).order_by("-finished_at", "-id")
                      .values_list("finished_at", "seconds")[:CHART_POINTS])
        out.append(charts.measured_chart(slo=slo, label=SLO_LABELS[slo], target_s=SLO_TARGETS_S[slo], points=points))
    hist = SloHistogram.objects.filter(slo="staleness").first()
    out.insert(1, charts.staleness_chart(
        label=SLO_LABELS["staleness"], target_s=SLO_TARGETS_S["staleness"],
        cumulative={float(le): n for le, n in (hist.buckets.items() if hist else [])}, count=hist.count if hist else 0))
    deliveries = list(NotificationDelivery.objects.filter(status="sent", latency_s__isnull=False,
                                                          sent_at__isnull=False).exclude(channel="feed")
                      .order_by("-sent_at", "-id").values_list("sent_at", "latency_s")[:CHART_POINTS])
    out.append(charts.measured_chart(slo="notification", label=SLO_LABELS["notification"],
                                     target_s=SLO_TARGETS_S["notification"], points=deliveries))
    return out
