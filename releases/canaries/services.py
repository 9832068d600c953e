"""The canary's service functions: every change of a canary's state, stage, split, signatures
and threshold changes goes through one of these. (The control loop's claim of a due canary —
`next_eval_at`, a scheduling mark, not the canary's record — is releases.canaries.loop.claim_due.)

Each takes the acting principal (None for the system itself), locks the canary row
(`select_for_update`), refuses an illegal transition with 409 naming the current state
(releases.canaries.states), and in the same transaction writes its audit event and its
notification outbox row. The router push is announced to run after commit
("canary.split_changed", carried out by releases.canaries.tasks.push_split; rollbacks and aborts
on the "rollbacks" queue). The rules they apply are pure functions: releases.canaries.states,
.schedules and .approvals, and monitoring.evaluations.

The control loop that calls the system's own moves (reconcile, suspend, resume, automatic
rollback) is releases.canaries.loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from canaryhub import events
from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance.access.permissions import Action, as_principal, require
from governance.access.reauth import reauthenticate
from governance.audit.services import audit_append
from governance.incidents.models import Incident
from governance.incidents.services import (
    committee_escalation_open,
    incident_open,
    reinitiation_claim,
    reinitiation_use,
)
from monitoring.models import Evaluation, NotificationEvent, RollbackDecision
from monitoring.notifications.recipients import summary_slot
from monitoring.services import incident_raise, notification_record
from releases.canaries import approvals as rules
from releases.canaries import schedules, selectors, states
from releases.canaries.models import Approval, Canary, ThresholdChangeRequest
from releases.register.models import AIModel, ModelVersion
from releases.register.services import change_type_between, version_flag_escalated, version_transition
from releases.routing import assignment
from releases.routing.models import StickySweep
from releases.routing.routers import router_kinds
from releases.routing.services import push_queue

State = states.State
ESCALATION_AFTER = 3  # consecutive rollbacks of one version go to the model risk committee (pattern §10.3)

# --- the one transition function -------------------------------------------------------------------


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
    """Move a locked canary to `to`: save, audit, write the outbox row, and announce the router
    push for after the commit."""
    current = canary.state
    if not states.may_become(current, to):
        raise Conflict(f"canary #{canary.pk} is {current}; it cannot become {to}")
    changes = {"state": to, **(fields or {})}
    for name, value in changes.items():
        setattr(canary, name, value)
    if push:
        canary.split_generation += 1
        changes["split_generation"] = canary.split_generation
    canary.save(update_fields=list(changes))
    record = {"from": current, "to": to, "stage_index": canary.stage_index, "stage_count": len(canary.stages),
              "traffic_percent": canary.traffic_percent, **payload}
    audit_append(actor=as_principal(actor).user if actor is not None else None, action=action,
                 object_type="canary", object_id=canary.pk, payload=record)
    _notify(canary, kind=action, payload=record)
    if push:
        _announce_push(canary, queue=push_queue)
    return canary


def _notify(canary: Canary, *, kind: str, payload: dict[str, Any]) -> None:
    # Who hears of it: monitoring.notifications.recipients.WHO_HEARS.
    notification_record(
        kind=kind, canary_id=canary.pk,
        payload={"model": canary.model.name, "version": canary.version.version, **payload},
    )


def split_push_again(*, canary_id: int) -> None:
    """Queue the push of a canary's split in force again, recorded as queued (reason "retry"):
    the re-drive of a lost push (releases.canaries.loop.pushes_sweep). A 0 % split goes on the
    rollbacks queue."""
    canary = Canary.objects.select_related("model", "version", "baseline").get(pk=canary_id)
    push_queue(canary_id=canary.pk, router=canary.router, split=selectors.split_of(canary), reason="retry")
    events.announce("canary.split_changed", canary_id=canary.pk, generation=canary.split_generation,
                    queue="rollbacks" if canary.traffic_percent == 0 else "celery")


def _announce_push(canary: Canary, *, queue: str = "celery") -> None:
    # The push is recorded as queued in this transaction: a lost message leaves a visible row
    # that the sweeper marks lost and re-drives (releases.canaries.loop.pushes_sweep).
    push_queue(canary_id=canary.pk, router=canary.router, split=selectors.split_of(canary))
    events.announce("canary.split_changed", canary_id=canary.pk, generation=canary.split_generation, queue=queue)


# --- initiation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitiationPlan:
    """What a canary started with these inputs would be (pure: releases.canaries.services.initiation_plan)."""

    change_type: str
    stages: tuple[schedules.Stage, ...]
    segmentation: schedules.Segmentation
    timeline: list[dict[str, Any]]
    warnings: list[str]
    start_roles: frozenset[rules.SignatureRole]
    rollback_contact: str

    @property
    def starts_now(self) -> bool:
        return not self.start_roles


def initiation_plan(
    *, risk_tier: str, on_call: str, version: tuple[int, int, int], baseline: tuple[int, int, int],
    baseline_label: str, schedule: str, segmentation: Any, rationale: str, shadow_evidence_ref: str,
    rollback_contact: str, router: str, known_routers: Sequence[str], clock_speed: float, now: datetime,
) -> InitiationPlan:
    """The canary these inputs start, or ValidationFailed naming the input that cannot be used.
    Pure: the caller reads the model, the version and its production baseline."""
    if rollback_contact and (not isinstance(rollback_contact, str) or len(rollback_contact) > 200):
        raise ValidationFailed.field("rollback_contact", "at most 200 characters")
    if version <= baseline:
        raise ValidationFailed.field("version", f"must be greater than the production version {baseline_label}")
    change_type = change_type_between(version, baseline)
    schedules.validate_initiation(
        schedule=schedule, risk_tier=risk_tier, segmentation=segmentation, rationale=rationale,
        shadow_evidence_ref=shadow_evidence_ref, change_type=change_type,
    )
    if router not in known_routers:
        raise ValidationFailed.field("router", f"must be one of {', '.join(known_routers)}")
    seg = schedules.parse_segmentation(segmentation)
    stages = schedules.expand_schedule(
        schedule, risk_tier=risk_tier, clock_speed=clock_speed,
        cohorts=tuple(seg["values"]) if schedule == schedules.ScheduleKind.COHORT_FIRST else (),
    )
    return InitiationPlan(
        change_type=change_type, stages=stages, segmentation=seg,
        timeline=[
            {"index": stage.index, "percent": stage.percent, "cohort": stage.cohort, "earliest_entry": at.isoformat()}
            for stage, at in schedules.expected_timeline(stages, start=now)
        ],
        warnings=schedules.initiation_warnings(schedule=schedule, risk_tier=risk_tier, change_type=change_type,
                                               segmentation=seg),
        start_roles=rules.required_signatures(step=rules.Step.start(), risk_tier=risk_tier),
        rollback_contact=rollback_contact or on_call,
    )


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
    callback_url: str = "",
    now: datetime | None = None,
    urgent_reason: str = "",
) -> Canary:
    """Start a canary of a registered version: freeze its schedule, segmentation and thresholds,
    and either start traffic at the first stage or wait for the start signatures. `callback_url`
    (a pipeline's) hears of every state change as a signed webhook. `urgent_reason` is the
    platform engineer's urgent PATCH (`canary_urgent_patch`)."""
    now = now or timezone.now()
    principal = as_principal(actor)
    if urgent_reason:
        _authorise_urgent(principal, urgent_reason)
    if callback_url and (not isinstance(callback_url, str) or len(callback_url) > 500
                         or not callback_url.startswith(("https://", "http://"))):
        raise ValidationFailed.field("callback_url", "an http(s) URL of at most 500 characters")
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
        obj = model.versions.filter(version=version).first()
        if obj is None:
            raise ValidationFailed.field("version", f"{model.name} has no version {version!r}")
        active = model.canaries.filter(state__in=states.ACTIVE).first()
        if active is not None:
            raise Conflict(
                f"{model.name} already has an active canary (#{active.pk}, {active.state}); "
                "finish, roll back or abort it first"
            )
        reinitiation = None
        if obj.status == ModelVersion.Status.ROLLED_BACK:
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
        plan = initiation_plan(
            risk_tier=model.risk_tier, on_call=model.on_call, version=obj.semver, baseline=baseline.semver,
            baseline_label=baseline.version, schedule=schedule, segmentation=segmentation, rationale=rationale,
            shadow_evidence_ref=shadow_evidence_ref, rollback_contact=rollback_contact, router=router,
            known_routers=router_kinds(), clock_speed=settings.CLOCK_SPEED, now=now,
        )
        if urgent_reason:
            plan = _urgent_plan(plan, now=now)
        starts_now = plan.starts_now
        canary = Canary(
            model=model, version=obj, baseline=baseline, schedule=schedule,
            stages=[s.to_dict() for s in plan.stages], segmentation=plan.segmentation, rationale=rationale or "",
            shadow_evidence_ref=shadow_evidence_ref or "", thresholds=obj.thresholds,
            metrics=obj.metrics,
            expected_timeline=plan.timeline, rollback_contact=plan.rollback_contact, router=router,
            clock_speed=settings.CLOCK_SPEED, state=State.RUNNING if starts_now else State.PENDING_APPROVAL,
            stage_index=0, stage_entered_at=now if starts_now else None,
            traffic_percent=plan.stages[0].percent if starts_now else 0,
            split_generation=1 if starts_now else 0, initiated_by=principal.user,
            risk_tier=model.risk_tier, owner=model.owner, callback_url=callback_url or "",
            urgent_reason=urgent_reason.strip(),
        )
        try:
            with transaction.atomic():
                canary.save()
        except IntegrityError as exc:  # the unique "one active canary" constraint
            raise Conflict(f"{model.name} already has an active canary") from exc
        version_transition(version=obj, to=ModelVersion.Status.CANARY, actor=principal, canary_id=canary.pk,
                           reason="canary initiated")
        if reinitiation is not None:
            reinitiation_use(approval=reinitiation, canary=canary)
        record = {
            "model": model.name, "version": obj.version, "baseline": baseline.version,
            "risk_tier": model.risk_tier, "owner": model.owner.get_username(), "change_type": plan.change_type,
            "schedule": schedule,
            "stages": canary.stages, "segmentation": plan.segmentation, "rationale": canary.rationale,
            "shadow_evidence_ref": canary.shadow_evidence_ref, "thresholds": canary.thresholds,
            "expected_timeline": plan.timeline, "rollback_contact": canary.rollback_contact,
            "router": router, "callback_url": canary.callback_url, "state": canary.state,
            "traffic_percent": canary.traffic_percent,
            "start_signatures_required": sorted(r.value for r in plan.start_roles),
            "warnings": plan.warnings, "clock_speed": settings.CLOCK_SPEED,
            "simulator_traffic_scale": settings.SIMULATOR_TRAFFIC_SCALE, "via_token": principal.token_prefix,
            "urgent_reason": canary.urgent_reason,
        }
        audit_append(actor=principal.user, action="canary.initiated", object_type="canary", object_id=canary.pk,
                     payload=record)
        _notify(canary, kind="canary.initiated", payload=record)
        if urgent_reason:
            _urgent_recorded(canary, actor=principal, now=now)
        if not starts_now:
            # The start step is ready for signatures at once: its signers hear it now.
            _notify(canary, kind="canary.signatures_requested",
                    payload={"step": "start", "signatures_required": record["start_signatures_required"]})
        if starts_now:
            _announce_push(canary)
    return canary


def canary_urgent_patch(*, actor: Any, model_name: str, version: str, reason: str, router: str = "file",
                        rollback_contact: str = "", now: datetime | None = None) -> Canary:
    """The platform engineer's emergency path (pattern §3.2): canary an urgent PATCH version
    faster than the schedule. "Faster" means exactly this: the standard stages (1 → 5 → 10 → 25 →
    50 → 100 %), each held for CANARYHUB_URGENT_RESIDENCE_MINUTES (default 60) instead of 24 h
    (48 h for high risk). Nothing else is waived: the start and promotion signatures the risk
    tier requires, green promotion gates on a fresh evaluation, the staleness limit, and the
    automatic rollback rule with its 2-minute SLO all apply as to any canary.

    Only a platform engineer (a person, never a token), only a PATCH over the production
    version, and only with a reason stated in full (20 characters at least). It opens an
    `urgent_patch` incident whose root cause — MRM's retrospective review of why the fix could
    not wait — is due within 48 h and reviewed by MRM as a rollback's is (governance.rootcause),
    writes a `canary.urgent_patch` audit event and notifies on-call, platform, MRM, the owner
    and the consumers."""
    return canary_initiate(actor=actor, model_name=model_name, version=version, router=router,
                           rollback_contact=rollback_contact, now=now,
                           urgent_reason=reason if isinstance(reason, str) and reason.strip() else " ")


def _authorise_urgent(principal: Any, reason: str) -> None:
    require(principal, Action.URGENT_PATCH)
    if not isinstance(reason, str) or len(reason.strip()) < BREAK_GLASS_REASON_MIN:
        raise ValidationFailed.field(
            "reason", f"an urgent PATCH needs its reason stated in full (at least {BREAK_GLASS_REASON_MIN} "
            "characters)")


def _urgent_plan(plan: InitiationPlan, *, now: datetime) -> InitiationPlan:
    """An initiation plan as an urgent PATCH: PATCH only, the urgent residences."""
    if plan.change_type != ModelVersion.ChangeType.PATCH:
        raise ValidationFailed.field(
            "version", f"an urgent canary is for a PATCH version only; this one is a {plan.change_type} change "
            "and follows the schedule")
    stages = schedules.urgent_patch_stages(residence=timedelta(minutes=settings.URGENT_RESIDENCE_MINUTES),
                                           clock_speed=settings.CLOCK_SPEED)
    return replace(plan, stages=stages, timeline=[
        {"index": stage.index, "percent": stage.percent, "cohort": stage.cohort, "earliest_entry": at.isoformat()}
        for stage, at in schedules.expected_timeline(stages, start=now)
    ])


def _urgent_recorded(canary: Canary, *, actor: Any, now: datetime) -> None:
    """After an urgent PATCH starts: its incident (root cause = MRM's retrospective review, due
    within 48 h), its own audit event and the notice."""
    incident = incident_open(
        severity=Incident.Severity.P2, kind=Incident.Kind.URGENT_PATCH, canary_id=canary.pk,
        summary=f"Urgent PATCH canary #{canary.pk} of {canary.version} faster than the schedule: "
                f"{canary.urgent_reason}",
        details={"residence_minutes": settings.URGENT_RESIDENCE_MINUTES, "reason": canary.urgent_reason},
        actor=actor, now=now,
    )
    record = {"reason": canary.urgent_reason, "incident": incident.pk,
              "residence_minutes": settings.URGENT_RESIDENCE_MINUTES,
              "retrospective_review_due_at": incident.root_cause_due_at.isoformat()
              if incident.root_cause_due_at else None}
    audit_append(actor=as_principal(actor).user, action="canary.urgent_patch", object_type="canary",
                 object_id=canary.pk, payload=record)
    _notify(canary, kind="canary.urgent_patch", payload=record)


# --- signatures -----------------------------------------------------------------------------------


def _signable(canary: Canary, principal: Any, *, role: str, evaluation_hash: str,
              now: datetime) -> tuple[rules.StepFacts, rules.Step, Evaluation | None]:
    """Refuse (403/409/400) a signature the locked canary cannot take now; else the step's facts,
    the step and the evaluation signed on. Voids stale signatures of the step first."""
    signatures_void_stale(canary, now=now)
    ready = selectors.stage_readiness(canary, now=now)
    facts = selectors.step_facts(canary, now=now, evaluation=ready.evaluation)
    refusal = selectors.signing_refusal(principal, canary, role=role, facts=facts)
    if refusal is not None:
        if refusal.status == 403:
            raise PermissionRefused(refusal.reason)
        raise Conflict(f"canary #{canary.pk} is {canary.state}: {refusal.reason}")
    step = facts.step
    assert step is not None  # signing_refusal refuses a canary without a step
    evaluation: Evaluation | None = None
    if step.kind is rules.StepKind.PROMOTE:
        evaluation = ready.evaluation
        assert evaluation is not None  # readiness needs one
        if not evaluation_hash:
            raise ValidationFailed.field("evaluation_hash", "sign what you saw: give the hash of the evaluation shown")
        if evaluation_hash != evaluation.content_hash:
            raise Conflict(
                "the evaluation you were shown is no longer the newest; review the latest evaluation "
                f"({evaluation.content_hash[:12]}…) and sign again"
            )
    return facts, step, evaluation


def canary_sign(
    *,
    actor: Any,
    canary_id: int,
    role: str,
    statement: str,
    password: str,
    evaluation_hash: str = "",
    now: datetime | None = None,
    request: Any = None,
) -> Approval:
    """An e-signature on the canary's current step. The last required one takes the step:
    starts the canary, or promotes it to the next stage (completing it at 100 %). Whether this
    person may sign now is releases.canaries.approvals.signing_refusal's answer. `request`: the
    HTTP request it came in, whose address counts failed re-authentications
    (governance.access.reauth)."""
    now = now or timezone.now()
    principal = as_principal(actor)
    if role not in {r.value for r in rules.SignatureRole}:
        raise ValidationFailed.field("role", "must be owner or mrm")
    if not isinstance(statement, str) or len(statement.strip()) < 10:
        raise ValidationFailed.field("statement", "state what you are approving (at least 10 characters)")
    if principal.is_service_account:
        raise PermissionRefused("service accounts never sign: an approval is a human act")
    user = principal.user
    # Whether the signature could be given now is answered before the password is checked, so a
    # wrong password and a refused signature cannot be told apart by a guesser (no password
    # oracle). The re-authentication runs outside the signing transaction: its failures are
    # counted (lockout) and audited even though the signature is refused.
    with transaction.atomic():
        _signable(_lock(canary_id), principal, role=role, evaluation_hash=evaluation_hash, now=now)
    reauthenticate(user, password, request=request)
    with transaction.atomic():
        canary = _lock(canary_id)
        facts, step, evaluation = _signable(canary, principal, role=role, evaluation_hash=evaluation_hash, now=now)
        meaning = rules.signature_meaning(role=role, step=step, stages=selectors.canary_stages(canary),
                                          canary_id=canary.pk, version=str(canary.version))
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
        required = rules.required_signatures(step=step, risk_tier=facts.risk_tier)
        if not rules.outstanding_signatures(required=required, signed={**facts.signed, role: user.pk}):
            _take_step(canary, step=step, actor=user, now=now)
    return approval


def _facts_of(evaluation: Evaluation | None) -> rules.EvaluationFacts | None:
    if evaluation is None:
        return None
    return rules.EvaluationFacts(id=evaluation.pk, stage_index=evaluation.stage_index,
                                 window_end=evaluation.window_end, verdict=evaluation.verdict)


def signatures_void_stale(canary: Canary, *, now: datetime) -> list[Approval]:
    """Void the (locked) canary's signatures on its current step that no longer count
    (releases.canaries.approvals.void_reason): mark them, audit each, and tell each signer
    through the outbox that they must sign again. Returns the voided signatures."""
    step = selectors.current_step(canary)
    if step is None or step.kind is not rules.StepKind.PROMOTE:
        return []
    standing = list(canary.approvals.select_related("evaluation", "signer")
                    .filter(step=step.key, voided_at__isnull=True))
    if not standing:
        return []
    voiding = canary.evaluations.filter(stage_index=step.from_index, verdict__in=rules.VOIDING_VERDICTS)
    evaluations = [_facts_of(e) for e in voiding.only("id", "stage_index", "window_end", "verdict")]
    reasons = rules.void_reasons(step=step, signatures={a.pk: _facts_of(a.evaluation) for a in standing},
                                 evaluations=[e for e in evaluations if e is not None])
    voided = []
    for approval in standing:
        reason = reasons.get(approval.pk)
        if reason is None:
            continue
        approval.voided_at, approval.void_reason = now, f"void: {reason}"[:300]
        approval.save(update_fields=["voided_at", "void_reason"])
        record = {"approval": approval.pk, "step": step.key, "role": approval.role,
                  "signer": approval.signer.get_username(), "signer_id": approval.signer_id, "reason": reason,
                  "evaluation": approval.evaluation_id}
        audit_append(actor=None, action="canary.signature_voided", object_type="canary", object_id=canary.pk,
                     payload=record)
        _notify(canary, kind="canary.signature_voided", payload=record)
        voided.append(approval)
    return voided


def _take_step(canary: Canary, *, step: rules.Step, actor: Any, now: datetime) -> None:
    stages = selectors.canary_stages(canary)
    target = stages[step.to_index]
    fields = {"stage_index": step.to_index, "stage_entered_at": now, "traffic_percent": target.percent,
              "hold_reason": ""}
    if target.is_final:
        fields["ended_at"] = now
        # The post-promotion watch starts: the previous version stays on hot standby.
        fields.update(_watch_fields(canary, final_index=step.to_index, now=now))
        _transition(canary, to=State.COMPLETED, actor=actor, action="canary.completed",
                    payload={"step": step.key}, fields=fields, push=True)
        _make_production(canary, actor=actor)
        _lapse_threshold_changes(canary, now=now)
        return
    if step.kind is rules.StepKind.PROMOTE:
        # An approved threshold change takes effect as the canary enters its next stage.
        threshold_change_apply_due(canary=canary, fields=fields, to_index=step.to_index, now=now)
    action = "canary.started" if step.kind is rules.StepKind.START else "canary.promoted"
    _transition(canary, to=State.RUNNING, actor=actor, action=action, payload={"step": step.key},
                fields=fields, push=True)


def _make_production(canary: Canary, *, actor: Any) -> None:
    previous = list(
        ModelVersion.objects.select_for_update().select_related("model")
        .filter(model=canary.model, status=ModelVersion.Status.PRODUCTION)
    )
    # The old production version goes first: a model has at most one production version.
    for old in previous:
        version_transition(version=old, to=ModelVersion.Status.DEPRECATED, actor=actor, canary_id=canary.pk,
                           reason=f"replaced by {canary.version.version}")
    version_transition(version=canary.version, to=ModelVersion.Status.PRODUCTION, actor=actor, canary_id=canary.pk,
                       reason="canary completed", action="version.promoted_to_production",
                       extra={"deprecated": [v.version for v in previous]})


def _watch_fields(canary: Canary, *, final_index: int, now: datetime) -> dict[str, Any]:
    if not states.standby_may_become(canary.standby, states.Standby.WATCHING):
        raise Conflict(f"canary #{canary.pk} was watched already")
    hours = settings.HOT_STANDBY_HOURS / max(canary.clock_speed or 1.0, 1.0)
    return {"standby": states.Standby.WATCHING, "watch_until": now + timedelta(hours=hours),
            "watch_baseline": selectors.watch_baseline(canary, before_stage=final_index)}


def canary_mark_certified(*, canary: Canary, actor: Any, payload: dict[str, Any]) -> Canary:
    """COMPLETED → CERTIFIED, for governance.certificates.services.certificate_decide, which has
    locked the row, checked the issuer's right and sealed the certificate in the same transaction."""
    return _transition(canary, to=State.CERTIFIED, actor=actor, action="canary.certified", payload=payload)


# --- stopping -------------------------------------------------------------------------------------


BREAK_GLASS_REASON_MIN = 20  # a break-glass act states its reason in a sentence, not a word


def _authorise_stop(actor: Any, action: Action, *, model: AIModel, break_glass: bool, reason: str) -> None:
    """The right to roll back or revert by hand: the action's own rule (owner, platform), or,
    `break_glass`, the on-call engineer's emergency right with a reason of a sentence at least."""
    if not break_glass:
        require(actor, action, model=model)
        return
    require(actor, Action.BREAK_GLASS, model=model)
    if len(reason.strip()) < BREAK_GLASS_REASON_MIN:
        raise ValidationFailed.field(
            "reason", f"a break-glass act needs its reason stated in full (at least {BREAK_GLASS_REASON_MIN} "
            "characters)")


def _break_glass_recorded(canary: Canary, *, actor: Any, act: str, reason: str, incident: Incident) -> None:
    """After a break-glass act: its own audit event and the page (on-call, platform, MRM, the
    owner). MRM's retrospective review is the incident's root cause, due within 48 h and
    reviewed by MRM, tracked as every rollback's is (governance.rootcause)."""
    record = {"act": act, "reason": reason.strip(), "incident": incident.pk,
              "retrospective_review_due_at": incident.root_cause_due_at.isoformat()
              if incident.root_cause_due_at else None}
    audit_append(actor=as_principal(actor).user, action="canary.break_glass", object_type="canary",
                 object_id=canary.pk, payload=record)
    _notify(canary, kind="canary.break_glass", payload=record)


def canary_rollback(
    *, actor: Any, canary_id: int, reason: str, automatic: bool = False, evaluation_id: int | None = None,
    break_glass: bool = False,
) -> Canary:
    """Send every user back to production. Manual (owner or platform; on-call under break-glass)
    or automatic (the control loop, actor None). The 0 % push is announced first, for the
    rollbacks queue. The rollback opens its P2 incident and, on a version's third consecutive
    rollback, the model risk committee's escalation."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed.field("reason", "say why the canary is rolled back")
    now = timezone.now()
    with transaction.atomic():
        canary = _lock(canary_id)
        if not automatic:
            _authorise_stop(actor, Action.ROLLBACK_CANARY, model=canary.model, break_glass=break_glass,
                            reason=reason)
        if canary.state == State.PENDING_APPROVAL:
            raise Conflict(f"canary #{canary.pk} is {canary.state}: it never served traffic; abort it instead")
        _transition(
            canary, to=State.ROLLED_BACK, actor=actor, action="canary.rolled_back",
            payload={"reason": reason.strip(), "automatic": automatic, "evaluation": evaluation_id,
                     "from_percent": canary.traffic_percent, "break_glass": break_glass},
            fields={"traffic_percent": 0, "ended_at": now, "end_reason": reason.strip()},
            push=True, push_queue="rollbacks",
        )
        version_transition(version=canary.version, to=ModelVersion.Status.ROLLED_BACK, actor=actor,
                           canary_id=canary.pk, reason=reason.strip())
        _lapse_threshold_changes(canary, now=now)
        how = "automatically" if automatic else "under break-glass by on-call" if break_glass else "by hand"
        incident = incident_open(
            severity=Incident.Severity.P2, kind=Incident.Kind.ROLLBACK, canary_id=canary.pk,
            evaluation_id=evaluation_id if Evaluation.objects.filter(pk=evaluation_id).exists() else None,
            summary=f"Canary #{canary.pk} of {canary.version} rolled back {how}: {reason.strip()}",
            details={"automatic": automatic, "stage_index": canary.stage_index, "break_glass": break_glass},
            actor=actor, now=now,
        )
        if break_glass:
            _break_glass_recorded(canary, actor=actor, act="rollback", reason=reason, incident=incident)
        _escalate_if_due(canary, now=now)
    return canary


def canary_revert(
    *, actor: Any, canary_id: int, reason: str, automatic: bool = False, evaluation_id: int | None = None,
    break_glass: bool = False,
) -> Canary:
    """During the post-promotion watch, put the previous version back: 100 % of traffic to it at
    once (the 0 % canary push goes first, on the rollbacks queue, held to the rollback SLO), the
    previous version production again and the canary's version rolled back (it needs a root
    cause before another canary), an incident opened, the same people told as for a rollback.
    Manual (the model's owner or a platform engineer; on-call under break-glass) or automatic
    (the control loop on a breach of the rollback rule, actor None). 409 outside the watch, or
    while a newer canary of the model is active."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed.field("reason", "say why the previous version is put back")
    now = timezone.now()
    with transaction.atomic():
        canary = _lock(canary_id)
        if not automatic:
            _authorise_stop(actor, Action.REVERT_CANARY, model=canary.model, break_glass=break_glass,
                            reason=reason)
        if not states.allows(canary.state, states.Act.REVERT, standby=canary.standby):
            why = {states.Standby.RELEASED: "its watch is over and the previous version's standby was released",
                   states.Standby.USED: "it was reverted already"}.get(canary.standby, "it is not watched after 100 %")
            raise Conflict(f"canary #{canary.pk} is {canary.state}: {why}; only a watched canary can be reverted")
        newer = canary.model.canaries.filter(state__in=states.ACTIVE).exclude(pk=canary.pk).first()
        if newer is not None:
            raise Conflict(f"canary #{newer.pk} of {canary.model.name} is {newer.state}: finish, roll back or "
                           "abort it before reverting an earlier one")
        record = {"reason": reason.strip(), "automatic": automatic, "evaluation": evaluation_id,
                  "from_percent": canary.traffic_percent, "reinstated": canary.baseline.version,
                  "watch_until": canary.watch_until.isoformat() if canary.watch_until else None,
                  "break_glass": break_glass}
        _transition(
            canary, to=State.REVERTED, actor=actor, action="canary.reverted", payload=record,
            fields={"traffic_percent": 0, "reverted_at": now, "end_reason": reason.strip(),
                    "standby": states.Standby.USED},
            push=True, push_queue="rollbacks",
        )
        version_transition(version=canary.version, to=ModelVersion.Status.ROLLED_BACK, actor=actor,
                           canary_id=canary.pk, reason=f"reverted after completion: {reason.strip()}")
        version_transition(version=canary.baseline, to=ModelVersion.Status.PRODUCTION, actor=actor,
                           canary_id=canary.pk, reason=f"reinstated from hot standby: {reason.strip()}",
                           action="version.reinstated")
        how = "automatically" if automatic else "under break-glass by on-call" if break_glass else "by hand"
        incident = incident_open(
            severity=Incident.Severity.P2, kind=Incident.Kind.ROLLBACK, canary_id=canary.pk,
            evaluation_id=evaluation_id if Evaluation.objects.filter(pk=evaluation_id).exists() else None,
            summary=f"Canary #{canary.pk} of {canary.version} reverted to {canary.baseline.version} after 100 % "
                    f"{how}: {reason.strip()}",
            details={"automatic": automatic, "revert": True, "stage_index": canary.stage_index,
                     "break_glass": break_glass}, actor=actor, now=now,
        )
        if break_glass:
            _break_glass_recorded(canary, actor=actor, act="revert", reason=reason, incident=incident)
    return canary


def standby_release(*, canary_id: int, now: datetime | None = None) -> Canary:
    """The post-promotion watch is over without a revert: the previous version's hot standby is
    released (its servers may go), audited and told. Does nothing before `watch_until`."""
    now = now or timezone.now()
    with transaction.atomic():
        canary = _lock(canary_id)
        if not states.watched(canary.state, canary.standby) or (canary.watch_until and canary.watch_until > now):
            return canary
        _standby_transition(canary, to=states.Standby.RELEASED, action="canary.standby_released",
                            payload={"released": canary.baseline.version,
                                     "watch_until": canary.watch_until.isoformat() if canary.watch_until else None})
    return canary


def _standby_transition(canary: Canary, *, to: str, action: str, payload: dict[str, Any]) -> Canary:
    """Move a locked canary's standby (table: releases.canaries.states) and audit it."""
    current = canary.standby
    if not states.standby_may_become(current, to):
        raise Conflict(f"canary #{canary.pk}'s standby is {current or 'none'}; it cannot become {to}")
    canary.standby = to
    canary.save(update_fields=["standby"])
    record = {"from": current, "to": to, **payload}
    audit_append(actor=None, action=action, object_type="canary", object_id=canary.pk, payload=record)
    _notify(canary, kind=action, payload=record)
    return canary


def escalation_due(finished_states: Sequence[str]) -> bool:
    """Pure: the version's last finished canaries (newest first) call for the model risk committee."""
    return len(finished_states) >= ESCALATION_AFTER and all(
        s == State.ROLLED_BACK for s in finished_states[:ESCALATION_AFTER]
    )


def _escalate_if_due(canary: Canary, *, now: datetime) -> None:
    """After a rollback: when the version's last three finished canaries were all rolled back,
    escalate to the model risk committee — the record, a flag on the version, an outbox row."""
    version = canary.version
    finished = list(
        Canary.objects.filter(version=version).exclude(state__in=states.ACTIVE)
        .order_by("-initiated_at", "-id").values_list("pk", "state")[:ESCALATION_AFTER]
    )
    if not escalation_due([state for _, state in finished]):
        return
    ids = [pk for pk, _ in reversed(finished)]
    reason = f"{ESCALATION_AFTER} consecutive rollbacks of {version} (canaries {', '.join(f'#{i}' for i in ids)})"
    escalation = committee_escalation_open(version=version, canary_ids=ids, reason=reason, now=now)
    if escalation is None:
        return
    version_flag_escalated(version=version, at=now)
    notification_record(
        kind="committee.escalation", canary_id=canary.pk,
        payload={"escalation": escalation.pk, "model": version.model.name, "version": version.version,
                 "canaries": ids, "reason": reason},
    )


def canary_abort(*, actor: Any, canary_id: int, reason: str) -> Canary:
    """Stop a canary before completion (a human or CI decision, not a metric breach). Traffic
    goes to 0 % first; the version may be canaried again (its thresholds stay frozen)."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed.field("reason", "say why the canary is aborted")
    now = timezone.now()
    with transaction.atomic():
        canary = _lock(canary_id)
        require(actor, Action.ABORT_CANARY, model=canary.model)
        _transition(
            canary, to=State.ABORTED, actor=actor, action="canary.aborted",
            payload={"reason": reason.strip(), "from_percent": canary.traffic_percent},
            fields={"traffic_percent": 0, "ended_at": now, "end_reason": reason.strip()},
            push=True, push_queue="rollbacks",
        )
        version_transition(version=canary.version, to=ModelVersion.Status.REGISTERED, actor=actor,
                           canary_id=canary.pk, reason=reason.strip())
        _lapse_threshold_changes(canary, now=now)
    return canary


# --- the system's own moves (called by releases.canaries.loop) -----------------------------------


def canary_reconcile(*, canary_id: int, now: datetime | None = None) -> Canary:
    """Bring a serving canary's displayed state in line with the facts: awaiting approval when
    its stage is ready, held (with the reason) when the residence is over but the gates are
    not green, running while the residence lasts. Suspended canaries are left to the monitor."""
    now = now or timezone.now()
    with transaction.atomic():
        canary = _lock(canary_id)
        if canary.state not in states.ADVANCING:
            return canary
        # A red or stale evaluation since a signature voids it now, and its signer hears of it.
        signatures_void_stale(canary, now=now)
        ready = selectors.stage_readiness(canary, now=now)
        target, reason = states.reconcile_target(ready=ready.ready, reason=ready.reason,
                                                 residence_remaining=ready.residence_remaining)
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
        if canary.state not in states.ADVANCING:
            return canary
        return _transition(
            canary, to=State.SUSPENDED, actor=None, action="canary.suspended",
            payload={"reason": reason}, fields={"hold_reason": reason[:300]},
        )


def canary_resume(*, canary_id: int, reason: str, now: datetime | None = None) -> Canary:
    """Lift the dead-man's suspension: back to the state the facts give (as canary_reconcile
    decides). A canary suspended for a router failure waits for its router (canary_router_recovered)."""
    now = now or timezone.now()
    with transaction.atomic():
        canary = _lock(canary_id)
        if canary.state != State.SUSPENDED or canary.hold_reason.startswith(ROUTER_FAILURE):
            return canary
        ready = selectors.stage_readiness(canary, now=now)
        target, hold = states.reconcile_target(ready=ready.ready, reason=ready.reason,
                                               residence_remaining=ready.residence_remaining)
        return _transition(
            canary, to=target, actor=None, action="canary.resumed",
            payload={"reason": reason, "readiness": ready.reason}, fields={"hold_reason": hold},
        )


ROUTER_FAILURE = "router failure"  # how a suspension for a router failure's hold reason begins


def canary_router_failed(*, canary_id: int, error: str, push_id: int | None = None) -> Canary | None:
    """A push of this canary's split could not be applied or read back within its deadline, or its
    router stopped answering: fall back to 100 % production (a 0 % push, on the rollbacks queue:
    it lands wherever the router still accepts one), suspend the canary, and open the P1 `router`
    incident. Its router's return lifts it (canary_router_recovered). None when the canary is no
    longer advancing (stopped, or suspended already)."""
    with transaction.atomic():
        canary = _lock(canary_id)
        if canary.state not in states.ADVANCING:
            return None
        reason = f"{ROUTER_FAILURE}: {error}"
        from_percent = canary.traffic_percent
        _transition(
            canary, to=State.SUSPENDED, actor=None, action="canary.suspended",
            payload={"reason": reason[:1000], "router_failure": True, "from_percent": from_percent, "push": push_id},
            fields={"traffic_percent": 0, "hold_reason": reason[:300]}, push=True, push_queue="rollbacks",
        )
        incident_raise(
            severity=Incident.Severity.P1, kind=Incident.Kind.ROUTER, canary_id=canary.pk,
            summary=f"Router {canary.router} failed for canary #{canary.pk} of {canary.version} at {from_percent}%: "
                    f"traffic falls back to production and the canary is suspended. {error[:300]}",
            details={"router": canary.router, "error": error[:1000], "push": push_id, "from_percent": from_percent},
        )
    return canary


def canary_router_recovered(*, canary_id: int, now: datetime | None = None) -> Canary | None:
    """The router of a canary suspended for its failure answers again: re-apply the split in force
    (the current stage's percent, a new generation) and go back to the state the facts give."""
    now = now or timezone.now()
    with transaction.atomic():
        canary = _lock(canary_id)
        if canary.state != State.SUSPENDED or not canary.hold_reason.startswith(ROUTER_FAILURE):
            return None
        percent = selectors.canary_stages(canary)[canary.stage_index].percent
        ready = selectors.stage_readiness(canary, now=now)
        target, hold = states.reconcile_target(ready=ready.ready, reason=ready.reason,
                                               residence_remaining=ready.residence_remaining)
        return _transition(
            canary, to=target, actor=None, action="canary.resumed",
            payload={"reason": "router answering again", "readiness": ready.reason, "router_failure": True},
            fields={"traffic_percent": percent, "hold_reason": hold}, push=True,
        )


# --- threshold changes: their status moves, and their effect at stage entry ------------------------


def threshold_change_transition(
    change: ThresholdChangeRequest, *, to: str, actor: Any, action: str, payload: dict[str, Any],
    fields: dict[str, Any] | None = None,
) -> ThresholdChangeRequest:
    """Move a locked threshold change request to `to` (table: releases.canaries.states), save and
    audit on its canary, in the caller's transaction. The reviews that call it are
    governance.thresholds.services; its application at a stage entry is below."""
    current = change.status
    if not states.threshold_change_may_become(current, to):
        raise Conflict(f"threshold change #{change.pk} is {current}")
    changes = {"status": to, **(fields or {})}
    for name, value in changes.items():
        setattr(change, name, value)
    change.save(update_fields=list(changes))
    record = {"request": change.pk, **payload}
    audit_append(actor=actor, action=action, object_type="canary", object_id=change.canary_id, payload=record)
    notification_record(kind=action, canary_id=change.canary_id,
                        payload={**record, "status": to, "requested_by": change.requested_by_id})
    return change


def threshold_change_apply_due(*, canary: Canary, fields: dict[str, Any], to_index: int,
                               now: datetime) -> ThresholdChangeRequest | None:
    """While a (locked) canary is promoted: an approved change is added to the promotion's saved
    fields, so it governs the stage being entered, never the stage it was approved in."""
    change = (
        ThresholdChangeRequest.objects.select_for_update()
        .filter(canary=canary, status=ThresholdChangeRequest.Status.APPROVED)
        .order_by("requested_at")
        .first()
    )
    if change is None:
        return None
    fields["thresholds"] = change.proposed
    return threshold_change_transition(
        change, to=ThresholdChangeRequest.Status.APPLIED, actor=None, action="canary.threshold_change_applied",
        payload={"from": change.current, "to": change.proposed, "stage_index": to_index},
        fields={"applied_at": now, "applied_stage_index": to_index},
    )


def _lapse_threshold_changes(canary: Canary, *, now: datetime) -> None:
    """The canary ended: a change still under review or waiting for the next stage never applies."""
    for change in ThresholdChangeRequest.objects.select_for_update().filter(
        canary=canary, status__in=states.THRESHOLD_CHANGE_OPEN,
    ):
        threshold_change_transition(
            change, to=ThresholdChangeRequest.Status.LAPSED, actor=None, action="canary.threshold_change_lapsed",
            payload={"canary_state": canary.state},
        )


# --- the on-call summary ---------------------------------------------------------------------------


def oncall_summary_record(*, now: datetime | None = None) -> bool:
    """The on-call summary of every active canary (pattern §10.2): every NOTIFY_SUMMARY_EVERY_H
    hours during business hours (NOTIFY_BUSINESS_HOURS/DAYS in NOTIFY_TIME_ZONE), once per slot,
    while any canary is active — its stage, gates, the change since the last summary, and
    anything held or warned. Returns whether one was recorded."""
    now = now or timezone.now()
    slot = summary_slot(now, tz=ZoneInfo(settings.NOTIFY_TIME_ZONE), hours=settings.NOTIFY_BUSINESS_HOURS,
                        days=settings.NOTIFY_BUSINESS_DAYS, every_h=settings.NOTIFY_SUMMARY_EVERY_H)
    if slot is None:
        return False
    active = list(Canary.objects.filter(state__in=states.ACTIVE).select_related("model", "version").order_by("pk"))
    if not active:
        return False
    previous = NotificationEvent.objects.filter(kind="oncall.summary").order_by("-created_at").first()
    before = {c["id"]: c for c in (previous.payload.get("canaries", []) if previous else [])}
    since = previous.created_at if previous else now - timedelta(hours=settings.NOTIFY_SUMMARY_EVERY_H)
    warned = set(NotificationEvent.objects.filter(kind="early_warning", created_at__gte=since)
                 .values_list("canary_id", flat=True))
    rows = []
    for canary in active:
        latest = selectors.latest_evaluation(canary)
        was = before.get(canary.pk)
        rows.append({
            "id": canary.pk, "model": canary.model.name, "version": canary.version.version, "state": canary.state,
            "stage_index": canary.stage_index, "stage_count": len(canary.stages),
            "traffic_percent": canary.traffic_percent, "verdict": latest.verdict if latest else None,
            "hold_reason": canary.hold_reason,
            "warned": canary.pk in warned,
            "trend": (f"{was['traffic_percent']}% {was.get('verdict')} -> {canary.traffic_percent}% "
                      f"{latest.verdict if latest else None}") if was else "new since the last summary",
        })
    lines = [f"#{r['id']} {r['model']} {r['version']}: {r['state']} at {r['traffic_percent']}%, gates "
             f"{r['verdict'] or 'not evaluated'}; {r['trend']}" + (f"; held: {r['hold_reason']}" if r["hold_reason"]
                                                                    else "") + ("; WARNED" if r["warned"] else "")
             for r in rows]
    with transaction.atomic():
        return notification_record(kind="oncall.summary", canary_id=None, once_key=f"oncall.summary:{slot}",
                                   payload={"slot": slot, "canaries": rows, "summary": lines}) is not None


# --- retention --------------------------------------------------------------------------------------


def evaluations_prune(*, now: datetime | None = None) -> int:
    """Delete evaluations older than the retention period after their canary ended. Never of a
    canary still active (ended_at is only set when it ends), and never one an approval or an
    incident points at (those are evidence with their own retention)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.EVALUATION_RETENTION_DAYS)
    qs = (
        Evaluation.objects.filter(canary__ended_at__lt=cutoff)
        .exclude(canary__state__in=states.ACTIVE)
        .exclude(pk__in=Approval.objects.filter(evaluation__isnull=False).values("evaluation"))
        .exclude(pk__in=Incident.objects.filter(evaluation__isnull=False).values("evaluation"))
    )
    # The decisions those evaluations made, carried out long ago, go with them.
    RollbackDecision.objects.filter(evaluation__in=qs, done_at__isnull=False).delete()
    deleted, _ = qs.delete()
    return deleted


# --- sticky-session poisoning (pattern §13) ---------------------------------------------------------

STICKY_REASON_MIN = 10


def sticky_sweep(*, actor: Any = None, reason: str = "", now: datetime | None = None,
                 store: Any = None) -> StickySweep:
    """Clear the sticky assignments that disagree with the split in force, and keep the record.

    An entry is cleared when its value is not the deployment's MAC of its key (written into the
    store by anyone but CanaryHub), when its canary no longer serves anybody (rolled back,
    aborted, reverted, superseded by a newer canary, at 0 %), and — every entry of the canary —
    when the canary's share of the eligible users asked drifts from the percent in force beyond
    CANARYHUB_STICKY_SHARE_TOLERANCE_PP (releases.routing.assignment). A cleared user is assigned
    again by the same hashing nginx does, so clearing never moves a user the split would put on
    the canary: nobody can use it to pick who is served what.

    `actor` None is the periodic sweep; a person's on-demand sweep is a platform engineer's act
    with a reason. Either way one audit event per sweep that cleared anything (or was asked for)
    says how many entries were cleared, by reason and canary — never a key or a user id."""
    if actor is not None:
        require(actor, Action.CLEAR_STICKY)
        if not isinstance(reason, str) or len(reason.strip()) < STICKY_REASON_MIN:
            raise ValidationFailed.field("reason", f"say why, in {STICKY_REASON_MIN} characters at least")
    principal = as_principal(actor) if actor is not None else None
    now = now or timezone.now()
    store = store or assignment.shared_store()
    try:
        entries = store.entries()
    except Exception as exc:  # redis raises ConnectionError, TimeoutError…
        if actor is not None:
            raise Conflict(f"the assignment store did not answer ({type(exc).__name__}); nothing was cleared") from exc
        raise
    in_force = _splits_in_force({parsed.model for key, _ in entries if (parsed := assignment.parse_key(key))})
    clear: dict[str, str] = {}
    agreeing: dict[int, list[str]] = {}
    for key, value in entries:
        parsed = assignment.parse_key(key)
        why = assignment.sticky_clearance(key=key, value=value, in_force=in_force.get(parsed.model) if parsed else None)
        if why is not None:
            clear[key] = why
        elif parsed is not None:
            agreeing.setdefault(parsed.canary_id, []).append(key)
    drift: dict[str, dict[str, int]] = {}
    for split in in_force.values():
        keys = agreeing.get(split.canary_id, [])
        population = store.population(assignment.population_key(split.model, split.canary_id))
        if assignment.share_drifted(sticky=len(keys), population=population, percent=split.percent,
                                    tolerance_pp=settings.STICKY_SHARE_TOLERANCE_PP,
                                    min_sample=settings.STICKY_MIN_SAMPLE):
            drift[str(split.canary_id)] = {"sticky": len(keys), "population": population, "percent": split.percent}
            clear.update(dict.fromkeys(keys, assignment.SHARE_DRIFT))
    if clear:
        store.delete(list(clear))
    by_canary: dict[str, dict[str, int]] = {}
    counts = dict.fromkeys(assignment.CLEAR_REASONS, 0)
    for key, why in clear.items():
        parsed = assignment.parse_key(key)
        canary_key = str(parsed.canary_id) if parsed else "unparsable"
        by_canary.setdefault(canary_key, {}).setdefault(why, 0)
        by_canary[canary_key][why] += 1
        counts[why] += 1
    with transaction.atomic():
        previous = StickySweep.objects.select_for_update().order_by("-at", "-id").first()
        if not clear and actor is None and previous is not None and previous.actor_id is None \
                and previous.cleared == 0:
            # Consecutive quiet periodic sweeps share one row (its time is the latest): the
            # record grows with what was cleared or asked for, not with the clock.
            previous.at, previous.scanned, previous.drift = now, len(entries), drift
            previous.save(update_fields=["at", "scanned", "drift"])
            return previous
        sweep = StickySweep.objects.create(
            at=now, actor=principal.user if principal else None, reason=(reason or "").strip(), scanned=len(entries),
            cleared_not_serving=counts[assignment.NOT_SERVING], cleared_unsigned=counts[assignment.UNSIGNED],
            cleared_share_drift=counts[assignment.SHARE_DRIFT], by_canary=by_canary, drift=drift,
        )
        if clear or actor is not None:
            audit_append(actor=principal.user if principal else None, action="sticky.cleared",
                         object_type="sticky_sweep", object_id=sweep.pk,
                         payload={"reason": sweep.reason, "scanned": len(entries), "cleared": counts,
                                  "by_canary": by_canary, "share_drift": drift,
                                  "via_token": principal.token_prefix if principal else None})
    return sweep


def _splits_in_force(models: set[str]) -> dict[str, Any]:
    """Each model's split in force: that of its newest pushed canary (what its router was last
    told, as /api/v1/assign answers)."""
    found: dict[str, Any] = {}
    for canary in (Canary.objects.filter(model__name__in=models, split_generation__gt=0)
                   .select_related("model", "version", "baseline").order_by("-pk")):
        if canary.model.name not in found:
            found[canary.model.name] = selectors.split_of(canary)
    return found
