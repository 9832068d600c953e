"""API tokens: created shown-once, stored as a SHA-256 of the secret, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from canaryhub.errors import Conflict, NotFound, ValidationFailed
from governance.access.permissions import Principal, Role, roles_of
from governance.audit.services import audit_append
from governance.tokens.models import ApiToken

TOKEN_PREFIX = "chk"
_LAST_USED_RESOLUTION = timedelta(seconds=60)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_create(
    *, actor: Any, user: Any, name: str, scope: list[Any] | None = None, purpose: str = ApiToken.Purpose.CI,
) -> tuple[ApiToken, str]:
    """Create a token for `user` and return it with its secret, which is never stored.

    A service account's token must name the models it may act on and its purpose (`ci`, or
    `observations` for a token that only pushes metric windows); a person's token acts with
    that person's own rights and takes no scope."""
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ValidationFailed.field("name", "a name of 1–100 characters is required")
    if purpose not in ApiToken.Purpose.values:
        raise ValidationFailed.field("purpose", f"must be one of {', '.join(ApiToken.Purpose.values)}")
    is_service = Role.SERVICE_ACCOUNT in roles_of(user)
    # The register's model class, through the scope relation: credentials sit below the register.
    models = list(ApiToken.scope.field.related_model.objects.filter(name__in=scope)) if scope else []
    if scope:
        missing = sorted(set(scope) - {m.name for m in models})
        if missing:
            raise ValidationFailed.field("models", f"unknown model(s): {', '.join(missing)}")
    if is_service and not models:
        raise ValidationFailed.field("models", "a service account's token must be scoped to at least one model")
    if not is_service and models:
        raise ValidationFailed.field("models", "a personal token acts with its user's rights and takes no scope")
    prefix = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=prefix, key_hash=_hash(secret),
            purpose=purpose if is_service else ApiToken.Purpose.CI,
        )
        token.scope.set(models)
        audit_append(
            actor=actor, action="token.created", object_type="api_token", object_id=prefix,
            payload={"user": user.get_username(), "name": name, "scope": sorted(m.name for m in models),
                     "service_account": is_service, "purpose": token.purpose if is_service else None},
        )
    return token, secret


def token_revoke(*, actor: Any, prefix: str) -> ApiToken:
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(prefix=prefix).first()
        if token is None:
            raise NotFound(f"no token {prefix!r}")
        if token.revoked_at is not None:
            raise Conflict(f"token {prefix} was already revoked at {token.revoked_at.isoformat()}")
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_append(
            actor=actor, action="token.revoked", object_type="api_token", object_id=prefix,
            payload={"user": token.user.get_username(), "name": token.name},
        )
    return token


def token_authenticate(raw: str) -> Principal | None:
    """The principal a presented token stands for, or None if it is unknown or revoked."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1], revoked_at__isnull=True).first()
    if token is None or not hmac.compare_digest(token.key_hash, _hash(raw)) or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        # At most one write a minute per token: the hot path stays read-only.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    is_service = Role.SERVICE_ACCOUNT in roles_of(token.user)
    scope = frozenset(token.scope.values_list("pk", flat=True)) if is_service else None
    return Principal(
        user=token.user, scope=scope, token_prefix=token.prefix, token_purpose=token.purpose if is_service else None
    )
