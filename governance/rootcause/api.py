"""REST API of incidents: the list, root-cause reports and MRM's review of them, and the owner's
signed re-initiation of a rolled-back version."""

from __future__ import annotations

from typing import Any

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import (
    PASSWORD_MAX,
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
from canaryhub.errors import Conflict, NotFound
from governance.access.permissions import (
    Action,
    may_see_model,
    principal_of,
    refuse_machine,
    require,
    visible_models_filter,
)
from governance.incidents import selectors
from governance.incidents.models import Incident, ReinitiationApproval, RootCauseReport
from governance.rootcause import services
from governance.tokens.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent

# --- schema examples ------------------------------------------------------------------------------

_ROOT_CAUSE_EXAMPLE = {
    "id": 3, "status": "filed", "cause": "The new prompt template dropped the refund policy section.",
    "contributing_factors": "The offline evaluation set had no refund questions.",
    "fix": "Template restored; refund questions added to the evaluation set.", "version_change_ref": "1.5.1",
    "filed_by": "oncall-sam", "filed_at": "2025-05-05T09:00:00Z", "filed_late": False, "reviewed_at": None,
    "review_note": "",
}
_INCIDENT_EXAMPLE = {
    "id": 5, "severity": "P2", "kind": "rollback", "status": "root_cause_filed", "canary": 7, "evaluation": 311,
    "summary": "Canary #7 of support-bot@1.5.0 rolled back automatically: error_rate above the rollback limit",
    "opened_at": "2025-05-04T11:00:00Z", "root_cause_due_at": "2025-05-06T11:00:00Z", "overdue": False,
    "resolved_at": None, "root_causes": [_ROOT_CAUSE_EXAMPLE],
}
_REINITIATION_EXAMPLE = {
    "id": 2, "incident": 5, "root_cause": 3, "model": "support-bot", "version": "1.5.0", "signer": "olivia",
    "printed_name": "Olivia Owner",
    "meaning": "Model owner: approves canarying support-bot@1.5.0 again after rollback incident #5",
    "statement": "The root cause is fixed and accepted; canary it again.", "signed_at": "2025-05-06T09:30:00Z",
    "used_by": None,
}


class RootCauseOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    cause = serializers.CharField()
    contributing_factors = serializers.CharField()
    fix = serializers.CharField()
    version_change_ref = serializers.CharField()
    filed_by = serializers.CharField(source="filed_by.username")
    filed_at = serializers.DateTimeField()
    filed_late = serializers.BooleanField()
    reviewed_at = serializers.DateTimeField(allow_null=True)
    review_note = serializers.CharField()


class IncidentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    severity = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    canary = serializers.IntegerField(source="canary_id", allow_null=True)
    evaluation = serializers.IntegerField(source="evaluation_id", allow_null=True)
    summary = serializers.CharField()
    opened_at = serializers.DateTimeField()
    root_cause_due_at = serializers.DateTimeField(allow_null=True)
    overdue = serializers.SerializerMethodField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    root_causes = RootCauseOutput(many=True, source="root_cause_reports.all")

    def get_overdue(self, incident: Incident) -> bool:
        return selectors.incident_is_overdue(incident, now=timezone.now())


class IncidentFilters(QueryFilters):
    status = serializers.ChoiceField(choices=Incident.Status.choices, required=False, default=no_filter)
    kind = serializers.ChoiceField(choices=Incident.Kind.choices, required=False, default=no_filter)
    model = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class IncidentList(APIView):
    @extend_schema(operation_id="incidents_list", parameters=[IncidentFilters], tags=["incidents"],
                   summary="List incidents",
                   description="Incidents (rollbacks, a silent monitor, unconfirmed rollbacks, router and audit "
                   "failures) with their root-cause reports, filtered by status, kind and model.",
                   responses={200: paginated(IncidentOutput), **problems(400, 401, 403, 404)},
                   examples=[example_response(example_page(_INCIDENT_EXAMPLE))])
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        filters = IncidentFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        qs = selectors.incidents(status=data["status"], kind=data["kind"], model=data["model"])
        scope = visible_models_filter(principal)
        if scope is not None:
            qs = qs.filter(**{f"canary__model__{name}": value for name, value in scope.items()})
        return paginate(request, self, qs, IncidentOutput)


class RootCauseInput(StrictSerializer):
    cause = serializers.CharField(max_length=10000)
    contributing_factors = serializers.CharField(max_length=10000, required=False, default="", allow_blank=True)
    fix = serializers.CharField(max_length=10000)
    version_change_ref = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class IncidentRootCause(APIView):
    @extend_schema(operation_id="incidents_root_cause_create", request=RootCauseInput, tags=["incidents"],
                   summary="File a root-cause report",
                   description="Platform engineers and on-call file the root cause of an incident, with its fix; "
                   "MRM then accepts or returns it.",
                   examples=[example_request({k: _ROOT_CAUSE_EXAMPLE[k] for k in (
                                 "cause", "contributing_factors", "fix", "version_change_ref")}),
                             example_response(_ROOT_CAUSE_EXAMPLE, 201)],
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={201: RootCauseOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        require(principal, Action.FILE_ROOT_CAUSE)  # 403 before the input is read
        _visible_incident(principal, id)
        data = RootCauseInput(data=request.data)
        data.is_valid(raise_exception=True)
        report = services.root_cause_file(actor=principal, incident_id=id, **data.validated_data)
        return Response(RootCauseOutput(report).data, status=status.HTTP_201_CREATED)



def _visible_incident(principal: Any, incident_id: int) -> Incident:
    """The incident, or 404 when it does not exist or its canary's model lies outside what the
    principal may see."""
    incident = Incident.objects.select_related("canary").filter(pk=incident_id).first()
    if incident is None or (incident.canary_id is not None and not may_see_model(principal, incident.canary.model_id)):
        raise NotFound(f"no incident #{incident_id}")
    return incident


class RootCauseReviewInput(StrictSerializer):
    decision = serializers.ChoiceField(choices=[("accept", "accept"), ("return", "return")])
    note = StrictCharField(max_length=10000, required=False, default="", allow_blank=True,
                           help_text="required (10+ characters) to return the report")


class IncidentRootCauseReview(APIView):
    @extend_schema(operation_id="incidents_root_cause_review_create", request=RootCauseReviewInput,
                   tags=["incidents"], summary="Review a root-cause report",
                   description="MRM accepts the incident's filed root-cause report (the incident is resolved) or "
                   "returns it with a note of 10 or more characters (the incident is open again).",
                   examples=[example_request({"decision": "accept", "note": ""}),
                             example_response({**_ROOT_CAUSE_EXAMPLE, "status": "accepted",
                                               "reviewed_at": "2025-05-05T14:00:00Z"})],
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={200: RootCauseOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        """MRM accepts the incident's filed root-cause report (the incident is resolved) or
        returns it with a note (the incident is open again)."""
        principal = principal_of(request)
        refuse_machine(principal, "review a root cause")
        require(principal, Action.ACCEPT_ROOT_CAUSE)
        incident = _visible_incident(principal, id)
        data = RootCauseReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        report = incident.root_cause_reports.filter(status=RootCauseReport.Status.FILED).first()
        if report is None:
            raise Conflict(f"incident #{incident.pk} is {incident.status}: no root-cause report awaits review")
        report = services.root_cause_review(actor=principal, report_id=report.pk,
                                   accept=data.validated_data["decision"] == "accept",
                                   note=data.validated_data["note"])
        return Response(RootCauseOutput(report).data)


class ReinitiationInput(StrictSerializer):
    statement = StrictCharField(min_length=10, max_length=STATEMENT_MAX,
                                help_text="what you approve, in your words (10+ characters)")
    password = StrictCharField(max_length=PASSWORD_MAX, trim_whitespace=False, write_only=True,
                               style={"input_type": "password"}, help_text="your password (re-authentication)")


class ReinitiationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    incident = serializers.IntegerField(source="incident_id")
    root_cause = serializers.IntegerField(source="root_cause_id")
    model = serializers.CharField(source="version.model.name")
    version = serializers.CharField(source="version.version")
    signer = serializers.CharField(source="signer.username")
    printed_name = serializers.CharField()
    meaning = serializers.CharField()
    statement = serializers.CharField()
    signed_at = serializers.DateTimeField()
    used_by = serializers.IntegerField(source="used_by_id", allow_null=True)


class IncidentReinitiation(APIView):
    @extend_schema(operation_id="incidents_reinitiation_create", request=ReinitiationInput, tags=["incidents"],
                   summary="Approve canarying a rolled-back version again",
                   description="The model owner's e-signature (password re-entered) that the rolled-back version "
                   "may be canaried again, once MRM has accepted its root cause.",
                   examples=[example_request({"statement": _REINITIATION_EXAMPLE["statement"], "password": "…"}),
                             example_response(_REINITIATION_EXAMPLE, 201)],
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={201: ReinitiationOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        """The model owner's e-signature that the rolled-back version may be canaried again
        (its root cause accepted by MRM); the password is re-entered."""
        principal = principal_of(request)
        refuse_machine(principal, "sign a re-initiation")
        incident = _visible_incident(principal, id)
        if incident.canary_id is not None:
            require(principal, Action.APPROVE_REINITIATION, model=incident.canary.model)  # before the input
        data = ReinitiationInput(data=request.data)
        data.is_valid(raise_exception=True)
        approval = services.reinitiation_approve(actor=principal, incident_id=id, request=request,
                                                **data.validated_data)
        approval = ReinitiationApproval.objects.select_related("version__model", "signer").get(pk=approval.pk)
        return Response(ReinitiationOutput(approval).data, status=status.HTTP_201_CREATED)


urlpatterns = [
    path("incidents/", IncidentList.as_view(), name="api-incident-list"),
    path("incidents/<int:id>/root-cause/", IncidentRootCause.as_view(), name="api-incident-root-cause"),
    path("incidents/<int:id>/root-cause/review/", IncidentRootCauseReview.as_view(),
         name="api-incident-root-cause-review"),
    path("incidents/<int:id>/reinitiation/", IncidentReinitiation.as_view(), name="api-incident-reinitiation"),
]
