"""`GET /api/v1/assign`: which version an application should serve a user (pattern §4.4, §4.5).

For applications that route in their own code instead of through the nginx or webhook router.
The hot path is built to be cheap:

- `AssignFastPathMiddleware` (second in MIDDLEWARE, after SecurityMiddleware) answers a
  `GET /api/v1/assign` that carries a bearer token itself, as a plain Django view: no session,
  CSRF, messages, auditlog or htmx middleware, no URL resolution, no DRF dispatch, content
  negotiation or renderer. Nothing on this path reads a session, a cookie or a form, and an
  answer changes nothing, so there is nothing for them to do. Anything else on the path
  (another method, session authentication) goes through the full stack to `AssignView`, which
  answers the same way and is what the OpenAPI schema documents.
- The bearer token's principal is cached in the process, keyed by the SHA-256 of the token,
  for 10 × CANARYHUB_ASSIGN_CACHE_S (10 s by default), and so is the token's access decision per
  model: a revoked or narrowed token, or a deactivated user, stops working within that time.
- The model's active split is cached for CANARYHUB_ASSIGN_CACHE_S (a promotion or a rollback
  reaches every web process within that time).
- The sticky store costs one Redis round trip (`EXISTS`, or `SET NX EX` for a user hashed onto
  the canary). There is no per-request audit event.

See releases.routing.assignment for the arithmetic and the store's rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from prometheus_client import Counter
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import problems
from canaryhub.metrics import REGISTRY
from canaryhub.problems import PROBLEM_CONTENT_TYPE, problem
from governance.access.permissions import Action, Principal, decide
from governance.tokens.services import token_authenticate
from monitoring.services import notification_record
from releases.canaries import selectors
from releases.canaries.models import Canary
from releases.register.models import AIModel, ModelVersion
from releases.routing import assignment
from releases.routing.routers import Split

logger = logging.getLogger(__name__)

ASSIGNMENTS = Counter(
    "canaryhub_assignments", "Answers of /api/v1/assign, by variant and source", ["variant", "source"],
    registry=REGISTRY,
)
STORE_DOWN_ALERT_INTERVAL_S = 300.0
MIN_STORE_TTL_S = 60
PRINCIPAL_CACHE_FACTOR = 10  # principals and access decisions live 10 × CANARYHUB_ASSIGN_CACHE_S
PATH = "/api/v1/assign"  # where canaryhub.urls mounts this module's urlpatterns


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
_last_alert = 0.0
_alert_lock = threading.Lock()


def reset_caches() -> None:
    """Forget cached splits, principals and the store client (tests; settings changes)."""
    _splits.clear()
    _principals.clear()
    assignment.reset_store()


def _the_store() -> assignment.AssignmentStore:
    return assignment.shared_store()


def active_split(model: str) -> ActiveSplit | None:
    """The split the model's router was last told (the newest pushed canary), cached briefly.
    None when the model is unknown."""
    cached = _splits.get(model)
    if cached is not None:
        return cached
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
        value = ActiveSplit(selectors.split_of(canary), production, obj.pk, max(period, MIN_STORE_TTL_S))
    else:
        value = ActiveSplit(None, production, obj.pk, MIN_STORE_TTL_S)
    _splits.put(model, value, settings.CANARYHUB_ASSIGN_CACHE_S)
    return value


def _bearer_principal(raw: str) -> Principal | None:
    """The token's principal (None: unknown or revoked), cached by the token's SHA-256 so that
    the secret itself is never kept as a key."""
    key = hashlib.sha256(raw.encode()).hexdigest()
    cached = _principals.get(key)
    if cached is None:
        cached = (token_authenticate(raw),)
        _principals.put(key, cached, settings.CANARYHUB_ASSIGN_CACHE_S * PRINCIPAL_CACHE_FACTOR)
    return cached[0]


def _bearer_token(meta: Mapping[str, Any]) -> str | None:
    keyword, _, raw = meta.get("HTTP_AUTHORIZATION", "").partition(" ")
    raw = raw.strip()
    return raw if keyword.lower() == "bearer" and raw else None


def _principal(request: Request) -> Principal | None:
    raw = _bearer_token(request.META)
    if raw is not None:
        return _bearer_principal(raw)
    user = getattr(request._request, "user", None)
    if user is not None and user.is_authenticated:
        return Principal(user=user)
    return None


def _refusal(status: int, slug: str, title: str, detail: str, **errors: list[str]) -> tuple[int, dict[str, Any]]:
    return status, problem(status, slug, title, detail, errors or None)


_counters: dict[tuple[str, str], Any] = {}


def _count(variant: str, source: str) -> None:
    child = _counters.get((variant, source))
    if child is None:
        child = _counters[(variant, source)] = ASSIGNMENTS.labels(variant, source)
    child.inc()


def answer(principal: Principal | None, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """The status and body of an /assign answer: the assignment, or a problem document."""
    if principal is None:
        return _refusal(401, "not-authenticated", "Not authenticated", "Send a bearer token.")
    first = decide(principal, Action.VIEW)
    if not first.allowed:
        # Who may see no model at all is refused before anything they sent is read.
        return _refusal(403, "forbidden", "Not allowed", first.reason)
    model, user = params.get("model", ""), params.get("user", "")
    errors = {name: ["required"] for name, value in (("model", model), ("user", user)) if not value}
    if len(user) > 256:
        errors["user"] = ["at most 256 characters"]
    for name in ("model", "user", "region", "tier", "cohort"):
        if "\x00" in (params.get(name) or ""):
            # PostgreSQL cannot compare text holding NUL: refuse it here rather than fail there.
            errors[name] = ["null characters are not allowed"]
    if errors:
        return _refusal(400, "invalid", "Invalid input", "model and user are required", **errors)
    active = active_split(model)
    if active is None:
        return _refusal(404, "not-found", "Not found", f"No model {model!r}.")
    access_key = ("allowed", principal.user.pk, principal.scope, active.model_pk)
    allowed = _principals.get(access_key)
    if allowed is None:
        allowed = decide(principal, Action.VIEW, model=AIModel.objects.get(pk=active.model_pk)).allowed
        _principals.put(access_key, allowed, settings.CANARYHUB_ASSIGN_CACHE_S * PRINCIPAL_CACHE_FACTOR)
    if not allowed:
        # Out of scope answers as unknown: a token learns nothing of the models it may not see.
        return _refusal(404, "not-found", "Not found", f"No model {model!r}.")
    if active.split is None:
        _count("production", "no-canary")
        return 200, {"model": model, "user": user, "variant": "production", "version": active.production_version,
                     "canary_id": None, "percent": 0, "sticky": False, "fallback": False, "detail": ""}
    attributes = {"region": params.get("region"), "tier": params.get("tier"), "cohort": params.get("cohort")}
    result = assignment.assign(active.split, user=user, attributes=attributes, store=_the_store(),
                               ttl_s=active.ttl_s)
    if result.fallback:
        _alert_store_down(result.detail)
    _count(result.variant, "fallback" if result.fallback else "store" if result.sticky else "hash")
    return 200, {"model": model, "user": user, **result.to_dict(), "canary_id": active.split.canary_id,
                 "percent": active.split.percent}


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
        with transaction.atomic():
            notification_record(
                kind="assignment_store_down", canary_id=None,
                payload={"detail": detail[:500], "effect": "stateless hashing: users may switch version mid-session"},
            )
    except Exception:  # the alert must never break the answer
        logger.exception("could not record the assignment-store alert")


def _json_response(status: int, body: dict[str, Any]) -> HttpResponse:
    # The bytes DRF's JSONRenderer would write (compact, UTF-8), without its machinery.
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return HttpResponse(content, status=status,
                        content_type="application/json" if status == 200 else PROBLEM_CONTENT_TYPE)


class AssignFastPathMiddleware:
    """Answers bearer-token `GET /api/v1/assign` without the rest of the middleware chain or DRF.

    Placed right after SecurityMiddleware, so its response headers (nosniff, referrer policy)
    and SSL redirect still apply; the host is still checked against ALLOWED_HOSTS, the response
    still carries X-Frame-Options, and an unhandled error is still a logged problem document.
    Every other request, /assign without a bearer token included, goes down the chain."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info != PATH or request.method != "GET":
            return self.get_response(request)
        raw = _bearer_token(request.META)
        if raw is None:
            return self.get_response(request)
        request.get_host()  # DisallowedHost → 400, as CommonMiddleware would
        try:
            response = _json_response(*answer(_bearer_principal(raw), request.GET))
        except Exception:
            logger.exception("unhandled error on %s", request.path)
            response = _json_response(500, problem(500, "internal-error", "Internal error",
                                                   "The server failed; the error was logged."))
        response["X-Frame-Options"] = "DENY"
        return response


class AssignView(APIView):
    """The full-stack twin of AssignFastPathMiddleware (session-authenticated callers, HEAD,
    OPTIONS) and what the OpenAPI schema documents. Same answers, same problem documents."""

    # Authentication is done here with a cached principal; DRF's would query the token each time.
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @extend_schema(
        operation_id="assign",
        tags=["assignment"],
        summary="The version to serve a user (sticky canary assignment)",
        description="For applications that route in their own code: which version of the model to serve this "
        "user now. A user hashed onto the canary stays on it for the canary's period (sticky, kept in Redis); "
        "users outside the canary's segment, and everyone when no canary runs, get production. If the sticky "
        "store is down the answer comes from stateless hashing with `fallback: true`. Each web process caches a "
        "model's split for CANARYHUB_ASSIGN_CACHE_S (1 s by default): a promotion or rollback reaches every "
        "process within that time.",
        examples=[OpenApiExample("answer", response_only=True, status_codes=[200], value={
            "model": "support-bot", "user": "user-8812", "variant": "canary", "version": "1.5.0", "canary_id": 7,
            "percent": 5, "sticky": True, "fallback": False, "detail": "",
        })],
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
        status, body = answer(_principal(request), request.query_params)
        return Response(body, status=status, content_type=None if status == 200 else PROBLEM_CONTENT_TYPE)


urlpatterns = [path("assign", AssignView.as_view(), name="assign")]
