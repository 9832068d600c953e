"""The `/tokens/` page: a person creates personal API tokens (the secret is shown once, on the
answer to the form, never stored or shown again) and revokes their own; a platform engineer
sees and revokes every token. Rules: governance.tokens.services."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from canaryhub.errors import DomainError, NotFound, PermissionRefused
from governance.tokens.services import (
    MAX_ACTIVE_PERSONAL_TOKENS,
    may_manage_all_tokens,
    token_create_personal,
    token_require_creator,
    token_revoke_as,
    tokens_visible,
)


def _page(request: HttpRequest, *, created: Any = None, secret: str = "", errors: list[str] | None = None,
          name: str = "", status: int = 200) -> HttpResponse:
    try:
        tokens = list(tokens_visible(request.user))
    except PermissionRefused as exc:
        raise PermissionDenied(exc.detail) from exc
    response = render(request, "governance/tokens.html", {
        "own": [t for t in tokens if t.user_id == request.user.pk],
        "others": [t for t in tokens if t.user_id != request.user.pk],
        "manages_all": may_manage_all_tokens(request.user),
        "created": created, "secret": secret, "errors": errors or [], "name": name,
        "max_active": MAX_ACTIVE_PERSONAL_TOKENS,
    }, status=status)
    return response


@login_required
@require_GET
def tokens_page(request: HttpRequest) -> HttpResponse:
    return _page(request)


@never_cache
@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    try:
        token_require_creator(request.user)  # before the form is read
    except PermissionRefused as exc:
        raise PermissionDenied(exc.detail) from exc
    name = request.POST.get("name", "")[:200]
    try:
        token, secret = token_create_personal(actor=request.user, name=name)
    except DomainError as exc:
        return _page(request, errors=[exc.detail], name=name, status=400 if exc.status == 400 else 409)
    # The secret is rendered into this answer only (not a message, not the session, not a redirect).
    return _page(request, created=token, secret=secret, status=201)


@login_required
@require_POST
def token_revoke(request: HttpRequest, prefix: str) -> HttpResponse:
    try:
        token = token_revoke_as(actor=request.user, prefix=prefix, reason=request.POST.get("reason", "")[:500])
    except PermissionRefused as exc:
        raise PermissionDenied(exc.detail) from exc
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    except DomainError as exc:
        return _page(request, errors=[exc.detail], status=exc.status)
    messages.success(request, f"Token {token.prefix} ({token.name}) of {token.user.get_username()} revoked.")
    return redirect("tokens:page")
