"""HTML views of the audit trail: every event, a readable line each, paged by sequence number with
a live filter, and a chain verification anyone allowed VERIFY_AUDIT can run."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from canaryhub.web import is_fragment_request, render_page, vary_on_htmx
from governance.access.permissions import Action, require_page
from governance.audit.presenters import event_links, event_summary
from governance.audit.selectors import audit_events, audit_page
from governance.audit.services import ChainVerification, audit_verify

PAGE_SIZE = 50


def _require_audit_access(user: Any) -> None:
    require_page(user, Action.VERIFY_AUDIT)


def _filters(request: HttpRequest) -> dict[str, str]:
    return {
        "action": request.GET.get("action", "").strip()[:80],
        "object_ref": request.GET.get("object", "").strip()[:200],
        "internal": "1" if request.GET.get("internal") == "1" else "",
    }


def _cursor(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "").strip()
    return int(value) if value.isdigit() and len(value) <= 18 else None


def _page_url(filters: dict[str, str], **cursor: int) -> str:
    query = {k: v for k, v in {"action": filters["action"], "object": filters["object_ref"],
                               "internal": filters["internal"], **cursor}.items() if v not in ("", None)}
    return f"{reverse('governance:audit-list')}?{urlencode(query)}" if query else reverse("governance:audit-list")


def _audit_context(request: HttpRequest, verification: ChainVerification | None = None) -> dict[str, Any]:
    filters = _filters(request)
    qs = audit_events(action=filters["action"], object_ref=filters["object_ref"],
                      include_internal=bool(filters["internal"]))
    events, has_older, has_newer = audit_page(qs, before=_cursor(request, "before"), after=_cursor(request, "after"),
                                              size=PAGE_SIZE)
    return {
        "filters": filters,
        "rows": [
            {"event": e, "summary": event_summary(e), "links": event_links(e),
             "payload": json.dumps(e.payload, indent=2, sort_keys=True, ensure_ascii=False)}
            for e in events
        ],
        "older_url": _page_url(filters, before=events[-1].seq) if has_older else "",
        "newer_url": _page_url(filters, after=events[0].seq) if has_newer else "",
        "newest_url": _page_url(filters) if has_newer else "",
        "page_size": PAGE_SIZE,
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
