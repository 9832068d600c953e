from __future__ import annotations

from django import template

from monitoring.notifications import selectors

register = template.Library()


@register.simple_tag(takes_context=True)
def unread_notifications(context: template.Context) -> int:
    """`{% unread_notifications as unread %}`: the signed-in user's unread feed items."""
    user = context["request"].user
    return selectors.unread_count(user) if user.is_authenticated else 0
