"""REST API of the Model Register (`/api/v1/models/…`). One view per resource; each parses,
asks the service or selector, and renders. Access is decided in governance.access.permissions."""

from __future__ import annotations

import math
from typing import Any

from django.urls import path, register_converter
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import (
    DESCRIPTION_MAX,
    QueryFilters,
    StrictCharField,
    StrictSerializer,
    example_page,
    example_request,
    example_response,
    no_filter,
    paginate,
    paginated,
    problems,
)
from canaryhub.errors import NotFound, ValidationFailed
from governance.access.permissions import Action, principal_of, refuse_machine, require, require_some
from governance.tokens.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from monitoring import custom as custom_metrics
from monitoring.services import (
    MAX_BUCKETS,
    MAX_COST_USD,
    MAX_COUNT,
    MAX_LATENCY_MS,
    MAX_TOKENS,
    count_refused,
)
from monitoring.thresholds import METRIC_NAMES
from releases.register import selectors, services
from releases.register.models import Consumer, MetricConfigChange, ModelVersion, RiskTier


class VersionConverter:
    regex = r"[0-9A-Za-z.+\-]{1,40}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(VersionConverter, "semver")


# --- serializers ----------------------------------------------------------------------------------


class ConsumerSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120)
    contact = serializers.CharField(max_length=300)
    channel = serializers.ChoiceField(choices=Consumer.Channel.choices, default=Consumer.Channel.EMAIL)


class ModelInput(StrictSerializer):
    name = serializers.CharField(max_length=64, help_text="slug: lower-case letters, digits, hyphens")
    display_name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=DESCRIPTION_MAX, allow_blank=True, required=False, default="")
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices)
    owner = serializers.CharField(max_length=150, help_text="username of the model owner")
    on_call = serializers.CharField(max_length=200)
    consumers = ConsumerSerializer(many=True, required=False, default=list)


class ModelPatch(StrictSerializer):
    display_name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=DESCRIPTION_MAX, allow_blank=True, required=False)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False)
    owner = serializers.CharField(max_length=150, required=False)
    on_call = serializers.CharField(max_length=200, required=False)
    consumers = ConsumerSerializer(many=True, required=False)


class ModelOutput(serializers.Serializer):
    name = serializers.CharField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    risk_tier = serializers.CharField()
    owner = serializers.CharField(source="owner.username")
    on_call = serializers.CharField()
    consumers = ConsumerSerializer(many=True, source="consumers.all")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class _GateThresholds(serializers.Serializer):
    error_rate_pp = serializers.FloatField(required=False)
    latency_p99_ratio = serializers.FloatField(required=False)
    quality_ratio = serializers.FloatField(required=False)
    safety_violations = serializers.IntegerField(required=False)
    anomaly_alerts = serializers.IntegerField(required=False)


class _Thresholds(serializers.Serializer):
    promote = _GateThresholds(required=False)
    rollback = _GateThresholds(required=False)


class _CustomMetricSource(serializers.Serializer):
    numerator = serializers.CharField(required=False, max_length=custom_metrics.SELECTOR_MAX,
                                      help_text="a ratio's events: a metric selector (name and label matchers)")
    denominator = serializers.CharField(required=False, max_length=custom_metrics.SELECTOR_MAX,
                                        help_text="a ratio's trials: a metric selector")
    events = serializers.CharField(required=False, max_length=custom_metrics.SELECTOR_MAX,
                                   help_text="a rate's events (divided by the built-in requests): a metric selector")
    buckets = serializers.CharField(required=False, max_length=custom_metrics.SELECTOR_MAX,
                                    help_text="a histogram's `_bucket` series: a metric selector")


class _CustomMetric(serializers.Serializer):
    kind = serializers.ChoiceField(choices=list(custom_metrics.KINDS),
                                   help_text="ratio: numerator out of denominator; rate: events per request; "
                                   "histogram: a value per request, judged on its mean")
    worse = serializers.ChoiceField(choices=list(custom_metrics.DIRECTIONS),
                                    help_text="the direction that is a regression")
    promote_tolerance = serializers.FloatField(
        help_text="how much worse than production the promotion gate allows: percentage points for a ratio, a "
        "fraction of production's value for a rate or a histogram (0.2 = 20 %)")
    rollback_threshold = serializers.FloatField(
        help_text="how much worse than production rolls back (same unit, at least the tolerance)")
    promql = _CustomMetricSource(
        required=False,
        help_text="with the prometheus provider only (refused with push, whose windows carry the values): the "
        "counters it reads; CanaryHub writes the query around them, by model, version and segment")


class _Metrics(serializers.Serializer):
    provider = serializers.ChoiceField(choices=["prometheus", "push"], required=False)
    queries = serializers.DictField(
        child=serializers.CharField(max_length=2000), required=False,
        help_text=f"PromQL templates per metric ({', '.join(METRIC_NAMES)}); placeholders $model, $version, "
        "$segment, $window",
    )
    custom = serializers.DictField(
        child=_CustomMetric(), required=False,
        help_text=f"the version's own metrics, by name (a lower-case slug, not a built-in metric; at most "
        f"{custom_metrics.MAX_CUSTOM}): each a promotion gate `custom.<name>` and a rollback trigger, judged for "
        "the canary as a whole and in each segment against production's same segment",
    )


@extend_schema_field(_Thresholds)
class ThresholdsField(serializers.JSONField):
    """Validated in the service (bounds, tightening only, unknown keys); documented as _Thresholds."""


@extend_schema_field(_Metrics)
class MetricsField(serializers.JSONField):
    pass


class VersionInput(StrictSerializer):
    version = serializers.CharField(max_length=40, help_text="semver MAJOR.MINOR.PATCH")
    artifact_uri = serializers.CharField(max_length=500)
    thresholds = ThresholdsField(required=False, allow_null=True, default=None)
    metrics = MetricsField(required=False, allow_null=True, default=None)
    status = serializers.ChoiceField(
        choices=[ModelVersion.Status.REGISTERED, ModelVersion.Status.PRODUCTION],
        default=ModelVersion.Status.REGISTERED,
        help_text="'production' only for a model's first version (the incumbent)",
    )


class VersionPatch(StrictSerializer):
    artifact_uri = serializers.CharField(max_length=500, required=False)
    thresholds = ThresholdsField(required=False)
    metrics = MetricsField(required=False)


class VersionOutput(serializers.Serializer):
    model = serializers.CharField(source="model.name")
    version = serializers.CharField()
    artifact_uri = serializers.CharField()
    status = serializers.CharField()
    change_type = serializers.CharField()
    baseline = serializers.CharField(source="baseline.version", allow_null=True, default=None)
    thresholds = ThresholdsField()
    metrics = MetricsField()
    config_frozen = serializers.BooleanField()
    registered_by = serializers.CharField(source="registered_by.username")
    registered_at = serializers.DateTimeField()


class ModelFilters(QueryFilters):
    q = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False, default=no_filter)
    owner = serializers.CharField(required=False, default="", allow_blank=True, max_length=150)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class VersionFilters(QueryFilters):
    status = serializers.ChoiceField(choices=ModelVersion.Status.choices, required=False, default=no_filter)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


# --- schema examples ------------------------------------------------------------------------------

_MODEL_EXAMPLE = {
    "name": "support-bot", "display_name": "Support bot", "description": "Answers customer questions.",
    "risk_tier": "medium", "owner": "olivia", "on_call": "support-oncall@example.com",
    "consumers": [{"name": "Help centre", "contact": "helpcentre@example.com", "channel": "email"}],
    "created_at": "2025-05-01T09:00:00Z", "updated_at": "2025-05-01T09:00:00Z",
}
_THRESHOLDS_EXAMPLE = {
    "promote": {"error_rate_pp": 0.1, "latency_p99_ratio": 1.2, "quality_ratio": 0.98, "safety_violations": 0,
                "anomaly_alerts": 0},
    "rollback": {"error_rate_pp": 0.5, "latency_p99_ratio": 1.5, "quality_ratio": 0.9, "safety_violations": 0},
}
_CUSTOM_EXAMPLE = {
    "refusals": {"kind": "ratio", "worse": "higher", "promote_tolerance": 0.5, "rollback_threshold": 2.0,
                 "promql": {"numerator": 'model_answers_total{outcome="refused"}',
                            "denominator": "model_answers_total"}},
    "tool_calls": {"kind": "rate", "worse": "higher", "promote_tolerance": 0.2, "rollback_threshold": 1.0,
                   "promql": {"events": "model_tool_calls_total"}},
}
_VERSION_EXAMPLE = {
    "model": "support-bot", "version": "1.5.0", "artifact_uri": "s3://models/support-bot/1.5.0",
    "status": "registered", "change_type": "MINOR", "baseline": "1.4.0", "thresholds": _THRESHOLDS_EXAMPLE,
    "metrics": {"provider": "prometheus", "queries": {}}, "config_frozen": False, "registered_by": "ci-bot",
    "registered_at": "2025-05-02T10:00:00Z",
}


# --- views ----------------------------------------------------------------------------------------


class ModelCollection(APIView):
    @extend_schema(
        operation_id="models_list",
        tags=["models"],
        summary="List models",
        description="The models of the register the caller may see (a service-account token: the models it is "
        "scoped to), by name, filtered by a search text `q`, risk tier or owner.",
        parameters=[ModelFilters],
        examples=[example_response(example_page(_MODEL_EXAMPLE))],
        responses={200: paginated(ModelOutput), **problems(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        filters = ModelFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = selectors.model_list(
            actor=principal, q=filters.validated_data["q"], risk_tier=filters.validated_data["risk_tier"],
            owner=filters.validated_data["owner"],
        )
        return paginate(request, self, qs, ModelOutput)

    @extend_schema(
        operation_id="models_create",
        tags=["models"],
        summary="Register a model",
        description="Adds a model to the register with its risk tier, owner, on-call contact and consumers. A model "
        "owner may register only models they own; platform engineers any.",
        request=ModelInput,
        examples=[example_request({k: _MODEL_EXAMPLE[k] for k in (
                      "name", "display_name", "description", "risk_tier", "owner", "on_call", "consumers")}),
                  example_response(_MODEL_EXAMPLE, 201)],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: ModelOutput, **problems(400, 401, 403, 409, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        require_some(principal, Action.REGISTER_MODEL)  # who may not act is refused before their input is read
        data = ModelInput(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.model_register(actor=principal, **data.validated_data)
        return Response(
            ModelOutput(model).data, status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/models/{model.name}/"},
        )


class ModelItem(APIView):
    @extend_schema(
        operation_id="models_retrieve",
        tags=["models"],
        summary="Get a model",
        description="One model of the register, with its owner, on-call contact and consumers.",
        responses={200: ModelOutput, **problems(401, 403, 404)},
        examples=[example_response(_MODEL_EXAMPLE)],
    )
    def get(self, request: Request, name: str) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        return Response(ModelOutput(selectors.model_get(actor=principal, name=name)).data)

    @extend_schema(
        operation_id="models_partial_update",
        tags=["models"],
        summary="Change a model",
        description="Changes the fields given (display name, description, risk tier, owner, on-call); `consumers`, "
        "when given, replaces the list whole. Only the model's owner or a platform engineer may.",
        request=ModelPatch,
        examples=[example_request({"on_call": "support-oncall-2@example.com"}),
                  example_response({**_MODEL_EXAMPLE, "on_call": "support-oncall-2@example.com"})],
        responses={200: ModelOutput, **problems(400, 401, 403, 404, 409)},
    )
    def patch(self, request: Request, name: str) -> Response:
        principal = principal_of(request)
        model = selectors.model_get(actor=principal, name=name)  # 404 before 403 for what one cannot see
        require(principal, Action.CHANGE_MODEL, model=model)  # 403 before the input is read
        data = ModelPatch(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.model_update(actor=principal, name=name, changes=dict(data.validated_data))
        return Response(ModelOutput(selectors.model_get(actor=principal, name=model.name)).data)


class VersionCollection(APIView):
    @extend_schema(
        operation_id="versions_list",
        tags=["versions"],
        summary="List a model's versions",
        description="The model's versions, highest semver first, optionally filtered by status.",
        parameters=[VersionFilters],
        examples=[example_response(example_page(_VERSION_EXAMPLE))],
        responses={200: paginated(VersionOutput), **problems(400, 401, 403, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        filters = VersionFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = selectors.version_list(actor=principal, model_name=name, status=filters.validated_data["status"])
        return paginate(request, self, qs, VersionOutput)

    @extend_schema(
        operation_id="versions_create",
        tags=["versions"],
        summary="Register a version",
        description="Registers a semver version of the model with its artifact, its thresholds (the pattern's "
        "defaults unless tightened) and, for platform engineers only, where its metrics come from (`metrics`: "
        "provider, PromQL overrides and the version's custom metrics, `custom`; anyone else gets the deployment's "
        "default and 403 if they send it). "
        "`status: production` is for a model's first "
        "version only (the incumbent canaries are compared with). Send an `Idempotency-Key` to make a CI retry safe.",
        request=VersionInput,
        examples=[example_request({"version": "1.5.0", "artifact_uri": "s3://models/support-bot/1.5.0",
                            "thresholds": {"promote": {"error_rate_pp": 0.05}}}),
                  example_request({"version": "1.5.0", "artifact_uri": "s3://models/support-bot/1.5.0",
                                   "metrics": {"provider": "prometheus", "custom": _CUSTOM_EXAMPLE}},
                                  name="a platform engineer's, with custom metrics"),
                  example_response(_VERSION_EXAMPLE, 201)],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: VersionOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request, name: str) -> Response:
        principal = principal_of(request)
        model = selectors.model_get(actor=principal, name=name)
        require(principal, Action.REGISTER_VERSION, model=model)  # 403 before the input is read
        _refuse_metrics(principal, request.data)
        data = VersionInput(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.version_register(actor=principal, model_name=name, **data.validated_data)
        return Response(
            VersionOutput(version).data, status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/models/{name}/versions/{version.version}/"},
        )


def _refuse_metrics(principal: Any, data: Any) -> None:
    """Who may not set the metric configuration is refused before what they sent is read."""
    if isinstance(data, dict) and data.get("metrics") is not None:
        require(principal, Action.CONFIGURE_METRICS)


class VersionItem(APIView):
    @extend_schema(
        operation_id="versions_retrieve",
        tags=["versions"],
        summary="Get a version",
        description="One version of the model, with its status (registered, canary, production, deprecated, "
        "rolled_back), thresholds and metric configuration.",
        responses={200: VersionOutput, **problems(401, 403, 404)},
        examples=[example_response(_VERSION_EXAMPLE)],
    )
    def get(self, request: Request, name: str, version: str) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        return Response(VersionOutput(selectors.version_get(actor=principal, model_name=name, version=version)).data)

    @extend_schema(
        operation_id="versions_partial_update",
        tags=["versions"],
        summary="Change a version",
        description="Changes the artifact or thresholds of a version, or asks to change its metric configuration "
        "(`metrics`: provider, PromQL overrides, custom metrics; platform engineers only). A metric configuration "
        "change is not written at once: it is recorded as a "
        "pending change (see `GET /api/v1/metric-changes/`) that AI Governance and MRM must each approve, and "
        "then governs the version's next canary; a running canary keeps the configuration frozen on it. One "
        "pending change per version (409 otherwise). Thresholds are frozen when a canary of the version "
        "starts, and the artifact changes only while the version is registered: 409 otherwise.",
        request=VersionPatch,
        examples=[example_request({"artifact_uri": "s3://models/support-bot/1.5.0-rebuilt"}),
                  example_request({"metrics": {"provider": "prometheus", "custom": _CUSTOM_EXAMPLE}},
                                  name="a platform engineer's metric configuration change, with custom metrics"),
                  example_response({**_VERSION_EXAMPLE, "artifact_uri": "s3://models/support-bot/1.5.0-rebuilt"})],
        responses={200: VersionOutput, **problems(400, 401, 403, 404, 409)},
    )
    def patch(self, request: Request, name: str, version: str) -> Response:
        principal = principal_of(request)
        obj = selectors.version_get(actor=principal, model_name=name, version=version)
        require(principal, Action.CHANGE_VERSION, model=obj.model)  # 403 before the input is read
        _refuse_metrics(principal, request.data)
        data = VersionPatch(data=request.data)
        data.is_valid(raise_exception=True)
        obj = services.version_update(
            actor=principal, model_name=name, version=version, changes=dict(data.validated_data)
        )
        return Response(VersionOutput(obj).data)


# --- observations: the push provider's input ----------------------------------------------------


class BucketsField(serializers.ListField):
    """Cumulative histogram buckets `[[le, count], ...]`, ascending, the last `"+Inf"`; finite
    bounds and counts, at most MAX_BUCKETS of them."""

    child = serializers.ListField(min_length=2, max_length=2)

    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(max_length=MAX_BUCKETS, **kwargs)

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        if isinstance(data, list) and len(data) > MAX_BUCKETS:  # before reading each of them
            raise serializers.ValidationError(f"at most {MAX_BUCKETS} buckets")
        rows = super().to_internal_value(data)
        out, last_le, last_count = [], float("-inf"), 0.0
        for le_raw, count_raw in rows:
            try:
                if isinstance(le_raw, bool) or isinstance(count_raw, bool):
                    raise TypeError("a boolean is not a number")
                le = float("inf") if le_raw in ("+Inf", "Inf") else float(le_raw)
                count = float(count_raw)
            except (TypeError, ValueError, OverflowError) as exc:
                raise serializers.ValidationError("each bucket is [upper bound, cumulative count]") from exc
            infinite = le_raw not in ("+Inf", "Inf") and not math.isfinite(le)
            if infinite or not math.isfinite(count) or count > MAX_COUNT:
                raise serializers.ValidationError(
                    f"bounds and counts must be finite numbers (counts at most {MAX_COUNT}); "
                    'only the last bound is "+Inf"'
                )
            if le <= last_le or count < last_count or count < 0:
                raise serializers.ValidationError("bounds must ascend and counts be cumulative")
            last_le, last_count = le, count
            out.append(["+Inf" if le == float("inf") else le, count])
        if not out or out[-1][0] != "+Inf":
            raise serializers.ValidationError('the last bucket must be "+Inf"')
        return out


class ObservationInput(StrictSerializer):
    """One window, bounded field by field (the plausibility of the window as a whole, its times
    and its counts against each other, is monitoring.services.observation_record's)."""

    model = serializers.CharField(max_length=64)
    version = serializers.CharField(max_length=40)
    segment = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    requests = serializers.IntegerField(min_value=0, max_value=MAX_COUNT)
    errors = serializers.IntegerField(min_value=0, max_value=MAX_COUNT, default=0)
    latency_p99_ms = serializers.FloatField(min_value=0, max_value=MAX_LATENCY_MS, required=False, allow_null=True,
                                            default=None)
    latency_buckets = BucketsField(required=False, allow_null=True, default=None)
    quality_sum = serializers.FloatField(min_value=0, max_value=MAX_COUNT, default=0.0)
    quality_count = serializers.IntegerField(min_value=0, max_value=MAX_COUNT, default=0)
    quality_buckets = BucketsField(required=False, allow_null=True, default=None)
    safety_violations = serializers.IntegerField(min_value=0, max_value=MAX_COUNT, default=0)
    anomaly_alerts = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)  # an integer column
    tokens_in = serializers.IntegerField(min_value=0, max_value=MAX_TOKENS, default=0)
    tokens_out = serializers.IntegerField(min_value=0, max_value=MAX_TOKENS, default=0)
    cost_usd = serializers.FloatField(min_value=0, max_value=MAX_COST_USD, default=0.0)
    guardrail_blocks = serializers.IntegerField(min_value=0, max_value=MAX_COUNT, default=0,
                                                help_text="requests a guardrail blocked in the window")
    response_tokens_buckets = BucketsField(required=False, allow_null=True, default=None,
                                           help_text="output tokens per response in the window, as cumulative "
                                           "buckets [[upper bound, count], ..., [\"+Inf\", count]] (recorded: p50, "
                                           "p95)")
    unavailable = serializers.IntegerField(min_value=0, max_value=MAX_COUNT, default=0,
                                           help_text="requests the model could not serve at all (5xx, timeout) in "
                                           "the window; they are failed requests too, so at most the errors")
    schema_failures = serializers.IntegerField(min_value=0, max_value=MAX_COUNT, default=0,
                                               help_text="outputs that failed their output schema in the window "
                                               "(at most the requests)")
    custom = serializers.DictField(
        child=serializers.DictField(), required=False, default=dict,
        help_text="the window's values of the version's custom metrics, by name: `numerator` and `denominator` "
        "(a ratio), `events` (a rate per request) or `buckets` (a histogram, as latency_buckets); at most 10")


class ObservationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField()
    version = serializers.CharField()
    segment = serializers.CharField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    requests = serializers.IntegerField()
    received_at = serializers.DateTimeField()


class ObservationCollection(APIView):
    @extend_schema(
        operation_id="observations_create",
        tags=["observations"],
        summary="Push one window of metrics",
        description="The push metric provider's input: the counts of one metric window of one version of a model "
        "(optionally of one segment), which the evaluator reads for models whose metrics come from `push`. An "
        "`observations` token may push for the models it is scoped to. A window must be plausible: it ends no later "
        "than now plus the allowed clock skew and no earlier than the staleness limit ago, lasts at most the "
        "evaluation window, its counts are non-negative, finite and consistent (errors, scored requests, safety "
        "violations, anomaly alerts, guardrail blocks, output-schema failures and bucket totals at most the "
        "requests; unavailable requests at most the errors), and it has at most 64 buckets; otherwise 400 naming "
        "the field (counted on /metrics as canaryhub_observations_refused_total).",
        examples=[
            example_request({
                "model": "support-bot", "version": "1.5.0", "window_start": "2025-05-04T10:05:00Z",
                "window_end": "2025-05-04T10:06:00Z", "requests": 5210, "errors": 3, "latency_p99_ms": 812.0,
                "quality_sum": 4689.0, "quality_count": 5210, "safety_violations": 0, "anomaly_alerts": 0,
                "tokens_in": 1250400, "tokens_out": 842000, "cost_usd": 4.87, "guardrail_blocks": 2,
                "schema_failures": 1, "unavailable": 1,
            }),
            example_request({
                "model": "support-bot", "version": "1.5.0", "segment": "eu", "window_start": "2025-05-04T10:05:00Z",
                "window_end": "2025-05-04T10:06:00Z", "requests": 1830, "errors": 1, "latency_p99_ms": 790.0,
                "custom": {"refusals": {"numerator": 14, "denominator": 1830}, "tool_calls": {"events": 2210}},
            }, name="one segment's window, with custom metrics"),
            example_response({
                "id": 90211, "model": "support-bot", "version": "1.5.0", "segment": "",
                "window_start": "2025-05-04T10:05:00Z", "window_end": "2025-05-04T10:06:00Z", "requests": 5210,
                "received_at": "2025-05-04T10:06:01Z",
            }, 201),
        ],
        request=ObservationInput,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: ObservationOutput, **problems(400, 401, 403, 404, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        require_some(principal, Action.PUSH_OBSERVATIONS)  # 403 before the input is read
        try:
            data = ObservationInput(data=request.data)
            data.is_valid(raise_exception=True)
            obj = services.observation_push(actor=principal, data=dict(data.validated_data))
        except serializers.ValidationError as exc:
            count_refused(next(iter(exc.detail), "body") if isinstance(exc.detail, dict) else "body")
            raise
        except ValidationFailed as exc:
            count_refused(next(iter(exc.errors or {}), "body"))
            raise
        return Response(ObservationOutput(obj).data, status=status.HTTP_201_CREATED)


# --- metric configuration changes: reviewed by AI Governance and MRM ------------------------------

_METRIC_CHANGE_EXAMPLE = {
    "id": 3, "model": "support-bot", "version": "1.5.0", "status": "pending", "status_display": "Awaiting review",
    "current": {"provider": "push", "queries": {}},
    "proposed": {"provider": "prometheus", "queries": {"errors": 'sum(rate(errors_total{model="$model"}[$window]))'},
                 "custom": _CUSTOM_EXAMPLE},
    "requested_by": "pat", "requested_at": "2025-05-03T12:00:00Z", "governance_by": None, "governance_at": None,
    "mrm_by": None, "mrm_at": None, "decision_note": "",
    "applies_to": "the version's next canary; a running canary keeps the configuration frozen on it",
}
APPLIES_TO = "the version's next canary; a running canary keeps the configuration frozen on it"


class MetricChangeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="version.model.name")
    version = serializers.CharField(source="version.version")
    status = serializers.CharField()
    status_display = serializers.CharField(source="get_status_display")
    current = MetricsField(help_text="the version's metric configuration when the change was requested")
    proposed = MetricsField()
    requested_by = serializers.CharField(source="requested_by.username")
    requested_at = serializers.DateTimeField()
    governance_by = serializers.CharField(source="governance_by.username", allow_null=True, default=None)
    governance_at = serializers.DateTimeField(allow_null=True)
    mrm_by = serializers.CharField(source="mrm_by.username", allow_null=True, default=None)
    mrm_at = serializers.DateTimeField(allow_null=True)
    decision_note = serializers.CharField()
    applies_to = serializers.SerializerMethodField()

    def get_applies_to(self, obj: MetricConfigChange) -> str:
        return APPLIES_TO


class MetricChangeFilters(QueryFilters):
    status = serializers.ChoiceField(choices=MetricConfigChange.Status.choices, required=False)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class MetricChangeReviewInput(StrictSerializer):
    decision = serializers.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])
    note = StrictCharField(max_length=5000, required=False, default="", allow_blank=True,
                           help_text="required (10+ characters) to reject")


def metric_changes() -> Any:
    return MetricConfigChange.objects.select_related("version__model", "requested_by", "governance_by", "mrm_by")


class MetricChangeCollection(APIView):
    @extend_schema(operation_id="metric_changes_list", parameters=[MetricChangeFilters], tags=["metric changes"],
                   summary="List metric configuration changes",
                   description="The changes of versions' metric configuration that platform engineers requested "
                   "(`PATCH` of a version's `metrics`), newest first, with their reviews. A change applies once AI "
                   "Governance and MRM have both approved it, to the version's next canary; a running canary keeps "
                   "the configuration frozen on it. People only: a service account's token gets 403. A page past "
                   "the end is 404.",
                   examples=[example_response(example_page(_METRIC_CHANGE_EXAMPLE))],
                   responses={200: paginated(MetricChangeOutput), **problems(400, 401, 403, 404)})
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        refuse_machine(principal, "list metric configuration changes")
        require(principal, Action.VIEW)
        filters = MetricChangeFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        changes = metric_changes()
        if filters.validated_data.get("status"):
            changes = changes.filter(status=filters.validated_data["status"])
        return paginate(request, self, changes, MetricChangeOutput)


class MetricChangeApprovals(APIView):
    @extend_schema(operation_id="metric_changes_approvals_create", request=MetricChangeReviewInput,
                   tags=["metric changes"], summary="Approve or reject a metric configuration change",
                   description="AI Governance or MRM approves (or rejects, with a note of 10 or more characters) a "
                   "pending metric configuration change; neither may be its requester, and one person gives one "
                   "side. With both approvals it is written on the version and governs its next canary; a "
                   "rejection discards it.",
                   examples=[example_request({"decision": "approve", "note": ""}),
                             example_response({**_METRIC_CHANGE_EXAMPLE, "governance_by": "gita",
                                               "governance_at": "2025-05-03T13:00:00Z"})],
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={200: MetricChangeOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        refuse_machine(principal, "review a metric configuration change")
        require(principal, Action.REVIEW_THRESHOLD_CHANGE)  # 403 before the input is read
        if not MetricConfigChange.objects.filter(pk=id).exists():
            raise NotFound(f"no metric configuration change #{id}")
        data = MetricChangeReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.metric_change_review(actor=principal, change_id=id,
                                      approve=data.validated_data["decision"] == "approve",
                                      note=data.validated_data["note"])
        return Response(MetricChangeOutput(metric_changes().get(pk=id)).data)


urlpatterns = [
    path("models/", ModelCollection.as_view(), name="api-model-list"),
    path("models/<slug:name>/", ModelItem.as_view(), name="api-model-detail"),
    path("models/<slug:name>/versions/", VersionCollection.as_view(), name="api-version-list"),
    path("models/<slug:name>/versions/<semver:version>/", VersionItem.as_view(), name="api-version-detail"),
    path("observations/", ObservationCollection.as_view(), name="api-observations"),
    path("metric-changes/", MetricChangeCollection.as_view(), name="api-metric-changes"),
    path("metric-changes/<int:id>/approvals/", MetricChangeApprovals.as_view(), name="api-metric-change-approvals"),
]
