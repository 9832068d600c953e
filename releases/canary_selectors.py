"""Reads of canaries, filtered by what the principal may see, and the computed view of one
canary that the API and the pages show: its current stage, whether it can be signed now, its
latest evaluation and the signatures its next step still needs.

Nothing here writes or decides a transition; the rules come from releases.lifecycle's readers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from canaryhub.errors import NotFound
from governance.models import Approval
from governance.permissions import visible_models_filter
from monitoring.models import Evaluation
from releases import lifecycle
from releases.approvals import StepKind
from releases.models import Canary

State = Canary.State


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


def current_stage(canary: Canary) -> CurrentStage:
    stage = lifecycle.canary_stages(canary)[canary.stage_index]
    return CurrentStage(
        index=stage.index,
        percent=stage.percent,
        cohort=stage.cohort,
        entered_at=canary.stage_entered_at,
        min_residence_until=lifecycle.residence_until(canary),
    )


def canary_row(canary: Canary) -> CanaryRow:
    return CanaryRow(canary=canary, stage=current_stage(canary))


def signing_readiness(canary: Canary, *, now: datetime) -> SigningReadiness:
    """The question a signer asks: may the current step be signed now? It mirrors the checks of
    lifecycle.canary_sign, so the answer shown is the answer a signature would get."""
    step = lifecycle.current_step(canary)
    if step is None:
        return SigningReadiness(False, f"the canary is {canary.state}: it takes no more signed steps")
    if canary.state == State.SUSPENDED:
        return SigningReadiness(
            False, "the canary is suspended: advancement waits until the monitor reports again"
        )
    if step.kind is StepKind.START:
        # The start step needs signatures only; there is no stage residence or evaluation yet.
        return SigningReadiness(True, "the start of the canary awaits its signatures")
    verdict = lifecycle.stage_readiness(canary, now=now)
    return SigningReadiness(verdict.ready, verdict.reason)


def required_approvals(canary: Canary, approvals: list[Approval]) -> RequiredApprovals:
    step = lifecycle.current_step(canary)
    if step is None:
        return RequiredApprovals(step=None, roles=[], outstanding=[])
    roles = sorted(lifecycle.required_roles(canary, step))
    signed = {a.role for a in approvals if a.step == step.key}
    return RequiredApprovals(step=step.key, roles=roles, outstanding=[r for r in roles if r not in signed])


def canary_detail(*, actor: Any, canary_id: int, now: datetime) -> CanaryDetail:
    canary = canary_get(actor=actor, canary_id=canary_id)
    approvals = list(canary.approvals.select_related("signer").order_by("signed_at", "id"))
    evaluation = lifecycle.latest_evaluation(canary)
    return CanaryDetail(
        canary=canary,
        stage=current_stage(canary),
        readiness=signing_readiness(canary, now=now),
        latest_evaluation=evaluation,
        gates=list(evaluation.gates) if evaluation is not None else [],
        required_approvals=required_approvals(canary, approvals),
        approvals=approvals,
    )
