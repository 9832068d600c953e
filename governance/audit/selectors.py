from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from governance.audit.models import AuditEvent

# The prefix of the field-level change history django-auditlog writes (governance.audit.services).
INTERNAL_PREFIX = "field_changes."


def audit_page(
    qs: QuerySet[AuditEvent], *, before: int | None = None, after: int | None = None, size: int = 50,
) -> tuple[list[AuditEvent], bool, bool]:
    """One page of `qs` by sequence number, newest first: the events older than `before`, or
    newer than `after`, or the newest. Returns the events and whether older and newer ones exist
    (a cursor, so a page stays put while new events arrive)."""
    if after is not None:
        events = list(qs.filter(seq__gt=after).order_by("seq")[: size + 1])
        has_newer = len(events) > size
        events = events[:size][::-1]
        has_older = bool(events) and qs.filter(seq__lt=events[-1].seq).exists()
        return events, has_older, has_newer
    if before is not None:
        qs_page = qs.filter(seq__lt=before)
    else:
        qs_page = qs
    events = list(qs_page.order_by("-seq")[: size + 1])
    has_older = len(events) > size
    events = events[:size]
    has_newer = before is not None and bool(events) and qs.filter(seq__gt=events[0].seq).exists()
    return events, has_older, has_newer


def audit_events(
    *, object_ref: str = "", actor: str = "", action: str = "", since: datetime | None = None,
    include_internal: bool = True,
) -> QuerySet[AuditEvent]:
    """Audit events, newest first. `object_ref` is `type` or `type:id`; `action` matches a
    prefix, so `model.` finds every model event. `include_internal=False` leaves out the
    field-level change history (`field_changes.*`) unless `action` asks for it by name."""
    qs = AuditEvent.objects.all()
    if not include_internal and not action.startswith(INTERNAL_PREFIX[:-1]):
        qs = qs.exclude(action__startswith=INTERNAL_PREFIX)
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
