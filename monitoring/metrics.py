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
