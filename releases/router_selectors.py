"""Reads of the router registry and of a canary's pushes. Everyone who may view CanaryHub may
read them; the secret never leaves the model (pages show only whether it is set)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from canaryhub.errors import NotFound
from governance.permissions import Action, require
from releases import canary_selectors
from releases.models import RouterConfig, RouterPush

PUSH_LIMIT = 500


def router_config_list(*, actor: Any) -> QuerySet[RouterConfig]:
    require(actor, Action.VIEW)
    return RouterConfig.objects.select_related("created_by")


def router_config_get(*, actor: Any, name: str) -> RouterConfig:
    require(actor, Action.VIEW)
    config = RouterConfig.objects.filter(name=name).first()
    if config is None:
        raise NotFound(f"no router config named {name!r}")
    return config


def canary_pushes(*, actor: Any, canary_id: int) -> QuerySet[RouterPush]:
    """The canary's pushes, newest first (served by the (canary, -started_at) index). NotFound
    when the canary is outside what the principal may see."""
    require(actor, Action.VIEW)
    canary = canary_selectors.canary_get(actor=actor, canary_id=canary_id)
    return RouterPush.objects.filter(canary=canary).order_by("-started_at", "-id")[:PUSH_LIMIT]
