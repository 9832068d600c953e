"""The watchdog each long-lived process runs beside its work: the checks that must not depend on
the queues and the beat they watch.

Apps register their checks in `AppConfig.ready` (`register(check)`, a function of no arguments);
every Celery worker (releases.canaries.tasks, on worker_ready) and every web process
(`WatchMiddleware`, on its first request after a fork) starts one daemon thread that runs them
every CANARYHUB_WATCHDOG_INTERVAL_S seconds (0 turns it off). Each check claims its own work in
the database, so any number of processes running them at once act once. A check that raises is
logged and the others still run. The kernel holds only the thread: it imports no app.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

_checks: list[Callable[[], Any]] = []
_started_in: int | None = None  # the pid whose thread runs: a forked child starts its own
_lock = threading.Lock()


def register(check: Callable[[], Any]) -> Callable[[], Any]:
    """Run `check()` on every round of the watchdog (idempotent)."""
    if check not in _checks:
        _checks.append(check)
    return check


def run_once() -> dict[str, Any]:
    """One round: every registered check, each failure logged. Returns what each answered."""
    results: dict[str, Any] = {}
    for check in list(_checks):
        name = f"{check.__module__}.{check.__qualname__}"
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - the watchdog outlives any one failing check
            logger.exception("watchdog check %s failed", name)
            results[name] = f"error: {type(exc).__name__}: {exc}"
    return results


def _loop(interval: float) -> None:
    while True:
        close_old_connections()
        try:
            run_once()
        finally:
            connections.close_all()  # a database restart must not leave this thread a dead connection
        time.sleep(interval)


def ensure_running(*, role: str) -> bool:
    """Start this process's watchdog thread unless it runs already (or is turned off)."""
    global _started_in
    interval = float(getattr(settings, "WATCHDOG_INTERVAL_S", 0) or 0)
    if interval <= 0 or _started_in == os.getpid():
        return False
    with _lock:
        if _started_in == os.getpid():
            return False
        _started_in = os.getpid()
        threading.Thread(target=_loop, args=(interval,), name=f"canaryhub-watchdog-{role}", daemon=True).start()
    logger.info("watchdog started in %s process %s (every %.0f s: %d checks)", role, os.getpid(), interval,
                len(_checks))
    return True


class WatchMiddleware:
    """Starts the web process's watchdog on its first request (after gunicorn's fork)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _started_in != os.getpid():
            ensure_running(role="web")
        return self.get_response(request)
