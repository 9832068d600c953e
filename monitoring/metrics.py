"""The monitor's own gauges on /metrics: the evaluator's heartbeat and the dead-man's switch.

Refreshed from the database on every scrape (canaryhub.metrics), so every web process reports the
same numbers and nothing is lost across restarts.
"""

from __future__ import annotations

from prometheus_client import Gauge

from canaryhub.metrics import REGISTRY
from monitoring.models import Heartbeat

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
