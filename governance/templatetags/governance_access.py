"""Template access to the one permissions module, so templates shared by every page (the
navigation in base.html) ask `decide` instead of re-stating a rule with role names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template

from governance.access import labels
from governance.access.permissions import Action, Role, decide

register = template.Library()


@register.simple_tag(takes_context=True)
def may(context: template.Context, action: str, model: Any = None) -> bool:
    """`{% may "verify_audit" as can_audit %}`: whether the request's user may take `action`."""
    request = context.get("request")
    if request is None:
        return False
    return decide(getattr(request, "user", None), Action(action), model=model).allowed


@register.filter
def role_labels(roles: Iterable[Role]) -> str:
    """`model_owner, platform` as `Model owner, Platform` (governance.access.labels)."""
    return ", ".join(labels.role_labels(roles))


@register.filter
def role_label(role: str) -> str:
    """One role value in words: `mrm` as `Model risk (MRM)`."""
    return labels.role_label(role)
