"""Template helpers of the canary pages and of the navigation every page shares (base.html
has no view of its own to compute the inbox count or the current section)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template
from django.db.models import QuerySet
from django.utils import timezone

from releases.canaries import history, presenters
from releases.canaries.models import Canary
from releases.register.models import AIModel, ModelVersion

register = template.Library()

# The releases app serves both the register and the canary pages; these URL names are the
# canary side of it, for the navigation's "you are here".
_CANARY_URLS = frozenset(
    {"canary-list", "canary-detail", "canary-sign", "canary-rollback", "canary-abort", "canary-pushes"}
)
_ROUTER_URLS = frozenset({"router-list", "router-edit", "router-disable"})


@register.simple_tag(takes_context=True)
def nav_section(context: template.Context) -> str:
    """`{% nav_section as section %}`: register, canaries, fleet, inbox, routers or audit."""
    request = context.get("request")
    match = getattr(request, "resolver_match", None)
    if match is None:
        return ""
    if match.app_name == "governance":
        return "audit"
    if match.url_name == "inbox":
        return "inbox"
    if match.url_name == "fleet":
        return "fleet"
    if match.url_name in _CANARY_URLS:
        return "canaries"
    if match.url_name in _ROUTER_URLS:
        return "routers"
    return "register" if match.app_name == "releases" else ""


@register.simple_tag(takes_context=True)
def inbox_count(context: template.Context) -> int | None:
    """`{% inbox_count as waiting %}`: steps waiting for the user's signature; None when the
    user signs nothing (then there is no inbox to show)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return presenters.inbox_count(user)


@register.simple_tag
def canaries_of(model: AIModel | None = None, version: ModelVersion | None = None) -> QuerySet[Canary]:
    """`{% canaries_of model=model as canaries %}`, newest first. The calling page has already
    decided that the user may see the model."""
    qs = Canary.objects.select_related("version", "baseline", "initiated_by").order_by("-initiated_at", "-id")
    if model is not None:
        qs = qs.filter(model=model)
    if version is not None:
        qs = qs.filter(version=version)
    return qs


@register.simple_tag
def canary_history(canaries: Any) -> list[Any]:
    """`{% canary_history canaries as rows %}`: outcome, time per stage and deciding metric of each."""
    return history.canary_history(list(canaries), now=timezone.now())


@register.filter
def duration(value: timedelta | None) -> str:
    """48 h, 2 h 24 min, 4 min 10 s: minutes and seconds matter under a demo clock."""
    if value is None:
        return ""
    seconds = max(int(value.total_seconds() + 0.999), 0)
    if seconds == 0:
        return "none"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    hours += days * 24
    parts = []
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs and not hours:
        parts.append(f"{secs} s")
    return " ".join(parts)


@register.filter
def number(value: Any) -> str:
    """A gate's value or limit: as few digits as say it (0.1, 1.2, 312.5), — when unmeasured."""
    if value is None or isinstance(value, bool):
        return "—"
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if abs(number) >= 100:
        # Latencies in ms: no exponent notation, one decimal at most.
        return f"{number:.1f}".rstrip("0").rstrip(".")
    return f"{number:.4g}"


@register.filter
def percent(value: float | None) -> str:
    """A fraction as a percent, 0.0012 → 0.12%; — when unknown."""
    return "—" if value is None else f"{value * 100:.3g}%"


@register.filter
def ms(value: float | None) -> str:
    """Seconds as milliseconds, 0.2 → 200 ms; — when unknown."""
    return "—" if value is None else f"{value * 1000:.0f} ms"
