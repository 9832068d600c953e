"""HTML views of canaries: the list, the start form with its live preview, the canary page
(refreshed in place while the canary can still change), the signing, rollback and abort
dialogs, the approvals inbox and a canary's router pushes.

Thin: parse, ask governance.access.permissions, call a releases.canaries.services function,
render the read model of releases.canaries.presenters; a DomainError becomes a form error or a
message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from canaryhub.errors import DomainError, NotFound
from canaryhub.web import form_refusal, is_fragment_request, render_page, vary_on_htmx
from governance.access.permissions import Action, decide, may_or_break_glass, require_page
from releases.canaries import charts, dashboard, presenters, selectors, services, states
from releases.canaries import fleet as fleet_model
from releases.canaries.forms import (
    CanaryFilterForm,
    CanarySignForm,
    CanaryStartForm,
    CanaryStopForm,
    StickySweepForm,
    UrgentPatchForm,
)
from releases.canaries.models import Approval, Canary
from releases.register import selectors as register_selectors
from releases.register import views as register_views
from releases.register.services import change_type_between

State = states.State

LIST_LIMIT = 200
RECENT_SIGNATURES = 20


# --- plumbing shared by the views -----------------------------------------------------------------


def _canary_or_404(user: Any, pk: int) -> Canary:
    try:
        return selectors.canary_get(actor=user, canary_id=pk)
    except NotFound as exc:
        raise Http404(exc.detail) from exc


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
    model_names = list(register_selectors.model_list(actor=request.user).values_list("name", flat=True))
    filter_form = CanaryFilterForm(request.GET, model_names=model_names)
    filters = filter_form.filters()
    active = filters["state"] == CanaryFilterForm.ACTIVE
    canaries = selectors.canary_list(
        actor=request.user, model=filters["model"], state="" if active else filters["state"]
    )
    if active:
        canaries = canaries.filter(state__in=states.ACTIVE)
    context = {
        "filter_form": filter_form,
        "filters": filters,
        "canaries": list(canaries[:LIST_LIMIT]),
        "limit": LIST_LIMIT,
    }
    return render_page(request, "releases/canary_list.html", "releases/partials/_canary_table.html", context)


# --- starting a canary ----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def canary_create(request: HttpRequest, name: str, version: str) -> HttpResponse:
    """The start form. An htmx GET (sent when the schedule or segmentation changes) answers
    with the preview of the canary the current input would start."""
    require_page(request.user, Action.VIEW)
    try:
        obj = register_selectors.version_get(actor=request.user, model_name=name, version=version)
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    model = obj.model
    require_page(request.user, Action.START_CANARY, model=model)
    baseline = register_selectors.production_version(model=model)
    change_type = change_type_between(obj.semver, baseline.semver) if baseline is not None else None
    fragment = is_fragment_request(request)
    data = request.POST if request.method == "POST" else (request.GET if fragment else None)
    form = CanaryStartForm(data, model=model, change_type=change_type)
    preview = presenters.start_preview(
        model=model, change_type=change_type, now=timezone.now(), **form.preview_inputs()
    )
    if request.method == "GET" and fragment:
        return vary_on_htmx(render(request, "releases/partials/_canary_preview.html", {"preview": preview}))
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                canary = services.canary_initiate(
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
        "active_canary": model.canaries.filter(state__in=states.ACTIVE).first(),
    }
    return vary_on_htmx(render(request, "releases/canary_form.html", context, status=status))


@login_required
@require_http_methods(["GET", "POST"])
def canary_urgent_patch(request: HttpRequest, name: str, version: str) -> HttpResponse:
    """The platform engineer's urgent PATCH form (releases.canaries.services.canary_urgent_patch)."""
    require_page(request.user, Action.URGENT_PATCH)
    try:
        obj = register_selectors.version_get(actor=request.user, model_name=name, version=version)
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    model = obj.model
    baseline = register_selectors.production_version(model=model)
    change_type = change_type_between(obj.semver, baseline.semver) if baseline is not None else None
    form = UrgentPatchForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                canary = services.canary_urgent_patch(actor=request.user, model_name=model.name,
                                                      version=obj.version, **form.service_kwargs())
            except DomainError as exc:
                status = form_refusal(form, exc)
            else:
                messages.warning(request, f"Urgent PATCH canary #{canary.pk} started: each stage is held "
                                          f"{settings.URGENT_RESIDENCE_MINUTES} minutes; every signature and the "
                                          "rollback rule still apply. MRM reviews it within 48 hours.")
                return redirect("releases:canary-detail", pk=canary.pk)
    context = {"model": model, "version": obj, "baseline": baseline, "form": form, "change_type": change_type,
               "residence_minutes": settings.URGENT_RESIDENCE_MINUTES,
               "active_canary": model.canaries.filter(state__in=states.ACTIVE).first()}
    return render(request, "releases/canary_urgent_form.html", context, status=status)


def _started_message(canary: Canary) -> str:
    if canary.state == State.PENDING_APPROVAL:
        roles = " + ".join(presenters.role_labels(selectors.required_roles(canary)))
        return f"Canary #{canary.pk} of {canary.version} initiated. It starts when {roles} have signed the start."
    return f"Canary #{canary.pk} of {canary.version} started at {canary.traffic_percent}% of traffic."


# --- the canary page ------------------------------------------------------------------------------


@login_required
@require_GET
def canary_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The page, or (for htmx's periodic refresh) only its live part."""
    require_page(request.user, Action.VIEW)
    canary = _canary_or_404(request.user, pk)
    now = timezone.now()
    context = presenters.canary_page_context(canary, user=request.user, now=now)
    context["gate_evidence"] = dashboard.gate_evidence(context["evaluation"])
    context["data_age"] = dashboard.data_age(context["evaluation"], now=now)
    if not is_fragment_request(request):
        # The charts are drawn once with the page; their refresh asks canary_charts for JSON.
        key = dashboard.range_key(request.GET.get("range"))
        context["dashboard"] = dashboard.canary_dashboard(
            canary, key=key, now=now, latest=context["evaluation"], latest_known=True)
        context["ranges"] = [{"key": k, "label": label, "current": k == key} for k, label in charts.RANGES.items()]
    return render_page(request, "releases/canary_detail.html", "releases/partials/_canary_live.html", context)


@login_required
@require_GET
def canary_charts(request: HttpRequest, pk: int) -> JsonResponse:
    """Every chart of the canary page as Plotly figure JSON, for the page's periodic refresh."""
    require_page(request.user, Action.VIEW)
    canary = _canary_or_404(request.user, pk)
    board = dashboard.canary_dashboard(canary, key=dashboard.range_key(request.GET.get("range")), now=timezone.now())
    return JsonResponse(board.payload())


@login_required
@require_GET
def canary_report(request: HttpRequest, pk: int) -> HttpResponse:
    """The post-canary report: the split over time, each stage against production, the
    anomalies, and the decision with the time per stage."""
    require_page(request.user, Action.VIEW)
    canary = _canary_or_404(request.user, pk)
    report = dashboard.canary_report(canary, now=timezone.now())
    return render(request, "releases/canary_report.html", {"canary": canary, "report": report})


@login_required
@require_GET
def canary_chart_csv(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    """One chart's numbers as CSV (the same rows as its table)."""
    require_page(request.user, Action.VIEW)
    canary = _canary_or_404(request.user, pk)
    range_key = dashboard.range_key(request.GET.get("range"))
    chart = dashboard.canary_dashboard(canary, key=range_key, now=timezone.now()).chart(key)
    if chart is None:
        raise Http404(f"no chart {key!r}")
    response = HttpResponse(chart.csv(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="canary-{canary.pk}-{key}-{range_key}.csv"'
    return response


# --- the fleet ------------------------------------------------------------------------------------

_FLEET_COLUMNS = (("model", "Model"), ("state", "State and why"), ("stage", "Stage"), ("in_stage", "In stage"),
                  ("next", "Next step in"), ("act", "Who must act"))


@login_required
@require_GET
def fleet(request: HttpRequest) -> HttpResponse:
    """Every active canary in one table, sortable and filterable, refreshed at the cadence."""
    require_page(request.user, Action.VIEW)
    filters = {
        "q": request.GET.get("q", "")[:100], "state": request.GET.get("state", ""),
        "who": request.GET.get("who", "")[:40], "sort": request.GET.get("sort", "act"),
        "desc": request.GET.get("desc") == "1",
    }
    if filters["state"] not in {s.value for s in states.ACTIVE}:
        filters["state"] = ""
    if filters["sort"] not in fleet_model.SORTS:
        filters["sort"] = "act"
    try:
        page_number = int(request.GET.get("page", "1"))
    except ValueError:
        page_number = 1
    fleet_page = fleet_model.fleet_rows(
        actor=request.user, now=timezone.now(), state=filters["state"], who=filters["who"], query=filters["q"],
        sort=filters["sort"], descending=filters["desc"], page=page_number)
    sort_links = []
    for key, text in _FLEET_COLUMNS:
        params = request.GET.copy()
        params["sort"] = key
        params["desc"] = "1" if filters["sort"] == key and not filters["desc"] else "0"
        params.pop("page", None)
        sort_links.append((key, {"text": text, "query": params.urlencode()}))
    page_links = []
    for number in range(1, fleet_page.pages + 1):
        params = request.GET.copy()
        params["page"] = str(number)
        page_links.append({"number": number, "query": params.urlencode(), "current": number == fleet_page.page})
    context = {
        "rows": fleet_page.rows, "fleet_page": fleet_page, "page_links": page_links if fleet_page.pages > 1 else [],
        "filters": filters, "sort_links": sort_links, "cadence_s": settings.EVALUATION_CADENCE_S,
        "spark_points": fleet_model.SPARK_POINTS,
        "state_choices": [(s.value, s.label) for s in Canary.State if s in states.ACTIVE],
        "who_choices": [presenters.ACTOR_WORDS[presenters.OWNER], presenters.ROLE_LABELS["mrm"],
                        presenters.ACTOR_WORDS[presenters.ON_CALL]],
    }
    return render_page(request, "releases/fleet.html", "releases/partials/_fleet_table.html", context)


# --- the dialogs: sign, roll back, abort ----------------------------------------------------------


def _dialog(
    request: HttpRequest, context: dict[str, Any], *, body: str, title: str, status: int = 200
) -> HttpResponse:
    """The same form as a <dialog> fragment (htmx) or as a page of its own (no JavaScript)."""
    fragment = is_fragment_request(request)
    context = {**context, "dialog_body": body, "dialog_title": title, "in_dialog": fragment}
    if fragment:
        # htmx swaps only 2xx answers; a refused signature is content the dialog must show.
        return vary_on_htmx(render(request, "releases/partials/_canary_dialog.html", context))
    return vary_on_htmx(render(request, "releases/canary_action.html", context, status=status))


@login_required
@require_http_methods(["GET", "POST"])
def canary_sign(request: HttpRequest, pk: int, role: str) -> HttpResponse:
    if role not in selectors.SIGN_ACTIONS:
        raise Http404(f"no signature role {role!r}")
    require_page(request.user, Action.VIEW)
    # Refuse first whoever can never give this signature (a service account, a risk officer),
    # before the canary lookup, which may not even be visible to them.
    require_page(request.user, selectors.SIGN_ACTIONS[role])
    canary = _canary_or_404(request.user, pk)
    require_page(request.user, selectors.SIGN_ACTIONS[role], model=selectors.signing_subject(canary))
    form = CanarySignForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            before = (canary.state, canary.stage_index)
            try:
                services.canary_sign(
                    actor=request.user, canary_id=canary.pk, role=role,
                    statement=form.cleaned_data["statement"], password=form.cleaned_data["password"],
                    evaluation_hash=form.cleaned_data["evaluation_hash"], request=request,
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
    context = presenters.sign_context(canary, user=request.user, role=role, now=timezone.now())
    return _dialog(
        request, {**context, "form": form}, body="releases/partials/_canary_sign_form.html",
        title=f"Sign as {presenters.ROLE_LABELS[role]}", status=status,
    )


def _signed_message(canary: Canary, *, role: str, before: tuple[str, int]) -> str:
    signed = f"Your signature as {presenters.ROLE_LABELS[role]} on canary #{canary.pk} is recorded."
    if canary.state == State.COMPLETED:
        return f"{signed} The canary completed: {canary.version.version} serves 100% of traffic."
    if (canary.state, canary.stage_index) != before:
        stage = selectors.canary_stages(canary)[canary.stage_index]
        return f"{signed} Stage {stage.index + 1} entered: {presenters.stage_label(stage)}."
    outstanding = selectors.required_approvals(canary, list(canary.approvals.all())).outstanding
    if outstanding:
        return f"{signed} Still needed: {' + '.join(presenters.role_labels(outstanding))}."
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
    "revert": _Stop(
        Action.REVERT_CANARY, "Revert", "Revert to the previous version now",
        "Every user goes back to the previous version, kept on hot standby since the completion (0% canary) "
        "at once; it becomes production again. This version is marked rolled back and needs a root cause "
        "before another canary; an incident is opened.",
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
def canary_revert(request: HttpRequest, pk: int) -> HttpResponse:
    return _stop(request, pk, kind="revert")


@login_required
@require_http_methods(["GET", "POST"])
def canary_abort(request: HttpRequest, pk: int) -> HttpResponse:
    return _stop(request, pk, kind="abort")


def _stop(request: HttpRequest, pk: int, *, kind: str) -> HttpResponse:
    stop = STOPS[kind]
    require_page(request.user, Action.VIEW)
    canary = _canary_or_404(request.user, pk)
    # On-call acts under break-glass (a rollback or a revert): the same dialog, its own rule.
    break_glass = kind != "abort" and not decide(request.user, stop.action, model=canary.model).allowed \
        and may_or_break_glass(request.user, stop.action, model=canary.model)
    if not break_glass:
        require_page(request.user, stop.action, model=canary.model)
    form = CanaryStopForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            service = {"rollback": services.canary_rollback, "revert": services.canary_revert,
                       "abort": services.canary_abort}[kind]
            try:
                extra = {"break_glass": True} if break_glass else {}
                canary = service(actor=request.user, canary_id=canary.pk, reason=form.cleaned_data["reason"], **extra)
            except DomainError as exc:
                status = form_refusal(form, exc)
            else:
                verb = {"rollback": "rolled back", "revert": "reverted", "abort": "aborted"}[kind]
                messages.success(request, f"Canary #{canary.pk} {verb}: traffic is back on {canary.baseline.version}.")
                return _done(request, canary)
    return _dialog(
        request,
        {"canary": canary, "form": form, "stop": stop, "break_glass": break_glass,
         "action_url": reverse(f"releases:canary-{kind}", kwargs={"pk": canary.pk})},
        body="releases/partials/_canary_stop_form.html", title=f"{stop.title} canary #{canary.pk}", status=status,
    )


# --- the inbox ------------------------------------------------------------------------------------


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Where a login lands (presenters.landing): the Inbox when something waits for this user,
    else the fleet page for platform engineers and on-call, else the register."""
    return redirect(presenters.landing(request.user))


@login_required
def root(request: HttpRequest) -> HttpResponse:
    """`/`: for platform engineers and on-call, where they land (the Inbox when something waits
    for them, else the fleet page); for everyone else, the register."""
    if presenters.fleet_is_home(request.user):
        return redirect(presenters.landing(request.user))
    return register_views.model_list(request)


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
        "items": presenters.waiting_for_signature(request.user, now=timezone.now()),
        "recent": list(recent),
        "may_sign": selectors.may_sign_anything(request.user),
        "work": presenters.other_work(request.user),
        "coming": presenters.coming_next(request.user, now=timezone.now()),
    }
    return render(request, "releases/canary_inbox.html", context)


@login_required
@require_GET
def canary_pushes(request: HttpRequest, pk: int) -> HttpResponse:
    """The canary's router pushes: a page, or (htmx, from the canary page) only the table."""
    require_page(request.user, Action.VIEW)
    canary = _canary_or_404(request.user, pk)
    pushes = list(selectors.canary_pushes(actor=request.user, canary_id=pk))
    context = {"canary": canary, "pushes": pushes, "limit": selectors.PUSH_LIMIT}
    return render_page(request, "releases/router_pushes.html", "releases/partials/_router_pushes.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def sticky_assignments(request: HttpRequest) -> HttpResponse:
    """The sweeps of the sticky assignment store, and (for platform engineers) the form that sweeps
    it now (releases.canaries.services.sticky_sweep)."""
    require_page(request.user, Action.VIEW)
    can_sweep = decide(request.user, Action.CLEAR_STICKY).allowed
    form = StickySweepForm(request.POST or None) if can_sweep or request.method == "POST" else None
    status = 200
    if request.method == "POST":
        require_page(request.user, Action.CLEAR_STICKY)
        status = 400
        if form is not None and form.is_valid():
            try:
                sweep = services.sticky_sweep(actor=request.user, reason=form.cleaned_data["reason"])
            except DomainError as exc:
                status = form_refusal(form, exc)
            else:
                messages.success(request, f"Sticky store swept: {sweep.cleared} of {sweep.scanned} assignments "
                                          "cleared.")
                return redirect("releases:sticky-assignments")
    context = {"sweeps": selectors.sticky_sweeps(actor=request.user), "form": form, "can_sweep": can_sweep,
               "interval_s": settings.STICKY_SWEEP_INTERVAL_S}
    return render(request, "releases/sticky_assignments.html", context, status=status)
