"""CanaryHub's own Prometheus metrics, exported on /metrics.

Gauges that describe the database are refreshed on scrape (cheap aggregate queries), so every
web process reports the same numbers and nothing is lost across restarts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

REGISTERED_MODELS = Gauge("canaryhub_models", "Models in the register, by risk tier", ["risk_tier"], registry=REGISTRY)
MODEL_VERSIONS = Gauge("canaryhub_model_versions", "Model versions, by status", ["status"], registry=REGISTRY)
AUDIT_CHAIN_LENGTH = Gauge("canaryhub_audit_chain_length", "Events in the audit chain", registry=REGISTRY)
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
ACTIVE_CANARIES = Gauge("canaryhub_active_canaries", "Canaries serving traffic", registry=REGISTRY)


def refresh() -> None:
    from django.db.models import Count

    from governance.models import AuditChainHead
    from releases.models import AIModel, ModelVersion, RiskTier

    tiers = dict(AIModel.objects.values_list("risk_tier").annotate(n=Count("id")))
    for tier in RiskTier.values:
        REGISTERED_MODELS.labels(risk_tier=tier).set(tiers.get(tier, 0))
    statuses = dict(ModelVersion.objects.values_list("status").annotate(n=Count("id")))
    for status in ModelVersion.Status.values:
        MODEL_VERSIONS.labels(status=status).set(statuses.get(status, 0))
    head = AuditChainHead.objects.filter(id=1).first()
    AUDIT_CHAIN_LENGTH.set(head.seq if head else 0)

    from monitoring.models import Heartbeat
    from releases.lifecycle import SERVING_STATES
    from releases.models import Canary

    beat = Heartbeat.objects.filter(pk=1).first()
    EVALUATOR_LAST_TICK.set(beat.last_tick_at.timestamp() if beat and beat.last_tick_at else 0)
    EVALUATOR_TICK_SECONDS.set(beat.last_tick_ms / 1000 if beat else 0)
    EVALUATOR_TICK_QUERIES.set(beat.last_tick_queries if beat else 0)
    DEADMAN_TRIPPED.set(1 if beat and beat.tripped_at else 0)
    ACTIVE_CANARIES.set(Canary.objects.filter(state__in=list(SERVING_STATES)).count())
