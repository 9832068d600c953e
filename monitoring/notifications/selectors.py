"""Reads of notifications: a person's own feed and unread count, and the outbox for platform."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from monitoring.models import NotificationDelivery, NotificationPreference

Channel = NotificationDelivery.Channel


def feed(user: Any) -> QuerySet[NotificationDelivery]:
    """The user's own feed items, newest first (never anyone else's)."""
    return (NotificationDelivery.objects.filter(user=user, channel=Channel.FEED)
            .select_related("event").order_by("-event__created_at", "-id"))


def unread_count(user: Any) -> int:
    return NotificationDelivery.objects.filter(user=user, channel=Channel.FEED, read_at__isnull=True).count()


def delivered_per_channel(user: Any, event_ids: list[int]) -> dict[int, dict[str, Any]]:
    """For each event, when it reached this user on each channel (None while not yet)."""
    out: dict[int, dict[str, Any]] = {}
    for event_id, channel, sent_at in NotificationDelivery.objects.filter(
            user=user, event_id__in=event_ids).values_list("event_id", "channel", "sent_at"):
        out.setdefault(event_id, {})[channel] = sent_at
    return out


def outbox(*, status: str = "") -> QuerySet[NotificationDelivery]:
    """Every delivery but the feed's, newest first, for platform."""
    qs = NotificationDelivery.objects.exclude(channel=Channel.FEED).select_related("event").order_by("-id")
    return qs.filter(status=status) if status else qs


def preference_of(user: Any) -> NotificationPreference:
    return NotificationPreference.objects.filter(user=user).first() or NotificationPreference(user=user)
