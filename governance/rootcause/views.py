"""HTML views of incidents: the list, and an incident's page with one view per act on it —
filing the root cause, MRM's review, the owner's re-initiation signature, resolving a committee
escalation. Each act redirects back to the incident page, or shows it again with the refusal."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from canaryhub.errors import DomainError
from canaryhub.web import render_page
from governance.access.permissions import Action, decide, require_page
from governance.incidents import selectors
from governance.incidents.models import Incident, ReinitiationApproval, RootCauseReport
from governance.rootcause import services
from releases.canaries import presenters as canary_presenters

ROOT_CAUSE_FIELDS = ("cause", "contributing_factors", "fix", "version_change_ref")


@login_required
@require_GET
def incident_list(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    filters = {"status": request.GET.get("status", "")[:20], "model": request.GET.get("model", "")[:64]}
    now = timezone.now()
    rows = [{"incident": i, "overdue": selectors.incident_is_overdue(i, now=now)}
            for i in selectors.incidents(**filters)[:200]]
    return render_page(request, "governance/incident_list.html", "governance/partials/_incident_table.html",
                       {"rows": rows, "filters": filters, "statuses": Incident.Status.choices})


def _incident(incident_id: int) -> Incident:
    return get_object_or_404(Incident.objects.select_related("canary__model", "canary__version"), pk=incident_id)


def _page(request: HttpRequest, incident: Incident, *, values: dict[str, str] | None = None,
          errors: dict[str, list[str]] | None = None) -> HttpResponse:
    model = incident.canary.model if incident.canary else None
    reports = list(incident.root_cause_reports.select_related("filed_by", "reviewed_by").order_by("-filed_at"))
    reinitiation = ReinitiationApproval.objects.filter(incident=incident).first()
    return render(request, "governance/incident_detail.html", {
        "incident": incident, "reports": reports, "values": values or {}, "errors": errors or {},
        "overdue": selectors.incident_is_overdue(incident, now=timezone.now()),
        "confirmed_at": parse_datetime(incident.details.get("confirmed_at") or ""),
        "can_file": decide(request.user, Action.FILE_ROOT_CAUSE, model=model).allowed
        and incident.status == Incident.Status.OPEN,
        "can_review": decide(request.user, Action.ACCEPT_ROOT_CAUSE).allowed,
        "can_reinitiate": model is not None and incident.kind == Incident.Kind.ROLLBACK
        and incident.status == Incident.Status.RESOLVED
        and decide(request.user, Action.APPROVE_REINITIATION, model=model).allowed
        and reinitiation is None,
        "reinitiation": reinitiation,
        "next_steps": selectors.rollback_next_steps(incident) if incident.kind == Incident.Kind.ROLLBACK
        else [],
        "can_start_again": incident.canary is not None
        and canary_presenters.after_rollback(incident.canary, user=request.user)["can_start_again"],
        "filed": RootCauseReport.Status.FILED,
        "escalations": list(selectors.escalations_for(version=incident.canary.version)) if incident.canary else [],
        "can_resolve_escalation": decide(request.user, Action.RESOLVE_ESCALATION).allowed,
    })


def _refused(request: HttpRequest, incident: Incident, exc: DomainError,
             values: dict[str, str] | None = None) -> HttpResponse:
    return _page(request, incident, values=values, errors=exc.errors or {"__all__": [exc.detail]})


@login_required
@require_GET
def incident_detail(request: HttpRequest, incident_id: int) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    return _page(request, _incident(incident_id))


@login_required
@require_POST
def root_cause_file(request: HttpRequest, incident_id: int) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    require_page(request.user, Action.FILE_ROOT_CAUSE)  # before the form is read
    incident = _incident(incident_id)
    values = {k: request.POST.get(k, "") for k in ROOT_CAUSE_FIELDS}
    try:
        services.root_cause_file(actor=request.user, incident_id=incident.pk, **values)
    except DomainError as exc:
        return _refused(request, incident, exc, values)
    messages.success(request, "Root-cause report filed for MRM review.")
    return redirect("evidence:incident-detail", incident_id=incident.pk)


@login_required
@require_POST
def root_cause_review(request: HttpRequest, incident_id: int) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    require_page(request.user, Action.ACCEPT_ROOT_CAUSE)  # before the form is read
    incident = _incident(incident_id)
    accept = request.POST.get("verb") == "accept"
    report = request.POST.get("report", "")
    try:
        services.root_cause_review(actor=request.user, report_id=int(report) if report.isdigit() else 0,
                                   accept=accept, note=request.POST.get("note", ""))
    except DomainError as exc:
        return _refused(request, incident, exc)
    messages.success(request, "Root cause accepted." if accept else "Root cause returned.")
    return redirect("evidence:incident-detail", incident_id=incident.pk)


@login_required
@require_POST
def reinitiation_approve(request: HttpRequest, incident_id: int) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    require_page(request.user, Action.APPROVE_REINITIATION)  # before the form is read
    incident = _incident(incident_id)
    if incident.canary is not None:  # the owner of this canary's model, not any owner
        require_page(request.user, Action.APPROVE_REINITIATION, model=incident.canary.model)
    try:
        services.reinitiation_approve(actor=request.user, incident_id=incident.pk,
                                      statement=request.POST.get("statement", ""),
                                      password=request.POST.get("password", ""), request=request)
    except DomainError as exc:
        return _refused(request, incident, exc)
    messages.success(request, "Re-initiation approved: the version may be canaried again.")
    return redirect("evidence:incident-detail", incident_id=incident.pk)


@login_required
@require_POST
def escalation_resolve(request: HttpRequest, incident_id: int, escalation_id: int) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    require_page(request.user, Action.RESOLVE_ESCALATION)  # before the form is read
    incident = _incident(incident_id)
    try:
        services.escalation_resolve(actor=request.user, escalation_id=escalation_id, note=request.POST.get("note", ""))
    except DomainError as exc:
        return _refused(request, incident, exc)
    messages.success(request, "Committee escalation resolved.")
    return redirect("evidence:incident-detail", incident_id=incident.pk)

