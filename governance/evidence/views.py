"""HTML views of the evidence: the MRM register (and its CSV), the evidence page where bundles
are found, downloaded and exported in the background with a progress bar, and the public page of
the server's signing keys with the stand-alone verifier to download."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET, require_http_methods

from canaryhub.errors import DomainError
from canaryhub.web import render_page
from governance.access.permissions import Action, models_where, require_page
from governance.evidence.models import EvidenceExport
from governance.evidence.selectors import register_csv, register_entries, signing_keys_published, verifier_script
from governance.evidence.services import evidence_export_request
from releases.canaries.models import Canary
from releases.register.models import AIModel


def _day(value: str, *, end: bool = False) -> datetime | None:
    parsed = parse_date(value or "")
    if parsed is None:
        return None
    return datetime.combine(parsed, time.max if end else time.min, tzinfo=timezone.get_current_timezone())


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
    return render_page(request, "governance/mrm_register.html", "governance/partials/_register_table.html",
                   {"entries": entries, "filters": filters, "raw": request.GET, "query": request.GET.urlencode()})


@login_required
@require_GET
def mrm_register_csv(request: HttpRequest) -> StreamingHttpResponse:
    require_page(request.user, Action.EXPORT_EVIDENCE)
    # The export holds only the models whose evidence this person may export.
    mine = models_where(request.user, Action.EXPORT_EVIDENCE)
    response = StreamingHttpResponse(register_csv(register_entries(**_register_filters(request), models=mine)),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="mrm-register.csv"'
    return response


# --- evidence export ------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def evidence_page(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    model_name = request.GET.get("model", "").strip()[:64]
    canaries = Canary.objects.select_related("model", "version").prefetch_related("certificates").order_by(
        "-initiated_at")
    if model_name:
        canaries = canaries.filter(model__name=model_name)
    errors: list[str] = []
    if request.method == "POST":
        require_page(request.user, Action.EXPORT_EVIDENCE)  # before the form is read
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
    # The list of recent exports below shows the same status: its row is swapped out of band.
    response = render(request, "governance/partials/_export_progress.html", {"export": export, "oob": True})
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



# --- the public signing keys and the verifier ---------------------------------------------------------


@require_GET
def signing_keys_page(request: HttpRequest) -> HttpResponse:
    """Open to anyone: the public keys that sign bundles, chain heads and certificates, and the
    stand-alone verifier with its SHA-256."""
    _, script_sha256 = verifier_script()
    return render(request, "governance/signing_keys.html", {
        "keys": signing_keys_published(), "script_sha256": script_sha256,
    })


@require_GET
def verifier_download(request: HttpRequest) -> HttpResponse:
    data, script_sha256 = verifier_script()
    response = HttpResponse(data, content_type="text/x-python; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="verify_bundle.py"'
    response["X-Content-SHA256"] = script_sha256
    return response
