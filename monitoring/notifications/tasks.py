"""The notification sender task, on the "notifications" queue (beat enqueues it every
NOTIFY_SEND_INTERVAL_S). Each run sends rounds until nothing is due or its time is up; the
claims are in the database, so two runs at once never send one delivery twice, and a run killed
mid-send leaves claims that the next run takes again after NOTIFY_CLAIM_TIMEOUT_S."""

from __future__ import annotations

import time

from celery import shared_task

from monitoring.notifications import services

RUN_FOR_S = 30.0


@shared_task(acks_late=True)
def send_notifications(batch: int = 50) -> dict[str, int]:
    started = time.monotonic()
    total: dict[str, int] = {}
    while time.monotonic() - started < RUN_FOR_S:
        counts = services.deliveries_send_due(limit=batch)
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        if not counts:
            break
    return total
