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
    example_page,
    example_request,
    example_response,
    no_filter,
    paginate,
    paginated,
    problems,
)
from canaryhub.errors import PermissionRefused
from governance.access.permissions import (
    Action,
    break_glass_needed,
    principal_of,
    require,
    require_some,
)
from governance.tokens.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from monitoring.evaluations import GateStatus
from releases.canaries import dashboard, schedules, services
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
    callback_url = StrictCharField(
        required=False, allow_blank=True, default="", max_length=500,
        help_text="http(s) URL told of every state change of the canary, as a signed webhook (version 1), "
        "so a pipeline need not poll",
    )


class UrgentPatchInput(StrictSerializer):
    """An urgent PATCH canary: the version, and why it cannot wait for the schedule."""

    model = StrictCharField(max_length=MODEL_NAME_MAX, help_text="the model's name")
    version = StrictCharField(max_length=VERSION_MAX, help_text="a registered PATCH version over production")
    reason = StrictCharField(max_length=REASON_MAX, help_text="why it cannot wait: 20 characters at least; MRM "
                             "reviews it in retrospect within 48 h")
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


class StopInput(ReasonInput):
    """A rollback's or a revert's reason, and whether it is on-call's break-glass act."""

    break_glass = serializers.BooleanField(
        default=False, help_text="on-call's emergency path: a reason of 20 characters at least; pages on-call and "
        "MRM and puts the act up for MRM's retrospective review (the incident's root cause, due within 48 h)")


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
    voided_at = serializers.DateTimeField(
        allow_null=True, help_text="when a later red or stale evaluation of the stage voided it (it no longer counts)"
    )
    void_reason = serializers.CharField(allow_blank=True, help_text="why it was voided; empty while it counts")


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
    standby = serializers.ChoiceField(
        choices=Canary._meta.get_field("standby").choices, source="canary.standby", allow_blank=True,
        help_text='after 100 %: "watching" (the previous version on hot standby; a revert is possible), '
        '"released" (the watch is over), "used" (reverted); empty before completion')
    watch_until = serializers.DateTimeField(source="canary.watch_until", allow_null=True,
                                            help_text="when the post-promotion watch ends")


class ReportCanaryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField()
    version = serializers.CharField()
    baseline = serializers.CharField(help_text="the production version the canary was compared with")
    schedule = serializers.CharField()
    risk_tier = serializers.CharField()
    state = serializers.ChoiceField(choices=Canary.State.choices)
    initiated_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    end_reason = serializers.CharField(allow_blank=True)


class ReportDecisionOutput(serializers.Serializer):
    outcome = serializers.CharField(
        help_text="promoted | rolled back | aborted | promoted, then reverted | in progress")
    decided_by = serializers.CharField(allow_blank=True, help_text="the metric or the person's reason that decided")


class ReportSideOutput(serializers.Serializer):
    requests = serializers.FloatField()
    errors = serializers.FloatField()
    error_rate = serializers.FloatField(allow_null=True, help_text="errors / requests over the stage (0-1)")
    p99_s_mean = serializers.FloatField(allow_null=True, help_text="mean of the windows' p99 latency, seconds")
    p99_s_worst = serializers.FloatField(allow_null=True, help_text="the worst window's p99 latency, seconds")
    quality_mean = serializers.FloatField(allow_null=True, help_text="mean quality score, weighted by scored requests")
    quality_scored = serializers.FloatField()


class ReportComparisonOutput(serializers.Serializer):
    error_rate_difference_pp = serializers.FloatField(allow_null=True, help_text="canary − production, in pp")
    p99_ratio = serializers.FloatField(allow_null=True, help_text="canary p99 / production p99")
    quality_ratio = serializers.FloatField(allow_null=True, help_text="canary quality / production quality")


class ReportStageOutput(serializers.Serializer):
    number = serializers.IntegerField(help_text="1-based stage number")
    label = serializers.CharField()
    percent = serializers.IntegerField()
    entered_at = serializers.DateTimeField(allow_null=True)
    left_at = serializers.DateTimeField(allow_null=True)
    time_s = serializers.FloatField(allow_null=True, help_text="time spent in the stage, seconds")
    decision = serializers.CharField(allow_blank=True, help_text="how the stage ended")
    windows = serializers.IntegerField(help_text="evaluation windows judged in the stage")
    canary = ReportSideOutput(allow_null=True)
    production = ReportSideOutput(allow_null=True)
    comparison = ReportComparisonOutput(allow_null=True)
    safety_violations = serializers.FloatField()
    warnings = serializers.IntegerField(help_text="windows with an early warning")
    red_evaluations = serializers.IntegerField()


class ReportAnomalyOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    kind = serializers.CharField(help_text="warning (an early warning), held (a hold or suspension), red (red "
                                 "evaluations in a stage) or rolled_back (the rollback or abort)")
    text = serializers.CharField()


class ReportSplitOutput(serializers.Serializer):
    window_end = serializers.DateTimeField(help_text="the latest window end in the time bucket")
    configured_percent = serializers.FloatField(allow_null=True)
    observed_canary_share_pct = serializers.FloatField(allow_null=True)


class CanaryReportOutput(serializers.Serializer):
    canary = ReportCanaryOutput()
    decision = ReportDecisionOutput()
    stages = ReportStageOutput(many=True, help_text="each stage the canary reached, against production")
    anomalies = ReportAnomalyOutput(many=True, help_text="warnings, holds, red evaluations and the rollback")
    traffic_split = ReportSplitOutput(many=True, help_text="at most 240 time buckets over the whole canary")


class SignedOutput(serializers.Serializer):
    approval = ApprovalOutput()
    canary = CanaryOutput()


# --- schema examples ------------------------------------------------------------------------------

_T0 = "2025-05-02T10:00:00Z"
_GATES_EXAMPLE = [
    {"name": "error_rate", "status": "green", "value": 0.02, "limit": 0.1, "detail": ""},
    {"name": "latency_p99", "status": "green", "value": 1.04, "limit": 1.2, "detail": ""},
    {"name": "quality", "status": "green", "value": 0.995, "limit": 0.98, "detail": ""},
    {"name": "safety_violations", "status": "green", "value": 0, "limit": 0, "detail": ""},
    {"name": "anomaly_alerts", "status": "green", "value": 0, "limit": 0, "detail": ""},
]
_SUMMARY_EXAMPLE = {
    "id": 7, "model": "support-bot", "version": "1.5.0", "baseline": "1.4.0", "state": "awaiting_approval",
    "schedule": "standard", "traffic_percent": 5,
    "stage": {"index": 1, "percent": 5, "cohort": None, "entered_at": "2025-05-03T10:05:00Z",
              "min_residence_until": "2025-05-04T10:05:00Z"},
    "hold_reason": "", "initiated_by": "ci-bot", "initiated_at": _T0, "ended_at": None, "end_reason": "",
}
_APPROVAL_EXAMPLE = {
    "id": 12, "step": "promote:0->1", "stage_index": 1, "role": "owner", "signer": "olivia",
    "printed_name": "Olivia Owner", "meaning": "Model owner: approves promoting canary #7 of support-bot@1.5.0 "
    "from 1% to 5%", "statement": "I reviewed the evaluation and approve this step.",
    "evaluation_hash": "9f2c" * 16, "signed_at": "2025-05-03T10:05:00Z", "voided_at": None, "void_reason": "",
}
_CANARY_EXAMPLE = {
    **_SUMMARY_EXAMPLE,
    "stages": [{"index": i, "percent": p, "cohort": None, "min_residence_s": 0.0 if p == 100 else 86400.0}
               for i, p in enumerate([1, 5, 10, 25, 50, 100])],
    "segmentation": {"strategy": "random", "values": []},
    "rationale": "", "shadow_evidence_ref": "",
    "thresholds": {
        "promote": {"error_rate_pp": 0.1, "latency_p99_ratio": 1.2, "quality_ratio": 0.98, "safety_violations": 0,
                    "anomaly_alerts": 0},
        "rollback": {"error_rate_pp": 0.5, "latency_p99_ratio": 1.5, "quality_ratio": 0.9, "safety_violations": 0},
    },
    "expected_timeline": [{"index": i, "percent": p, "cohort": None, "earliest_entry": f"2025-05-{2 + i:02d}T10:00:00Z"}
                          for i, p in enumerate([1, 5, 10, 25, 50, 100])],
    "rollback_contact": "support-oncall@example.com", "router": "nginx", "clock_speed": 1.0,
    "readiness": {"ready": True, "reason": "every promotion gate is green"},
    "gates": _GATES_EXAMPLE,
    "latest_evaluation": {"id": 311, "content_hash": "9f2c" * 16, "window_start": "2025-05-04T10:05:00Z",
                          "window_end": "2025-05-04T10:10:00Z", "verdict": "green"},
    "required_approvals": {"step": "promote:1->2", "roles": ["owner"], "outstanding": ["owner"]},
    "approvals": [_APPROVAL_EXAMPLE], "standby": "", "watch_until": None,
}
_STARTED_EXAMPLE = {
    **_CANARY_EXAMPLE, "state": "running", "traffic_percent": 1,
    "stage": {"index": 0, "percent": 1, "cohort": None, "entered_at": _T0,
              "min_residence_until": "2025-05-03T10:00:00Z"},
    "readiness": {"ready": False, "reason": "minimum residence: 24 h 0 min remaining"}, "gates": [],
    "latest_evaluation": None, "required_approvals": {"step": "promote:0->1", "roles": ["owner"],
                                                      "outstanding": ["owner"]},
    "approvals": [],
}
_EVALUATION_EXAMPLE = {
    "id": 311, "stage_index": 1, "window_start": "2025-05-04T10:05:00Z", "window_end": "2025-05-04T10:10:00Z",
    "verdict": "green", "gates": _GATES_EXAMPLE,
    "inputs": {"source": "prometheus", "canary": {"requests": 5210, "errors": 3},
               "production": {"requests": 98544, "errors": 61}},
    "content_hash": "9f2c" * 16, "created_at": "2025-05-04T10:10:02Z",
}


def _ended(state: str, reason: str) -> dict:
    after = {"standby": "used", "watch_until": "2025-05-10T11:00:00Z"} if state == "reverted" else {}
    return {**_CANARY_EXAMPLE, **after, "state": state, "traffic_percent": 0, "ended_at": "2025-05-04T11:00:00Z",
            "end_reason": reason, "readiness": {"ready": False, "reason": f"the canary is {state}: it takes no more "
                                                "signed steps"},
            "required_approvals": {"step": None, "roles": [], "outstanding": []}}


# --- views ----------------------------------------------------------------------------------------


def _detail(request: Request, canary_id: int) -> dict[str, Any]:
    detail = canary_selectors.canary_detail(actor=principal_of(request), canary_id=canary_id, now=timezone.now())
    return CanaryOutput(detail).data


class CanaryCollection(APIView):
    @extend_schema(
        operation_id="canaries_list",
        tags=["canaries"],
        summary="List canaries",
        description="The canaries the caller may see, newest first, filtered by model and state.",
        parameters=[CanaryFilters],
        examples=[example_response(example_page(_SUMMARY_EXAMPLE))],
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
        tags=["canaries"],
        summary="Start a canary",
        description="Starts a canary of a registered version: freezes its schedule, segmentation and thresholds, and "
        "sends the first stage's traffic at once (low and medium risk) or waits for the owner's and MRM's start "
        "signatures (high risk). One active canary per model (409). Send an `Idempotency-Key` derived from the CI "
        "run: a retried job then gets the canary its first try started instead of a refusal or a second canary.",
        request=CanaryInput,
        examples=[example_request({"model": "support-bot", "version": "1.5.0", "schedule": "standard",
                                   "callback_url": "https://ci.example.com/hooks/canary"}),
                  example_response(_STARTED_EXAMPLE, 201)],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: CanaryOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        require_some(principal, Action.START_CANARY)  # 403 before the input is read
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
            callback_url=values["callback_url"],
        )
        return Response(
            _detail(request, canary.pk), status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/canaries/{canary.pk}/"},
        )


class CanaryUrgentPatch(APIView):
    @extend_schema(
        operation_id="canaries_urgent_patch_create",
        tags=["canaries"],
        summary="Start an urgent PATCH canary, faster than the schedule",
        description="A platform engineer's emergency path: a PATCH version over production walks the standard stages "
        "(1, 5, 10, 25, 50, 100 %) holding each for CANARYHUB_URGENT_RESIDENCE_MINUTES (default 60) instead of "
        "24 h or 48 h. Every signature the risk tier requires, green promotion gates and the automatic rollback "
        "rule still apply. Needs a reason of 20 characters at least; opens an `urgent_patch` incident whose root "
        "cause (MRM's retrospective review) is due within 48 h, is audited and notifies on-call, platform, MRM, "
        "the owner and the consumers. 400 for a MINOR or MAJOR version; tokens may not.",
        request=UrgentPatchInput,
        examples=[example_request({"model": "support-bot", "version": "1.4.1",
                                   "reason": "refund answers quote last year's policy; legal asked for a fix today"}),
                  example_response(_STARTED_EXAMPLE, 201)],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: CanaryOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, Action.URGENT_PATCH)  # 403 before the input is read
        data = UrgentPatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        register_selectors.model_get(actor=principal, name=values["model"])
        canary = services.canary_urgent_patch(
            actor=principal, model_name=values["model"], version=values["version"], reason=values["reason"],
            rollback_contact=values["rollback_contact"], router=values["router"],
        )
        return Response(
            _detail(request, canary.pk), status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/canaries/{canary.pk}/"},
        )


class CanaryItem(APIView):
    @extend_schema(
        operation_id="canaries_retrieve",
        tags=["canaries"],
        summary="Get a canary",
        description="Where the canary stands: its state, current stage and residence, the gates of the latest "
        "evaluation, whether the current step can be signed now (and if not, why), and the signatures it still "
        "needs. What a pipeline polls while it waits for the outcome.",
        responses={200: CanaryOutput, **problems(401, 403, 404)},
        examples=[example_response(_CANARY_EXAMPLE)],
    )
    def get(self, request: Request, id: int) -> Response:
        require(principal_of(request), Action.VIEW)
        return Response(_detail(request, id))


class CanaryEvaluations(APIView):
    @extend_schema(
        operation_id="canaries_evaluations_list",
        tags=["canaries"],
        summary="List a canary's evaluations",
        description="The canary's evaluation snapshots, newest window first: each window's gates, verdict, inputs "
        "and content hash (what a signer names with `evaluation_hash`).",
        parameters=[PageFilters],
        examples=[example_response(example_page(_EVALUATION_EXAMPLE))],
        responses={200: paginated(EvaluationOutput), **problems(400, 401, 403, 404)},
    )
    def get(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        canary = canary_selectors.canary_get(actor=principal, canary_id=id)
        PageFilters(data=request.query_params).is_valid(raise_exception=True)
        return paginate(request, self, canary_selectors.canary_evaluations(canary=canary), EvaluationOutput)


_SIDE_EXAMPLE = {"requests": 48000.0, "errors": 24.0, "error_rate": 0.0005, "p99_s_mean": 0.21, "p99_s_worst": 0.24,
                 "quality_mean": 0.91, "quality_scored": 4800.0}
_REPORT_EXAMPLE = {
    "canary": {"id": 7, "model": "scorer", "version": "1.1.0", "baseline": "1.0.0", "schedule": "standard",
               "risk_tier": "high", "state": "rolled_back", "initiated_at": _T0, "ended_at": "2025-05-02T16:10:00Z",
               "end_reason": "error rate tripled"},
    "decision": {"outcome": "rolled back", "decided_by": "error rate (automatic rollback)"},
    "stages": [{"number": 1, "label": "1%", "percent": 1, "entered_at": _T0, "left_at": "2025-05-02T16:10:00Z",
                "time_s": 22200.0, "decision": "rolled back: error rate tripled", "windows": 370,
                "canary": _SIDE_EXAMPLE, "production": {**_SIDE_EXAMPLE, "requests": 4752000.0, "errors": 2376.0},
                "comparison": {"error_rate_difference_pp": 0.0, "p99_ratio": 1.0, "quality_ratio": 1.0},
                "safety_violations": 0.0, "warnings": 1, "red_evaluations": 2}],
    "anomalies": [{"at": "2025-05-02T16:09:00Z", "kind": "warning", "text": "1 window(s) with an early warning"},
                  {"at": "2025-05-02T16:10:00Z", "kind": "rolled_back", "text": "Rolled back: error rate tripled"}],
    "traffic_split": [{"window_end": "2025-05-02T10:02:00Z", "configured_percent": 1.0,
                       "observed_canary_share_pct": 0.98}],
}


class CanaryReport(APIView):
    @extend_schema(
        operation_id="canaries_report_retrieve",
        tags=["canaries"],
        summary="Get a canary's post-canary report",
        description="What the canary did, as the report page and the evidence bundle's PDF show it: the router's "
        "split over time (configured percent against the observed canary share, in at most 240 time buckets), each "
        "stage's pooled numbers for the canary and production side by side with their difference and ratios, the "
        "anomalies (early warnings, holds, red evaluations, the rollback; windows that merely lacked samples are "
        "not anomalies), the decision, and how long each stage lasted and how it ended. Available while the "
        "canary runs too (the last stage then reads `in progress`).",
        responses={200: CanaryReportOutput, **problems(401, 403, 404)},
        examples=[example_response(_REPORT_EXAMPLE)],
    )
    def get(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        canary = canary_selectors.canary_get(actor=principal, canary_id=id)
        report = dashboard.canary_report(canary, now=timezone.now())
        return Response(CanaryReportOutput(report.data()).data)


class CanaryApprovals(APIView):
    @extend_schema(
        operation_id="canaries_approvals_create",
        tags=["canaries"],
        summary="Sign the canary's current step",
        description="A person's e-signature (re-authenticated with their password) on the canary's current step: "
        "its start, or the promotion to the next stage, naming the evaluation they were shown. The last required "
        "signature takes the step. Service-account tokens never sign (403).",
        request=ApprovalInput,
        examples=[example_request({"role": "owner", "statement": "I reviewed the evaluation and approve this step.",
                            "password": "…", "evaluation_hash": "9f2c" * 16}),
                  example_response({"approval": _APPROVAL_EXAMPLE, "canary": {**_STARTED_EXAMPLE, **{
                      k: _SUMMARY_EXAMPLE[k] for k in ("stage", "traffic_percent")}, "state": "running",
                      "approvals": [_APPROVAL_EXAMPLE]}}, 201)],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: SignedOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        canary = canary_selectors.canary_get(actor=principal, canary_id=id)
        # Who can give no signature on this canary is refused before their input is read.
        refusal = canary_selectors.signing_permission(principal, canary)
        if refusal:
            raise PermissionRefused(refusal)
        data = ApprovalInput(data=request.data)
        data.is_valid(raise_exception=True)
        approval = services.canary_sign(actor=principal, canary_id=id, request=request, **data.validated_data)
        return Response(
            {"approval": ApprovalOutput(approval).data, "canary": _detail(request, id)},
            status=status.HTTP_201_CREATED,
        )


class CanaryRollback(APIView):
    @extend_schema(
        operation_id="canaries_rollback_create",
        tags=["canaries"],
        summary="Roll a canary back",
        description="Sends every user back to the production version at once (the 0 % push goes first), marks the "
        "version rolled back and opens an incident that needs a root cause. The model's owner or a platform "
        "engineer, or on-call with `break_glass`.",
        request=StopInput,
        examples=[example_request({"reason": "users report wrong answers about refunds"}),
                  example_response(_ended("rolled_back", "users report wrong answers about refunds"))],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: CanaryOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        canary = canary_selectors.canary_get(actor=principal, canary_id=id)
        # 403 before the input is read: the owner's or platform's right, or on-call's break-glass.
        break_glass_needed(principal, Action.ROLLBACK_CANARY, model=canary.model)
        data = StopInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.canary_rollback(actor=principal, canary_id=id, reason=data.validated_data["reason"],
                                 break_glass=data.validated_data["break_glass"], automatic=False)
        return Response(_detail(request, id))


class CanaryRevert(APIView):
    @extend_schema(
        operation_id="canaries_revert_create",
        tags=["canaries"],
        summary="Revert a completed canary to the previous version",
        description="During the post-promotion watch after 100 % (while the previous version is on hot standby), "
        "sends every user back to the previous version at once (the 0 % push goes first), makes it production "
        "again, marks the canary's version rolled back and opens an incident that needs a root cause. The model's "
        "owner or a platform engineer, or on-call with `break_glass`. 409 outside the watch (not completed, "
        "standby released, reverted already) or while a newer canary of the model is active.",
        request=StopInput,
        examples=[example_request({"reason": "complaints about refunds since the promotion"}),
                  example_response(_ended("reverted", "complaints about refunds since the promotion"))],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: CanaryOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        canary = canary_selectors.canary_get(actor=principal, canary_id=id)
        # 403 before the input is read: the owner's or platform's right, or on-call's break-glass.
        break_glass_needed(principal, Action.REVERT_CANARY, model=canary.model)
        data = StopInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.canary_revert(actor=principal, canary_id=id, reason=data.validated_data["reason"],
                                 break_glass=data.validated_data["break_glass"])
        return Response(_detail(request, id))


class CanaryAbort(APIView):
    @extend_schema(
        operation_id="canaries_abort_create",
        tags=["canaries"],
        summary="Abort a canary",
        description="Stops a canary before completion for a reason that is not a metric breach (traffic to 0 % "
        "first); the version returns to registered and may be canaried again.",
        request=ReasonInput,
        examples=[example_request({"reason": "release train cancelled"}),
                  example_response(_ended("aborted", "release train cancelled"))],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: CanaryOutput, **problems(400, 401, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        canary = canary_selectors.canary_get(actor=principal, canary_id=id)
        require(principal, Action.ABORT_CANARY, model=canary.model)  # 403 before the input is read
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.canary_abort(actor=principal, canary_id=id, reason=data.validated_data["reason"])
        return Response(_detail(request, id))


class StickySweepInput(StrictSerializer):
    """Why the sticky store is swept now: recorded in the audit trail."""

    reason = StrictCharField(max_length=REASON_MAX, min_length=services.STICKY_REASON_MIN)


class StickySweepOutput(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    scanned = serializers.IntegerField(help_text="sticky entries looked at")
    cleared = serializers.DictField(child=serializers.IntegerField(),
                                    help_text="entries cleared, by reason: not_serving, unsigned, share_drift")
    by_canary = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))
    share_drift = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()),
                                        help_text="canaries whose share of eligible users drifted from the percent")


class StickySweepView(APIView):
    @extend_schema(
        operation_id="assignments_sweep_create",
        tags=["assignment"],
        summary="Clear sticky assignments that disagree with the split in force",
        description="Sweeps the sticky assignment store now (the periodic sweep does the same every "
        "CANARYHUB_STICKY_SWEEP_INTERVAL_S): clears entries not written by CanaryHub, entries of a canary that no "
        "longer serves anybody, and every entry of a canary whose share of the eligible users drifted from its "
        "percent beyond the tolerance. Cleared users are assigned again by the same hashing, so nobody is moved "
        "off a canary the split puts them on. A platform engineer's act with a reason of 10 characters at least; "
        "one audit event with the counts (never user ids). 409 when the store does not answer.",
        request=StickySweepInput,
        examples=[example_request({"reason": "users report switching versions mid-conversation"}),
                  example_response({"id": 4, "at": "2025-05-04T11:00:00Z", "scanned": 1204,
                                    "cleared": {"not_serving": 310, "unsigned": 2, "share_drift": 0},
                                    "by_canary": {"6": {"not_serving": 310}, "7": {"unsigned": 2}},
                                    "share_drift": {}})],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: StickySweepOutput, **problems(400, 401, 403, 409, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, Action.CLEAR_STICKY)  # 403 before the input is read
        data = StickySweepInput(data=request.data)
        data.is_valid(raise_exception=True)
        sweep = services.sticky_sweep(actor=principal, reason=data.validated_data["reason"])
        return Response(StickySweepOutput({
            "id": sweep.pk, "at": sweep.at, "scanned": sweep.scanned,
            "cleared": {"not_serving": sweep.cleared_not_serving, "unsigned": sweep.cleared_unsigned,
                        "share_drift": sweep.cleared_share_drift},
            "by_canary": sweep.by_canary, "share_drift": sweep.drift,
        }).data)


urlpatterns = [
    path("assignments/sweep/", StickySweepView.as_view(), name="api-sticky-sweep"),
    path("canaries/", CanaryCollection.as_view(), name="api-canary-list"),
    path("canaries/urgent-patch/", CanaryUrgentPatch.as_view(), name="api-canary-urgent-patch"),
    path("canaries/<int:id>/", CanaryItem.as_view(), name="api-canary-detail"),
    path("canaries/<int:id>/evaluations/", CanaryEvaluations.as_view(), name="api-canary-evaluations"),
    path("canaries/<int:id>/report/", CanaryReport.as_view(), name="api-canary-report"),
    path("canaries/<int:id>/approvals/", CanaryApprovals.as_view(), name="api-canary-approvals"),
    path("canaries/<int:id>/rollback/", CanaryRollback.as_view(), name="api-canary-rollback"),
    path("canaries/<int:id>/abort/", CanaryAbort.as_view(), name="api-canary-abort"),
    path("canaries/<int:id>/revert/", CanaryRevert.as_view(), name="api-canary-revert"),
]
