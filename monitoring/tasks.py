"""Celery tasks of the monitor: thin, idempotent, taking ids. Scheduled in CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(soft_time_limit=50, time_limit=60)
def evaluate_tick() -> int:
    """One evaluation round over the due canaries (beat only enqueues; the tick claims)."""
    from monitoring.services import evaluate_tick as tick

    return len(tick().outcomes)


@shared_task(soft_time_limit=30, time_limit=45, acks_late=True)
def rollback_canary(canary_id: int, evaluation_id: int | None, reason: str) -> str:
    """The automatic rollback, queued on "rollbacks". A canary that is no longer serving (rolled
    back by an earlier run, aborted) is left alone: running this twice rolls back once."""
    from releases.lifecycle import SERVING_STATES, canary_rollback
    from releases.models import Canary

    state = Canary.objects.filter(pk=canary_id).values_list("state", flat=True).first()
    if state not in SERVING_STATES:
        return f"skipped: canary {canary_id} is {state}"
    from canaryhub.errors import Conflict

    try:
        canary_rollback(actor=None, canary_id=canary_id, reason=reason, automatic=True, evaluation_id=evaluation_id)
    except Conflict as exc:  # raced with another rollback or an abort
        return f"skipped: {exc}"
    logger.warning("canary %s rolled back automatically: %s", canary_id, reason)
    return "rolled back"


@shared_task(soft_time_limit=30, time_limit=45)
def deadman_check() -> str:
    from monitoring.services import deadman_check as check

    return check()


@shared_task(soft_time_limit=300, time_limit=360)
def prune_evaluations() -> int:
    from monitoring.services import evaluations_prune

    return evaluations_prune()
