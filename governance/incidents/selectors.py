"""Reads of incidents and committee escalations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from governance.incidents.models import CommitteeEscalation, Incident


def incident_is_overdue(incident: Incident, *, now: datetime) -> bool:
    """Pure: a rollback incident whose root cause is still missing past its due time."""
    return (
        incident.root_cause_due_at is not None
        and incident.status == Incident.Status.OPEN
        and now > incident.root_cause_due_at
    )


def incidents(*, status: str = "", kind: str = "", model: str = "") -> QuerySet[Incident]:
    qs = Incident.objects.select_related("canary__model", "canary__version").prefetch_related("root_cause_reports")
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    if model:
        qs = qs.filter(canary__model__name=model)
    return qs


def escalations_for(*, version: Any) -> QuerySet[CommitteeEscalation]:
    return CommitteeEscalation.objects.filter(version=version).select_related("resolved_by")
