"""REST API of canaries (`/api/v1/canaries/…`). One view per resource; each parses its input,
checks that the principal may see the canary (404 otherwise), calls the lifecycle service and
renders the canary as releases.canaries.selectors computes it. Transitions are verbs: there is
no writable `state`."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import (
    PASSWORD_MAX,
    REASON_MAX,
    STATEMENT_MAX,
    QueryFilters,
    StrictCharField,
    StrictSerializer,
    no_filter,
    paginate,
    paginated,
    problems,
)
from governance.access.permissions import Action, principal_of, require
from governance.tokens.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from monitoring.evaluations import GateStatus
from releases.canaries import schedules, services
from releases.canaries import selectors as canary_selectors
from releases.canaries.models import Approval, Canary
from releases.register import selectors as register_selectors
from releases.register.api import ThresholdsField

# Column sizes (AIModel.name, ModelVersion.version, Canary.rollback_contact, Canary.router): longer
# input is a 400 here, not a database error on PostgreSQL.
MODEL_NAME_MAX = 64
VERSION_MAX = 40
ROLLBACK_CONTACT_MAX = 200
ROUTER_MAX = 40
@extend_schema_field({"type": "string", "enum": [s.value for s in GateStatus]})
class GateStatusField(serializers.CharField):
    """A gate's status. Used by one property only (GateOutput.status): drf-spectacular names enum
    components after their property, and one choice set under two names is a schema warning."""


VERDICT_HELP = f"the worst gate status: {' | '.join(s.value for s in GateStatus)}"


# --- input ----------------------------------------------------------------------------------------


class SegmentationInput(StrictSerializer):
    """Who is eligible for the canary. The rules between strategy, values and rationale are the
    service's (releases.canaries.schedules): they answer with field errors under `segmentation.`."""

    strategy = serializers.ChoiceField(choices=[s.value for s in schedules.SegmentationStrategy])
    # Whitespace is not trimmed: the service refuses padded values instead of silently changing them.
    values = serializers.ListField(
        child=StrictCharField(max_length=schedules.SEGMENTATION_VALUE_MAX_CHARS, trim_whitespace=False),
        max_length=schedules.SEGMENTATION_MAX_VALUES, required=False, default=list,
        help_text="none for random; the cohorts (in ramp order), regions or account tiers otherwise",
    )


class CanaryInput(StrictSerializer):
    """Start a canary of a registered version. Unknown fields are refused."""

    model = StrictCharField(max_length=MODEL_NAME_MAX, help_text="the model's name")
    version = StrictCharField(max_length=VERSION_MAX, help_text="a registered version of the model")
    schedule = serializers.ChoiceField(choices=Canary.Schedule.choices, default=Canary.Schedule.STANDARD)
    segmentation = SegmentationInput(
        required=False, allow_null=True, default=None,
        help_text="default {strategy: random}; any other strategy needs a rationale (fairness review)",
    )
    rationale = StrictCharField(
        required=False, allow_blank=True, default="", max_length=schedules.RATIONALE_MAX_CHARS,
        help_text="required (20+ characters) for the accelerated schedule and for non-random segmentation",
    )
    shadow_evidence_ref = StrictCharField(
        required=False, allow_blank=True, default="", max_length=schedules.SHADOW_EVIDENCE_REF_MAX_CHARS,
        help_text="reference to the shadow-deployment evidence; required for the accelerated schedule",
    )
    rollback_contact = StrictCharField(
        required=False, allow_blank=True, default="", max_length=ROLLBACK_CONTACT_MAX,
        help_text="who to call about a rollback; defaults to the model's on-call",
    )
    router = StrictCharField(required=False, default="file", max_length=ROUTER_MAX, help_text="router kind")


class ApprovalInput(StrictSerializer):
    """An e-signature on the canary's current step. Unknown fields are refused."""

    role = serializers.ChoiceField(choices=Approval.SignatureRole.choices)
    statement = StrictCharField(
        min_length=10, max_length=STATEMENT_MAX, help_text="what you approve, in your words (10+ characters)"
    )
    password = StrictCharField(
        max_length=PASSWORD_MAX, trim_whitespace=False, write_only=True, style={"input_type": "password"},
        help_text="your password again: a signature needs re-authentication",
    )
    evaluation_hash = StrictCharField(
        required=False, allow_blank=True, default="", max_length=64,
        validators=[RegexValidator(r"^[0-9a-f]{64}$", "the content_hash of an evaluation: 64 hex digits")],
        help_text="content_hash of the latest evaluation you were shown; required to sign a promotion",
    )


class ReasonInput(StrictSerializer):
    """Why the canary is stopped: recorded as its end reason and in the audit trail."""

    reason = StrictCharField(max_length=REASON_MAX)


class CanaryFilters(QueryFilters):
    model = serializers.CharField(required=False, default="", allow_blank=True, max_length=MODEL_NAME_MAX)
    state = serializers.ChoiceField(choices=Canary.State.choices, required=False, default=no_filter)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class PageFilters(QueryFilters):
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


# --- output ---------------------------------------------------------------------------------------


class StageOutput(serializers.Serializer):
    index = serializers.IntegerField()
    percent = serializers.IntegerField()
    cohort = serializers.CharField(allow_null=True)
    min_residence_s = serializers.FloatField()


class TimelineEntryOutput(serializers.Serializer):
    index = serializers.IntegerField()
    percent = serializers.IntegerField()
    cohort = serializers.CharField(allow_null=True)
    earliest_entry = serializers.DateTimeField()


class SegmentationOutput(serializers.Serializer):
    strategy = serializers.CharField()
    values = serializers.ListField(child=serializers.CharField())


class CurrentStageOutput(serializers.Serializer):
    index = serializers.IntegerField()
    percent = serializers.IntegerField()
    cohort = serializers.CharField(allow_null=True)
    entered_at = serializers.DateTimeField(allow_null=True)
    min_residence_until = serializers.DateTimeField(allow_null=True)


class GateOutput(serializers.Serializer):
    name = serializers.CharField()
    status = GateStatusField()
    value = serializers.FloatField(allow_null=True, default=None)
    limit = serializers.FloatField(allow_null=True, default=None)
    detail = serializers.CharField(allow_blank=True, default="")


class EvaluationRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    content_hash = serializers.CharField(help_text="send it back as evaluation_hash to sign a promotion")
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    verdict = serializers.CharField(help_text=VERDICT_HELP)


class EvaluationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    stage_index = serializers.IntegerField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    verdict = serializers.CharField(help_text=VERDICT_HELP)
    gates = GateOutput(many=True)
    inputs = serializers.JSONField(help_text="queries, raw window values, sample sizes, test results")
    content_hash = serializers.CharField()
    created_at = serializers.DateTimeField()


class ReadinessOutput(serializers.Serializer):
    ready = serializers.BooleanField()
    reason = serializers.CharField()


class RequiredApprovalsOutput(serializers.Serializer):
    step = serializers.CharField(allow_null=True, help_text='"start" or "promote:<from>-><to>"; null: no more steps')
    roles = serializers.ListField(child=serializers.CharField())
    outstanding = serializers.ListField(child=serializers.CharField())


class ApprovalOutput(serializers.Serializer):
    id = serializers.IntegerField()
    step = serializers.CharField()
    stage_index = serializers.IntegerField()
    role = serializers.CharField()
    signer = serializers.CharField(source="signer.username")
    printed_name = serializers.CharField()
    meaning = serializers.CharField()
    statement = serializers.CharField()
    evaluation_hash = serializers.CharField(allow_blank=True)
    signed_at = serializers.DateTimeField()


class CanarySummaryOutput(serializers.Serializer):
    """Reads a canary_selectors.CanaryRow (or CanaryDetail)."""

    id = serializers.IntegerField(source="canary.pk")
    model = serializers.CharField(source="canary.model.name")
    version = serializers.CharField(source="canary.version.version")
    baseline = serializers.CharField(source="canary.baseline.version")
    state = serializers.ChoiceField(choices=Canary.State.choices, source="canary.state")
    schedule = serializers.ChoiceField(choices=Canary.Schedule.choices, source="canary.schedule")
    traffic_percent = serializers.IntegerField(source="canary.traffic_percent")
    stage = CurrentStageOutput()
    hold_reason = serializers.CharField(source="canary.hold_reason", allow_blank=True)
    initiated_by = serializers.CharField(source="canary.initiated_by.username")
    initiated_at = serializers.DateTimeField(source="canary.initiated_at")
    ended_at = serializers.DateTimeField(source="canary.ended_at", allow_null=True)
    end_reason = serializers.CharField(source="canary.end_reason", allow_blank=True)


class CanaryOutput(CanarySummaryOutput):
    """Reads a canary_selectors.CanaryDetail."""

    stages = StageOutput(many=True, source="canary.stages")
    segmentation = SegmentationOutput(source="canary.segmentation")
    rationale = serializers.CharField(source="canary.rationale", allow_blank=True)
    shadow_evidence_ref = serializers.CharField(source="canary.shadow_evidence_ref", allow_blank=True)
    thresholds = ThresholdsField(source="canary.thresholds", help_text="frozen at initiation")
    expected_timeline = TimelineEntryOutput(many=True, source="canary.expected_timeline")
    rollback_contact = serializers.CharField(source="canary.rollback_contact")
    router = serializers.CharField(source="canary.router")
    clock_speed = serializers.FloatField(source="canary.clock_speed")
    readiness = ReadinessOutput(help_text="whether the current step can be signed now, and if not, why")
    gates = GateOutput(many=True, help_text="of the latest evaluation of the current stage")
    latest_evaluation = EvaluationRefOutput(allow_null=True)
    required_approvals = RequiredApprovalsOutput()
    approvals = ApprovalOutput(many=True)


class SignedOutput(serializers.Serializer):
    approval = ApprovalOutput()
    canary = CanaryOutput()


# --- views ----------------------------------------------------------------------------------------


def _detail(request: Request, canary_id: int) -> dict[str, Any]:
    detail = canary_selectors.canary_detail(actor=principal_of(request), canary_id=canary_id, now=timezone.now())
    return CanaryOutput(detail).data


class CanaryCollection(APIView):
    @extend_schema(
        operation_id="canaries_list",
        parameters=[CanaryFilters],
        responses={200: paginated(CanarySummaryOutput), **problems(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        filters = CanaryFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = canary_selectors.canary_list(
            actor=principal, model=filters.validated_data["model"], state=filters.validated_data["state"]
        )
        return paginate(request, self, qs, CanarySummaryOutput, to_item=canary_selectors.canary_row)

    @extend_schema(
        operation_id="canaries_create",
        request=CanaryInput,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: CanaryOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        data = CanaryInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        # 404 before 403 for a model the principal cannot see, as the register answers.
        register_selectors.model_get(actor=principal, name=values["model"])
        canary = services.canary_initiate(
            actor=principal, model_name=values["model"], version=values["version"], schedule=values["schedule"],
            segmentation=dict(values["segmentation"]) if values["segmentation"] is not None else None,
            rationale=values["rationale"], shadow_evidence_ref=values["shadow_evidence_ref"],
            rollback_contact=values["rollback_contact"], router=values["router"],
        )
        return Response(
            _detail(request, canary.pk), status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/canaries/{canary.pk}/"},
        )


class CanaryItem(APIView):
    @extend_schema(operation_id="canaries_retrieve", responses={200: CanaryOutput, **problems(401, 403, 404)})
    def get(self, request: Request, id: int) -> Response:
        require(principal_of(request), Action.VIEW)
        return Response(_detail(request, id))


class CanaryEvaluations(APIView):
    @extend_schema(
        operation_id="canaries_evaluations_list",
        parameters=[PageFilters],
        responses={200: paginated(EvaluationOutput), **problems(400, 401, 403, 404)},
    )
    def get(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        canary = canary_selectors.canary_get(actor=principal, canary_id=id)
        PageFilters(data=request.query_params).is_valid(raise_exception=True)
        return paginate(request, self, canary_selectors.canary_evaluations(canary=canary), EvaluationOutput)


class CanaryApprovals(APIView):
    @extend_schema(
        operation_id="canaries_approvals_create",
        request=ApprovalInput,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: SignedOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        canary_selectors.canary_get(actor=principal, canary_id=id)
        data = ApprovalInput(data=request.data)
        data.is_valid(raise_exception=True)
        approval = services.canary_sign(actor=principal, canary_id=id, **data.validated_data)
        return Response(
            {"approval": ApprovalOutput(approval).data, "canary": _detail(request, id)},
            status=status.HTTP_201_CREATED,
        )


class CanaryRollback(APIView):
    @extend_schema(
        operation_id="canaries_rollback_create",
        request=ReasonInput,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: CanaryOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        canary_selectors.canary_get(actor=principal, canary_id=id)
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.canary_rollback(actor=principal, canary_id=id, reason=data.validated_data["reason"], automatic=False)
        return Response(_detail(request, id))


class CanaryAbort(APIView):
    @extend_schema(
        operation_id="canaries_abort_create",
        request=ReasonInput,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: CanaryOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        canary_selectors.canary_get(actor=principal, canary_id=id)
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.canary_abort(actor=principal, canary_id=id, reason=data.validated_data["reason"])
        return Response(_detail(request, id))


urlpatterns = [
    path("canaries/", CanaryCollection.as_view(), name="api-canary-list"),
    path("canaries/<int:id>/", CanaryItem.as_view(), name="api-canary-detail"),
    path("canaries/<int:id>/evaluations/", CanaryEvaluations.as_view(), name="api-canary-evaluations"),
    path("canaries/<int:id>/approvals/", CanaryApprovals.as_view(), name="api-canary-approvals"),
    path("canaries/<int:id>/rollback/", CanaryRollback.as_view(), name="api-canary-rollback"),
    path("canaries/<int:id>/abort/", CanaryAbort.as_view(), name="api-canary-abort"),
]
