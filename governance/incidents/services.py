"""Incidents: the records, and the moves every layer above may make on them.

An incident is opened by the system in the transaction of the fact that caused it: a rollback is
a P2 (contained degradation), a control-plane failure a P1 (the monitor went silent, a rollback
could not be confirmed, the audit chain failed verification). What follows a rollback — the
root-cause report, MRM's review, the owner's re-initiation signature, the committee's
resolution — is governance.rootcause's; here are the records it writes through: every status
change goes through `incident_transition` (table: governance.incidents.states), the
re-initiation approval a canary's initiation claims and uses, and the committee escalation the
rollback's service opens on a version's third consecutive rollback (releases.canaries.services).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from canaryhub.clock import scaled
from canaryhub.errors import Conflict
from governance.audit.services import audit_append
from governance.incidents import states
from governance.incidents.models import CommitteeEscalation, Incident, ReinitiationApproval

ROOT_CAUSE_DUE = timedelta(hours=48)  # pattern §10.3: root cause analysis within 48 hours
# Incidents whose root cause (for an urgent PATCH: MRM's retrospective review of why it could not
# wait for the schedule) is due within ROOT_CAUSE_DUE and reviewed by MRM.
RETROSPECTIVE_KINDS = frozenset({"rollback", "urgent_patch"})


def incident_open(
    *,
    severity: str,
    kind: str,
    summary: str,
    canary_id: int | None = None,
    evaluation_id: int | None = None,
    details: dict[str, Any] | None = None,
    actor: Any = None,
    now: datetime | None = None,
) -> Incident:
    now = now or timezone.now()
    with transaction.atomic():
        incident = Incident.objects.create(
            severity=severity, kind=kind, summary=summary, canary_id=canary_id, evaluation_id=evaluation_id,
            details=details or {}, opened_at=now,
            root_cause_due_at=now + scaled(ROOT_CAUSE_DUE) if kind in RETROSPECTIVE_KINDS else None,
        )
        audit_append(
            actor=actor, action="incident.opened", object_type="incident", object_id=incident.pk,
            payload={
                "severity": severity, "kind": kind, "summary": summary,
                "canary": canary_id,
                "evaluation": evaluation_id,
                "root_cause_due_at": incident.root_cause_due_at.isoformat() if incident.root_cause_due_at else None,
                "details": incident.details,
            },
        )
    return incident


def incident_transition(
    incident: Incident, *, to: str, actor: Any, action: str, payload: dict[str, Any],
    fields: dict[str, Any] | None = None,
) -> Incident:
    """Move a locked incident to `to`, save and audit (in the caller's transaction)."""
    current = incident.status
    if not states.may_become(current, to):
        raise Conflict(f"incident #{incident.pk} is {current}; it cannot become {to}")
    changes = {"status": to, **(fields or {})}
    for name, value in changes.items():
        setattr(incident, name, value)
    incident.save(update_fields=list(changes))
    audit_append(actor=actor, action=action, object_type="incident", object_id=incident.pk,
                 payload={"from": current, "to": to, **payload})
    return incident


def reinitiation_claim(*, version: Any) -> ReinitiationApproval | None:
    """Called by releases.canaries.services.canary_initiate (inside its transaction) for a rolled-back
    version: the unused re-initiation approval that lets it start, or None (refused).

    Only the latest rollback counts: an approval for an older incident does not cover a newer
    rollback. The row lock keeps two initiations from spending one approval."""
    latest = (
        Incident.objects.filter(kind=Incident.Kind.ROLLBACK, canary__version=version)
        .order_by("-opened_at", "-id")
        .first()
    )
    if latest is None or latest.status != Incident.Status.RESOLVED:
        return None
    return (
        ReinitiationApproval.objects.select_for_update()
        .filter(version=version, incident=latest, used_by__isnull=True)
        .first()
    )


def reinitiation_use(*, approval: ReinitiationApproval, canary: Any) -> None:
    ReinitiationApproval.objects.filter(pk=approval.pk).update(used_by=canary)
    audit_append(
        actor=None, action="version.reinitiation_used", object_type="model_version", object_id=str(canary.version),
        payload={"approval": approval.pk, "canary": canary.pk},
    )


def committee_escalation_open(
    *, version: Any, canary_ids: list[int], reason: str, now: datetime,
) -> CommitteeEscalation | None:
    """Record that `canary_ids` (the version's consecutive rollbacks, oldest first) go to the model
    risk committee, once per run of rollbacks: a fourth rollback does not escalate the same three again."""
    if CommitteeEscalation.objects.filter(version=version, canary_ids=canary_ids).exists():
        return None
    escalation = CommitteeEscalation.objects.create(version=version, canary_ids=canary_ids, reason=reason,
                                                    created_at=now)
    audit_append(
        actor=None, action="version.escalated_to_committee", object_type="model_version", object_id=str(version),
        payload={"escalation": escalation.pk, "canaries": canary_ids, "reason": reason},
    )
    return escalation
