"""Rollback incidents after the fact: the root-cause report, MRM's review of it, the signed
re-initiation that lets a rolled-back version be canaried again, and the committee escalation
after three consecutive rollbacks (pattern §10.3, DESIGN.md "Automatic rollback triggers")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance.audit import audit_append
from governance.models import CommitteeEscalation, Incident, ReinitiationApproval, RootCauseReport
from governance.permissions import Action, as_principal, require

ESCALATION_AFTER = 3  # consecutive rollbacks of one version (pattern §10.3)


def _text(name: str, value: Any, *, minimum: int = 10, required: bool = True) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if required and len(text) < minimum:
        raise ValidationFailed.field(name, f"at least {minimum} characters")
    return text


def _lock_incident(incident_id: int) -> Incident:
    incident = Incident.objects.select_for_update().filter(pk=incident_id).first()
    if incident is None:
        raise NotFound(f"no incident #{incident_id}")
    return incident


def incident_is_overdue(incident: Incident, *, now: datetime) -> bool:
    """Pure: a rollback incident whose root cause is still missing past its due time."""
    return (
        incident.root_cause_due_at is not None
        and incident.status == Incident.Status.OPEN
        and now > incident.root_cause_due_at
    )


def root_cause_file(
    *,
    actor: Any,
    incident_id: int,
    cause: str,
    contributing_factors: str = "",
    fix: str,
    version_change_ref: str = "",
    now: datetime | None = None,
) -> RootCauseReport:
    """The on-call engineer's root-cause analysis of a rollback. A late report is accepted but
    marked late: the deadline is a control, not a reason to lose the analysis."""
    now = now or timezone.now()
    principal = as_principal(actor)
    cause = _text("cause", cause)
    fix = _text("fix", fix)
    contributing_factors = _text("contributing_factors", contributing_factors, required=False)
    version_change_ref = _text("version_change_ref", version_change_ref, required=False)[:500]
    with transaction.atomic():
        incident = _lock_incident(incident_id)
        require(principal, Action.FILE_ROOT_CAUSE, model=incident.canary.model if incident.canary else None)
        if incident.status == Incident.Status.RESOLVED:
            raise Conflict(f"incident #{incident.pk} is resolved; its root cause was accepted")
        if incident.root_cause_reports.filter(status=RootCauseReport.Status.FILED).exists():
            raise Conflict(f"incident #{incident.pk} already has a report awaiting MRM review")
        late = incident.root_cause_due_at is not None and now > incident.root_cause_due_at
        report = RootCauseReport.objects.create(
            incident=incident, cause=cause, contributing_factors=contributing_factors, fix=fix,
            version_change_ref=version_change_ref, filed_by=principal.user, filed_at=now, filed_late=late,
        )
        incident.status = Incident.Status.ROOT_CAUSE_FILED
        incident.save(update_fields=["status"])
        audit_append(
            actor=principal.user, action="incident.root_cause_filed", object_type="incident", object_id=incident.pk,
            payload={"report": report.pk, "cause": cause, "contributing_factors": contributing_factors, "fix": fix,
                     "version_change_ref": version_change_ref, "late": late,
                     "due_at": incident.root_cause_due_at.isoformat() if incident.root_cause_due_at else None},
        )
    return report


def root_cause_review(
    *, actor: Any, report_id: int, accept: bool, note: str = "", now: datetime | None = None
) -> RootCauseReport:
    """MRM accepts the analysis (the incident is resolved) or returns it with a note."""
    now = now or timezone.now()
    principal = as_principal(actor)
    note = _text("note", note, required=not accept)
    with transaction.atomic():
        report = RootCauseReport.objects.select_related("incident").filter(pk=report_id).first()
        if report is None:
            raise NotFound(f"no root-cause report #{report_id}")
        incident = _lock_incident(report.incident_id)
        require(principal, Action.ACCEPT_ROOT_CAUSE)
        report.refresh_from_db()
        if report.status != RootCauseReport.Status.FILED:
            raise Conflict(f"root-cause report #{report.pk} is {report.status}")
        if report.filed_by_id == principal.user.pk:
            raise PermissionRefused("the author of a root-cause report cannot accept it")
        report.status = RootCauseReport.Status.ACCEPTED if accept else RootCauseReport.Status.RETURNED
        report.reviewed_by, report.reviewed_at, report.review_note = principal.user, now, note
        report.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
        if accept:
            incident.status, incident.resolved_at = Incident.Status.RESOLVED, now
        else:
            incident.status = Incident.Status.OPEN
        incident.save(update_fields=["status", "resolved_at"])
        audit_append(
            actor=principal.user,
            action="incident.root_cause_accepted" if accept else "incident.root_cause_returned",
            object_type="incident", object_id=incident.pk, payload={"report": report.pk, "note": note},
        )
    return report


def reinitiation_approve(
    *, actor: Any, incident_id: int, statement: str, password: str, now: datetime | None = None
) -> ReinitiationApproval:
    """The model owner's e-signature (password re-entered, as for a stage promotion) that a
    rolled-back version, its root cause accepted, may be canaried again."""
    now = now or timezone.now()
    principal = as_principal(actor)
    statement = _text("statement", statement)
    if principal.is_service_account:
        raise PermissionRefused("service accounts never sign: a re-initiation approval is a human act")
    user = principal.user
    if not isinstance(password, str) or not user.check_password(password):
        raise PermissionRefused("re-authentication failed: the password does not match")
    with transaction.atomic():
        incident = _lock_incident(incident_id)
        if incident.kind != Incident.Kind.ROLLBACK or incident.canary is None:
            raise Conflict(f"incident #{incident.pk} is not a canary rollback")
        version = incident.canary.version
        require(principal, Action.APPROVE_REINITIATION, model=incident.canary.model)
        accepted = incident.root_cause_reports.filter(status=RootCauseReport.Status.ACCEPTED).first()
        if accepted is None:
            raise Conflict(f"incident #{incident.pk}: MRM has not accepted a root cause yet")
        if accepted.reviewed_by_id == user.pk:
            raise PermissionRefused("the MRM reviewer who accepted the root cause cannot also approve re-initiation")
        if ReinitiationApproval.objects.filter(incident=incident).exists():
            raise Conflict(f"incident #{incident.pk} already has a re-initiation approval")
        meaning = f"Model owner: approves canarying {version} again after rollback incident #{incident.pk}"
        approval = ReinitiationApproval.objects.create(
            version=version, incident=incident, root_cause=accepted, signer=user,
            printed_name=user.get_full_name() or user.get_username(), meaning=meaning, statement=statement,
            signed_at=now,
        )
        audit_append(
            actor=user, action="version.reinitiation_approved", object_type="model_version", object_id=str(version),
            payload={"approval": approval.pk, "incident": incident.pk, "root_cause": accepted.pk,
                     "printed_name": approval.printed_name, "meaning": meaning, "statement": statement,
                     "signed_at": now.isoformat(), "reauthenticated": True},
        )
    return approval


def reinitiation_claim(*, version: Any) -> ReinitiationApproval | None:
    """Called by releases.lifecycle.canary_initiate (inside its transaction) for a rolled-back
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


def escalation_check(*, canary: Any, now: datetime) -> CommitteeEscalation | None:
    """After a rollback (called by incident_open in the rollback's transaction): when the
    version's last three finished canaries were all rolled back, escalate to the model risk
    committee — a record, a flag on the version and a notification in the outbox."""
    from monitoring.models import NotificationEvent
    from releases.models import Canary, ModelVersion

    version = canary.version
    finished = list(
        Canary.objects.filter(version=version)
        .exclude(state__in=Canary.ACTIVE_STATES)
        .order_by("-initiated_at", "-id")
        .values_list("pk", "state")[:ESCALATION_AFTER]
    )
    if len(finished) < ESCALATION_AFTER or any(state != Canary.State.ROLLED_BACK for _, state in finished):
        return None
    ids = [pk for pk, _ in reversed(finished)]
    # Once per run of rollbacks: a fourth rollback does not escalate the same three again.
    if CommitteeEscalation.objects.filter(version=version, canary_ids=ids).exists():
        return None
    reason = f"{ESCALATION_AFTER} consecutive rollbacks of {version} (canaries {', '.join(f'#{i}' for i in ids)})"
    escalation = CommitteeEscalation.objects.create(version=version, canary_ids=ids, reason=reason, created_at=now)
    ModelVersion.objects.filter(pk=version.pk).update(committee_escalated_at=now)
    NotificationEvent.objects.create(
        kind="committee.escalation", canary=canary, audience=["model_risk_committee", "owner", "mrm"],
        payload={"escalation": escalation.pk, "model": version.model.name, "version": version.version,
                 "canaries": ids, "reason": reason},
    )
    audit_append(
        actor=None, action="version.escalated_to_committee", object_type="model_version", object_id=str(version),
        payload={"escalation": escalation.pk, "canaries": ids, "reason": reason},
    )
    return escalation


def incidents(*, status: str = "", kind: str = "", model: str = "") -> QuerySet[Incident]:
    qs = Incident.objects.select_related("canary__model", "canary__version").prefetch_related("root_cause_reports")
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    if model:
        qs = qs.filter(canary__model__name=model)
    return qs


def escalation_resolve(
    *, actor: Any, escalation_id: int, note: str, now: datetime | None = None
) -> CommitteeEscalation:
    """MRM or AI Governance records the committee's outcome. The escalation is closed; the
    version's `committee_escalated_at` is left alone, as history of what happened to it."""
    now = now or timezone.now()
    principal = as_principal(actor)
    if principal.is_service_account:
        raise PermissionRefused("service accounts never resolve a committee escalation")
    note = _text("note", note)
    with transaction.atomic():
        escalation = CommitteeEscalation.objects.select_for_update().filter(pk=escalation_id).first()
        if escalation is None:
            raise NotFound(f"no committee escalation #{escalation_id}")
        require(principal, Action.RESOLVE_ESCALATION)
        if escalation.resolved_at is not None:
            raise Conflict(f"committee escalation #{escalation.pk} is already resolved")
        escalation.resolved_at, escalation.resolved_by, escalation.resolution_note = now, principal.user, note
        escalation.save(update_fields=["resolved_at", "resolved_by", "resolution_note"])
        audit_append(
            actor=principal.user, action="version.escalation_resolved", object_type="model_version",
            object_id=str(escalation.version), payload={"escalation": escalation.pk, "note": note,
                                                        "canaries": escalation.canary_ids},
        )
    return escalation


def escalations_for(*, version: Any) -> QuerySet[CommitteeEscalation]:
    return CommitteeEscalation.objects.filter(version=version).select_related("resolved_by")
