"""The canary's service functions: every write to a canary goes through one of these.

Each function takes the acting principal (None for the system itself), locks the canary row
(`select_for_update`), refuses an illegal transition with 409 naming the current state, writes
its audit event in the same transaction and queues side effects (the router push first) with
`transaction.on_commit`. The rules they apply are pure functions in releases.schedules,
releases.approvals and monitoring.evaluations.

States (API.md) and what moves between them:

    initiate ─┬─> pending_approval ──(start signatures)──┐
              └──────────────────────────────────────────┴─> running
    running ──(residence over, gates green)──> awaiting_approval ──(last signature)──> running (next stage)
    running/awaiting_approval ──(residence over, gates not green)──> held ──(green again)──> awaiting_approval
    the last signature into the final 100 % stage ──> completed ──(certificate)──> certified
    any active state ──(rollback)──> rolled_back;  ──(abort)──> aborted
    running/awaiting_approval/held ──(monitor silent)──> suspended ──(monitor back)──> previous
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance.audit import audit_append
from governance.incidents import incident_open
from governance.models import Approval, Incident
from governance.permissions import Action, Role, as_principal, require, roles_of
from monitoring.evaluations import readiness
from monitoring.models import Evaluation
from releases import approvals as rules
from releases import schedules
from releases.models import AIModel, Canary, ModelVersion

State = Canary.State

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    State.PENDING_APPROVAL: frozenset({State.RUNNING, State.ABORTED}),
    State.RUNNING: frozenset(
        {State.RUNNING, State.AWAITING_APPROVAL, State.HELD, State.SUSPENDED, State.COMPLETED,
         State.ROLLED_BACK, State.ABORTED}
    ),
    State.AWAITING_APPROVAL: frozenset(
        {State.RUNNING, State.AWAITING_APPROVAL, State.HELD, State.SUSPENDED, State.COMPLETED,
         State.ROLLED_BACK, State.ABORTED}
    ),
    State.HELD: frozenset(
        {State.RUNNING, State.AWAITING_APPROVAL, State.HELD, State.SUSPENDED, State.COMPLETED,
         State.ROLLED_BACK, State.ABORTED}
    ),
    State.SUSPENDED: frozenset({State.RUNNING, State.AWAITING_APPROVAL, State.HELD, State.ROLLED_BACK, State.ABORTED}),
    State.COMPLETED: frozenset({State.CERTIFIED}),
    State.CERTIFIED: frozenset(),
    State.ROLLED_BACK: frozenset(),
    State.ABORTED: frozenset(),
}

# States in which the current stage can collect promotion signatures (readiness permitting).
SIGNABLE_STATES = frozenset({State.RUNNING, State.AWAITING_APPROVAL, State.HELD})
SERVING_STATES = frozenset({State.RUNNING, State.AWAITING_APPROVAL, State.HELD, State.SUSPENDED})


# --- reads the rules need -------------------------------------------------------------------------


def canary_stages(canary: Canary) -> tuple[schedules.Stage, ...]:
    return tuple(schedules.Stage.from_dict(s) for s in canary.stages)


def current_step(canary: Canary) -> rules.Step | None:
    """The step the canary is waiting to take, or None when it takes no more signed steps."""
    if canary.state == State.PENDING_APPROVAL:
        return rules.Step.start()
    if canary.state in SERVING_STATES:
        stages = canary_stages(canary)
        if canary.stage_index < len(stages) - 1:
            return rules.promotion_step(stages, from_index=canary.stage_index)
    return None


def required_roles(canary: Canary, step: rules.Step | None = None) -> frozenset[str]:
    step = step or current_step(canary)
    if step is None:
        return frozenset()
    return frozenset(r.value for r in rules.required_signatures(step=step, risk_tier=canary.model.risk_tier))


def latest_evaluation(canary: Canary) -> Evaluation | None:
    return canary.evaluations.filter(stage_index=canary.stage_index).order_by("-window_end", "-id").first()


def residence_until(canary: Canary) -> datetime | None:
    if canary.stage_entered_at is None:
        return None
    stage = canary_stages(canary)[canary.stage_index]
    return canary.stage_entered_at + stage.min_residence


@dataclass(frozen=True)
class StageReadiness:
    """Whether the current stage may collect promotion signatures now, and if not, why."""

    ready: bool
    reason: str
    residence_remaining: timedelta
    evaluation: Evaluation | None


_LOOKUP: Any = object()


def stage_readiness(canary: Canary, *, now: datetime, evaluation: Evaluation | None = _LOOKUP) -> StageReadiness:
    """`evaluation`: the latest evaluation of the current stage when the caller has it already."""
    stages = canary_stages(canary)
    if evaluation is _LOOKUP:
        evaluation = latest_evaluation(canary)
    if canary.stage_entered_at is None:
        return StageReadiness(False, "the canary has not started", timedelta(0), evaluation)
    remaining = schedules.residence_remaining(stages[canary.stage_index], entered_at=canary.stage_entered_at, now=now)
    if remaining > timedelta(0):
        return StageReadiness(
            False, f"minimum residence: {_human(remaining)} remaining", remaining, evaluation
        )
    verdict = readiness(evaluation, now=now, staleness_limit_s=settings.STALENESS_LIMIT_S)
    return StageReadiness(verdict.ready, verdict.reason, timedelta(0), evaluation)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds() + 0.999)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


# --- the one transition function ------------------------------------------------------------------


def _lock(canary_id: int) -> Canary:
    canary = Canary.objects.select_for_update().filter(pk=canary_id).first()
    if canary is None:
        raise NotFound(f"no canary #{canary_id}")
    return canary


def _transition(
    canary: Canary,
    *,
    to: str,
    actor: Any,
    action: str,
    payload: dict[str, Any],
    fields: dict[str, Any] | None = None,
    push: bool = False,
    push_queue: str = "celery",
) -> Canary:
    """Move a locked canary to `to`, save, audit, and queue the router push after commit."""
    current = canary.state
    if to not in ALLOWED_TRANSITIONS[current]:
        raise Conflict(f"canary #{canary.pk} is {current}; it cannot become {to}")
    changes = {"state": to, **(fields or {})}
    for name, value in changes.items():
        setattr(canary, name, value)
    if push:
        canary.split_generation += 1
        changes["split_generation"] = canary.split_generation
    canary.save(update_fields=list(changes))
    audit_append(
        actor=as_principal(actor).user if actor is not None else None,
        action=action,
        object_type="canary",
        object_id=canary.pk,
        payload={"from": current, "to": to, "stage_index": canary.stage_index,
                 "traffic_percent": canary.traffic_percent, **payload},
    )
    if push:
        from releases.tasks import push_split

        canary_id, generation = canary.pk, canary.split_generation
        transaction.on_commit(
            lambda: push_split.apply_async(args=[canary_id, generation], queue=push_queue)
        )
    return canary


# --- initiation -----------------------------------------------------------------------------------


def canary_initiate(
    *,
    actor: Any,
    model_name: str,
    version: str,
    schedule: str = schedules.ScheduleKind.STANDARD,
    segmentation: dict[str, Any] | None = None,
    rationale: str = "",
    shadow_evidence_ref: str = "",
    rollback_contact: str = "",
    router: str = "file",
    now: datetime | None = None,
) -> Canary:
    """Start a canary of a registered version: freeze its schedule, segmentation and thresholds,
    and either start traffic at the first stage or wait for the start signatures."""
    from releases.routers import router_kinds

    now = now or timezone.now()
    principal = as_principal(actor)
    with transaction.atomic():
        # The model row lock serialises initiations of one model: the "one active canary"
        # check below cannot race (and the unique constraint backs it up).
        model = AIModel.objects.select_for_update().filter(name=model_name).first()
        if model is None:
            raise NotFound(f"no model named {model_name!r}")
        if principal.scope is not None and model.pk not in principal.scope:
            # A scoped token does not learn that models outside its scope exist (reads say 404 too).
            raise NotFound(f"no model named {model_name!r}")
        require(principal, Action.START_CANARY, model=model)
        if rollback_contact and (not isinstance(rollback_contact, str) or len(rollback_contact) > 200):
            raise ValidationFailed.field("rollback_contact", "at most 200 characters")
        obj = model.versions.filter(version=version).first()
        if obj is None:
            raise ValidationFailed.field("version", f"{model.name} has no version {version!r}")
        active = model.canaries.filter(state__in=Canary.ACTIVE_STATES).first()
        if active is not None:
            raise Conflict(
                f"{model.name} already has an active canary (#{active.pk}, {active.state}); "
                "finish, roll back or abort it first"
            )
        reinitiation = None
        if obj.status == ModelVersion.Status.ROLLED_BACK:
            from governance.rootcause import reinitiation_claim

            reinitiation = reinitiation_claim(version=obj)
            if reinitiation is None:
                raise Conflict(
                    f"{obj} was rolled back; it cannot be canaried again until its root cause is accepted "
                    "and a re-initiation is approved"
                )
        elif obj.status != ModelVersion.Status.REGISTERED:
            raise Conflict(f"{obj} is {obj.status}; only a registered version can be canaried")
        baseline = model.versions.filter(status=ModelVersion.Status.PRODUCTION).first()
        if baseline is None:
            raise Conflict(f"{model.name} has no production version to compare a canary with")
        if obj.semver <= baseline.semver:
            raise ValidationFailed.field("version", f"must be greater than the production version {baseline.version}")
        change_type = rules_change_type(obj, baseline)
        schedules.validate_initiation(
            schedule=schedule, risk_tier=model.risk_tier, segmentation=segmentation, rationale=rationale,
            shadow_evidence_ref=shadow_evidence_ref, change_type=change_type,
        )
        if router not in router_kinds():
            raise ValidationFailed.field("router", f"must be one of {', '.join(router_kinds())}")
        seg = schedules.parse_segmentation(segmentation)
        stages = schedules.expand_schedule(
            schedule, risk_tier=model.risk_tier, clock_speed=settings.CLOCK_SPEED,
            cohorts=tuple(seg["values"]) if schedule == schedules.ScheduleKind.COHORT_FIRST else (),
        )
        warnings = schedules.initiation_warnings(
            schedule=schedule, risk_tier=model.risk_tier, change_type=change_type, segmentation=seg
        )
        start_roles = rules.required_signatures(step=rules.Step.start(), risk_tier=model.risk_tier)
        starts_now = not start_roles
        timeline = [
            {"index": stage.index, "percent": stage.percent, "cohort": stage.cohort, "earliest_entry": at.isoformat()}
            for stage, at in schedules.expected_timeline(stages, start=now)
        ]
        canary = Canary(
            model=model, version=obj, baseline=baseline, schedule=schedule,
            stages=[s.to_dict() for s in stages], segmentation=seg, rationale=rationale or "",
            shadow_evidence_ref=shadow_evidence_ref or "", thresholds=obj.thresholds,
            expected_timeline=timeline, rollback_contact=rollback_contact or model.on_call, router=router,
            clock_speed=settings.CLOCK_SPEED, state=State.RUNNING if starts_now else State.PENDING_APPROVAL,
            stage_index=0, stage_entered_at=now if starts_now else None,
            traffic_percent=stages[0].percent if starts_now else 0,
            split_generation=1 if starts_now else 0, initiated_by=principal.user,
        )
        try:
            with transaction.atomic():
                canary.save()
        except IntegrityError as exc:  # the unique "one active canary" constraint
            raise Conflict(f"{model.name} already has an active canary") from exc
        ModelVersion.objects.filter(pk=obj.pk).update(status=ModelVersion.Status.CANARY)
        if reinitiation is not None:
            from governance.rootcause import reinitiation_use

            reinitiation_use(approval=reinitiation, canary=canary)
        audit_append(
            actor=principal.user,
            action="canary.initiated",
            object_type="canary",
            object_id=canary.pk,
            payload={
                "model": model.name, "version": obj.version, "baseline": baseline.version,
                "risk_tier": model.risk_tier, "change_type": change_type, "schedule": schedule,
                "stages": canary.stages, "segmentation": seg, "rationale": canary.rationale,
                "shadow_evidence_ref": canary.shadow_evidence_ref, "thresholds": canary.thresholds,
                "expected_timeline": timeline, "rollback_contact": canary.rollback_contact,
                "router": router, "state": canary.state, "traffic_percent": canary.traffic_percent,
                "start_signatures_required": sorted(r.value for r in start_roles),
                "warnings": warnings, "clock_speed": settings.CLOCK_SPEED, "via_token": principal.token_prefix,
            },
        )
        if starts_now:
            _queue_push(canary)
    return canary


def rules_change_type(version: ModelVersion, baseline: ModelVersion) -> str:
    from releases.services import change_type_between

    return change_type_between(version.semver, baseline.semver)


def _queue_push(canary: Canary, *, queue: str = "celery") -> None:
    from releases.tasks import push_split

    canary_id, generation = canary.pk, canary.split_generation
    transaction.on_commit(lambda: push_split.apply_async(args=[canary_id, generation], queue=queue))


# --- signatures -----------------------------------------------------------------------------------


def canary_sign(
    *,
    actor: Any,
    canary_id: int,
    role: str,
    statement: str,
    password: str,
    evaluation_hash: str = "",
    now: datetime | None = None,
) -> Approval:
    """An e-signature on the canary's current step. The last required one takes the step:
    starts the canary, or promotes it to the next stage (completing it at 100 %)."""
    now = now or timezone.now()
    principal = as_principal(actor)
    if role not in {r.value for r in rules.SignatureRole}:
        raise ValidationFailed.field("role", "must be owner or mrm")
    if not isinstance(statement, str) or len(statement.strip()) < 10:
        raise ValidationFailed.field("statement", "state what you are approving (at least 10 characters)")
    if principal.is_service_account:
        raise PermissionRefused("service accounts never sign: an approval is a human act")
    user = principal.user
    if not isinstance(password, str) or not user.check_password(password):
        raise PermissionRefused("re-authentication failed: the password does not match")
    with transaction.atomic():
        canary = _lock(canary_id)
        model = canary.model
        require(principal, Action.SIGN_OWNER if role == "owner" else Action.SIGN_MRM, model=model)
        step = current_step(canary)
        if step is None or canary.state == State.SUSPENDED:
            raise Conflict(f"canary #{canary.pk} is {canary.state}; there is no step to sign")
        evaluation: Evaluation | None = None
        if step.kind is rules.StepKind.PROMOTE:
            ready = stage_readiness(canary, now=now)
            if not ready.ready:
                raise Conflict(f"canary #{canary.pk} is {canary.state}: stage {canary.stage_index} is not ready "
                               f"for signatures ({ready.reason})")
            evaluation = ready.evaluation
            assert evaluation is not None  # readiness needs one
            if not evaluation_hash:
                raise ValidationFailed.field(
                    "evaluation_hash", "sign what you saw: give the hash of the evaluation shown"
                )
            if evaluation_hash != evaluation.content_hash:
                raise Conflict(
                    "the evaluation you were shown is no longer the newest; review the latest evaluation "
                    f"({evaluation.content_hash[:12]}…) and sign again"
                )
        signed = {a.role: a.signer_id for a in canary.approvals.filter(step=step.key)}
        conflict = rules.signature_conflicts(
            role=role, signer_id=user.pk, initiator_id=canary.initiated_by_id, other_signatures=signed,
            is_service_account=False, is_model_owner=model.owner_id == user.pk,
            has_mrm_role=Role.MRM in roles_of(user),
        )
        if conflict:
            raise PermissionRefused(conflict)
        required = rules.required_signatures(step=step, risk_tier=model.risk_tier)
        if role not in {r.value for r in required}:
            raise Conflict(f"step {step.key} of canary #{canary.pk} does not need a {role} signature")
        meaning = signature_meaning(role=role, step=step, canary=canary)
        try:
            with transaction.atomic():
                approval = Approval.objects.create(
                    canary=canary, step=step.key, stage_index=step.to_index, role=role, signer=user,
                    printed_name=(user.get_full_name() or user.get_username())[:200], meaning=meaning,
                    statement=statement.strip(), evaluation=evaluation,
                    evaluation_hash=evaluation.content_hash if evaluation else "", signed_at=now,
                )
        except IntegrityError as exc:
            raise Conflict(f"step {step.key} already has its {role} signature") from exc
        audit_append(
            actor=user, action="canary.signed", object_type="canary", object_id=canary.pk,
            payload={
                "approval": approval.pk, "step": step.key, "role": role, "printed_name": approval.printed_name,
                "meaning": meaning, "statement": approval.statement, "signed_at": now.isoformat(),
                "evaluation": evaluation.pk if evaluation else None, "evaluation_hash": approval.evaluation_hash,
                "reauthenticated": True,
            },
        )
        signed[role] = user.pk
        if not rules.outstanding_signatures(required=required, signed=signed):
            _take_step(canary, step=step, actor=user, now=now)
    return approval


def signature_meaning(*, role: str, step: rules.Step, canary: Canary) -> str:
    """What a signature on `step` means, in the words recorded with it (and shown before signing)."""
    stages = canary_stages(canary)
    who = "Model owner" if role == "owner" else "Model risk (MRM) validator"
    if step.kind is rules.StepKind.START:
        return f"{who}: approves starting canary #{canary.pk} of {canary.version} at {stages[0].percent}% of traffic"
    target = stages[step.to_index]
    return (
        f"{who}: approves promoting canary #{canary.pk} of {canary.version} from {stages[step.to_index - 1].percent}% "
        f"to {target.percent}%{' (full rollout)' if target.is_final else ''}"
    )


def _take_step(canary: Canary, *, step: rules.Step, actor: Any, now: datetime) -> None:
    stages = canary_stages(canary)
    target = stages[step.to_index]
    fields = {"stage_index": step.to_index, "stage_entered_at": now, "traffic_percent": target.percent,
              "hold_reason": ""}
    if target.is_final:
        fields["ended_at"] = now
        _transition(canary, to=State.COMPLETED, actor=actor, action="canary.completed",
                    payload={"step": step.key}, fields=fields, push=True)
        _make_production(canary, actor=actor)
        return
    if step.kind is rules.StepKind.PROMOTE:
        # An approved threshold change takes effect as the canary enters its next stage.
        from governance.threshold_changes import threshold_change_apply_due

        threshold_change_apply_due(canary=canary, fields=fields, to_index=step.to_index, actor=actor, now=now)
    action = "canary.started" if step.kind is rules.StepKind.START else "canary.promoted"
    _transition(canary, to=State.RUNNING, actor=actor, action=action, payload={"step": step.key},
                fields=fields, push=True)


def _make_production(canary: Canary, *, actor: Any) -> None:
    previous = list(
        ModelVersion.objects.select_for_update().filter(model=canary.model, status=ModelVersion.Status.PRODUCTION)
    )
    ModelVersion.objects.filter(pk__in=[v.pk for v in previous]).update(status=ModelVersion.Status.DEPRECATED)
    ModelVersion.objects.filter(pk=canary.version_id).update(status=ModelVersion.Status.PRODUCTION)
    audit_append(
        actor=actor, action="version.promoted_to_production", object_type="model_version",
        object_id=str(canary.version),
        payload={"canary": canary.pk, "deprecated": [v.version for v in previous]},
    )


def canary_mark_certified(*, canary: Canary, actor: Any, payload: dict[str, Any]) -> Canary:
    """COMPLETED → CERTIFIED, for governance.certificates.certificate_decide, which has locked the
    row, checked the issuer's right and sealed the certificate in the same transaction."""
    return _transition(canary, to=State.CERTIFIED, actor=actor, action="canary.certified", payload=payload)


# --- stopping -------------------------------------------------------------------------------------


def canary_rollback(
    *, actor: Any, canary_id: int, reason: str, automatic: bool = False, evaluation_id: int | None = None,
) -> Canary:
    """Send every user back to production. Manual (owner or platform) or automatic (the
    evaluator, actor None). The 0 % push is the first thing queued, on the rollback queue."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed.field("reason", "say why the canary is rolled back")
    with transaction.atomic():
        canary = _lock(canary_id)
        if not automatic:
            require(actor, Action.ROLLBACK_CANARY, model=canary.model)
        if canary.state == State.PENDING_APPROVAL:
            raise Conflict(f"canary #{canary.pk} is {canary.state}: it never served traffic; abort it instead")
        _transition(
            canary, to=State.ROLLED_BACK, actor=actor, action="canary.rolled_back",
            payload={"reason": reason.strip(), "automatic": automatic, "evaluation": evaluation_id,
                     "from_percent": canary.traffic_percent},
            fields={"traffic_percent": 0, "ended_at": timezone.now(), "end_reason": reason.strip()},
            push=True, push_queue="rollbacks",
        )
        ModelVersion.objects.filter(pk=canary.version_id).update(status=ModelVersion.Status.ROLLED_BACK)
        incident_open(
            severity=Incident.Severity.P2, kind=Incident.Kind.ROLLBACK, canary=canary,
            evaluation=Evaluation.objects.filter(pk=evaluation_id).first() if evaluation_id else None,
            summary=f"Canary #{canary.pk} of {canary.version} rolled back "
                    f"{'automatically' if automatic else 'by hand'}: {reason.strip()}",
            details={"automatic": automatic, "stage_index": canary.stage_index}, actor=actor,
        )
    return canary


def canary_abort(*, actor: Any, canary_id: int, reason: str) -> Canary:
    """Stop a canary before completion (a human or CI decision, not a metric breach). Traffic
    goes to 0 % first; the version may be canaried again (its thresholds stay frozen)."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed.field("reason", "say why the canary is aborted")
    with transaction.atomic():
        canary = _lock(canary_id)
        require(actor, Action.ABORT_CANARY, model=canary.model)
        _transition(
            canary, to=State.ABORTED, actor=actor, action="canary.aborted",
            payload={"reason": reason.strip(), "from_percent": canary.traffic_percent},
            fields={"traffic_percent": 0, "ended_at": timezone.now(), "end_reason": reason.strip()},
            push=True, push_queue="rollbacks",
        )
        ModelVersion.objects.filter(pk=canary.version_id).update(status=ModelVersion.Status.REGISTERED)
    return canary


# --- the system's own moves -----------------------------------------------------------------------


def reconcile_target(ready: StageReadiness) -> tuple[str, str]:
    """The state (and hold reason) a serving canary's readiness calls for."""
    if ready.ready:
        return State.AWAITING_APPROVAL, ""
    if ready.residence_remaining > timedelta(0):
        return State.RUNNING, ""
    return State.HELD, ready.reason[:300]


def reconcile_needed(canary: Canary, *, now: datetime, evaluation: Evaluation | None = _LOOKUP) -> bool:
    """Whether canary_reconcile would change this (freshly read) canary: a serving canary whose
    state or hold reason differs from what its readiness calls for."""
    if canary.state not in (State.RUNNING, State.AWAITING_APPROVAL, State.HELD):
        return False
    target, reason = reconcile_target(stage_readiness(canary, now=now, evaluation=evaluation))
    return target != canary.state or reason != canary.hold_reason


def canary_reconcile(*, canary_id: int, now: datetime | None = None) -> Canary:
    """Bring a serving canary's displayed state in line with the facts: awaiting approval when
    its stage is ready, held (with the reason) when the residence is over but the gates are
    not green, running while the residence lasts. Suspended canaries are left to the monitor."""
    now = now or timezone.now()
    with transaction.atomic():
        canary = _lock(canary_id)
        if canary.state not in (State.RUNNING, State.AWAITING_APPROVAL, State.HELD):
            return canary
        ready = stage_readiness(canary, now=now)
        target, reason = reconcile_target(ready)
        if target == canary.state and reason == canary.hold_reason:
            return canary
        if target == canary.state:
            # Same state, new reason: keep the reason current without an audit event per tick.
            Canary.objects.filter(pk=canary.pk).update(hold_reason=reason)
            canary.hold_reason = reason
            return canary
        return _transition(
            canary, to=target, actor=None, action=f"canary.{target}",
            payload={"reason": ready.reason}, fields={"hold_reason": reason},
        )


def canary_suspend(*, canary_id: int, reason: str) -> Canary:
    """The dead-man's switch: stop a serving canary's advancement while nobody watches its
    metrics. Traffic stays where it is (no push); rollback stays possible from suspended."""
    with transaction.atomic():
        canary = _lock(canary_id)
        if canary.state not in (State.RUNNING, State.AWAITING_APPROVAL, State.HELD):
            return canary
        return _transition(
            canary, to=State.SUSPENDED, actor=None, action="canary.suspended",
            payload={"reason": reason}, fields={"hold_reason": reason[:300]},
        )


def canary_resume(*, canary_id: int, reason: str, now: datetime | None = None) -> Canary:
    """Lift a suspension: back to the state the facts give (as canary_reconcile decides)."""
    now = now or timezone.now()
    with transaction.atomic():
        canary = _lock(canary_id)
        if canary.state != State.SUSPENDED:
            return canary
        ready = stage_readiness(canary, now=now)
        if ready.ready:
            target, hold = State.AWAITING_APPROVAL, ""
        elif ready.residence_remaining > timedelta(0):
            target, hold = State.RUNNING, ""
        else:
            target, hold = State.HELD, ready.reason[:300]
        return _transition(
            canary, to=target, actor=None, action="canary.resumed",
            payload={"reason": reason, "readiness": ready.reason}, fields={"hold_reason": hold},
        )
