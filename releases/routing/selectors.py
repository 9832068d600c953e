"""Reads of the router registry (a canary's pushes: releases.canaries.selectors.canary_pushes).
Everyone who may view CanaryHub may read them; the secret never leaves the model (pages show
only whether it is set)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from canaryhub.errors import NotFound
from governance.access.permissions import Action, require
from releases.routing.models import RouterConfig


def router_config_list(*, actor: Any) -> QuerySet[RouterConfig]:
    require(actor, Action.VIEW)
    return RouterConfig.objects.select_related("created_by")


def router_config_get(*, actor: Any, name: str) -> RouterConfig:
    require(actor, Action.VIEW)
    config = RouterConfig.objects.filter(name=name).first()
    if config is None:
        raise NotFound(f"no router config named {name!r}")
    return config
