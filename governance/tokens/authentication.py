from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from governance.access.permissions import Principal
from governance.tokens.services import token_authenticate


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer chk_…`. `request.auth` becomes the Principal (user + scope)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Principal] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        if not raw or " " in raw:
            raise exceptions.AuthenticationFailed("malformed bearer token")
        principal = token_authenticate(raw)
        if principal is None:
            raise exceptions.AuthenticationFailed("unknown or revoked token")
        return principal.user, principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


try:
    from drf_spectacular.extensions import OpenApiAuthenticationExtension
except ImportError:  # pragma: no cover - drf-spectacular is a hard dependency
    pass
else:

    class BearerTokenScheme(OpenApiAuthenticationExtension):
        target_class = BearerTokenAuthentication
        name = "bearerToken"

        def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
            return {"type": "http", "scheme": "bearer", "description": "CanaryHub API token (chk_…)"}
