from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from governance.audit.models import AuditEvent


def audit_events(
    *, object_ref: str = "", actor: str = "", action: str = "", since: datetime | None = None
) -> QuerySet[AuditEvent]:
    """Audit events, newest first. `object_ref` is `type` or `type:id`; `action` matches a
    prefix, so `model.` finds every model event."""
    qs = AuditEvent.objects.all()
    if object_ref:
        object_type, _, object_id = object_ref.partition(":")
        qs = qs.filter(object_type=object_type)
        if object_id:
            qs = qs.filter(object_id=object_id)
    if actor:
        qs = qs.filter(actor_name=actor)
    if action:
        qs = qs.filter(action__startswith=action)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs.order_by("-seq")
