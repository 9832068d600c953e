"""Celery tasks of the releases app: thin, idempotent, taking ids.

The router push is where a decision becomes traffic, so it is recorded and verified:

- every push is a `RouterPush` row (requested split, the split the router reads back, duration,
  attempts, error), written before the first attempt and completed after the last;
- transient router errors are retried *inside* the task with a short doubling backoff, up to a
  deadline: for a rollback (0 %) the 2-minute SLO counted from the transition, otherwise
  PUSH_DEADLINE_S. Retrying in-task keeps one record per push and lets the deadline be exact;
- a push is confirmed only when `read_back` returns the requested split (or a newer one);
- a rollback that cannot be confirmed at 0 % by its deadline opens a P1 incident naming the
  manual override. The periodic `reconcile_routers` also opens it if the worker died mid-push;
- `reconcile_routers` compares each canary's intended split with what its router applies and
  pushes again on drift (a RouterPush with reason "reconcile").
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from releases.routers import Router, RouterError, Split, StaleSplitError, get_router

logger = logging.getLogger(__name__)

ROLLBACK_SLO = timedelta(minutes=2)
PUSH_DEADLINE_S = 60.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
# Long enough for a rollback's whole 2-minute retry window plus the final record.
PUSH_SOFT_LIMIT_S = 150
PUSH_HARD_LIMIT_S = 170


def router_for(kind: str) -> Router:
    """The router for a canary's `router` kind: the enabled RouterConfig of that kind, registered
    by a platform engineer in the UI, else the kind's entry in settings.CANARYHUB_ROUTERS."""
    from releases.models import RouterConfig

    registered = RouterConfig.objects.filter(kind=kind, enabled=True).first()
    if registered is not None:
        return get_router(kind, **registered.router_kwargs())
    config = dict(settings.CANARYHUB_ROUTERS.get(kind, {}))
    if kind == "file":
        config = {"path_dir": Path(config.get("path_dir", settings.VAR_DIR / "router"))}
    return get_router(kind, **config)


def split_of(canary) -> Split:  # type: ignore[no-untyped-def]
    from releases.lifecycle import canary_stages
    from releases.schedules import stage_segmentation

    seg = stage_segmentation(canary_stages(canary), canary.stage_index, segmentation=canary.segmentation)
    return Split(
        model=canary.model.name, production_version=canary.baseline.version, canary_version=canary.version.version,
        percent=canary.traffic_percent, canary_id=canary.pk, generation=canary.split_generation,
        strategy=seg["strategy"], values=tuple(seg["values"]),
    )


def _is_rollback(canary) -> bool:  # type: ignore[no-untyped-def]
    from releases.models import Canary

    return canary.state in (Canary.State.ROLLED_BACK, Canary.State.ABORTED) and canary.traffic_percent == 0


def _deadline(canary, now: datetime) -> datetime:  # type: ignore[no-untyped-def]
    if _is_rollback(canary):
        return (canary.ended_at or now) + ROLLBACK_SLO
    return now + timedelta(seconds=PUSH_DEADLINE_S)


def push_and_record(
    canary,  # type: ignore[no-untyped-def]
    *,
    reason: str,
    sleep: Any = time.sleep,
    router: Router | None = None,
) -> Any:
    """Push the canary's current split, retrying transient errors until the deadline, and keep
    the record. Returns the RouterPush. Never raises a RouterError: the record is the outcome."""
    from releases.models import RouterPush

    split = split_of(canary)
    started = timezone.now()
    deadline = _deadline(canary, started)
    push = RouterPush.objects.create(
        canary=canary, router=canary.router, generation=split.generation, requested=split.to_dict(),
        reason=reason, started_at=started,
    )
    t0 = time.perf_counter()
    attempts, error, applied, ok = 0, "", None, False
    backoff = BACKOFF_FIRST_S
    while True:
        attempts += 1
        try:
            router = router or router_for(canary.router)
            router.apply(split)
            seen = router.read_back(split.model)
            applied = seen.to_dict() if seen is not None else None
            ok = seen is not None and seen.order >= split.order and (seen.order > split.order or seen == split)
            error = "" if ok else f"read back {applied} instead of the requested split"
            if ok:
                break
            transient = True
        except StaleSplitError as exc:
            # A newer split already owns the router: this push has nothing left to do.
            error, transient = f"stale: {exc}", False
        except RouterError as exc:
            error, transient = str(exc), exc.transient
        except Exception as exc:  # a bug in an adapter must still leave a record and reach the incident
            logger.exception("router %s raised unexpectedly for canary %s", canary.router, canary.pk)
            error, transient = f"{type(exc).__name__}: {exc}", True
        remaining = (deadline - timezone.now()).total_seconds()
        if not transient or remaining <= backoff:
            break
        sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_S)
    finished = timezone.now()
    RouterPush.objects.filter(pk=push.pk).update(
        applied=applied, finished_at=finished, duration_ms=(time.perf_counter() - t0) * 1000, attempts=attempts,
        ok=ok, error=error[:4000],
    )
    push.refresh_from_db()
    if ok:
        logger.info(
            "pushed %s%% of %s to router %s (%s attempt(s))", split.percent, split.model, canary.router, attempts
        )
    else:
        logger.error("push of canary %s generation %s failed: %s", canary.pk, split.generation, error)
        if _is_rollback(canary) and not error.startswith("stale:"):
            rollback_unconfirmed(canary, push=push, router=router)
    return push


def rollback_unconfirmed(canary, *, push: Any, router: Router | None) -> None:  # type: ignore[no-untyped-def]
    """Open the P1 incident (once per canary) telling on-call how to force 0 % by hand."""
    from governance.incidents import incident_open
    from governance.models import Incident

    with transaction.atomic():
        if Incident.objects.filter(canary=canary, kind=Incident.Kind.ROLLBACK_UNCONFIRMED).exists():
            return
        try:
            override = (router or router_for(canary.router)).manual_override(canary.model.name)
        except RouterError:
            override = f"set the {canary.router} router's canary weight for {canary.model.name} to 0% by hand"
        incident_open(
            severity=Incident.Severity.P1, kind=Incident.Kind.ROLLBACK_UNCONFIRMED, canary=canary,
            summary=f"Rollback of canary #{canary.pk} ({canary.version}) not confirmed at 0% within 2 minutes. "
                    f"Manual override: {override}",
            details={"push": push.pk, "router": canary.router, "error": push.error[:1000],
                     "manual_override": override, "attempts": push.attempts},
        )


@shared_task(bind=True, soft_time_limit=PUSH_SOFT_LIMIT_S, time_limit=PUSH_HARD_LIMIT_S)
def push_split(self, canary_id: int, generation: int) -> str:  # type: ignore[no-untyped-def]
    """Carry the canary's current split to its router. A push for an older generation than the
    canary's current one does nothing: the newer push carries the newer split."""
    from releases.models import Canary

    canary = Canary.objects.select_related("model", "version", "baseline").get(pk=canary_id)
    if canary.split_generation != generation:
        return f"skipped: generation {generation} superseded by {canary.split_generation}"
    push = push_and_record(canary, reason="transition")
    state = "confirmed" if push.ok else f"failed after {push.attempts} attempt(s): {push.error[:200]}"
    return f"generation {generation} ({canary.traffic_percent}%): {state}"


def _canaries_with_a_router_split() -> list[Any]:
    """The newest pushed canary of each model: the one whose split the router should hold."""
    from releases.models import Canary

    newest: dict[int, Any] = {}
    for canary in (
        Canary.objects.filter(split_generation__gt=0).select_related("model", "version", "baseline").order_by("-pk")
    ):
        newest.setdefault(canary.model_id, canary)
    return list(newest.values())


def reconcile_router(canary, *, sleep: Any = time.sleep) -> str:  # type: ignore[no-untyped-def]
    """Compare one canary's intended split with its router and push again on drift."""
    intended = split_of(canary)
    try:
        router = router_for(canary.router)
        actual = router.read_back(intended.model)
    except RouterError as exc:
        actual, router = None, None
        logger.warning("reconcile: cannot read router %s for %s: %s", canary.router, intended.model, exc)
    if actual is not None and actual.order > intended.order:
        return "newer"  # a newer canary (or generation) owns the router; nothing to correct
    if actual == intended:
        if _is_rollback(canary):
            _check_overdue_rollback(canary, confirmed=True)
        return "in-sync"
    logger.warning(
        "router drift for %s: intends %s, router has %s", intended.model, intended.to_dict(),
        actual.to_dict() if actual else None,
    )
    push = push_and_record(canary, reason="reconcile", sleep=sleep, router=router)
    if _is_rollback(canary):
        _check_overdue_rollback(canary, confirmed=push.ok)
    return "corrected" if push.ok else "drift"


def _check_overdue_rollback(canary, *, confirmed: bool) -> None:  # type: ignore[no-untyped-def]
    # A worker that died mid-push leaves no incident behind: the reconciler notices the overdue
    # rollback whose last push never confirmed.
    if confirmed or canary.ended_at is None or timezone.now() < canary.ended_at + ROLLBACK_SLO:
        return
    last = canary.pushes.order_by("-started_at", "-id").first()
    if last is not None:
        rollback_unconfirmed(canary, push=last, router=None)


@shared_task(soft_time_limit=PUSH_SOFT_LIMIT_S * 2, time_limit=PUSH_HARD_LIMIT_S * 2)
def reconcile_routers() -> dict[str, int]:
    """Beat task: every router holds its canary's intended split. Safe to run twice at once:
    pushes are idempotent (a second one finds the split in place and records `changed: false`)."""
    outcome: dict[str, int] = {}
    for canary in _canaries_with_a_router_split():
        result = reconcile_router(canary)
        outcome[result] = outcome.get(result, 0) + 1
    return outcome


@shared_task(soft_time_limit=50, time_limit=60)
def reconcile_canaries() -> int:
    """Refresh the displayed state (running / awaiting approval / held) of every serving canary."""
    from releases.lifecycle import canary_reconcile
    from releases.models import Canary

    ids = list(
        Canary.objects.filter(state__in=[Canary.State.RUNNING, Canary.State.AWAITING_APPROVAL, Canary.State.HELD])
        .values_list("pk", flat=True)
    )
    for canary_id in ids:
        canary_reconcile(canary_id=canary_id)
    return len(ids)
