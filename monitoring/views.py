"""Operations endpoints: liveness, readiness and CanaryHub's own Prometheus metrics; the SLO page."""

from __future__ import annotations

import logging
import os
import time
import urllib.request
from pathlib import Path

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from canaryhub import metrics as own_metrics
from governance.access.permissions import Action, require_page
from monitoring.metrics import queue_depths
from monitoring.models import Heartbeat
from monitoring.selectors import slo_charts, slo_figures, slo_recent
from monitoring.services import rollbacks_pending_summary

logger = logging.getLogger(__name__)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready", reported by name
        return _failed(exc)
    return None


def _failed(exc: BaseException) -> str:
    """What /readyz (answered without login) says of a failed check: the kind of error only. The
    exception's text can name hosts, users and paths: it goes to the server log."""
    logger.warning("readiness check failed: %s: %s", type(exc).__name__, exc)
    return f"{type(exc).__name__} (details in the server log)"


def _check_broker() -> str | None:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        folder.mkdir(parents=True, exist_ok=True)
        return None if folder.is_dir() and _writable(folder) else f"broker folder {folder} is not writable"
    if url.startswith(("redis://", "rediss://")):
        try:
            redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
        except Exception as exc:  # noqa: BLE001
            return _failed(exc)
        return None
    if url.startswith("memory://"):
        return None
    return f"unsupported broker URL scheme in {url.split('://')[0]}://"


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def _check_metric_source() -> str | None:
    if not settings.PROMETHEUS_URL:
        return None  # the push provider lives in our own database
    try:
        with urllib.request.urlopen(  # noqa: S310 - URL comes from our own settings
            settings.PROMETHEUS_URL.rstrip("/") + "/-/ready", timeout=settings.PROMETHEUS_TIMEOUT_S
        ) as response:
            return None if response.status == 200 else f"Prometheus answered {response.status}"
    except Exception as exc:  # noqa: BLE001
        return _failed(exc)


def _check_rollbacks() -> str | None:
    """Decided rollbacks wait seconds at most (the queued task, else the sweeper of any process):
    one pending for half its SLO means nothing is carrying them out."""
    try:
        pending = rollbacks_pending_summary(now=timezone.now())
    except Exception as exc:  # noqa: BLE001
        return _failed(exc)
    if pending.count and pending.oldest_age_s > settings.ROLLBACK_SLO_S / 2:
        return (f"{pending.count} decided rollback(s) not carried out, the oldest for {pending.oldest_age_s:.0f} s "
                f"(SLO {settings.ROLLBACK_SLO_S} s)")
    return None


def _check_queues() -> str | None:
    depth = queue_depths()
    if depth.get("rollbacks", 0) > settings.READY_MAX_ROLLBACKS_QUEUED:
        limit = settings.READY_MAX_ROLLBACKS_QUEUED
        return f"{depth['rollbacks']} messages wait on the rollbacks queue (limit {limit}): its worker is stuck or gone"
    return None


def _check_evaluator() -> str | None:
    try:
        beat = Heartbeat.objects.filter(pk=1).first()
    except Exception as exc:  # noqa: BLE001
        return _failed(exc)
    if beat is not None and beat.tripped_at is not None:
        return f"evaluator heartbeat missing since {beat.last_tick_at}: the dead-man's switch suspends advancement"
    return None


@require_GET
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    started = time.monotonic()
    checks = {"database": _check_database(), "broker": _check_broker(), "metric_source": _check_metric_source()}
    if checks["database"] is None:
        checks.update(rollbacks=_check_rollbacks(), evaluator=_check_evaluator())
    checks["queues"] = _check_queues()
    ok = all(v is None for v in checks.values())
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {name: ("ok" if err is None else err) for name, err in checks.items()},
        "metric_source": "prometheus" if settings.PROMETHEUS_URL else "push",
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if ok else 503)


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(own_metrics.scrape(), content_type=CONTENT_TYPE_LATEST)


@login_required
@require_GET
def slo_page(request: HttpRequest) -> HttpResponse:
    """The SLOs measured (pattern §10.1): each one's figures against its target, a chart of each
    (monitoring.charts, with its table), and the latest measured rollbacks and promotions with
    their canaries."""
    require_page(request.user, Action.VIEW)
    return render(request, "monitoring/slo.html", {
        "figures": slo_figures(), "charts": slo_charts(), "recent": slo_recent(), "section": "slo",
    })
