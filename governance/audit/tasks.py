"""Celery tasks of the audit trail: thin, scheduled in CELERY_BEAT_SCHEDULE."""

from celery import shared_task

from governance.audit.services import refusals_flush


@shared_task(soft_time_limit=50, time_limit=60)
def flush_refusals() -> int:
    """Each finished minute's refusals of unknown callers, one audit event per source address."""
    return refusals_flush()
