"""API tokens: created shown-once, stored as a SHA-256 of the secret, revocable.

Who manages which tokens (the API's `/tokens/` and the `/tokens/` page ask these functions):

- a person with a CanaryHub role creates *personal* tokens for themselves, in a signed-in session
  only: a token never creates a token, so a stolen token cannot outlive its revocation through
  a successor. A personal token acts with its user's own rights, never more (no scope or purpose
  widens it; human acts such as signatures still ask for the password), so it takes neither;
- a person lists and revokes their own tokens; a platform engineer (`manage_tokens`) lists and
  revokes anyone's, a service account's included;
- a service account's token (scoped to models, for `ci` or `observations`) is created by the
  deployment (`manage.py create_token --service-account`); a service account manages no tokens.

Every creation and revocation is an audit event; the secret is in none of them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance.access.permissions import Action, Principal, Role, as_principal, decide, roles_of
from governance.audit.services import audit_append
from governance.tokens.models import ApiToken

TOKEN_PREFIX = "chk"
_LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_ACTIVE_PERSONAL_TOKENS = 20


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


def token_revoke(*, actor: Any, prefix: str, reason: str = "") -> ApiToken:
    """Revoke the token with this prefix (the command's and the managers' common step: who may
    revoke it is asked first, by `token_get_revocable`)."""
    if not isinstance(reason, str) or len(reason) > 500:
        raise ValidationFailed.field("reason", "at most 500 characters")
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
            payload={"user": token.user.get_username(), "name": token.name,
                     **({"reason": reason} if reason else {})},
        )
    return token


def _person(actor: Any) -> Principal:
    """The acting person, refused (403) when it is a service account or has no CanaryHub role."""
    principal = as_principal(actor)
    roles = roles_of(principal.user)
    if Role.SERVICE_ACCOUNT in roles:
        raise PermissionRefused("a service account manages no tokens: a platform engineer does")
    if not roles:
        raise PermissionRefused("you have no CanaryHub role")
    return principal


def may_manage_all_tokens(actor: Any) -> bool:
    principal = as_principal(actor)
    return not principal.is_service_account and decide(principal, Action.MANAGE_TOKENS).allowed


def tokens_visible(actor: Any) -> Any:
    """The tokens the person may see: their own; every token for a platform engineer. Newest first."""
    principal = _person(actor)
    tokens = ApiToken.objects.select_related("user").prefetch_related("scope").order_by("-created_at", "-pk")
    return tokens if may_manage_all_tokens(principal) else tokens.filter(user=principal.user)


def token_require_creator(actor: Any) -> Principal:
    """The person who may create a personal token now, or PermissionRefused: a service account,
    a person without a role, and any request that came in with a token are refused."""
    principal = _person(actor)
    if principal.token_prefix is not None:
        raise PermissionRefused("a token cannot create tokens: sign in to create one")
    return principal


def token_create_personal(*, actor: Any, name: str) -> tuple[ApiToken, str]:
    """A personal token for the acting person, with their own rights; the secret is returned
    once. Refused to a service account, to a person without a role, and to any request that
    came in with a token (a token never creates a token)."""
    principal = token_require_creator(actor)
    active = ApiToken.objects.filter(user=principal.user, revoked_at__isnull=True).count()
    if active >= MAX_ACTIVE_PERSONAL_TOKENS:
        raise Conflict(f"you already have {active} active tokens: revoke one you no longer use first")
    if isinstance(name, str):
        name = name.strip()
    return token_create(actor=principal.user, user=principal.user, name=name)


def token_get_revocable(*, actor: Any, prefix: str) -> ApiToken:
    """The token the person may revoke: their own, or any for a platform engineer. Someone
    else's token is unknown (404) to the others, as a token that does not exist."""
    principal = _person(actor)
    token = ApiToken.objects.select_related("user").filter(prefix=str(prefix)[:16]).first()
    if token is None or (token.user_id != principal.user.pk and not may_manage_all_tokens(principal)):
        raise NotFound(f"no token {str(prefix)[:16]!r}")
    return token


def token_revoke_as(*, actor: Any, prefix: str, reason: str = "") -> ApiToken:
    """Revoke a token the person may revoke (`token_get_revocable`), audited as theirs."""
    principal = _person(actor)
    token_get_revocable(actor=principal, prefix=prefix)
    return token_revoke(actor=principal.user, prefix=prefix, reason=reason)


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
