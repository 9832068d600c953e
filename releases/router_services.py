"""Writes to the router registry: a platform engineer registers which data plane a router kind
talks to (releases.tasks.router_for prefers the enabled config of a kind over settings).

As releases.services: access first, validate, change and audit in one transaction. The
signing secret is write-only. It is stored, and handed to the router class to prove the
configuration can be built, but it never reaches an audit payload, a log line or an error
message: those only ever say whether a secret was set.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from canaryhub.errors import NotFound, ValidationFailed
from governance.audit import audit_append
from governance.permissions import Action, as_principal, require
from releases.models import RouterConfig
from releases.routers import RouterError, get_router

logger = logging.getLogger(__name__)

# What the audit trail says instead of the secret.
SECRET_SET = "***set***"
SECRET_UNCHANGED = "unchanged"
SECRET_NONE = "not set"

AUDITED_FIELDS = ("kind", "target", "options", "enabled")
# Keyword arguments that RouterConfig.router_kwargs() fills from `target` and `secret`: options
# must not override them (a secret smuggled in as an option would be audited in clear).
_RESERVED_OPTIONS = frozenset({"path_dir", "conf_dir", "url", "secret"})


def router_config_save(
    *,
    actor: Any,
    kind: str,
    name: str,
    target: str,
    options: dict[str, Any] | None = None,
    secret: str | None = None,
    enabled: bool = True,
) -> RouterConfig:
    """Register a router config, or change the one of that name. A blank `secret` keeps the
    stored one; the configuration must build a router of its kind."""
    require(actor, Action.MANAGE_ROUTERS)
    principal = as_principal(actor)
    options = _options(kind, options)
    with transaction.atomic():
        # The row lock serialises two edits of one config; the enabled-per-kind check below is
        # backed by the one_enabled_router_per_kind constraint for configs of other names.
        config = RouterConfig.objects.select_for_update().filter(name=name).first()
        created = config is None
        if config is None:
            config = RouterConfig(name=name, created_by=principal.user)
        before = {f: getattr(config, f) for f in AUDITED_FIELDS} if not created else {}
        had_secret = bool(config.secret)
        config.kind, config.target, config.options, config.enabled = kind, (target or "").strip(), options, enabled
        if secret:
            config.secret = secret
        _clean(config)
        _check_builds(config)
        if enabled and RouterConfig.objects.filter(kind=kind, enabled=True).exclude(pk=config.pk).exists():
            raise ValidationFailed.field(
                "enabled", f"another {kind} router is enabled; disable it first (a canary names only the kind)"
            )
        try:
            with transaction.atomic():
                config.save()
        except IntegrityError as exc:  # a concurrent save enabled another config of the kind
            raise ValidationFailed.field("enabled", f"another {kind} router is enabled") from exc
        marker = SECRET_SET if secret else (SECRET_UNCHANGED if had_secret else SECRET_NONE)
        if created:
            action = "router.registered"
            payload: dict[str, Any] = {**{f: getattr(config, f) for f in AUDITED_FIELDS}, "secret": marker}
        else:
            action = "router.updated"
            after = {f: getattr(config, f) for f in AUDITED_FIELDS}
            diff = {f: [before[f], after[f]] for f in AUDITED_FIELDS if before[f] != after[f]}
            payload = {"changes": diff, "secret": marker}
        audit_append(actor=principal.user, action=action, object_type="router", object_id=config.name, payload=payload)
    logger.info("%s %s (%s) by %s; secret %s", action, config.name, config.kind, principal.user, marker)
    return config


def router_config_disable(*, actor: Any, name: str) -> RouterConfig:
    """Stop using a config: its kind falls back to settings.CANARYHUB_ROUTERS. Idempotent."""
    require(actor, Action.MANAGE_ROUTERS)
    principal = as_principal(actor)
    with transaction.atomic():
        config = RouterConfig.objects.select_for_update().filter(name=name).first()
        if config is None:
            raise NotFound(f"no router config named {name!r}")
        if not config.enabled:
            return config
        config.enabled = False
        config.save(update_fields=["enabled", "updated_at"])
        audit_append(
            actor=principal.user, action="router.disabled", object_type="router", object_id=config.name,
            payload={"kind": config.kind},
        )
    logger.info("router.disabled %s (%s) by %s", config.name, config.kind, principal.user)
    return config


def _options(kind: str, options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValidationFailed.field("options", "must be a JSON object of the router's keyword arguments")
    reserved = sorted(_RESERVED_OPTIONS & set(options))
    if reserved:
        raise ValidationFailed.field(
            "options", f"{', '.join(reserved)} come from the target and secret fields, not from options"
        )
    if kind == RouterConfig.Kind.FILE and options:
        raise ValidationFailed.field("options", "the file router takes no options")
    return options


def _clean(config: RouterConfig) -> None:
    try:
        # `secret` is excluded so that no validator message can ever quote it.
        config.full_clean(exclude=["created_by", "secret"], validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = {field: [str(m) for m in messages] for field, messages in exc.message_dict.items()}
        raise ValidationFailed("invalid router config", errors=errors) from exc
    if len(config.secret) > RouterConfig._meta.get_field("secret").max_length:
        raise ValidationFailed.field("secret", "is too long (at most 500 characters)")


def _check_builds(config: RouterConfig) -> None:
    """Build the router as router_for will, so that a config which cannot work is refused here
    rather than at the first push of a canary. (The file and nginx routers create their folder.)"""
    try:
        get_router(config.kind, **config.router_kwargs())
    except RouterError as exc:
        raise ValidationFailed.field(_field_of(config, str(exc)), _without_secret(str(exc), config.secret)) from exc
    except (TypeError, ValueError) as exc:
        raise ValidationFailed.field("options", _without_secret(str(exc), config.secret)) from exc


def _field_of(config: RouterConfig, message: str) -> str:
    if "secret" in message:
        return "secret"
    if "bad configuration" in message or (config.kind == RouterConfig.Kind.NGINX and "header" in message):
        return "options"
    return "target"


def _without_secret(message: str, secret: str) -> str:
    # The routers promise not to quote it; this is the belt to their braces.
    return message.replace(secret, "***") if secret else message
