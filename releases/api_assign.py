"""`GET /api/v1/assign`: which version an application should serve a user (pattern §4.4, §4.5).

For applications that route in their own code instead of through the nginx or webhook router.
The hot path is built to be cheap: the bearer token's principal and the model's active split
are cached in the process for a few seconds (CANARYHUB_ASSIGN_CACHE_S; a promotion or a
rollback reaches every web process within that time), there is no per-request audit event (an
answer changes nothing), and the sticky store costs one Redis round trip (two for a user newly
put on the canary). See releases.assignment for the arithmetic and the store's rules.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from prometheus_client import Counter
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import problems
from canaryhub.problems import PROBLEM_CONTENT_TYPE, problem
from governance.permissions import Action, Principal, decide
from governance.tokens import token_authenticate
from monitoring.metrics import REGISTRY
from releases import assignment
from releases.routers import Split

logger = logging.getLogger(__name__)

ASSIGNMENTS = Counter(
    "canaryhub_assignments", "Answers of /api/v1/assign, by variant and source", ["variant", "source"],
    registry=REGISTRY,
)
STORE_DOWN_ALERT_INTERVAL_S = 300.0
MIN_STORE_TTL_S = 60


@dataclass(frozen=True)
class ActiveSplit:
    split: Split | None  # None: no canary was ever pushed for the model
    production_version: str | None
    model_pk: int
    ttl_s: int  # the canary period: how long a canary user is remembered


class _TTLCache:
    def __init__(self) -> None:
        self._data: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def put(self, key: Any, value: Any, ttl_s: float) -> None:
        with self._lock:
            if len(self._data) > 10_000:
                self._data.clear()
            self._data[key] = (time.monotonic() + ttl_s, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_splits = _TTLCache()
_principals = _TTLCache()
_store: assignment.AssignmentStore | None = None
_store_url: str | None = None
_last_alert = 0.0
_alert_lock = threading.Lock()


def reset_caches() -> None:
    """Forget cached splits, principals and the store client (tests; settings changes)."""
    global _store, _store_url
    _splits.clear()
    _principals.clear()
    _store, _store_url = None, None


def _the_store() -> assignment.AssignmentStore:
    global _store, _store_url
    if _store is None or _store_url != settings.REDIS_URL:
        _store_url = settings.REDIS_URL
        _store = (
            assignment.RedisStore(settings.REDIS_URL, timeout_s=0.25)
            if settings.REDIS_URL
            else assignment.MemoryStore()
        )
    return _store


def active_split(model: str) -> ActiveSplit | None:
    """The split the model's router was last told (the newest pushed canary), cached briefly.
    None when the model is unknown."""
    cached = _splits.get(model)
    if cached is not None:
        return cached
    from releases.models import AIModel, Canary, ModelVersion
    from releases.tasks import split_of

    obj = AIModel.objects.filter(name=model).only("pk", "name").first()
    if obj is None:
        return None
    canary = (
        Canary.objects.filter(model=obj, split_generation__gt=0).select_related("model", "version", "baseline")
        .order_by("-pk").first()
    )
    production = (
        ModelVersion.objects.filter(model=obj, status=ModelVersion.Status.PRODUCTION).values_list("version", flat=True)
        .first()
    )
    if canary is not None:
        period = int(sum(float(s.get("min_residence_s", 0)) for s in canary.stages or []))
        value = ActiveSplit(split_of(canary), production, obj.pk, max(period, MIN_STORE_TTL_S))
    else:
        value = ActiveSplit(None, production, obj.pk, MIN_STORE_TTL_S)
    _splits.put(model, value, settings.CANARYHUB_ASSIGN_CACHE_S)
    return value


def _principal(request: Request) -> Principal | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    keyword, _, raw = header.partition(" ")
    if keyword.lower() == "bearer" and raw.strip():
        key = hashlib.sha256(raw.strip().encode()).hexdigest()
        cached = _principals.get(key)
        if cached is None:
            cached = (token_authenticate(raw.strip()),)
            _principals.put(key, cached, settings.CANARYHUB_ASSIGN_CACHE_S * 10)
        return cached[0]
    user = getattr(request._request, "user", None)
    if user is not None and user.is_authenticated:
        return Principal(user=user)
    return None


def _refuse(status: int, slug: str, title: str, detail: str, **errors: list[str]) -> Response:
    return Response(problem(status, slug, title, detail, errors or None), status=status,
                    content_type=PROBLEM_CONTENT_TYPE)


def _alert_store_down(detail: str) -> None:
    """§7.2: the store being down is an alert, not an error. One notification per interval per
    process, so a Redis outage does not turn every request into a database write."""
    global _last_alert
    now = time.monotonic()
    with _alert_lock:
        if _last_alert and now - _last_alert < STORE_DOWN_ALERT_INTERVAL_S:
            return
        _last_alert = now
    logger.warning("sticky assignment store unavailable, answering by stateless hashing: %s", detail)
    try:
        from monitoring.models import NotificationEvent

        with transaction.atomic():
            NotificationEvent.objects.create(
                kind="assignment_store_down", audience=["on_call"],
                payload={"detail": detail[:500], "effect": "stateless hashing: users may switch version mid-session"},
            )
    except Exception:  # the alert must never break the answer
        logger.exception("could not record the assignment-store alert")


class AssignView(APIView):
    # Authentication is done here with a cached principal; DRF's would query the token each time.
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @extend_schema(
        operation_id="assign",
        summary="The version to serve a user (sticky canary assignment)",
        parameters=[
            OpenApiParameter("model", str, required=True),
            OpenApiParameter("user", str, required=True, description="stable user id (hashed, as nginx does)"),
            OpenApiParameter("region", str), OpenApiParameter("tier", str), OpenApiParameter("cohort", str),
        ],
        responses={
            200: inline_serializer(name="Assignment", fields={
                "model": serializers.CharField(), "user": serializers.CharField(),
                "variant": serializers.ChoiceField(choices=["canary", "production"]),
                "version": serializers.CharField(allow_null=True),
                "canary_id": serializers.IntegerField(allow_null=True),
                "percent": serializers.IntegerField(), "sticky": serializers.BooleanField(),
                "fallback": serializers.BooleanField(), "detail": serializers.CharField(),
            }),
            **problems(400, 401, 403, 404),
        },
    )
    def get(self, request: Request) -> Response:
        principal = _principal(request)
        if principal is None:
            return _refuse(401, "not-authenticated", "Not authenticated", "Send a bearer token.")
        params = request.query_params
        model, user = params.get("model", ""), params.get("user", "")
        errors = {name: ["required"] for name, value in (("model", model), ("user", user)) if not value}
        if len(user) > 256:
            errors["user"] = ["at most 256 characters"]
        if errors:
            return _refuse(400, "invalid", "Invalid input", "model and user are required", **errors)
        active = active_split(model)
        if active is None:
            return _refuse(404, "not-found", "Not found", f"No model {model!r}.")
        access_key = ("allowed", principal.user.pk, principal.scope, active.model_pk)
        allowed = _principals.get(access_key)
        if allowed is None:
            from releases.models import AIModel

            allowed = decide(principal, Action.VIEW, model=AIModel.objects.get(pk=active.model_pk)).allowed
            _principals.put(access_key, allowed, settings.CANARYHUB_ASSIGN_CACHE_S * 10)
        if not allowed:
            return _refuse(403, "forbidden", "Not allowed", f"You may not read {model}.")
        body: dict[str, Any] = {"model": model, "user": user}
        if active.split is None:
            ASSIGNMENTS.labels("production", "no-canary").inc()
            return Response({**body, "variant": "production", "version": active.production_version,
                             "canary_id": None, "percent": 0, "sticky": False, "fallback": False, "detail": ""})
        attributes = {"region": params.get("region"), "tier": params.get("tier"), "cohort": params.get("cohort")}
        answer = assignment.assign(active.split, user=user, attributes=attributes, store=_the_store(),
                                   ttl_s=active.ttl_s)
        if answer.fallback:
            _alert_store_down(answer.detail)
        source = "fallback" if answer.fallback else "store" if answer.sticky else "hash"
        ASSIGNMENTS.labels(answer.variant, source).inc()
        return Response({**body, **answer.to_dict(), "canary_id": active.split.canary_id,
                         "percent": active.split.percent})


urlpatterns = [path("assign", AssignView.as_view(), name="assign")]
