"""Celery tasks of canaries: thin, idempotent, taking ids; each calls one function of the control
loop (releases.canaries.loop) or of the canary services. Scheduled in CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from canaryhub import watch
from releases.canaries import loop, services

# Long enough for a rollback's whole 2-minute retry window plus the final record.
PUSH_SOFT_LIMIT_S = 150
PUSH_HARD_LIMIT_S = loop.PUSH_HARD_LIMIT_S


@shared_task(soft_time_limit=50, time_limit=60)
def evaluate_tick() -> int:
    """One round of the control loop over the due canaries, then of the post-promotion watch (beat
    only enqueues; each round claims)."""
    return len(loop.evaluate_tick().outcomes) + len(loop.watch_tick())


@shared_task(soft_time_limit=30, time_limit=45, acks_late=True, reject_on_worker_lost=True)
def rollback_canary(canary_id: int, evaluation_id: int | None, reason: str) -> str:
    """The automatic rollback, queued on "rollbacks"; running it twice rolls back once."""
    return loop.rollback_decided(canary_id=canary_id, evaluation_id=evaluation_id, reason=reason)


@shared_task(soft_time_limit=8, time_limit=10, expires=10)
def rollback_watch() -> int:
    """The rollback watch between evaluations (loop.rollback_watch_tick), on the rollbacks queue."""
    return len(loop.rollback_watch_tick())


@shared_task(soft_time_limit=150, time_limit=PUSH_HARD_LIMIT_S)
def sweep_rollbacks() -> dict[str, int]:
    """Beat's copy of the watchdog's sweep: decided rollbacks whose task was lost, done here."""
    return loop.rollbacks_sweep()


@worker_ready.connect
def _start_watchdog(sender: Any = None, **_: Any) -> None:
    """Every worker runs the watchdog (the rollback sweeper, the dead-man's check) in a thread of
    its main process, beside the queues: a stuck queue or a dead beat does not stop it."""
    watch.ensure_running(role="worker")


@shared_task(bind=True, soft_time_limit=PUSH_SOFT_LIMIT_S, time_limit=PUSH_HARD_LIMIT_S)
def push_split(self, canary_id: int, generation: int) -> str:  # type: ignore[no-untyped-def]
    """Carry the canary's split of `generation` to its router (a superseded generation does nothing)."""
    return loop.push(canary_id=canary_id, generation=generation)


@shared_task(soft_time_limit=PUSH_SOFT_LIMIT_S * 2, time_limit=PUSH_HARD_LIMIT_S * 2)
def reconcile_routers() -> dict[str, int]:
    """Beat task: lost pushes are marked and pushed again, routers that failed a canary and answer
    again get its split back; every router holds its canary's intended split."""
    loop.pushes_sweep()
    loop.routers_recover()
    return loop.routers_reconcile()


@shared_task(soft_time_limit=50, time_limit=60)
def reconcile_canaries() -> int:
    """Refresh the displayed state (running / awaiting approval / held) of every serving canary."""
    return loop.reconcile_all()


@shared_task(soft_time_limit=30, time_limit=45)
def deadman_check() -> str:
    return loop.deadman_check()


@shared_task(soft_time_limit=300, time_limit=360)
def prune_evaluations() -> int:
    return services.evaluations_prune()


def enqueue_push(*, canary_id: int, generation: int, queue: str) -> None:
    """Subscriber of "canary.split_changed" (releases.apps)."""
    push_split.apply_async(args=[canary_id, generation], queue=queue)


def enqueue_rollback(*, canary_id: int, evaluation_id: int | None, reason: str) -> None:
    """Subscriber of "canary.rollback_decided" (releases.apps): its own queue, so a backlog of
    evaluations never delays a rollback."""
    rollback_canary.apply_async(args=[canary_id, evaluation_id, reason], queue="rollbacks")


@shared_task(soft_time_limit=120, time_limit=150)
def sticky_sweep() -> int:
    """Beat task: clear the sticky assignments that disagree with the split in force; how many."""
    return services.sticky_sweep().cleared


@shared_task(soft_time_limit=50, time_limit=60)
def oncall_summary() -> bool:
    """Beat task: the on-call summary, when a business-hours slot has none yet."""
    return services.oncall_summary_record()
