"""Reads of incidents and committee escalations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from governance.access.labels import role_label
from governance.incidents.models import CommitteeEscalation, Incident, ReinitiationApproval, RootCauseReport


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


def rollback_next_steps(incident: Incident) -> list[dict[str, Any]]:
    """What a rollback incident still needs before its version can be canaried again, in order,
    with who acts (in the words of governance.access.labels) and whether each is done: the root
    cause filed (on-call or a platform engineer), MRM's acceptance, the model owner's
    re-initiation signature, then a new canary."""
    reports = list(incident.root_cause_reports.all())
    accepted = any(r.status == RootCauseReport.Status.ACCEPTED for r in reports)
    filed = any(r.status in (RootCauseReport.Status.FILED, RootCauseReport.Status.ACCEPTED) for r in reports)
    reinitiation = ReinitiationApproval.objects.filter(incident=incident).first()
    return [
        {"key": "file", "label": "File the root cause", "who": f"{role_label('on_call')} or {role_label('platform')}",
         "done": filed or accepted},
        {"key": "review", "label": "Review the root cause (accept, or return it)", "who": role_label("mrm"),
         "done": accepted},
        {"key": "reinitiate", "label": "Sign the re-initiation", "who": role_label("model_owner"),
         "done": reinitiation is not None},
        {"key": "start", "label": "Start a new canary of the version", "who": role_label("model_owner"),
         "done": reinitiation is not None and reinitiation.used_by_id is not None},
    ]


def open_reinitiation(incident: Incident) -> ReinitiationApproval | None:
    """The incident's re-initiation approval while no canary has used it yet."""
    return ReinitiationApproval.objects.filter(incident=incident, used_by__isnull=True).first()
