"""Observations and the notification outbox are kept 184 days at least, then pruned by the daily task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import NotificationEvent, Observation
from monitoring.tasks import prune_logs

pytestmark = pytest.mark.django_db


def observation(end):
    return Observation.objects.create(model="m", version="1.0.0", window_start=end - timedelta(seconds=60),
                                      window_end=end, requests=10)


def test_the_daily_prune_deletes_only_what_is_past_its_retention(settings):
    now = timezone.now()
    assert settings.OBSERVATION_RETENTION_DAYS == settings.NOTIFICATION_RETENTION_DAYS == 184
    old, kept = observation(now - timedelta(days=185)), observation(now - timedelta(days=183))
    stale = NotificationEvent.objects.create(kind="canary.started")
    fresh = NotificationEvent.objects.create(kind="canary.promoted")
    NotificationEvent.objects.filter(pk=stale.pk).update(created_at=now - timedelta(days=185))
    NotificationEvent.objects.filter(pk=fresh.pk).update(created_at=now - timedelta(days=183))
    assert prune_logs() == {"observations": 1, "notifications": 1}
    assert list(Observation.objects.values_list("pk", flat=True)) == [kept.pk]
    assert list(NotificationEvent.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert old.pk != kept.pk and prune_logs() == {"observations": 0, "notifications": 0}


def test_the_prune_is_scheduled_daily(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["prune-logs"]
    assert entry["task"] == "monitoring.tasks.prune_logs" and entry["schedule"] == 24 * 3600.0
