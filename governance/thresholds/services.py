"""Threshold change review: a running canary's thresholds change only through a governance
request that AI Governance and MRM both approve, and only from the next stage on (DESIGN.md:
"thresholds are fixed at version registration and cannot change mid-canary without a
governance review"). Every step is audited with the old and new values.

The request and its reviews are here; the request's moves between statuses go through
releases.canaries.services.threshold_change_transition (table: releases.canaries.states), which
also applies an approved change when the canary enters its next stage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance.access.permissions import Action, as_principal, require, roles_of
from governance.access.reviews import review_side as shared_review_side
from governance.audit.services import audit_append
from monitoring.services import notification_record
from monitoring.thresholds import thresholds_with_defaults
from releases.canaries import states
from releases.canaries.models import Canary, ThresholdChangeRequest
from releases.canaries.services import threshold_change_transition

Status = ThresholdChangeRequest.Status


def threshold_change_request(
    *, actor: Any, canary_id: int, proposed: Any, reason: str, now: datetime | None = None
) -> ThresholdChangeRequest:
    now = now or timezone.now()
    principal = as_principal(actor)
    if not isinstance(reason, str) or len(reason.strip()) < 10:
        raise ValidationFailed.field("reason", "explain the change (at least 10 characters)")
    values = thresholds_with_defaults(proposed)
    with transaction.atomic():
        canary = Canary.objects.select_for_update().select_related("model").filter(pk=canary_id).first()
        if canary is None:
            raise NotFound(f"no canary #{canary_id}")
        require(principal, Action.REQUEST_THRESHOLD_CHANGE, model=canary.model)
        if canary.state not in states.ACTIVE:
            raise Conflict(f"canary #{canary.pk} is {canary.state}; only an active canary's thresholds can change")
        if values == canary.thresholds:
            raise ValidationFailed.field("proposed", "the proposed thresholds are the current ones")
        if canary.threshold_changes.filter(status__in=states.THRESHOLD_CHANGE_OPEN).exists():
            raise Conflict(f"canary #{canary.pk} already has a threshold change under review or waiting to apply")
        change = ThresholdChangeRequest.objects.create(
            canary=canary, current=canary.thresholds, proposed=values, reason=reason.strip(),
            requested_by=principal.user, requested_at=now, requested_at_stage=canary.stage_index,
        )
        audit_append(
            actor=principal.user, action="canary.threshold_change_requested", object_type="canary",
            object_id=canary.pk,
            payload={"request": change.pk, "current": change.current, "proposed": values, "reason": change.reason,
                     "stage_index": canary.stage_index},
        )
        notification_record(kind="canary.threshold_change_requested", canary_id=canary.pk,
                            payload={"request": change.pk, "proposed": values, "reason": change.reason,
                                     "requested_by": principal.user.pk, "stage_index": canary.stage_index})
    return change


def review_side(change: ThresholdChangeRequest, *, user_id: Any, roles: Any) -> str | None:
    """Which review a pending change still needs from this person — "governance" (AI Governance)
    or "mrm" — or None: two different people, neither of them the requester, each once."""
    return shared_review_side(change, user_id=user_id, roles=roles, pending=change.status == Status.PENDING)


def threshold_change_review(
    *, actor: Any, request_id: int, approve: bool, note: str = "", now: datetime | None = None
) -> ThresholdChangeRequest:
    """One reviewer's decision. AI Governance and MRM each approve once (two different people,
    neither the requester); one rejection ends the request."""
    now = now or timezone.now()
    principal = as_principal(actor)
    user = principal.user
    if principal.is_service_account:
        raise PermissionRefused("service accounts never review a threshold change")
    with transaction.atomic():
        change = ThresholdChangeRequest.objects.select_for_update().filter(pk=request_id).first()
        if change is None:
            raise NotFound(f"no threshold change request #{request_id}")
        require(principal, Action.REVIEW_THRESHOLD_CHANGE)
        if change.status != Status.PENDING:
            raise Conflict(f"threshold change #{change.pk} is {change.status}")
        if change.requested_by_id == user.pk:
            raise PermissionRefused("the requester cannot review their own threshold change")
        side = review_side(change, user_id=user.pk, roles=roles_of(user))
        if side is None:
            raise Conflict(f"threshold change #{change.pk} needs no further review from you")
        if not approve and (not isinstance(note, str) or len(note.strip()) < 10):
            raise ValidationFailed.field("note", "say why the change is rejected (at least 10 characters)")
        to = Status.PENDING
        if not approve:
            to = Status.REJECTED
        elif (change.governance_by_id or side == "governance") and (change.mrm_by_id or side == "mrm"):
            to = Status.APPROVED
        note = (note or "").strip()
        threshold_change_transition(
            change, to=to, actor=user, action=f"canary.threshold_change_{'approved' if approve else 'rejected'}",
            payload={"as": side, "status": to, "note": note},
            fields={f"{side}_by": user, f"{side}_at": now,
                    "decision_note": "\n".join(filter(None, [change.decision_note, note]))},
        )
    return change

