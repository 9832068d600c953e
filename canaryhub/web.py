"""Small pieces every HTML view shares: the access check and htmx's fragment test."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from governance.permissions import MODEL_SCOPED, Action, decide


def require_page(user: Any, action: Action, *, model: Any = None) -> None:
    """403 unless governance.permissions allows `action` (on `model`, when given)."""
    decision = decide(user, action, model=model)
    if not decision.allowed:
        if action in MODEL_SCOPED and model is None:
            # Asked about "some model", decide() gives no specific reason; name the refusal.
            raise PermissionDenied(f"your roles may not {action.value.replace('_', ' ')}")
        raise PermissionDenied(decision.reason)


def is_fragment_request(request: HttpRequest) -> bool:
    """An htmx request for a fragment. htmx asks for the whole page again when it restores
    history it has no snapshot of, so that one gets the page."""
    htmx = request.htmx  # type: ignore[attr-defined]
    return bool(htmx) and not htmx.history_restore_request


def form_refusal(form: Any, exc: Any) -> int:
    """Put a service's refusal on the form that asked for it and return the status to render it
    with: field errors for invalid input, a form-level message for a conflict or a refusal.
    An unknown object is a 404 page."""
    from django.http import Http404

    from canaryhub.errors import NotFound, ValidationFailed

    if isinstance(exc, NotFound):
        raise Http404(exc.detail) from exc
    if isinstance(exc, ValidationFailed):
        form.add_service_errors(exc)
        return 400
    form.add_error(None, exc.detail)
    return exc.status
