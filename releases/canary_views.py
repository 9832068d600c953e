"""HTML views of canaries: the list, the start form with its live preview, the canary page
(refreshed in place while the canary can still change), the signing, rollback and abort
dialogs, and the approvals inbox.

Thin, as releases.views: parse, ask governance.permissions, call a releases.lifecycle service,
render; a DomainError becomes a form error or a message. The second half of the module
arranges a canary for a person (its stage timeline, the signatures its step still needs and
whether this user may give one); every rule it applies is one of releases.lifecycle's readers
or a pure function of releases.approvals / releases.schedules, never restated here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from canaryhub.errors import DomainError, NotFound
from canaryhub.web import form_refusal, is_fragment_request, require_page
from governance.models import Approval
from governance.permissions import Action, Principal, Role, decide, roles_of
from monitoring.evaluator import rollback_sensitivity
from monitoring.models import Evaluation
from monitoring.thresholds import DEFAULT_THRESHOLDS
from releases import approvals as rules
from releases import canary_selectors, lifecycle, schedules, selectors
from releases.canary_forms import STRATEGY_LABELS, CanaryFilterForm, CanarySignForm, CanaryStartForm, CanaryStopForm
from releases.forms import THRESHOLD_TEXT
from releases.models import AIModel, Canary

State = Canary.State

SIGN_ACTIONS = {rules.SignatureRole.OWNER.value: Action.SIGN_OWNER, rules.SignatureRole.MRM.value: Action.SIGN_MRM}
ROLE_LABELS = {rules.SignatureRole.OWNER.value: "owner", rules.SignatureRole.MRM.value: "MRM"}
ROLE_ORDER = (rules.SignatureRole.OWNER.value, rules.SignatureRole.MRM.value)
GATE_LABELS = {
    "error_rate": "Error rate",
    "latency_p99": "Latency p99",
    "quality": "Quality score",
    "safety_violations": "Content-safety violations",
    "anomaly_alerts": "Anomaly alerts firing",
}
# States whose page keeps refreshing itself: anything that can still change without the viewer
# (a completed canary still becomes certified). Rolled back, aborted and certified are final.
LIVE_STATES = frozenset({*Canary.ACTIVE_STATES, State.COMPLETED})
# States whose step may collect signatures; suspended waits for the monitor (lifecycle refuses).
INBOX_STATES = (State.PENDING_APPROVAL, *lifecycle.SIGNABLE_STATES)
STAGE_STATUS_LABELS = {
    State.ROLLED_BACK: "rolled back here",
    State.ABORTED: "aborted here",
}
LIST_LIMIT = 200
RECENT_SIGNATURES = 20


# --- plumbing shared by the views -----------------------------------------------------------------


def _canary_or_404(user: Any, pk: int) -> Canary:
    try:
        return canary_selectors.canary_get(actor=user, canary_id=pk)
    except NotFound as exc:
        raise Http404(exc.detail) from exc


def _varied(response: HttpResponse) -> HttpResponse:
    # The same URL answers with a fragment or a page: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


def _done(request: HttpRequest, canary: Canary) -> HttpResponse:
    """After a dialog's action: the canary page, reloaded whole (its state changed)."""
    url = reverse("releases:canary-detail", kwargs={"pk": canary.pk})
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponseClientRedirect(url)
    return redirect(url)


# --- the list -------------------------------------------------------------------------------------


@login_required
@require_GET
def canary_list(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    model_names = list(selectors.model_list(actor=request.user).values_list("name", flat=True))
    filter_form = CanaryFilterForm(request.GET, model_names=model_names)
    filters = filter_form.filters()
    active = filters["state"] == CanaryFilterForm.ACTIVE
    canaries = canary_selectors.canary_list(
        actor=request.user, model=filters["model"], state="" if active else filters["state"]
    )
    if active:
        canaries = canaries.filter(state__in=Canary.ACTIVE_STATES)
    context = {
        "filter_form": filter_form,
        "filters": filters,
        "canaries": list(canaries[:LIST_LIMIT]),
        "limit": LIST_LIMIT,
    }
    template = "releases/partials/_canary_table.html" if is_fragment_request(request) else "releases/canary_list.html"
    return _varied(render(request, template, context))


# --- starting a canary ----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def canary_create(request: HttpRequest, name: str, version: str) -> HttpResponse:
    """The start form. An htmx GET (sent when the schedule or segmentation changes) answers
    with the preview of the canary the current input would start."""
    require_page(request.user, Action.VIEW)
    try:
        obj = selectors.version_get(actor=request.user, model_name=name, version=version)
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    model = obj.model
    require_page(request.user, Action.START_CANARY, model=model)
    baseline = selectors.production_version(model=model)
    change_type = lifecycle.rules_change_type(obj, baseline) if baseline is not None else None
    fragment = is_fragment_request(request)
    data = request.POST if request.method == "POST" else (request.GET if fragment else None)
    form = CanaryStartForm(data, model=model, change_type=change_type)
    preview = start_preview(model=model, change_type=change_type, now=timezone.now(), **form.preview_inputs())
    if request.method == "GET" and fragment:
        return _varied(render(request, "releases/partials/_canary_preview.html", {"preview": preview}))
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                canary = lifecycle.canary_initiate(
                    actor=request.user, model_name=model.name, version=obj.version, **form.service_kwargs()
                )
            except DomainError as exc:
                status = form_refusal(form, exc)
            else:
                messages.success(request, _started_message(canary))
                return redirect("releases:canary-detail", pk=canary.pk)
    context = {
        "model": model,
        "version": obj,
        "baseline": baseline,
        "form": form,
        "preview": preview,
        "active_canary": model.canaries.filter(state__in=Canary.ACTIVE_STATES).first(),
    }
    return _varied(render(request, "releases/canary_form.html", context, status=status))


def _started_message(canary: Canary) -> str:
    if canary.state == State.PENDING_APPROVAL:
        roles = " + ".join(_role_labels(lifecycle.required_roles(canary)))
        return f"Canary #{canary.pk} of {canary.version} initiated. It starts when {roles} have signed the start."
    return f"Canary #{canary.pk} of {canary.version} started at {canary.traffic_percent}% of traffic."


# --- the canary page ------------------------------------------------------------------------------


@login_required
@require_GET
def canary_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The page, or (for htmx's periodic refresh) only its live part."""
    require_page(request.user, Action.VIEW)
    canary = _canary_or_404(request.user, pk)
    context = canary_page_context(canary, user=request.user, now=timezone.now())
    if is_fragment_request(request):
        return _varied(render(request, "releases/partials/_canary_live.html", context))
    return _varied(render(request, "releases/canary_detail.html", context))


# --- the dialogs: sign, roll back, abort ----------------------------------------------------------


def _dialog(
    request: HttpRequest, context: dict[str, Any], *, body: str, title: str, status: int = 200
) -> HttpResponse:
    """The same form as a <dialog> fragment (htmx) or as a page of its own (no JavaScript)."""
    fragment = is_fragment_request(request)
    context = {**context, "dialog_body": body, "dialog_title": title, "in_dialog": fragment}
    if fragment:
        # htmx swaps only 2xx answers; a refused signature is content the dialog must show.
        return _varied(render(request, "releases/partials/_canary_dialog.html", context))
    return _varied(render(request, "releases/canary_action.html", context, status=status))


@login_required
@require_http_methods(["GET", "POST"])
def canary_sign(request: HttpRequest, pk: int, role: str) -> HttpResponse:
    if role not in SIGN_ACTIONS:
        raise Http404(f"no signature role {role!r}")
    require_page(request.user, Action.VIEW)
    # Refuse first whoever can never give this signature (a service account, a risk officer),
    # before the canary lookup, which may not even be visible to them.
    require_page(request.user, SIGN_ACTIONS[role])
    canary = _canary_or_404(request.user, pk)
    require_page(request.user, SIGN_ACTIONS[role], model=canary.model)
    form = CanarySignForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            before = (canary.state, canary.stage_index)
            try:
                lifecycle.canary_sign(
                    actor=request.user, canary_id=canary.pk, role=role,
                    statement=form.cleaned_data["statement"], password=form.cleaned_data["password"],
                    evaluation_hash=form.cleaned_data["evaluation_hash"],
                )
            except DomainError as exc:
                status = form_refusal(form, exc)
            else:
                canary.refresh_from_db()
                messages.success(request, _signed_message(canary, role=role, before=before))
                return _done(request, canary)
            # Whatever was refused, show the step as it is now: the newest evaluation, the
            # signatures given meanwhile. The hidden hash then names what is on screen.
            canary.refresh_from_db()
    context = sign_context(canary, user=request.user, role=role, now=timezone.now())
    return _dialog(
        request, {**context, "form": form}, body="releases/partials/_canary_sign_form.html",
        title=f"Sign as {ROLE_LABELS[role]}", status=status,
    )


def _signed_message(canary: Canary, *, role: str, before: tuple[str, int]) -> str:
    signed = f"Your {ROLE_LABELS[role]} signature on canary #{canary.pk} is recorded."
    if canary.state == State.COMPLETED:
        return f"{signed} The canary completed: {canary.version.version} serves 100% of traffic."
    if (canary.state, canary.stage_index) != before:
        stage = lifecycle.canary_stages(canary)[canary.stage_index]
        return f"{signed} Stage {stage.index + 1} entered: {stage_label(stage)}."
    outstanding = _outstanding(canary)
    if outstanding:
        return f"{signed} Still needed: {' + '.join(_role_labels(outstanding))}."
    return signed


@dataclass(frozen=True)
class _Stop:
    action: Action
    title: str
    button: str
    effect: str


STOPS = {
    "rollback": _Stop(
        Action.ROLLBACK_CANARY, "Roll back", "Roll back now",
        "Every user goes back to the production version (0% canary) at once. The version is blocked "
        "from another canary until its root cause is filed and a re-initiation approved.",
    ),
    "abort": _Stop(
        Action.ABORT_CANARY, "Abort", "Abort the canary",
        "Traffic goes back to the production version (0% canary). The version returns to registered "
        "and may be canaried again with the same frozen thresholds.",
    ),
}


@login_required
@require_http_methods(["GET", "POST"])
def canary_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    return _stop(request, pk, kind="rollback")


@login_required
@require_http_methods(["GET", "POST"])
def canary_abort(request: HttpRequest, pk: int) -> HttpResponse:
    return _stop(request, pk, kind="abort")


def _stop(request: HttpRequest, pk: int, *, kind: str) -> HttpResponse:
    stop = STOPS[kind]
    require_page(request.user, Action.VIEW)
    canary = _canary_or_404(request.user, pk)
    require_page(request.user, stop.action, model=canary.model)
    form = CanaryStopForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            service = lifecycle.canary_rollback if kind == "rollback" else lifecycle.canary_abort
            try:
                canary = service(actor=request.user, canary_id=canary.pk, reason=form.cleaned_data["reason"])
            except DomainError as exc:
                status = form_refusal(form, exc)
            else:
                verb = "rolled back" if kind == "rollback" else "aborted"
                messages.success(request, f"Canary #{canary.pk} {verb}: traffic is back on {canary.baseline.version}.")
                return _done(request, canary)
    return _dialog(
        request,
        {"canary": canary, "form": form, "stop": stop,
         "action_url": reverse(f"releases:canary-{kind}", kwargs={"pk": canary.pk})},
        body="releases/partials/_canary_stop_form.html", title=f"{stop.title} canary #{canary.pk}", status=status,
    )


# --- the inbox ------------------------------------------------------------------------------------


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    recent = (
        Approval.objects.filter(signer=request.user)
        .select_related("canary", "canary__model", "canary__version")
        .order_by("-signed_at", "-id")[:RECENT_SIGNATURES]
    )
    context = {
        "items": waiting_for_signature(request.user, now=timezone.now()),
        "recent": list(recent),
        "may_sign": may_sign_anything(request.user),
    }
    return render(request, "releases/canary_inbox.html", context)


# === how a canary reads to a person ===============================================================


def stage_label(stage: schedules.Stage) -> str:
    if stage.cohort is not None:
        return f"cohort {stage.cohort}"
    if stage.is_final:
        return "100% (everyone)"
    return f"{stage.percent}%"


def _role_labels(roles: Iterable[str]) -> list[str]:
    return [ROLE_LABELS[role] for role in ROLE_ORDER if role in {str(r) for r in roles}]


def signature_label(roles: Iterable[str], *, start: bool, first_stage: schedules.Stage) -> str:
    """"owner", "owner + MRM", or for a start nobody signs: "none (starts at 1% immediately)"."""
    labels = _role_labels(roles)
    if labels:
        return " + ".join(labels)
    return f"none (starts at {stage_label(first_stage)} immediately)" if start else "none"


def step_label(canary: Canary, step: rules.Step) -> str:
    stages = lifecycle.canary_stages(canary)
    if step.kind is rules.StepKind.START:
        return f"Start at {stage_label(stages[0])}"
    return f"Promote {stage_label(stages[step.to_index - 1])} → {stage_label(stages[step.to_index])}"


def start_preview(
    *, model: AIModel, change_type: str | None, schedule: str, strategy: str, values: list[str], now: datetime
) -> dict[str, Any]:
    """What a canary started with these inputs would look like: its stages and their minimum
    residence, the earliest timeline from now, who signs each step, and the pattern's advice."""
    cohort_first = schedule == schedules.ScheduleKind.COHORT_FIRST
    cohorts = tuple(values) if cohort_first and strategy == schedules.SegmentationStrategy.COHORT else ()
    stages = schedules.expand_schedule(
        schedule, risk_tier=model.risk_tier, clock_speed=settings.CLOCK_SPEED, cohorts=cohorts
    )
    rows = []
    for stage, earliest in schedules.expected_timeline(stages, start=now):
        start = stage.index == 0
        step = rules.Step.start() if start else rules.promotion_step(stages, from_index=stage.index - 1)
        roles = rules.required_signatures(step=step, risk_tier=model.risk_tier)
        rows.append({
            "stage": stage,
            "label": stage_label(stage),
            "earliest": earliest,
            "signatures": signature_label(roles, start=start, first_stage=stages[0]),
        })
    warnings: list[str] = []
    if change_type is not None:
        warnings = schedules.initiation_warnings(
            schedule=schedule, risk_tier=model.risk_tier, change_type=change_type,
            segmentation={"strategy": strategy, "values": values},
        )
    return {
        "model": model,
        "schedule": schedule,
        "change_type": change_type,
        "rows": rows,
        "completes": rows[-1]["earliest"],
        "residence": stages[0].min_residence,
        "warnings": warnings,
        "clock_speed": settings.CLOCK_SPEED,
    }


def _signed_on(step: rules.Step | None, approvals: Iterable[Approval]) -> dict[str, Any]:
    """The current step's signatures: role → signer id (what lifecycle.canary_sign compares)."""
    if step is None:
        return {}
    return {a.role: a.signer_id for a in approvals if a.step == step.key}


def _outstanding(canary: Canary, approvals: Iterable[Approval] | None = None) -> list[str]:
    step = lifecycle.current_step(canary)
    if step is None:
        return []
    signed = _signed_on(step, canary.approvals.all() if approvals is None else approvals)
    required = lifecycle.required_roles(canary, step)
    return [role.value for role in rules.outstanding_signatures(required=required, signed=signed)]


def refusal(user: Any, canary: Canary, *, role: str, step: rules.Step | None, signed: dict[str, Any]) -> str | None:
    """Why this user may not give this signature on the step, or None when they may: the
    permission table first, then the segregation-of-duties rules lifecycle.canary_sign applies."""
    if step is None:
        return f"the canary is {canary.state}: it takes no more signed steps"
    if role not in lifecycle.required_roles(canary, step):
        return f"this step needs no {ROLE_LABELS[role]} signature"
    decision = decide(user, SIGN_ACTIONS[role], model=canary.model)
    if not decision.allowed:
        return decision.reason
    roles = roles_of(user)
    return rules.signature_conflicts(
        role=role, signer_id=user.pk, initiator_id=canary.initiated_by_id, other_signatures=signed,
        is_service_account=Principal(user=user).is_service_account,
        is_model_owner=canary.model.owner_id == user.pk, has_mrm_role=Role.MRM in roles,
    )


def may_sign_anything(user: Any) -> bool:
    # Without a model, decide answers "on some model": enough to know whether an inbox applies.
    return any(decide(user, action).allowed for action in SIGN_ACTIONS.values())


@dataclass(frozen=True)
class InboxItem:
    canary: Canary
    step: str
    roles: list[dict[str, str]]  # {role, label}: the signatures this user may give on the step


def waiting_for_signature(user: Any, *, now: datetime) -> list[InboxItem]:
    """Canaries whose current step can be signed now and needs a signature this user may give
    and has not given: the owner's for models they own, MRM's for an MRM member."""
    if not may_sign_anything(user):
        return []
    canaries = canary_selectors.canary_list(actor=user).filter(state__in=INBOX_STATES)
    if not decide(user, Action.SIGN_MRM).allowed:
        # Only an owner signature is possible, and only on one's own models: skip the rest
        # before the readiness check, which reads each canary's latest evaluation.
        canaries = canaries.filter(model__owner=user)
    items = []
    for canary in canaries.prefetch_related("approvals"):
        step = lifecycle.current_step(canary)
        signed = _signed_on(step, canary.approvals.all())
        roles = [role for role in ROLE_ORDER if refusal(user, canary, role=role, step=step, signed=signed) is None]
        if step is None or not roles:
            continue
        if not canary_selectors.signing_readiness(canary, now=now).ready:
            continue
        items.append(InboxItem(
            canary=canary, step=step_label(canary, step),
            roles=[{"role": role, "label": ROLE_LABELS[role]} for role in roles],
        ))
    return items


def _stage_rows(canary: Canary, approvals: list[Approval], *, now: datetime) -> list[dict[str, Any]]:
    """Every stage: what it serves, when it was (or can earliest be) entered, its residence,
    and the signatures on the step that entered it."""
    stages = lifecycle.canary_stages(canary)
    by_stage: dict[int, list[Approval]] = defaultdict(list)
    for approval in approvals:
        by_stage[approval.stage_index].append(approval)
    active = canary.state in Canary.ACTIVE_STATES
    started = canary.stage_entered_at is not None
    earliest: dict[int, datetime] = {}
    if active:
        # The earliest the remaining stages can be entered, if every later step is signed the
        # moment it is ready: approvals and holds only make it later.
        if not started:
            upcoming = schedules.expected_timeline(stages, start=now)
        else:
            until = lifecycle.residence_until(canary) or now
            upcoming = schedules.expected_timeline(stages[canary.stage_index + 1:], start=max(until, now))
        earliest = {stage.index: at for stage, at in upcoming}
    rows = []
    for stage in stages:
        signatures = by_stage.get(stage.index, [])
        entered_at: datetime | None = None
        remaining: timedelta | None = None
        if started and stage.index < canary.stage_index:
            status = "passed"
            # The step's last signature took it; a stage 0 nobody had to sign started at initiation.
            entered_at = max((a.signed_at for a in signatures), default=canary.initiated_at)
        elif started and stage.index == canary.stage_index:
            entered_at = canary.stage_entered_at
            if active:
                status = "current"
                assert entered_at is not None
                remaining = schedules.residence_remaining(stage, entered_at=entered_at, now=now)
            elif canary.state in (State.COMPLETED, State.CERTIFIED):
                status = "reached"
            else:
                status = canary.state  # rolled back / aborted here
        else:
            status = "upcoming" if active else "not reached"
        note = "—"
        if not signatures and entered_at is not None:
            note = "none needed: started on initiation"
        rows.append({
            "stage": stage,
            "number": stage.index + 1,
            "label": stage_label(stage),
            "status": status,
            "status_label": STAGE_STATUS_LABELS.get(status, status),
            "signature_note": note,
            "entered_at": entered_at,
            "earliest": earliest.get(stage.index) if status == "upcoming" else None,
            "remaining": remaining,
            "signatures": signatures,
        })
    return rows


def _gate_rows(evaluation: Evaluation | None) -> list[dict[str, Any]]:
    if evaluation is None:
        return []
    return [
        {"label": GATE_LABELS.get(gate.name, gate.name), "gate": gate, "status": gate.status.value}
        for gate in evaluation.gate_list()
    ]


def _threshold_rows(thresholds: dict[str, Any]) -> list[dict[str, Any]]:
    """The canary's frozen thresholds in words, as the version page words them."""
    rows = []
    for key, text in THRESHOLD_TEXT.items():
        row: dict[str, Any] = {"label": text["label"]}
        for section in ("promote", "rollback"):
            value = thresholds.get(section, {}).get(key)
            if key not in DEFAULT_THRESHOLDS[section]:
                row[section] = ""
            else:
                row[section] = text[section].format(v=f"{value:g}" if value is not None else "?")
        rows.append(row)
    return rows


def canary_page_context(canary: Canary, *, user: Any, now: datetime) -> dict[str, Any]:
    approvals = list(canary.approvals.select_related("signer"))
    stages = lifecycle.canary_stages(canary)
    step = lifecycle.current_step(canary)
    signed = _signed_on(step, approvals)
    required = lifecycle.required_roles(canary, step) if step is not None else frozenset()
    readiness = canary_selectors.signing_readiness(canary, now=now)
    evaluation = lifecycle.latest_evaluation(canary)
    signable = []
    if readiness.ready:
        signable = [role for role in ROLE_ORDER if refusal(user, canary, role=role, step=step, signed=signed) is None]
    step_signatures = [a for a in approvals if step is not None and a.step == step.key]
    remaining = None
    if canary.state in Canary.ACTIVE_STATES and canary.stage_entered_at is not None:
        remaining = schedules.residence_remaining(
            stages[canary.stage_index], entered_at=canary.stage_entered_at, now=now
        )
    return {
        "canary": canary,
        "model": canary.model,
        "stage": stages[canary.stage_index],
        "stage_count": len(stages),
        "stage_label": stage_label(stages[canary.stage_index]),
        "remaining": remaining,
        "residence_until": lifecycle.residence_until(canary),
        "live": canary.state in LIVE_STATES,
        "cadence_s": settings.EVALUATION_CADENCE_S,
        "step": step,
        "step_label": step_label(canary, step) if step is not None else "",
        "required": [
            {"role": role, "label": ROLE_LABELS[role],
             "signature": next((a for a in step_signatures if a.role == role), None)}
            for role in ROLE_ORDER if role in required
        ],
        "readiness": readiness,
        "evaluation": evaluation,
        "gates": _gate_rows(evaluation),
        "rollback_sensitivity": rollback_sensitivity(evaluation.inputs, canary.thresholds["rollback"])
        if evaluation is not None else [],
        "stage_rows": _stage_rows(canary, approvals, now=now),
        "signable": [{"role": role, "label": ROLE_LABELS[role]} for role in signable],
        "can_rollback": canary.state in lifecycle.SERVING_STATES
        and decide(user, Action.ROLLBACK_CANARY, model=canary.model).allowed,
        "can_abort": canary.state in Canary.ACTIVE_STATES
        and decide(user, Action.ABORT_CANARY, model=canary.model).allowed,
        "threshold_rows": _threshold_rows(canary.thresholds),
        "strategy_label": STRATEGY_LABELS.get(canary.segmentation.get("strategy", ""), ""),
        "now": now,
    }


def sign_context(canary: Canary, *, user: Any, role: str, now: datetime) -> dict[str, Any]:
    """What the signing dialog shows: exactly what is approved, on which evaluation, and
    whether this signature can be given now (if not, why)."""
    step = lifecycle.current_step(canary)
    signed = _signed_on(step, canary.approvals.all())
    readiness = canary_selectors.signing_readiness(canary, now=now)
    blocked = refusal(user, canary, role=role, step=step, signed=signed)
    if blocked is None and not readiness.ready:
        blocked = f"not ready for signatures: {readiness.reason}"
    evaluation = None
    if step is not None and step.kind is rules.StepKind.PROMOTE:
        evaluation = lifecycle.latest_evaluation(canary)
    # The meaning recorded with the signature, word for word: the signer reads what they sign.
    meaning = lifecycle.signature_meaning(role=role, step=step, canary=canary) if step is not None else ""
    return {
        "canary": canary,
        "role": role,
        "role_label": ROLE_LABELS[role],
        "step": step,
        "step_label": step_label(canary, step) if step is not None else "",
        "meaning": meaning,
        "evaluation": evaluation,
        "blocked": blocked,
        "others": [a for a in canary.approvals.select_related("signer") if step is not None and a.step == step.key],
        "action_url": reverse("releases:canary-sign", kwargs={"pk": canary.pk, "role": role}),
    }


def inbox_count(user: Any) -> int | None:
    """For the navigation: how many steps wait for this user's signature (None: they sign nothing)."""
    if not may_sign_anything(user):
        return None
    return len(waiting_for_signature(user, now=timezone.now()))
