"""Celery tasks of API credentials: thin, scheduled in CELERY_BEAT_SCHEDULE."""

from celery import shared_task

from governance.tokens.idempotency import idempotency_prune


@shared_task(soft_time_limit=60, time_limit=90)
def prune_idempotency_keys() -> int:
    return idempotency_prune()
