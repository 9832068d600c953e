"""REST API of the governance evidence: the audit trail (`/api/v1/audit/…`), incidents,
root-cause reports and their review, re-initiation signatures, threshold change reviews,
completion certificates and the evidence bundle."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import QueryFilters, StrictSerializer, paginate, paginated, problems
from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance import selectors
from governance.audit import audit_append, audit_verify
from governance.authentication import principal_of
from governance.certificates import certificate_decide, certificate_verify, verify_url
from governance.evidence import bundle_stream, canaries_for
from governance.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from governance.models import Certificate, Incident, ReinitiationApproval, RootCauseReport, ThresholdChangeRequest
from governance.permissions import Action, require, visible_models_filter
from governance.rootcause import (
    incident_is_overdue,
    incidents,
    reinitiation_approve,
    root_cause_file,
    root_cause_review,
)
from governance.threshold_changes import threshold_change_request, threshold_change_review
from releases.api import ThresholdsField
from releases.api_canaries import PASSWORD_MAX, STATEMENT_MAX, StrictCharField
from releases.models import AIModel


class AuditEventOutput(serializers.Serializer):
    seq = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_name")
    action = serializers.CharField()
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    payload = serializers.JSONField()
    prev_hash = serializers.CharField()
    hash = serializers.CharField()


class AuditFilters(QueryFilters):
    object = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=200,
        help_text="object_type, or object_type:object_id",
    )
    actor = serializers.CharField(required=False, default="", allow_blank=True, max_length=150)
    action = serializers.CharField(required=False, default="", allow_blank=True, max_length=80)
    since = serializers.DateTimeField(required=False, default=None)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


VerifyOutput = inline_serializer(
    name="AuditVerification",
    fields={
        "ok": serializers.BooleanField(),
        "length": serializers.IntegerField(),
        "head_hash": serializers.CharField(),
        "first_bad_seq": serializers.IntegerField(allow_null=True),
        "reason": serializers.CharField(),
    },
)


class AuditList(APIView):
    @extend_schema(
        operation_id="audit_list", parameters=[AuditFilters],
        responses={200: paginated(AuditEventOutput), **problems(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, Action.VERIFY_AUDIT)
        filters = AuditFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        qs = selectors.audit_events(
            object_ref=data["object"], actor=data["actor"], action=data["action"], since=data["since"]
        )
        return paginate(request, self, qs, AuditEventOutput)


class AuditVerify(APIView):
    @extend_schema(operation_id="audit_verify", responses={200: VerifyOutput, **problems(401, 403)})
    def get(self, request: Request) -> Response:
        require(principal_of(request), Action.VERIFY_AUDIT)
        return Response(audit_verify().as_dict())


# --- incidents and root causes -------------------------------------------------------------------


def _visible_canary(principal: Any, canary_id: int) -> Any:
    from releases.models import Canary

    qs = Canary.objects.select_related("model", "version")
    scope = visible_models_filter(principal)
    if scope is not None:
        qs = qs.filter(model__in=AIModel.objects.filter(**scope))
    canary = qs.filter(pk=canary_id).first()
    if canary is None:
        raise NotFound(f"no canary #{canary_id}")
    return canary


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
        return incident_is_overdue(incident, now=timezone.now())


class IncidentFilters(QueryFilters):
    status = serializers.ChoiceField(choices=Incident.Status.choices, required=False, default="")
    kind = serializers.ChoiceField(choices=Incident.Kind.choices, required=False, default="")
    model = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class IncidentList(APIView):
    @extend_schema(operation_id="incidents_list", parameters=[IncidentFilters],
                   responses={200: paginated(IncidentOutput), **problems(400, 401, 403, 404)})
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        filters = IncidentFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        qs = incidents(status=data["status"], kind=data["kind"], model=data["model"])
        scope = visible_models_filter(principal)
        if scope is not None:
            qs = qs.filter(canary__model__in=AIModel.objects.filter(**scope))
        return paginate(request, self, qs, IncidentOutput)


class RootCauseInput(StrictSerializer):
    cause = serializers.CharField(max_length=10000)
    contributing_factors = serializers.CharField(max_length=10000, required=False, default="", allow_blank=True)
    fix = serializers.CharField(max_length=10000)
    version_change_ref = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class IncidentRootCause(APIView):
    @extend_schema(operation_id="incidents_root_cause_create", request=RootCauseInput,
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={201: RootCauseOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        data = RootCauseInput(data=request.data)
        data.is_valid(raise_exception=True)
        report = root_cause_file(actor=principal_of(request), incident_id=id, **data.validated_data)
        return Response(RootCauseOutput(report).data, status=status.HTTP_201_CREATED)


def _human(principal: Any, what: str) -> None:
    # Checked before any lookup, so a token learns nothing about the object it may not act on.
    if principal.is_service_account:
        raise PermissionRefused(f"service accounts never {what}: it is a human act")


def _visible_incident(principal: Any, incident_id: int) -> Incident:
    incident = Incident.objects.select_related("canary__model").filter(pk=incident_id).first()
    if incident is None:
        raise NotFound(f"no incident #{incident_id}")
    if incident.canary_id is not None:
        _visible_canary(principal, incident.canary_id)
    return incident


class RootCauseReviewInput(StrictSerializer):
    decision = serializers.ChoiceField(choices=[("accept", "accept"), ("return", "return")])
    note = StrictCharField(max_length=10000, required=False, default="", allow_blank=True,
                           help_text="required (10+ characters) to return the report")


class IncidentRootCauseReview(APIView):
    @extend_schema(operation_id="incidents_root_cause_review_create", request=RootCauseReviewInput,
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={200: RootCauseOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        """MRM accepts the incident's filed root-cause report (the incident is resolved) or
        returns it with a note (the incident is open again)."""
        principal = principal_of(request)
        _human(principal, "review a root cause")
        require(principal, Action.ACCEPT_ROOT_CAUSE)
        incident = _visible_incident(principal, id)
        data = RootCauseReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        report = incident.root_cause_reports.filter(status=RootCauseReport.Status.FILED).first()
        if report is None:
            raise Conflict(f"incident #{incident.pk} is {incident.status}: no root-cause report awaits review")
        report = root_cause_review(actor=principal, report_id=report.pk,
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
    @extend_schema(operation_id="incidents_reinitiation_create", request=ReinitiationInput,
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={201: ReinitiationOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        """The model owner's e-signature that the rolled-back version may be canaried again
        (its root cause accepted by MRM); the password is re-entered."""
        principal = principal_of(request)
        _human(principal, "sign a re-initiation")
        _visible_incident(principal, id)
        data = ReinitiationInput(data=request.data)
        data.is_valid(raise_exception=True)
        approval = reinitiation_approve(actor=principal, incident_id=id, **data.validated_data)
        approval = ReinitiationApproval.objects.select_related("version__model", "signer").get(pk=approval.pk)
        return Response(ReinitiationOutput(approval).data, status=status.HTTP_201_CREATED)


# --- threshold change reviews ---------------------------------------------------------------------


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
                   responses={200: paginated(ThresholdChangeOutput), **problems(400, 401, 403, 404)})
    def get(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        _visible_canary(principal, id)
        ThresholdChangeFilters(data=request.query_params).is_valid(raise_exception=True)
        return paginate(request, self, _threshold_changes().filter(canary_id=id), ThresholdChangeOutput)

    @extend_schema(operation_id="canaries_threshold_changes_create", request=ThresholdChangeInput,
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={201: ThresholdChangeOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        """Request a change of a running canary's thresholds. It needs AI Governance and MRM
        approval and applies when the canary next enters a stage."""
        principal = principal_of(request)
        _visible_canary(principal, id)
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
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={200: ThresholdChangeOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        """AI Governance or MRM approves (or rejects) a threshold change; with both approvals it
        applies at the canary's next stage."""
        principal = principal_of(request)
        _human(principal, "review a threshold change")
        change = ThresholdChangeRequest.objects.filter(pk=id).first()
        if change is None:
            raise NotFound(f"no threshold change request #{id}")
        _visible_canary(principal, change.canary_id)
        data = ThresholdChangeReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        threshold_change_review(actor=principal, request_id=id, approve=data.validated_data["decision"] == "approve",
                                note=data.validated_data["note"])
        return Response(ThresholdChangeOutput(_threshold_changes().get(pk=id)).data)


# --- certificates ---------------------------------------------------------------------------------


class CertificateOutput(serializers.Serializer):
    id = serializers.UUIDField()
    canary = serializers.IntegerField(source="canary_id")
    status = serializers.CharField()
    checklist = serializers.JSONField()
    reasons = serializers.CharField()
    reviewer = serializers.CharField(source="reviewer_name")
    decided_at = serializers.DateTimeField()
    body = serializers.JSONField()
    evidence_hash = serializers.CharField()
    chain_head = serializers.SerializerMethodField()
    content_hash = serializers.CharField()
    pdf_sha256 = serializers.CharField()
    audit_seq = serializers.IntegerField(allow_null=True)
    verify_url = serializers.SerializerMethodField()

    def get_chain_head(self, cert: Certificate) -> dict[str, Any]:
        return {"seq": cert.chain_head_seq, "hash": cert.chain_head_hash}

    def get_verify_url(self, cert: Certificate) -> str:
        request = self.context.get("request")
        url = verify_url(cert.pk)
        return request.build_absolute_uri(url) if request is not None else url


class CertificateInput(StrictSerializer):
    decision = serializers.ChoiceField(choices=[("issue", "issue"), ("return", "return")], default="issue")
    reasons = serializers.CharField(max_length=5000, required=False, default="", allow_blank=True)


CertificateVerifyOutput = inline_serializer(
    name="CertificateVerification",
    fields={
        "ok": serializers.BooleanField(),
        "certificate": serializers.CharField(),
        "status": serializers.CharField(),
        "checks": serializers.ListField(child=serializers.DictField()),
        "changed": serializers.ListField(child=serializers.CharField()),
    },
)


class CanaryCertificate(APIView):
    @extend_schema(operation_id="canaries_certificate_create", request=CertificateInput,
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={201: CertificateOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        _visible_canary(principal, id)
        data = CertificateInput(data=request.data)
        data.is_valid(raise_exception=True)
        cert = certificate_decide(actor=principal, canary_id=id, issue=data.validated_data["decision"] == "issue",
                                  reasons=data.validated_data["reasons"])
        return Response(CertificateOutput(cert, context={"request": request}).data, status=status.HTTP_201_CREATED)


class CertificateDetail(APIView):
    @extend_schema(operation_id="certificates_retrieve", responses={200: CertificateOutput, **problems(401, 403, 404)})
    def get(self, request: Request, id: uuid.UUID) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        cert = Certificate.objects.filter(pk=id).first()
        if cert is None:
            raise NotFound(f"no certificate {id}")
        _visible_canary(principal, cert.canary_id)
        return Response(CertificateOutput(cert, context={"request": request}).data)


class CertificateVerify(APIView):
    @extend_schema(operation_id="certificates_verify", responses={200: CertificateVerifyOutput,
                                                                  **problems(401, 403, 404)})
    def get(self, request: Request, id: uuid.UUID) -> Response:
        require(principal_of(request), Action.VIEW)
        return Response(certificate_verify(certificate_id=id).as_dict())


# --- evidence bundle ------------------------------------------------------------------------------


class CanaryEvidence(APIView):
    @extend_schema(
        operation_id="canaries_evidence_retrieve",
        responses={(200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="the bundle (zip)"),
                   **problems(401, 403, 404)},
    )
    def get(self, request: Request, id: int) -> StreamingHttpResponse:
        principal = principal_of(request)
        canary = _visible_canary(principal, id)
        require(principal, Action.EXPORT_EVIDENCE, model=canary.model)
        audit_append(actor=principal.user, action="evidence.downloaded", object_type="canary", object_id=canary.pk,
                     payload={"via_token": principal.token_prefix})
        stream = bundle_stream(canaries_for(canary_id=canary.pk), scope={"kind": "canary", "canary": canary.pk})
        response = StreamingHttpResponse(stream, content_type="application/zip")
        response["Content-Disposition"] = (
            f'attachment; filename="canaryhub-evidence-canary-{canary.pk}-{canary.model.name}-'
            f'{canary.version.version}.zip"'
        )
        return response


urlpatterns = [
    path("audit/", AuditList.as_view(), name="api-audit-list"),
    path("audit/verify/", AuditVerify.as_view(), name="api-audit-verify"),
    path("incidents/", IncidentList.as_view(), name="api-incident-list"),
    path("incidents/<int:id>/root-cause/", IncidentRootCause.as_view(), name="api-incident-root-cause"),
    path("incidents/<int:id>/root-cause/review/", IncidentRootCauseReview.as_view(),
         name="api-incident-root-cause-review"),
    path("incidents/<int:id>/reinitiation/", IncidentReinitiation.as_view(), name="api-incident-reinitiation"),
    path("canaries/<int:id>/threshold-changes/", CanaryThresholdChanges.as_view(), name="api-canary-threshold-changes"),
    path("threshold-changes/<int:id>/approvals/", ThresholdChangeApprovals.as_view(),
         name="api-threshold-change-approvals"),
    path("canaries/<int:id>/certificate/", CanaryCertificate.as_view(), name="api-canary-certificate"),
    path("canaries/<int:id>/evidence/", CanaryEvidence.as_view(), name="api-canary-evidence"),
    path("certificates/<uuid:id>/", CertificateDetail.as_view(), name="api-certificate-detail"),
    path("certificates/<uuid:id>/verify/", CertificateVerify.as_view(), name="api-certificate-verify"),
]
