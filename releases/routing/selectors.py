"""Reads of the router registry (a canary's pushes: releases.canaries.selectors.canary_pushes).
Everyone who may view CanaryHub may read them; the secret never leaves the model (pages show
only whether it is set)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
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


# What the page may show of a kind's server setting: where it sends the split, never a secret.
_SETTING_TARGET = {"file": "path_dir", "nginx": "conf_dir", "webhook": "url"}
_SETTING_SOURCE = {"file": "CANARYHUB_ROUTER_FILE_DIR", "nginx": "CANARYHUB_ROUTER_NGINX",
                   "webhook": "CANARYHUB_ROUTER_WEBHOOK"}


def routers_in_force(*, actor: Any) -> list[dict[str, Any]]:
    """For each router kind a canary can use now: whether an enabled registered config or the
    server's settings (settings.CANARYHUB_ROUTERS, from the environment) decide it, and where it
    sends the split (the target; a webhook's URL without its query)."""
    require(actor, Action.VIEW)
    registered = {c.kind: c for c in RouterConfig.objects.filter(enabled=True)}
    kinds = sorted(set(settings.CANARYHUB_ROUTERS) | set(registered))
    rows = []
    for kind in kinds:
        config = registered.get(kind)
        if config is not None:
            rows.append({"kind": kind, "source": f"registered config {config.name}", "target": config.target,
                         "registered": True})
            continue
        target = str(settings.CANARYHUB_ROUTERS.get(kind, {}).get(_SETTING_TARGET.get(kind, ""), ""))
        rows.append({"kind": kind, "source": f"server settings ({_SETTING_SOURCE.get(kind, 'environment')})",
                     "target": target.split("?", 1)[0] or "—", "registered": False})
    return rows
