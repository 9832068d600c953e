"""Celery tasks of a rollback's follow-up (scheduled in CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from governance.rootcause import services


@shared_task(soft_time_limit=50, time_limit=60)
def root_cause_reminders() -> int:
    """Tell on-call and MRM of root causes due within 12 h and of overdue ones (once each)."""
    return services.root_cause_reminders()
