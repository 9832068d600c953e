"""Celery tasks of the releases app: thin, idempotent, taking ids."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from releases.routers import Router, RouterError, Split, StaleSplitError, get_router

logger = logging.getLogger(__name__)


def router_for(kind: str) -> Router:
    config = settings.CANARYHUB_ROUTERS.get(kind, {})
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


@shared_task(bind=True, soft_time_limit=30, time_limit=45, max_retries=8)
def push_split(self, canary_id: int, generation: int) -> str:  # type: ignore[no-untyped-def]
    """Carry the canary's current split to its router. A push for an older generation than the
    canary's current one does nothing: the newer push carries the newer split."""
    from releases.models import Canary

    canary = Canary.objects.select_related("model", "version", "baseline").get(pk=canary_id)
    if canary.split_generation != generation:
        return f"skipped: generation {generation} superseded by {canary.split_generation}"
    split = split_of(canary)
    try:
        applied = router_for(canary.router).apply(split)
    except StaleSplitError as exc:
        logger.warning("router refused a stale split for canary %s: %s", canary_id, exc)
        return "stale"
    except RouterError as exc:
        if getattr(exc, "transient", False):
            # Short, growing backoff: a rollback must still land inside its 2-minute SLO.
            raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 15)) from exc
        raise
    logger.info("pushed %s%% of %s to router %s at %s", split.percent, split.model, canary.router, timezone.now())
    return f"applied generation {generation}: {split.percent}% ({'changed' if applied.changed else 'unchanged'})"


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
