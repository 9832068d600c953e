"""HTML views of the audit trail: recent events with a live filter, and a chain verification
anyone allowed VERIFY_AUDIT can run."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from canaryhub.web import is_fragment_request, render_page, vary_on_htmx
from governance.access.permissions import Action, require_page
from governance.audit.selectors import audit_events
from governance.audit.services import ChainVerification, audit_verify

# The page is a window on recent history; the API and the evidence export serve the rest.
RECENT_EVENTS = 100


def _require_audit_access(user: Any) -> None:
    require_page(user, Action.VERIFY_AUDIT)


def _filters(request: HttpRequest) -> dict[str, str]:
    return {
        "action": request.GET.get("action", "").strip()[:80],
        "object_ref": request.GET.get("object", "").strip()[:200],
    }


def _audit_context(request: HttpRequest, verification: ChainVerification | None = None) -> dict[str, Any]:
    filters = _filters(request)
    events = list(audit_events(**filters)[:RECENT_EVENTS])
    return {
        "filters": filters,
        "rows": [
            {"event": e, "payload": json.dumps(e.payload, indent=2, sort_keys=True, ensure_ascii=False)}
            for e in events
        ],
        "limit": RECENT_EVENTS,
        "verification": verification,
    }


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    _require_audit_access(request.user)
    return render_page(request, "governance/audit.html", "governance/partials/_audit_table.html",
                       _audit_context(request))


@login_required
@require_GET
def audit_verify_view(request: HttpRequest) -> HttpResponse:
    """A read: it recomputes every hash and changes nothing, hence GET."""
    _require_audit_access(request.user)
    verification = audit_verify()
    if is_fragment_request(request):
        return vary_on_htmx(render(request, "governance/partials/_verify_result.html", {"verification": verification}))
    return vary_on_htmx(render(request, "governance/audit.html", _audit_context(request, verification)))
