"""REST API of completion certificates: AI Governance issues (or returns) one for a completed
canary; anyone who may view reads and verifies it."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import StrictSerializer, example_request, example_response, problems
from canaryhub.errors import NotFound, PermissionRefused
from governance.access.permissions import Action, principal_of, require
from governance.certificates.models import Certificate
from governance.certificates.services import certificate_decide, certificate_verify, reviewer_conflict
from governance.reports.pdf import verify_url
from governance.tokens.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from releases.canaries.selectors import canary_get

# --- schema examples ------------------------------------------------------------------------------

_HASH = "4be1" * 16
_CERTIFICATE_ID = "0b8f6f4e-2f1c-4d3a-9a57-5d2b7b1c9e10"
_CERTIFICATE_EXAMPLE = {
    "id": _CERTIFICATE_ID, "canary": 7, "status": "issued",
    "checklist": [{"key": "signatures", "label": "Every signature present and valid", "ok": True,
                   "detail": "6 signatures, each matching what the signer saw"}],
    "reasons": "", "reviewer": "Gita Governance", "decided_at": "2025-05-09T15:00:00Z",
    "body": {"canary_id": 7, "model": "support-bot", "version": "1.5.0", "baseline": "1.4.0",
             "completed_at": "2025-05-08T10:30:00Z", "issued_by": "Gita Governance"},
    "evidence_hash": "ab12" * 16, "chain_head": {"seq": 1210, "hash": _HASH}, "content_hash": "cd34" * 16,
    "pdf_sha256": "ef56" * 16, "audit_seq": 1211,
    "signature": {"algorithm": "Ed25519", "key_id": "5f1c0a9e3b7d2c48", "fingerprint": "5f1c0a9e3b7d2c48" * 4,
                  "signature": "q1mYt4" + "A" * 80 + "=="},
    "verify_url": f"https://canaryhub.example/governance/verify/{_CERTIFICATE_ID}/",
}


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
    signature = serializers.SerializerMethodField(
        help_text="The server's Ed25519 signature of the certificate's id and content_hash, with the signing "
                  "key's id and public-key fingerprint (the keys are published at /api/v1/signing-keys/); "
                  "null on a certificate issued before certificates were signed.")
    verify_url = serializers.SerializerMethodField()

    def get_signature(self, cert: Certificate) -> dict[str, str] | None:
        return dict(cert.signature) if cert.signature else None

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
    @extend_schema(operation_id="canaries_certificate_create", request=CertificateInput, tags=["certificates"],
                   summary="Issue (or return) a canary's completion certificate",
                   description="AI Governance reviews a completed canary's checklist and issues its certificate, "
                   "sealed into the audit chain (the canary becomes certified), or returns it with reasons.",
                   examples=[example_request({"decision": "issue", "reasons": ""}),
                             example_response(_CERTIFICATE_EXAMPLE, 201)],
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={201: CertificateOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, id: int) -> Response:
        principal = principal_of(request)
        canary = canary_get(actor=principal, canary_id=id)
        require(principal, Action.ISSUE_CERTIFICATE, model=canary.model)  # 403 before the input is read
        conflict = reviewer_conflict(canary, principal.user)
        if conflict:
            raise PermissionRefused(conflict)
        data = CertificateInput(data=request.data)
        data.is_valid(raise_exception=True)
        cert = certificate_decide(actor=principal, canary_id=id, issue=data.validated_data["decision"] == "issue",
                                  reasons=data.validated_data["reasons"])
        return Response(CertificateOutput(cert, context={"request": request}).data, status=status.HTTP_201_CREATED)


class CertificateDetail(APIView):
    @extend_schema(operation_id="certificates_retrieve", tags=["certificates"], summary="Get a certificate",
                   description="A completion certificate: its checklist, sealed body, hashes and where to verify it.",
                   responses={200: CertificateOutput, **problems(401, 403, 404)},
                   examples=[example_response(_CERTIFICATE_EXAMPLE)])
    def get(self, request: Request, id: uuid.UUID) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        cert = Certificate.objects.filter(pk=id).first()
        if cert is None:
            raise NotFound(f"no certificate {id}")
        canary_get(actor=principal, canary_id=cert.canary_id)
        return Response(CertificateOutput(cert, context={"request": request}).data)


class CertificateVerify(APIView):
    @extend_schema(operation_id="certificates_verify", tags=["certificates"], summary="Verify a certificate",
                   description="Whether the certificate is genuine and unaltered: its own hash, every sealed record, "
                   "its sealing audit event and the whole audit chain, each check named.",
                   responses={200: CertificateVerifyOutput, **problems(401, 403, 404)},
                   examples=[example_response({"ok": True, "certificate": _CERTIFICATE_ID, "status": "issued",
                                               "checks": [{"name": "audit_chain", "ok": True,
                                                           "detail": "1211 events verify"}],
                                               "changed": []})])
    def get(self, request: Request, id: uuid.UUID) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        cert = Certificate.objects.filter(pk=id).first()
        if cert is not None:
            try:
                canary_get(actor=principal, canary_id=cert.canary_id)
            except NotFound:  # out of scope answers as unknown, in the same words
                raise NotFound(f"no certificate {id}") from None
        return Response(certificate_verify(certificate_id=id).as_dict())


urlpatterns = [
    path("canaries/<int:id>/certificate/", CanaryCertificate.as_view(), name="api-canary-certificate"),
    path("certificates/<uuid:id>/", CertificateDetail.as_view(), name="api-certificate-detail"),
    path("certificates/<uuid:id>/verify/", CertificateVerify.as_view(), name="api-certificate-verify"),
]
