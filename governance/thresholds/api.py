"""REST API of threshold change reviews: a running canary's owner (or a platform engineer) asks to
change its frozen thresholds; AI Governance and MRM approve or reject."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import (
    QueryFilters,
    StrictCharField,
    StrictSerializer,
    example_page,
    example_request,
    example_response,
    paginate,
    paginated,
    problems,
)
from canaryhub.errors import NotFound, ValidationFailed
from governance.access.permissions import Action, principal_of, refuse_machine, require
from governance.thresholds.services import threshold_change_request, threshold_change_review
from governance.tokens.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from releases.canaries.models import ThresholdChangeRequest
from releases.canaries.selectors import canary_get
from releases.register.api import ThresholdsField

# --- schema examples ------------------------------------------------------------------------------

_THRESHOLDS = {
    "promote": {"error_rate_pp": 0.1, "latency_p99_ratio": 1.2, "quality_ratio": 0.98, "safety_violations": 0,
                "anomaly_alerts": 0},
    "rollback": {"error_rate_pp": 0.5, "latency_p99_ratio": 1.5, "quality_ratio": 0.9, "safety_violations": 0},
}
_THRESHOLD_CHANGE_EXAMPLE = {
    "id": 4, "canary": 7, "status": "pending", "status_display": "Awaiting review", "current": _THRESHOLDS,
    "proposed": {**_THRESHOLDS, "promote": {**_THRESHOLDS["promote"], "latency_p99_ratio": 1.1}},
    "reason": "Latency matters more for this release: tighten the promotion gate.", "requested_by": "olivia",
    "requested_at": "2025-05-03T12:00:00Z", "requested_at_stage": 1, "governance_by": None, "governance_at": None,
    "mrm_by": None, "mrm_at": None, "decision_note": "", "applied_at": None, "applied_stage_index": None,
}


class ThresholdChangeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    canary = serializers.IntegerField(source="canary_id")
    status = serializers.CharField()
    status_display = serializers.CharField(source="get_status_display")
    current = ThresholdsField(help_text="the canary's thresholds when the change was requested")
    proposed = ThresholdsField()
    reason = serializers.CharField()
    requested_by = serializers.CharField(source="requested_by.username")
    requested_at = serializers.DateTimeField()
    requested_at_stage = serializers.IntegerField()
    governance_by = serializers.CharField(source="governance_by.username", allow_null=True, default=None)
    governance_at = serializers.DateTimeField(allow_null=True)
    mrm_by = serializers.CharField(source="mrm_by.username", allow_null=True, default=None)
    mrm_at = serializers.DateTimeField(allow_null=True)
    decision_note = serializers.CharField()
    applied_at = serializers.DateTimeField(allow_null=True)
    applied_stage_index = serializers.IntegerField(allow_null=True)


class ThresholdChangeInput(StrictSerializer):
    proposed = ThresholdsField(help_text="the new thresholds (partial: the rest keep the pattern's defaults)")
    reason = StrictCharField(min_length=10, max_length=5000, help_text="why (10+ characters)")


class ThresholdChangeFilters(QueryFilters):
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


def _threshold_changes() -> Any:
    return ThresholdChangeRequest.objects.select_related("requested_by", "governance_by", "mrm_by")


def _renamed(path: str) -> str:
    return "proposed" + path.removeprefix("thresholds") if path.startswith("thresholds") else path


class CanaryThresholdChanges(APIView):
    @extend_schema(operation_id="canaries_threshold_changes_list", parameters=[ThresholdChangeFilters],
                   tags=["threshold changes"], summary="List a canary's threshold change requests",
                   description="The requests to change a running canary's thresholds, with their reviews.",
                   examples=[example_response(example_page(_THRESHOLD_CHANGE_EXAMPLE))],
                   responses={200: paginated(ThresholdChangeOutput), **problems(400, 401, 403, 404)})
    def get(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        canary_get(actor=principal, canary_id=id)
        ThresholdChangeFilters(data=request.query_params).is_valid(raise_exception=True)
        return paginate(request, self, _threshold_changes().filter(canary_id=id), ThresholdChangeOutput)

    @extend_schema(operation_id="canaries_threshold_changes_create", request=ThresholdChangeInput,
                   tags=["threshold changes"], summary="Request a change of a canary's thresholds",
                   description="Asks to change a running canary's frozen thresholds. The change needs AI "
                   "Governance's and MRM's approval and applies when the canary next enters a stage.",
                   examples=[example_request({"proposed": {"promote": {"latency_p99_ratio": 1.1}},
                                              "reason": _THRESHOLD_CHANGE_EXAMPLE["reason"]}),
                             example_response(_THRESHOLD_CHANGE_EXAMPLE, 201)],
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={201: ThresholdChangeOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        """Request a change of a running canary's thresholds. It needs AI Governance and MRM
        approval and applies when the canary next enters a stage."""
        principal = principal_of(request)
        canary = canary_get(actor=principal, canary_id=id)
        require(principal, Action.REQUEST_THRESHOLD_CHANGE, model=canary.model)  # 403 before the input is read
        data = ThresholdChangeInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            change = threshold_change_request(actor=principal, canary_id=id, **data.validated_data)
        except ValidationFailed as exc:
            # The thresholds validator names its paths `thresholds.…`; here the field is `proposed`.
            errors = {_renamed(name): msgs for name, msgs in exc.errors.items()}
            raise ValidationFailed(_renamed(exc.detail), errors=errors) from exc
        return Response(ThresholdChangeOutput(_threshold_changes().get(pk=change.pk)).data,
                        status=status.HTTP_201_CREATED)


class ThresholdChangeReviewInput(StrictSerializer):
    decision = serializers.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])
    note = StrictCharField(max_length=5000, required=False, default="", allow_blank=True,
                           help_text="required (10+ characters) to reject")


class ThresholdChangeApprovals(APIView):
    @extend_schema(operation_id="threshold_changes_approvals_create", request=ThresholdChangeReviewInput,
                   tags=["threshold changes"], summary="Approve or reject a threshold change",
                   description="AI Governance or MRM approves (or rejects, with a note of 10 or more characters) a "
                   "threshold change; with both approvals it applies at the canary's next stage.",
                   examples=[example_request({"decision": "approve", "note": ""}),
                             example_response({**_THRESHOLD_CHANGE_EXAMPLE, "governance_by": "gita",
                                               "governance_at": "2025-05-03T13:00:00Z"})],
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={200: ThresholdChangeOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        """AI Governance or MRM approves (or rejects) a threshold change; with both approvals it
        applies at the canary's next stage."""
        principal = principal_of(request)
        refuse_machine(principal, "review a threshold change")
        require(principal, Action.REVIEW_THRESHOLD_CHANGE)  # 403 before the input is read
        change = ThresholdChangeRequest.objects.filter(pk=id).first()
        if change is None:
            raise NotFound(f"no threshold change request #{id}")
        canary_get(actor=principal, canary_id=change.canary_id)
        data = ThresholdChangeReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        threshold_change_review(actor=principal, request_id=id, approve=data.validated_data["decision"] == "approve",
                                note=data.validated_data["note"])
        return Response(ThresholdChangeOutput(_threshold_changes().get(pk=id)).data)


urlpatterns = [
    path("canaries/<int:id>/threshold-changes/", CanaryThresholdChanges.as_view(), name="api-canary-threshold-changes"),
    path("threshold-changes/<int:id>/approvals/", ThresholdChangeApprovals.as_view(),
         name="api-threshold-change-approvals"),
]
