"""The Notifications page: the person's own feed (marked read on request), their preferences
(e-mail on or off, quiet hours), and for platform the outbox with each delivery's status,
attempts and last error, and "retry now"."""

from __future__ import annotations

from datetime import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from canaryhub.errors import DomainError
from canaryhub.web import render_page
from governance.access.permissions import Action, decide, require_page
from monitoring.models import NotificationDelivery
from monitoring.notifications import selectors, services
from monitoring.notifications.messages import render


@login_required
@require_GET
def notification_page(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    items = []
    for delivery in selectors.feed(request.user)[:100]:
        event = delivery.event
        items.append({"delivery": delivery, "event": event, "message": render(
            kind=event.kind, canary_id=event.canary_id, payload=event.payload, base_url=settings.NOTIFY_BASE_URL)})
    is_platform = decide(request.user, Action.MANAGE_NOTIFICATIONS).allowed
    status = request.GET.get("status", "")[:10]
    if status not in NotificationDelivery.Status.values:
        status = ""
    return render_page(request, "monitoring/notifications.html", "monitoring/partials/_outbox.html", {
        "items": items, "unread": selectors.unread_count(request.user),
        "preference": selectors.preference_of(request.user), "is_platform": is_platform,
        "outbox": list(selectors.outbox(status=status)[:200]) if is_platform else [],
        "status": status, "statuses": NotificationDelivery.Status.choices,
    })


@login_required
@require_POST
def notification_mark_read(request: HttpRequest) -> HttpResponse:
    services.feed_mark_read(user=request.user)
    return redirect("notifications:page")


def _time(value: str) -> time | None:
    try:
        return time.fromisoformat(value) if value else None
    except ValueError:
        return None


@login_required
@require_POST
def notification_preferences(request: HttpRequest) -> HttpResponse:
    try:
        services.preference_set(actor=request.user, email=request.POST.get("email") == "on",
                                quiet_start=_time(request.POST.get("quiet_start", "")),
                                quiet_end=_time(request.POST.get("quiet_end", "")))
        messages.success(request, "Preferences saved.")
    except DomainError as exc:
        messages.error(request, exc.detail)
    return redirect("notifications:page")


@login_required
@require_POST
def notification_retry(request: HttpRequest, delivery_id: int) -> HttpResponse:
    require_page(request.user, Action.MANAGE_NOTIFICATIONS)
    try:
        services.delivery_retry_now(actor=request.user, delivery_id=delivery_id)
        messages.success(request, f"Delivery #{delivery_id} is due again now.")
    except DomainError as exc:
        messages.error(request, exc.detail)
    return redirect("notifications:page")
