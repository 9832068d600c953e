"""Celery tasks of the monitor: thin, scheduled in CELERY_BEAT_SCHEDULE."""

from celery import shared_task
from django.utils import timezone

from monitoring.services import logs_prune


@shared_task(soft_time_limit=300, time_limit=360)
def prune_logs() -> dict[str, int]:
    """Daily: observations and notification outbox rows past their retention."""
    return logs_prune(now=timezone.now())
