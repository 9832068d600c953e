"""Facts announced once the transaction that made them commits, and what acts on them.

A service records a fact in its transaction (a row) and announces it:
`announce("canary.split_changed", canary_id=7, generation=3, queue="rollbacks")`. What acts on the
fact is wired in one place, the announcing app's `AppConfig.ready`, with `subscribe` — usually a
Celery task enqueued for it. Two things follow: a service never imports the tasks that run it
(tasks import services), and a lower layer can cause something in an upper one without importing
it. Nothing is announced for a transaction that rolls back.

An announcement is a prompt, not the record: each fact is also in the database (a canary's split
generation, an evaluation's rollback decision, an export's row), and a sweeper or periodic task
re-drives what a lost prompt (a process killed between commit and enqueue, a broker down) left
undone. So a subscriber that fails after the commit (the broker refuses the message) is logged
and counted (`canaryhub_announce_failures_total{fact}`), never raised: the act it follows is
committed, and the caller must not be told it failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from prometheus_client import Counter

from canaryhub.metrics import REGISTRY

logger = logging.getLogger(__name__)

_handlers: dict[str, list[Callable[..., Any]]] = {}

ANNOUNCE_FAILURES = Counter(
    "canaryhub_announce_failures", "Subscribers that failed after their fact committed (e.g. a message the "
    "broker refused); the fact's sweeper re-drives it", ["fact"], registry=REGISTRY,
)


def subscribe(fact: str, handler: Callable[..., Any]) -> None:
    """Call `handler(**data)` after each committed announcement of `fact` (idempotent)."""
    handlers = _handlers.setdefault(fact, [])
    if handler not in handlers:
        handlers.append(handler)


def announce(fact: str, **data: Any) -> None:
    """Run the subscribers of `fact` once the current transaction commits (at once outside one)."""
    handlers = list(_handlers.get(fact, ()))
    if not handlers:
        # A fact nobody acts on is a wiring mistake (an app's ready() did not run): say so.
        logger.error("no subscriber for %s %s", fact, data)
        return
    transaction.on_commit(lambda: _deliver(fact, handlers, data))


def _deliver(fact: str, handlers: list[Callable[..., Any]], data: dict[str, Any]) -> None:
    for handler in handlers:
        try:
            handler(**data)
        except Exception:
            # The fact is committed; its record is what the sweeper re-drives.
            ANNOUNCE_FAILURES.labels(fact=fact).inc()
            logger.exception("%s %s committed, but its subscriber %s failed; left to the sweeper", fact, data,
                             getattr(handler, "__qualname__", handler))
