"""HTML views of completion certificates: AI Governance's review queue and decision, the
certificate page and PDF, and the public verification page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from canaryhub.errors import DomainError
from governance.access.permissions import Action, decide, require_page
from governance.audit.services import audit_verify
from governance.certificates import selectors, services
from governance.certificates.models import Certificate
from governance.reports.pdf import render_pdf


@login_required
@require_GET
def certificate_queue(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    # The chain is verified once for the page, not once per canary listed, and from its last
    # signed checkpoint, not from the first event.
    chain_ok = audit_verify(from_checkpoint=True).ok
    rows = [{"canary": c, "checklist": services.certificate_checklist(c, chain_ok=chain_ok),
             "returned": [x for x in c.certificates.all() if x.status == Certificate.Status.RETURNED]}
            for c in selectors.certificate_review_queue()[:50]]
    issued = Certificate.objects.filter(status=Certificate.Status.ISSUED).select_related(
        "canary__model", "canary__version")[:50]
    return render(request, "governance/certificate_queue.html", {
        "rows": rows, "issued": issued, "can_issue": decide(request.user, Action.ISSUE_CERTIFICATE).allowed,
    })


@login_required
@require_POST
def certificate_decide_view(request: HttpRequest, canary_id: int) -> HttpResponse:
    require_page(request.user, Action.ISSUE_CERTIFICATE)  # before the form is read
    issue = request.POST.get("decision") == "issue"
    try:
        cert = services.certificate_decide(actor=request.user, canary_id=canary_id, issue=issue,
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
    response = HttpResponse(render_pdf(cert), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="certificate-{cert.pk}.pdf"'
    return response


@require_GET
def certificate_verify_page(request: HttpRequest, certificate_id: str) -> HttpResponse:
    """Open to anyone holding the certificate's id (a UUID, not guessable): it says whether the
    certificate is genuine and unaltered, and shows what it states."""
    try:
        result = services.certificate_verify(certificate_id=certificate_id)
    except (DomainError, ValueError) as exc:
        raise Http404("no such certificate") from exc
    cert = Certificate.objects.get(pk=certificate_id)
    return render(request, "governance/certificate_verify.html", {"cert": cert, "result": result})
