"""REST API of the monitor: `POST /api/v1/observations/`, the push provider's input."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import StrictSerializer, problems
from governance.authentication import principal_of
from governance.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from monitoring.services import observation_record


class BucketsField(serializers.ListField):
    """Cumulative histogram buckets `[[le, count], ...]`, ascending, the last `"+Inf"`."""

    child = serializers.ListField(min_length=2, max_length=2)

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        rows = super().to_internal_value(data)
        out, last_le, last_count = [], float("-inf"), 0.0
        for le_raw, count_raw in rows:
            try:
                le = float("inf") if le_raw in ("+Inf", "Inf") else float(le_raw)
                count = float(count_raw)
            except (TypeError, ValueError) as exc:
                raise serializers.ValidationError("each bucket is [upper bound, cumulative count]") from exc
            if le <= last_le or count < last_count or count < 0:
                raise serializers.ValidationError("bounds must ascend and counts be cumulative")
            last_le, last_count = le, count
            out.append(["+Inf" if le == float("inf") else le, count])
        if not out or out[-1][0] != "+Inf":
            raise serializers.ValidationError('the last bucket must be "+Inf"')
        return out


class ObservationInput(StrictSerializer):
    model = serializers.CharField(max_length=64)
    version = serializers.CharField(max_length=40)
    segment = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    requests = serializers.IntegerField(min_value=0)
    errors = serializers.IntegerField(min_value=0, default=0)
    latency_p99_ms = serializers.FloatField(min_value=0, required=False, allow_null=True, default=None)
    latency_buckets = BucketsField(required=False, allow_null=True, default=None)
    quality_sum = serializers.FloatField(min_value=0, default=0.0)
    quality_count = serializers.IntegerField(min_value=0, default=0)
    quality_buckets = BucketsField(required=False, allow_null=True, default=None)
    safety_violations = serializers.IntegerField(min_value=0, default=0)
    anomaly_alerts = serializers.IntegerField(min_value=0, default=0)
    tokens_in = serializers.IntegerField(min_value=0, default=0)
    tokens_out = serializers.IntegerField(min_value=0, default=0)
    cost_usd = serializers.FloatField(min_value=0, default=0.0)


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
        request=ObservationInput,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: ObservationOutput, **problems(400, 401, 403, 404, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = ObservationInput(data=request.data)
        data.is_valid(raise_exception=True)
        obj = observation_record(actor=principal_of(request), data=dict(data.validated_data))
        return Response(ObservationOutput(obj).data, status=status.HTTP_201_CREATED)


urlpatterns = [path("observations/", ObservationCollection.as_view(), name="api-observations")]
