"""What follows a rollback incident (pattern §10.3): the on-call engineer files the root-cause
report within 48 h, MRM accepts it or returns it, and the model owner signs the re-initiation
that lets the rolled-back version be canaried again; MRM or AI Governance records the model risk
committee's outcome of an escalation. The records and their moves are governance.incidents'."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from canaryhub.clock import scaled
from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance.access.permissions import Action, as_principal, require
from governance.access.reauth import reauthenticate
from governance.audit.services import audit_append
from governance.incidents.models import CommitteeEscalation, Incident, ReinitiationApproval, RootCauseReport
from governance.incidents.services import incident_transition
from monitoring.services import notification_record

# Who hears of each act: monitoring.notifications.recipients.WHO_HEARS (the outbox row is written
# in the act's transaction).


def _notify(kind: str, *, canary_id: int | None, incident_id: int | None, payload: dict[str, Any]) -> None:
    notification_record(kind=kind, canary_id=canary_id,
                        payload={"incident": incident_id, **payload})


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
        incident_transition(
            incident, to=Incident.Status.ROOT_CAUSE_FILED, actor=principal.user, action="incident.root_cause_filed",
            payload={"report": report.pk, "cause": cause, "contributing_factors": contributing_factors, "fix": fix,
                     "version_change_ref": version_change_ref, "late": late,
                     "due_at": incident.root_cause_due_at.isoformat() if incident.root_cause_due_at else None},
        )
        _notify("incident.root_cause_filed", canary_id=incident.canary_id, incident_id=incident.pk,
                payload={"report": report.pk, "late": late})
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
        incident_transition(
            incident, to=Incident.Status.RESOLVED if accept else Incident.Status.OPEN, actor=principal.user,
            action="incident.root_cause_accepted" if accept else "incident.root_cause_returned",
            payload={"report": report.pk, "note": note}, fields={"resolved_at": now} if accept else None,
        )
        _notify("incident.root_cause_accepted" if accept else "incident.root_cause_returned",
                canary_id=incident.canary_id, incident_id=incident.pk, payload={"report": report.pk, "note": note})
    return report


def _reinitiable(incident: Incident, principal: Any) -> RootCauseReport:
    """Refuse (403/409) a re-initiation approval the locked incident cannot take from this person
    now; else the accepted root cause it rests on."""
    if incident.kind != Incident.Kind.ROLLBACK or incident.canary is None:
        raise Conflict(f"incident #{incident.pk} is not a canary rollback")
    require(principal, Action.APPROVE_REINITIATION, model=incident.canary.model)
    accepted = incident.root_cause_reports.filter(status=RootCauseReport.Status.ACCEPTED).first()
    if accepted is None:
        raise Conflict(f"incident #{incident.pk}: MRM has not accepted a root cause yet")
    if accepted.reviewed_by_id == principal.user.pk:
        raise PermissionRefused("the MRM reviewer who accepted the root cause cannot also approve re-initiation")
    if ReinitiationApproval.objects.filter(incident=incident).exists():
        raise Conflict(f"incident #{incident.pk} already has a re-initiation approval")
    return accepted


def reinitiation_approve(
    *, actor: Any, incident_id: int, statement: str, password: str, now: datetime | None = None,
    request: Any = None,
) -> ReinitiationApproval:
    """The model owner's e-signature (password re-entered, as for a stage promotion) that a
    rolled-back version, its root cause accepted, may be canaried again. Whether it can be given
    is answered before the password is checked (no password oracle); the re-authentication
    counts against the login's lockout counters (`request`: governance.access.reauth)."""
    now = now or timezone.now()
    principal = as_principal(actor)
    statement = _text("statement", statement)
    if principal.is_service_account:
        raise PermissionRefused("service accounts never sign: a re-initiation approval is a human act")
    user = principal.user
    with transaction.atomic():
        _reinitiable(_lock_incident(incident_id), principal)
    reauthenticate(user, password, request=request)
    with transaction.atomic():
        incident = _lock_incident(incident_id)
        accepted = _reinitiable(incident, principal)
        version = incident.canary.version
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
        _notify("version.reinitiation_approved", canary_id=incident.canary_id, incident_id=incident.pk,
                payload={"approval": approval.pk, "version": str(version), "signer": approval.printed_name})
    return approval


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
        _notify("version.escalation_resolved", canary_id=escalation.canary_ids[-1] if escalation.canary_ids else None,
                incident_id=None, payload={"escalation": escalation.pk, "version": str(escalation.version),
                                           "note": note})
    return escalation


# --- reminders ---------------------------------------------------------------------------------------

REMIND_BEFORE = timedelta(hours=12)  # on-call and MRM hear 12 h before a root cause is due


def root_cause_reminders(*, now: datetime | None = None) -> int:
    """Outbox rows for root causes due within 12 h and for overdue ones, once per incident and due
    time each (a periodic task calls this; repeating it records nothing new). Returns how many."""
    now = now or timezone.now()
    written = 0
    waiting = Incident.objects.filter(status=Incident.Status.OPEN, root_cause_due_at__isnull=False,
                                      root_cause_due_at__lte=now + scaled(REMIND_BEFORE))
    for incident in waiting:
        due = incident.root_cause_due_at
        kind = "incident.root_cause_overdue" if now > due else "incident.root_cause_due"
        with transaction.atomic():
            event = notification_record(
                kind=kind, canary_id=incident.canary_id, once_key=f"{kind}:{incident.pk}:{due.isoformat()}",
                payload={"incident": incident.pk, "due_at": due.isoformat(), "summary": incident.summary},
            )
        written += event is not None
    return written
