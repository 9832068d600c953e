"""Links to the objects people refer to by number: `{{ text|link_numbers }}` links every
"canary #N" and "incident #N" in a plain text (governance.audit.presenters)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from governance.audit import presenters

register = template.Library()


@register.filter
def link_numbers(text: str) -> SafeString:
    return presenters.link_numbers(text or "")
