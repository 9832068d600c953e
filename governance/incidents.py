"""Incidents: opened by the system (a rollback is a P2; a control-plane failure a P1), each in
the same transaction as the fact that caused it, and audited."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from governance.audit import audit_append
from governance.models import Incident

ROOT_CAUSE_DUE = timedelta(hours=48)  # pattern §10.3: root cause analysis within 48 hours


def incident_open(
    *,
    severity: str,
    kind: str,
    summary: str,
    canary: Any = None,
    evaluation: Any = None,
    details: dict[str, Any] | None = None,
    actor: Any = None,
    now: datetime | None = None,
) -> Incident:
    now = now or timezone.now()
    with transaction.atomic():
        incident = Incident.objects.create(
            severity=severity, kind=kind, summary=summary, canary=canary, evaluation=evaluation,
            details=details or {}, opened_at=now,
            root_cause_due_at=now + ROOT_CAUSE_DUE / settings.CLOCK_SPEED if kind == Incident.Kind.ROLLBACK else None,
        )
        audit_append(
            actor=actor, action="incident.opened", object_type="incident", object_id=incident.pk,
            payload={
                "severity": severity, "kind": kind, "summary": summary,
                "canary": canary.pk if canary is not None else None,
                "evaluation": evaluation.pk if evaluation is not None else None,
                "root_cause_due_at": incident.root_cause_due_at.isoformat() if incident.root_cause_due_at else None,
                "details": incident.details,
            },
        )
        if kind == Incident.Kind.ROLLBACK and canary is not None:
            from governance.rootcause import escalation_check

            escalation_check(canary=canary, now=now)
    return incident
