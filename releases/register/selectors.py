"""Reads of the Model Register, filtered by what the principal may see."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from prometheus_client import Gauge

from canaryhub.errors import NotFound
from canaryhub.metrics import REGISTRY
from governance.access.permissions import visible_models_filter
from releases.register.models import AIModel, ModelVersion, RiskTier


def model_list(*, actor: Any, q: str = "", risk_tier: str = "", owner: str = "") -> QuerySet[AIModel]:
    qs = AIModel.objects.select_related("owner").prefetch_related("consumers")
    restriction = visible_models_filter(actor)
    if restriction is not None:
        qs = qs.filter(**restriction)
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(display_name__icontains=q) | Q(description__icontains=q))
    if risk_tier:
        qs = qs.filter(risk_tier=risk_tier)
    if owner:
        qs = qs.filter(owner__username=owner)
    return qs.order_by("name")


def model_get(*, actor: Any, name: str) -> AIModel:
    model = model_list(actor=actor).filter(name=name).first()
    if model is None:
        raise NotFound(f"no model named {name!r}")
    return model


def version_list(*, actor: Any, model_name: str, status: str = "") -> QuerySet[ModelVersion]:
    model = model_get(actor=actor, name=model_name)
    qs = model.versions.select_related("model", "registered_by", "baseline")
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-major", "-minor", "-patch")


def version_get(*, actor: Any, model_name: str, version: str) -> ModelVersion:
    obj = version_list(actor=actor, model_name=model_name).filter(version=version).first()
    if obj is None:
        raise NotFound(f"no version {version!r} of model {model_name!r}")
    return obj


def production_version(*, model: AIModel) -> ModelVersion | None:
    return model.versions.filter(status=ModelVersion.Status.PRODUCTION).first()


REGISTERED_MODELS = Gauge("canaryhub_models", "Models in the register, by risk tier", ["risk_tier"], registry=REGISTRY)
MODEL_VERSIONS = Gauge("canaryhub_model_versions", "Model versions, by status", ["status"], registry=REGISTRY)


def metrics_refresh() -> None:
    """The register's gauges on /metrics, from the database at each scrape."""
    tiers = dict(AIModel.objects.values_list("risk_tier").annotate(n=Count("id")))
    for tier in RiskTier.values:
        REGISTERED_MODELS.labels(risk_tier=tier).set(tiers.get(tier, 0))
    statuses = dict(ModelVersion.objects.values_list("status").annotate(n=Count("id")))
    for status in ModelVersion.Status.values:
        MODEL_VERSIONS.labels(status=status).set(statuses.get(status, 0))
