"""The monitor's own gauges on /metrics: the evaluator's heartbeat, the dead-man's switch, decided
rollbacks not yet carried out, and the depth of the broker's queues.

Refreshed from the database on every scrape (canaryhub.metrics), so every web process reports the
same numbers and nothing is lost across restarts.
"""

from __future__ import annotations

from pathlib import Path

import redis
from django.conf import settings
from django.utils import timezone
from prometheus_client import Gauge

from canaryhub.metrics import REGISTRY
from monitoring.models import Heartbeat
from monitoring.services import rollbacks_pending_summary

QUEUES = ("celery", "rollbacks")

# The evaluator's heartbeat: the alert rule in deploy/prometheus/ fires when it stops moving.
EVALUATOR_LAST_TICK = Gauge(
    "canaryhub_evaluator_last_tick_timestamp_seconds", "Unix time of the last completed evaluation tick",
    registry=REGISTRY,
)
EVALUATOR_TICK_SECONDS = Gauge("canaryhub_evaluator_last_tick_duration_seconds", "Wall time of the last tick",
                               registry=REGISTRY)
EVALUATOR_TICK_QUERIES = Gauge("canaryhub_evaluator_last_tick_queries", "Metric queries of the last tick",
                               registry=REGISTRY)
DEADMAN_TRIPPED = Gauge("canaryhub_deadman_tripped", "1 while the dead-man's switch suspends advancement",
                        registry=REGISTRY)


def refresh() -> None:
    beat = Heartbeat.objects.filter(pk=1).first()
    EVALUATOR_LAST_TICK.set(beat.last_tick_at.timestamp() if beat and beat.last_tick_at else 0)
    EVALUATOR_TICK_SECONDS.set(beat.last_tick_ms / 1000 if beat else 0)
    EVALUATOR_TICK_QUERIES.set(beat.last_tick_queries if beat else 0)
    DEADMAN_TRIPPED.set(1 if beat and beat.tripped_at else 0)
ROLLBACKS_PENDING = Gauge("canaryhub_rollbacks_pending", "Decided rollbacks not yet carried out", registry=REGISTRY)
ROLLBACK_PENDING_OLDEST = Gauge("canaryhub_rollback_pending_oldest_seconds",
                                "Age of the oldest decided rollback not yet carried out (0 with none)",
                                registry=REGISTRY)
QUEUE_DEPTH = Gauge("canaryhub_broker_queue_depth", "Messages waiting in a broker queue (-1: broker unreachable)",
                    ["queue"], registry=REGISTRY)


def queue_depths() -> dict[str, int]:
    """Messages waiting in each of our queues: Redis list lengths, or the filesystem broker's
    message files (kombu names them `<id>.<queue>.msg`). -1 for a broker that cannot be read."""
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        names = [p.name for p in folder.glob("*.msg")] if folder.is_dir() else []
        return {q: sum(1 for n in names if n.endswith(f".{q}.msg")) for q in QUEUES}
    if url.startswith(("redis://", "rediss://")):
        try:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            return {q: int(client.llen(q)) for q in QUEUES}
        except redis.RedisError:
            return dict.fromkeys(QUEUES, -1)
    return dict.fromkeys(QUEUES, 0)


def rollbacks_refresh() -> None:
    pending = rollbacks_pending_summary(now=timezone.now())
    ROLLBACKS_PENDING.set(pending.count)
    ROLLBACK_PENDING_OLDEST.set(pending.oldest_age_s)
    for queue, depth in queue_depths().items():
        QUEUE_DEPTH.labels(queue=queue).set(depth)
