"""HTML pages of the governance evidence: certificate review queue and certificate page, the
public certificate verification page, incidents with the root-cause form and committee
escalations, threshold change reviews, the MRM register and the evidence export with progress.
Views parse, check access, call a service, render."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from canaryhub.errors import DomainError
from canaryhub.web import is_fragment_request, require_page
from governance import certificates as certs
from governance import rootcause
from governance import threshold_changes as tc
from governance.exports import evidence_export_request
from governance.models import Certificate, EvidenceExport, Incident, RootCauseReport, ThresholdChangeRequest
from governance.permissions import Action, decide
from governance.register import register_csv, register_entries

app_name = "evidence"


def _render(request: HttpRequest, page: str, partial: str, context: dict[str, Any]) -> HttpResponse:
    response = render(request, partial if is_fragment_request(request) else page, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _day(value: str, *, end: bool = False) -> datetime | None:
    parsed = parse_date(value or "")
    if parsed is None:
        return None
    return datetime.combine(parsed, time.max if end else time.min, tzinfo=timezone.get_current_timezone())


# --- certificates ---------------------------------------------------------------------------------


@login_required
@require_GET
def certificate_queue(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    rows = [{"canary": c, "checklist": certs.certificate_checklist(c, chain_ok=None),
             "returned": [x for x in c.certificates.all() if x.status == Certificate.Status.RETURNED]}
            for c in certs.certificate_review_queue()[:50]]
    issued = Certificate.objects.filter(status=Certificate.Status.ISSUED).select_related(
        "canary__model", "canary__version")[:50]
    return render(request, "governance/certificate_queue.html", {
        "rows": rows, "issued": issued, "can_issue": decide(request.user, Action.ISSUE_CERTIFICATE).allowed,
    })


@login_required
@require_POST
def certificate_decide_view(request: HttpRequest, canary_id: int) -> HttpResponse:
    issue = request.POST.get("decision") == "issue"
    try:
        cert = certs.certificate_decide(actor=request.user, canary_id=canary_id, issue=issue,
                                        reasons=request.POST.get("reasons", ""))
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect("evidence:certificate-queue")
    if cert.status == Certificate.Status.ISSUED:
        messages.success(request, f"Certificate issued for canary #{canary_id}.")
        return redirect("evidence:certificate-detail", certificate_id=cert.pk)
    messages.warning(request, f"Canary #{canary_id} returned with reasons.")
    return redirect("evidence:certificate-queue")


@login_required
@require_GET
def certificate_detail(request: HttpRequest, certificate_id: str) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    cert = get_object_or_404(Certificate.objects.select_related("canary__model"), pk=certificate_id)
    return render(request, "governance/certificate_detail.html", {"cert": cert})


@login_required
@require_GET
def certificate_pdf(request: HttpRequest, certificate_id: str) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    cert = get_object_or_404(Certificate, pk=certificate_id, status=Certificate.Status.ISSUED)
    response = HttpResponse(certs.render_pdf(cert), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="certificate-{cert.pk}.pdf"'
    return response


@require_GET
def certificate_verify_page(request: HttpRequest, certificate_id: str) -> HttpResponse:
    """Open to anyone holding the certificate's id (a UUID, not guessable): it says whether the
    certificate is genuine and unaltered, and shows what it states."""
    try:
        result = certs.certificate_verify(certificate_id=certificate_id)
    except (DomainError, ValueError) as exc:
        raise Http404("no such certificate") from exc
    cert = Certificate.objects.get(pk=certificate_id)
    return render(request, "governance/certificate_verify.html", {"cert": cert, "result": result})


# --- incidents ------------------------------------------------------------------------------------


@login_required
@require_GET
def incident_list(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    filters = {"status": request.GET.get("status", "")[:20], "model": request.GET.get("model", "")[:64]}
    now = timezone.now()
    rows = [{"incident": i, "overdue": rootcause.incident_is_overdue(i, now=now)}
            for i in rootcause.incidents(**filters)[:200]]
    return _render(request, "governance/incident_list.html", "governance/partials/_incident_table.html",
                   {"rows": rows, "filters": filters, "statuses": Incident.Status.choices})


@login_required
@require_http_methods(["GET", "POST"])
def incident_detail(request: HttpRequest, incident_id: int) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    incident = get_object_or_404(Incident.objects.select_related("canary__model", "canary__version"), pk=incident_id)
    form_values: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        verb = request.POST.get("verb", "")
        try:
            if verb == "file":
                form_values = {k: request.POST.get(k, "") for k in
                               ("cause", "contributing_factors", "fix", "version_change_ref")}
                rootcause.root_cause_file(actor=request.user, incident_id=incident.pk, **form_values)
                messages.success(request, "Root-cause report filed for MRM review.")
            elif verb in ("accept", "return"):
                rootcause.root_cause_review(actor=request.user, report_id=int(request.POST.get("report", 0)),
                                            accept=verb == "accept", note=request.POST.get("note", ""))
                messages.success(request, "Root cause accepted." if verb == "accept" else "Root cause returned.")
            elif verb == "reinitiate":
                rootcause.reinitiation_approve(actor=request.user, incident_id=incident.pk,
                                               statement=request.POST.get("statement", ""),
                                               password=request.POST.get("password", ""))
                messages.success(request, "Re-initiation approved: the version may be canaried again.")
            elif verb == "resolve-escalation":
                rootcause.escalation_resolve(actor=request.user, escalation_id=int(request.POST.get("escalation", 0)),
                                             note=request.POST.get("note", ""))
                messages.success(request, "Committee escalation resolved.")
            else:
                raise Http404("unknown action")
            return redirect("evidence:incident-detail", incident_id=incident.pk)
        except DomainError as exc:
            errors = exc.errors or {"__all__": [exc.detail]}
            if not exc.errors:
                errors = {"__all__": [exc.detail]}
    model = incident.canary.model if incident.canary else None
    reports = list(incident.root_cause_reports.select_related("filed_by", "reviewed_by").order_by("-filed_at"))
    from governance.models import ReinitiationApproval

    return render(request, "governance/incident_detail.html", {
        "incident": incident, "reports": reports, "values": form_values, "errors": errors,
        "overdue": rootcause.incident_is_overdue(incident, now=timezone.now()),
        "can_file": decide(request.user, Action.FILE_ROOT_CAUSE, model=model).allowed
        and incident.status == Incident.Status.OPEN,
        "can_review": decide(request.user, Action.ACCEPT_ROOT_CAUSE).allowed,
        "can_reinitiate": model is not None and incident.kind == Incident.Kind.ROLLBACK
        and incident.status == Incident.Status.RESOLVED
        and decide(request.user, Action.APPROVE_REINITIATION, model=model).allowed
        and not ReinitiationApproval.objects.filter(incident=incident).exists(),
        "reinitiation": ReinitiationApproval.objects.filter(incident=incident).first(),
        "filed": RootCauseReport.Status.FILED,
        "escalations": list(rootcause.escalations_for(version=incident.canary.version)) if incident.canary else [],
        "can_resolve_escalation": decide(request.user, Action.RESOLVE_ESCALATION).allowed,
    })


# --- threshold changes ----------------------------------------------------------------------------


def _threshold_rows(current: dict[str, Any], proposed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from monitoring.thresholds import DEFAULT_THRESHOLDS

    rows = [
        {"name": f"{section}.{key}", "current": current.get(section, {}).get(key),
         "proposed": (proposed or {}).get(section, {}).get(key),
         "integer": isinstance(default, int)}
        for section, keys in DEFAULT_THRESHOLDS.items() for key, default in keys.items()
    ]
    for row in rows:
        row["value"] = row["current"] if row["proposed"] is None else row["proposed"]
    return rows


def _proposed_from(post: Any) -> tuple[dict[str, dict[str, float | int]], dict[str, list[str]]]:
    from monitoring.thresholds import DEFAULT_THRESHOLDS

    proposed: dict[str, dict[str, float | int]] = {}
    errors: dict[str, list[str]] = {}
    for section, keys in DEFAULT_THRESHOLDS.items():
        for key, default in keys.items():
            name, raw = f"{section}.{key}", post.get(f"{section}.{key}", "").strip()
            try:
                proposed.setdefault(section, {})[key] = int(raw) if isinstance(default, int) else float(raw)
            except ValueError:
                errors[name] = ["a number is needed"]
    return proposed, errors


def _changed(change: ThresholdChangeRequest) -> list[dict[str, Any]]:
    return [row for row in _threshold_rows(change.current, change.proposed) if row["current"] != row["proposed"]]


@login_required
@require_http_methods(["GET", "POST"])
def threshold_changes(request: HttpRequest) -> HttpResponse:
    """Model owners request a change of a running canary's frozen thresholds (the form starts
    from them); AI Governance and MRM each approve it; it applies at the canary's next stage."""
    require_page(request.user, Action.VIEW)
    from releases.models import Canary

    active = [c for c in Canary.objects.filter(state__in=Canary.ACTIVE_STATES).select_related("model", "version")
              .order_by("-initiated_at")[:200]
              if decide(request.user, Action.REQUEST_THRESHOLD_CHANGE, model=c.model).allowed]
    raw_canary = request.POST.get("canary", "") if request.method == "POST" else request.GET.get("canary", "")
    selected = next((c for c in active if str(c.pk) == raw_canary), None)
    errors: dict[str, list[str]] = {}
    posted: dict[str, Any] | None = None
    reason = ""
    if request.method == "POST":
        verb = request.POST.get("verb", "")
        try:
            if verb == "request":
                reason = request.POST.get("reason", "")
                posted, errors = _proposed_from(request.POST)
                if selected is None:
                    errors["canary"] = ["choose a running canary of a model you own"]
                if not errors:
                    tc.threshold_change_request(actor=request.user, canary_id=selected.pk, proposed=posted,
                                                reason=reason)
                    messages.success(request, f"Threshold change requested for canary #{selected.pk}.")
                    return redirect("evidence:threshold-changes")
            elif verb in ("approve", "reject"):
                change_id = request.POST.get("change", "")
                tc.threshold_change_review(actor=request.user, request_id=int(change_id) if change_id.isdigit() else 0,
                                           approve=verb == "approve", note=request.POST.get("note", ""))
                messages.success(request, "Threshold change approved." if verb == "approve"
                                 else "Threshold change rejected.")
                return redirect("evidence:threshold-changes")
            else:
                raise Http404("unknown action")
        except DomainError as exc:
            errors = exc.errors or {"__all__": [exc.detail]}
    can_review = decide(request.user, Action.REVIEW_THRESHOLD_CHANGE).allowed
    changes = ThresholdChangeRequest.objects.select_related(
        "canary__model", "canary__version", "requested_by", "governance_by", "mrm_by")[:100]
    rows = [{"change": c, "changed": _changed(c),
             "can_review": can_review and c.status == ThresholdChangeRequest.Status.PENDING
             and request.user.pk not in (c.requested_by_id, c.governance_by_id, c.mrm_by_id)}
            for c in changes]
    context = {
        "rows": rows, "active": active, "selected": selected, "errors": errors, "reason": reason,
        "fields": _threshold_rows(selected.thresholds, posted) if selected else [],
    }
    return _render(request, "governance/threshold_changes.html", "governance/partials/_threshold_form.html", context)


# --- MRM register ---------------------------------------------------------------------------------


def _register_filters(request: HttpRequest) -> dict[str, Any]:
    return {
        "model": request.GET.get("model", "").strip()[:64],
        "risk_tier": request.GET.get("risk_tier", "")[:10],
        "outcome": request.GET.get("outcome", "")[:10],
        "since": _day(request.GET.get("since", "")),
        "until": _day(request.GET.get("until", ""), end=True),
    }


@login_required
@require_GET
def mrm_register(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    filters = _register_filters(request)
    entries = register_entries(**filters)
    return _render(request, "governance/mrm_register.html", "governance/partials/_register_table.html",
                   {"entries": entries, "filters": filters, "raw": request.GET, "query": request.GET.urlencode()})


@login_required
@require_GET
def mrm_register_csv(request: HttpRequest) -> StreamingHttpResponse:
    require_page(request.user, Action.EXPORT_EVIDENCE, model=None)
    response = StreamingHttpResponse(register_csv(register_entries(**_register_filters(request))),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="mrm-register.csv"'
    return response


# --- evidence export ------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def evidence_page(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    from releases.models import AIModel, Canary

    model_name = request.GET.get("model", "").strip()[:64]
    canaries = Canary.objects.select_related("model", "version").prefetch_related("certificates").order_by(
        "-initiated_at")
    if model_name:
        canaries = canaries.filter(model__name=model_name)
    errors: list[str] = []
    if request.method == "POST":
        scope = request.POST.get("scope", "")
        try:
            export = evidence_export_request(
                actor=request.user, scope=scope,
                canary_id=int(request.POST["canary"]) if request.POST.get("canary", "").isdigit() else None,
                model_name=request.POST.get("model", ""), since=_day(request.POST.get("since", "")),
                until=_day(request.POST.get("until", ""), end=True),
            )
            return redirect(f"{request.path}?export={export.pk}")
        except DomainError as exc:
            errors = [exc.detail]
    export = None
    if request.GET.get("export", "").isdigit():
        export = EvidenceExport.objects.filter(pk=int(request.GET["export"]), requested_by=request.user).first()
    return render(request, "governance/evidence.html", {
        "models": AIModel.objects.order_by("name"), "model_name": model_name, "canaries": canaries[:100],
        "export": export, "errors": errors,
        "recent": EvidenceExport.objects.filter(requested_by=request.user)[:10],
    })


@login_required
@require_GET
def evidence_export_progress(request: HttpRequest, export_id: int) -> HttpResponse:
    export = get_object_or_404(EvidenceExport, pk=export_id, requested_by=request.user)
    response = render(request, "governance/partials/_export_progress.html", {"export": export})
    if export.status in (EvidenceExport.Status.DONE, EvidenceExport.Status.FAILED):
        response.status_code = 286  # htmx: stop polling
    return response


@login_required
@require_GET
def evidence_export_download(request: HttpRequest, export_id: int) -> FileResponse:
    export = get_object_or_404(EvidenceExport, pk=export_id, requested_by=request.user,
                               status=EvidenceExport.Status.DONE)
    return FileResponse(open(export.path, "rb"), as_attachment=True,  # noqa: SIM115 - FileResponse closes it
                        filename=f"canaryhub-evidence-{export.pk}.zip", content_type="application/zip")


urlpatterns = [
    path("certificates/", certificate_queue, name="certificate-queue"),
    path("certificates/canary/<int:canary_id>/decide/", certificate_decide_view, name="certificate-decide"),
    path("certificates/<uuid:certificate_id>/", certificate_detail, name="certificate-detail"),
    path("certificates/<uuid:certificate_id>/pdf/", certificate_pdf, name="certificate-pdf"),
    path("verify/<uuid:certificate_id>/", certificate_verify_page, name="certificate-verify-page"),
    path("incidents/", incident_list, name="incident-list"),
    path("incidents/<int:incident_id>/", incident_detail, name="incident-detail"),
    path("threshold-changes/", threshold_changes, name="threshold-changes"),
    path("register/", mrm_register, name="mrm-register"),
    path("register.csv", mrm_register_csv, name="mrm-register-csv"),
    path("evidence/", evidence_page, name="evidence"),
    path("evidence/exports/<int:export_id>/progress/", evidence_export_progress, name="export-progress"),
    path("evidence/exports/<int:export_id>/download/", evidence_export_download, name="export-download"),
]
