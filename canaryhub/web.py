"""Small pieces every HTML view shares: htmx's fragment test, the one `Vary: HX-Request`, the
page-or-fragment render, and a service's refusal put on the form that asked for it. The access
check of a page is governance.access.permissions.require_page."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from canaryhub.errors import NotFound, ValidationFailed


def is_fragment_request(request: HttpRequest) -> bool:
    """An htmx request for a fragment. htmx asks for the whole page again when it restores
    history it has no snapshot of, so that one gets the page."""
    htmx = request.htmx  # type: ignore[attr-defined]
    return bool(htmx) and not htmx.history_restore_request


def vary_on_htmx(response: HttpResponse) -> HttpResponse:
    """The same URL answers with a fragment or a page: caches must keep them apart."""
    patch_vary_headers(response, ["HX-Request"])
    return response


def render_page(
    request: HttpRequest, page: str, partial: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """The page, or only its `partial` for an htmx fragment request (one view serves both)."""
    template = partial if is_fragment_request(request) else page
    return vary_on_htmx(render(request, template, context, status=status))


def form_refusal(form: Any, exc: Any) -> int:
    """Put a service's refusal on the form that asked for it and return the status to render it
    with: field errors for invalid input, a form-level message for a conflict or a refusal.
    An unknown object is a 404 page."""
    if isinstance(exc, NotFound):
        raise Http404(exc.detail) from exc
    if isinstance(exc, ValidationFailed):
        form.add_service_errors(exc)
        return 400
    form.add_error(None, exc.detail)
    return exc.status
