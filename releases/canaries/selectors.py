"""Reads of canaries: filtered by what the principal may see, and the computed view of one canary
that the API, the pages and the services share — its stages and current step, whether that step
can be signed now (and by whom), its latest evaluation, the split its router should hold.

Nothing here writes or decides a transition; the rules are the pure functions of
releases.canaries.approvals, releases.canaries.schedules and monitoring.evaluations."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Max, QuerySet, Sum
from django.utils import timezone
from prometheus_client import Gauge

from canaryhub.errors import NotFound
from canaryhub.metrics import REGISTRY
from governance.access.permissions import Action, Role, as_principal, decide, require, roles_of, visible_models_filter
from monitoring.evaluations import readiness
from monitoring.models import Evaluation
from monitoring.notifications.recipients import Contact, contact_from_text
from monitoring.samples import Sample, samples_sum
from releases.canaries import approvals as rules
from releases.canaries import schedules, states
from releases.canaries.models import Approval, Canary
from releases.register.models import Consumer
from releases.routing.models import RouterPush, StickySweep
from releases.routing.routers import Split

State = states.State

SIGN_ACTIONS = {rules.SignatureRole.OWNER.value: Action.SIGN_OWNER, rules.SignatureRole.MRM.value: Action.SIGN_MRM}
PUSH_LIMIT = 500


# --- the canary's rules, read off the record --------------------------------------------------------


def canary_stages(canary: Canary) -> tuple[schedules.Stage, ...]:
    return tuple(schedules.Stage.from_dict(s) for s in canary.stages)


def current_step(canary: Canary) -> rules.Step | None:
    """The step the canary is waiting to take, or None when it takes no more signed steps."""
    if canary.state == State.PENDING_APPROVAL:
        return rules.Step.start()
    if canary.state in states.SERVING:
        stages = canary_stages(canary)
        if canary.stage_index < len(stages) - 1:
            return rules.promotion_step(stages, from_index=canary.stage_index)
    return None


def required_roles(canary: Canary, step: rules.Step | None = None) -> frozenset[str]:
    step = step or current_step(canary)
    if step is None:
        return frozenset()
    return frozenset(r.value for r in rules.required_signatures(step=step, risk_tier=canary.risk_tier))


def latest_evaluation(canary: Canary) -> Evaluation | None:
    return canary.evaluations.filter(stage_index=canary.stage_index).order_by("-window_end", "-id").first()


def watch_baseline(canary: Canary, *, before_stage: int) -> dict[str, Any]:
    """The previous production version's numbers the post-promotion watch compares with: its
    stage-so-far numbers in the latest evaluation of each stage before `before_stage` that
    measured any, added up (a Sample as a dict; {} when no stage measured production)."""
    latest: dict[int, Any] = {}
    for stage_index, inputs in (
        Evaluation.objects.filter(canary=canary, stage_index__lt=before_stage)
        .order_by("stage_index", "-window_end", "-id").values_list("stage_index", "inputs").iterator()
    ):
        production = (((inputs or {}).get("raw") or {}).get("stage") or {}).get("production")
        if stage_index not in latest and production and production.get("requests"):
            latest[stage_index] = production
    if not latest:
        return {}
    return samples_sum([Sample.from_dict(v) for v in latest.values()]).to_dict()


def watch_remaining(canary: Canary, *, now: datetime) -> timedelta | None:
    """How long the post-promotion watch still lasts (None: the canary is not watched)."""
    if not states.watched(canary.state, canary.standby) or canary.watch_until is None:
        return None
    return max(canary.watch_until - now, timedelta(0))


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
        return StageReadiness(False, f"minimum residence: {human(remaining)} remaining", remaining, evaluation)
    verdict = readiness(evaluation, now=now, staleness_limit_s=settings.STALENESS_LIMIT_S)
    return StageReadiness(verdict.ready, verdict.reason, timedelta(0), evaluation)


def reconcile_target(canary: Canary, *, now: datetime, evaluation: Evaluation | None = _LOOKUP) -> tuple[str, str]:
    """The state and hold reason a serving, unsuspended canary's readiness calls for."""
    ready = stage_readiness(canary, now=now, evaluation=evaluation)
    return states.reconcile_target(ready=ready.ready, reason=ready.reason,
                                   residence_remaining=ready.residence_remaining)


def reconcile_needed(canary: Canary, *, now: datetime, evaluation: Evaluation | None = _LOOKUP) -> bool:
    """Whether canary_reconcile would change this (freshly read) canary: a serving canary whose
    state or hold reason differs from what its readiness calls for."""
    if canary.state not in states.ADVANCING:
        return False
    target, reason = reconcile_target(canary, now=now, evaluation=evaluation)
    return target != canary.state or reason != canary.hold_reason


def human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds() + 0.999)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def split_of(canary: Canary) -> Split:
    """The split the canary's router should hold now."""
    seg = schedules.stage_segmentation(canary_stages(canary), canary.stage_index, segmentation=canary.segmentation)
    return Split(
        model=canary.model.name, production_version=canary.baseline.version, canary_version=canary.version.version,
        percent=canary.traffic_percent, canary_id=canary.pk, generation=canary.split_generation,
        strategy=seg["strategy"], values=tuple(seg["values"]),
    )


# --- may this person sign this step now? ------------------------------------------------------------


def signed_on(step: rules.Step | None, approvals: Any) -> dict[str, Any]:
    """The step's signatures: role -> signer id (what segregation of duties compares)."""
    if step is None:
        return {}
    return {a.role: a.signer_id for a in approvals if a.step == step.key and a.voided_at is None}


def step_facts(canary: Canary, *, now: datetime, approvals: Any = None,
               evaluation: Evaluation | None = _LOOKUP) -> rules.StepFacts:
    step = current_step(canary)
    ready = stage_readiness(canary, now=now, evaluation=evaluation) if step is not None and \
        step.kind is rules.StepKind.PROMOTE else None
    return rules.StepFacts(
        state=canary.state, step=step, risk_tier=canary.risk_tier, initiator_id=canary.initiated_by_id,
        owner_id=canary.owner_id,
        signed=signed_on(step, canary.approvals.all() if approvals is None else approvals),
        stage_ready=ready.ready if ready else True, stage_reason=ready.reason if ready else "",
    )


@dataclass(frozen=True)
class SignedModel:
    """The canary's model as its signatures see it: the owner frozen at initiation, whoever owns
    the model now (what the permission table reads of a model)."""

    pk: Any
    owner_id: Any
    name: str


def signing_subject(canary: Canary) -> SignedModel:
    """What a signature's permission is decided on: the model with the canary's frozen owner."""
    return SignedModel(pk=canary.model_id, owner_id=canary.owner_id, name=canary.model.name)


def signer_facts(actor: Any, canary: Canary, role: str) -> rules.SignerFacts:
    principal = as_principal(actor)
    decision = decide(principal, SIGN_ACTIONS[role], model=signing_subject(canary))
    return rules.SignerFacts(
        user_id=principal.user.pk, is_service_account=principal.is_service_account,
        has_mrm_role=Role.MRM in roles_of(principal.user), permitted=decision.allowed,
        permission_reason=decision.reason,
    )


def signing_permission(actor: Any, canary: Canary) -> str | None:
    """Why this principal can give no signature at all on this canary (a service account, a role
    that signs nothing, an owner of another model), or None when some role's signature may be
    theirs. Asked before a signature's input is read."""
    principal = as_principal(actor)
    if principal.is_service_account:
        return "service accounts never sign: an approval is a human act"
    subject = signing_subject(canary)
    decisions = [decide(principal, action, model=subject) for action in SIGN_ACTIONS.values()]
    if any(decisions):
        return None
    return decisions[0].reason


def signing_refusal(actor: Any, canary: Canary, *, role: str, facts: rules.StepFacts) -> rules.Refusal | None:
    return rules.signing_refusal(role=role, facts=facts, signer=signer_facts(actor, canary, role))


def may_sign_anything(user: Any) -> bool:
    # Without a model, decide answers "on some model": enough to know whether an inbox applies.
    return any(decide(user, action).allowed for action in SIGN_ACTIONS.values())


# --- lists and the API's view of one canary ---------------------------------------------------------


@dataclass(frozen=True)
class CurrentStage:
    index: int
    percent: int
    cohort: str | None
    entered_at: datetime | None
    min_residence_until: datetime | None


@dataclass(frozen=True)
class SigningReadiness:
    """Whether the canary's current step can be signed now, and if not, why."""

    ready: bool
    reason: str


@dataclass(frozen=True)
class RequiredApprovals:
    """The signatures the current step needs (`step` None: the canary takes no more signed steps)."""

    step: str | None
    roles: list[str]
    outstanding: list[str]


@dataclass(frozen=True)
class CanaryRow:
    """A canary as a list shows it: the record and where it stands."""

    canary: Canary
    stage: CurrentStage


@dataclass(frozen=True)
class CanaryDetail(CanaryRow):
    readiness: SigningReadiness
    latest_evaluation: Evaluation | None
    gates: list[dict[str, Any]]
    required_approvals: RequiredApprovals
    approvals: list[Approval]


def _visible(actor: Any) -> QuerySet[Canary]:
    qs = Canary.objects.select_related("model", "version", "baseline", "initiated_by")
    restriction = visible_models_filter(actor)
    if restriction is not None:
        # The restriction is written for AIModel; a canary is visible when its model is.
        qs = qs.filter(**{f"model__{name}": value for name, value in restriction.items()})
    return qs


def canary_list(*, actor: Any, model: str = "", state: str = "") -> QuerySet[Canary]:
    """Newest first; `-id` breaks ties between canaries initiated in the same instant."""
    qs = _visible(actor)
    if model:
        qs = qs.filter(model__name=model)
    if state:
        qs = qs.filter(state=state)
    return qs.order_by("-initiated_at", "-id")


def canary_get(*, actor: Any, canary_id: int) -> Canary:
    """The canary, or 404 when it does not exist or lies outside what the principal may see."""
    canary = _visible(actor).filter(pk=canary_id).first()
    if canary is None:
        raise NotFound(f"no canary #{canary_id}")
    return canary


def canary_evaluations(*, canary: Canary) -> QuerySet[Evaluation]:
    # Served by the evaluation_canary_latest index (canary, -window_end).
    return canary.evaluations.order_by("-window_end", "-id")


def canary_pushes(*, actor: Any, canary_id: int) -> QuerySet[RouterPush]:
    """The canary's pushes, newest first (served by the (canary, -started_at) index). NotFound
    when the canary is outside what the principal may see."""
    canary = canary_get(actor=actor, canary_id=canary_id)
    return RouterPush.objects.filter(canary=canary).order_by("-queued_at", "-id")[:PUSH_LIMIT]


def current_stage(canary: Canary) -> CurrentStage:
    stage = canary_stages(canary)[canary.stage_index]
    return CurrentStage(
        index=stage.index,
        percent=stage.percent,
        cohort=stage.cohort,
        entered_at=canary.stage_entered_at,
        min_residence_until=residence_until(canary),
    )


def canary_row(canary: Canary) -> CanaryRow:
    return CanaryRow(canary=canary, stage=current_stage(canary))


def signing_readiness(canary: Canary, *, now: datetime) -> SigningReadiness:
    """The question a signer asks: may the current step be signed now? The canary's half of
    releases.canaries.approvals.signing_refusal, so the answer shown is the answer a signature gets."""
    ready, reason = rules.step_readiness(step_facts(canary, now=now))
    return SigningReadiness(ready, reason)


def required_approvals(canary: Canary, approvals: list[Approval]) -> RequiredApprovals:
    step = current_step(canary)
    if step is None:
        return RequiredApprovals(step=None, roles=[], outstanding=[])
    roles = sorted(required_roles(canary, step))
    signed = {a.role for a in approvals if a.step == step.key and a.voided_at is None}
    return RequiredApprovals(step=step.key, roles=roles, outstanding=[r for r in roles if r not in signed])


def canary_detail(*, actor: Any, canary_id: int, now: datetime) -> CanaryDetail:
    canary = canary_get(actor=actor, canary_id=canary_id)
    approvals = list(canary.approvals.select_related("signer").order_by("signed_at", "id"))
    evaluation = latest_evaluation(canary)
    return CanaryDetail(
        canary=canary,
        stage=current_stage(canary),
        readiness=signing_readiness(canary, now=now),
        latest_evaluation=evaluation,
        gates=list(evaluation.gates) if evaluation is not None else [],
        required_approvals=required_approvals(canary, approvals),
        approvals=approvals,
    )



ACTIVE_CANARIES = Gauge("canaryhub_active_canaries", "Canaries serving traffic", registry=REGISTRY)


ROUTER_PUSHES = Gauge("canaryhub_router_pushes", "Router pushes on record, by status (queued and pushing are under "
                      "way; lost ones were never carried out)", ["status"], registry=REGISTRY)


STICKY_CLEARED = Gauge("canaryhub_sticky_cleared", "Sticky assignments cleared because they disagreed with the "
                       "split in force, by reason, since the first sweep on record", ["reason"], registry=REGISTRY)
STICKY_LAST_SWEEP = Gauge("canaryhub_sticky_last_sweep_timestamp_seconds", "When the sticky store was last swept",
                          registry=REGISTRY)


def metrics_refresh() -> None:
    """The canaries' gauges on /metrics, from the database at each scrape."""
    totals = StickySweep.objects.aggregate(
        not_serving=Sum("cleared_not_serving"), unsigned=Sum("cleared_unsigned"),
        share_drift=Sum("cleared_share_drift"), last=Max("at"))
    for reason in ("not_serving", "unsigned", "share_drift"):
        STICKY_CLEARED.labels(reason=reason).set(totals[reason] or 0)
    STICKY_LAST_SWEEP.set(totals["last"].timestamp() if totals["last"] else 0)
    ACTIVE_CANARIES.set(Canary.objects.filter(state__in=states.SERVING).count())
    counts = dict(RouterPush.objects.order_by().values_list("status").annotate(n=Count("id")))
    for status in RouterPush.Status.values:
        ROUTER_PUSHES.labels(status=status).set(counts.get(status, 0))


# --- who hears of a canary (monitoring.notifications resolves the rest) ----------------------------


def _consumer_contact(consumer: Consumer) -> Contact:
    return Contact(role="consumers", channel=consumer.channel, address=consumer.contact)


def outstanding_signers(canary: Canary, *, now: datetime) -> list[Any]:
    """Exactly the people who may give a signature the canary's current step still needs: the
    model owner and the MRM validators that releases.canaries.approvals would let sign it."""
    # Who may sign, not whether the stage is ready this instant (the notice says it is).
    facts = replace(step_facts(canary, now=now), stage_ready=True, stage_reason="")
    if facts.step is None:
        return []
    missing = rules.outstanding_signatures(
        required=rules.required_signatures(step=facts.step, risk_tier=facts.risk_tier), signed=facts.signed)
    people: list[Any] = []
    User = get_user_model()  # noqa: N806
    for role in sorted(missing):
        if role is rules.SignatureRole.OWNER:
            candidates = [canary.owner]  # the owner frozen at initiation signs
        else:
            candidates = list(User.objects.filter(is_active=True, groups__name=Role.MRM.value).distinct())
        people += [u for u in candidates if signing_refusal(u, canary, role=role.value, facts=facts) is None
                   and u not in people]
    return people


def notification_contacts(canary_id: int | None, roles: frozenset[str], payload: dict[str, Any]) -> list[Contact]:
    """The people and addresses of a canary's roles (owner, consumers, rollback contact, on-call
    contact, outstanding signers, the signer of a voided signature, a threshold change's requester),
    for the notification outbox."""
    if canary_id is None:
        return []
    canary = Canary.objects.select_related("model", "model__owner").filter(pk=canary_id).first()
    if canary is None:
        return []
    out: list[Contact] = []
    owner = canary.model.owner
    if "owner" in roles:
        out.append(Contact(role="owner", user_id=owner.pk, email=owner.email))
    if "consumers" in roles:
        out += [_consumer_contact(c) for c in Consumer.objects.filter(model=canary.model)]
    if "rollback_contact" in roles:
        c = contact_from_text("rollback_contact", canary.rollback_contact)
        out += [c] if c else []
    if "on_call" in roles:
        c = contact_from_text("on_call", canary.model.on_call)
        out += [c] if c else []
    if "signers" in roles:
        out += [Contact(role="signers", user_id=u.pk, email=u.email)
                for u in outstanding_signers(canary, now=timezone.now())]
    if "signer" in roles and payload.get("signer_id"):
        user = get_user_model().objects.filter(pk=payload["signer_id"], is_active=True).first()
        out += [Contact(role="signer", user_id=user.pk, email=user.email)] if user else []
    if "ci_callback" in roles and canary.callback_url:
        out.append(Contact(role="ci_callback", channel="webhook", address=canary.callback_url))
    if "requester" in roles and payload.get("requested_by"):
        user = get_user_model().objects.filter(pk=payload["requested_by"], is_active=True).first()
        out += [Contact(role="requester", user_id=user.pk, email=user.email)] if user else []
    return out


STICKY_SWEEP_LIMIT = 50


def sticky_sweeps(*, actor: Any) -> list[StickySweep]:
    """The newest sweeps of the sticky assignment store (counts only)."""
    require(actor, Action.VIEW)
    return list(StickySweep.objects.select_related("actor").order_by("-at", "-id")[:STICKY_SWEEP_LIMIT])
