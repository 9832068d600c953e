"""REST API of the evidence: one canary's bundle, streamed, and the public keys that sign it."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import example_response, problems
from governance.access.permissions import Action, principal_of, require
from governance.audit.services import audit_append
from governance.evidence.bundles import bundle_stream, canaries_for
from governance.evidence.selectors import signing_keys_published
from releases.canaries.selectors import canary_get


class CanaryEvidence(APIView):
    @extend_schema(
        operation_id="canaries_evidence_retrieve", tags=["evidence"],
        summary="Download a canary's evidence bundle",
        description="The MRM evidence bundle of the canary as a zip, streamed: its records, evaluations, signatures, "
        "incidents, router pushes, post-canary report, the audit segment with its chain, and a manifest of "
        "SHA-256 digests (listing every audit event of the canary) signed with the server's Ed25519 key. Check it "
        "offline with `canaryhub-verify-bundle` and the public key you pinned (`GET /api/v1/signing-keys/`); the "
        "bundle carries no verifier of its own. Readers with "
        "the export right (the model's owner, platform, MRM, AI Governance, risk officers, auditors); not "
        "service-account tokens.",
        responses={(200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="the bundle (zip)"),
                   **problems(401, 403, 404)},
    )
    def get(self, request: Request, id: int) -> StreamingHttpResponse:
        principal = principal_of(request)
        canary = canary_get(actor=principal, canary_id=id)
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


_KEY_EXAMPLE = {
    "key_id": "5f1c0a9e3b7d2c48", "fingerprint": "5f1c0a9e3b7d2c48" * 4, "algorithm": "Ed25519",
    "public_key": "MCowBQYDK2VwAyEA" + "A" * 28, "public_key_pem": "-----BEGIN PUBLIC KEY-----\n...\n",
    "created_at": "2025-05-01T09:00:00+00:00", "retired_at": None, "active": True,
}

SigningKeysOutput = inline_serializer(name="SigningKey", many=True, fields={
    "key_id": serializers.CharField(help_text="the first 16 hex digits of the fingerprint"),
    "fingerprint": serializers.CharField(help_text="SHA-256 (hex) of the 32 raw public-key bytes"),
    "algorithm": serializers.CharField(), "public_key": serializers.CharField(help_text="base64 of the raw key"),
    "public_key_pem": serializers.CharField(), "created_at": serializers.CharField(),
    "retired_at": serializers.CharField(allow_null=True), "active": serializers.BooleanField(),
})


class SigningKeys(APIView):
    # Public and read-only: anyone who must check a signature needs the key. A credential sent
    # anyway is still checked (a bad one is a 401, as everywhere).
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="signing_keys_list", tags=["evidence"], auth=[{}],
        summary="The server's public signing keys",
        description="Every Ed25519 public key CanaryHub signs evidence bundles, audit chain heads and completion "
        "certificates with: the active key first, then retired ones, which stay published so that what they "
        "signed still verifies. Open to anyone, no credentials needed. Pin a key's fingerprint from here (or "
        "better, from a channel you trust) and give it to `canaryhub-verify-bundle`.",
        responses={200: SigningKeysOutput, **problems(401)},
        examples=[example_response(_KEY_EXAMPLE)],
    )
    def get(self, request: Request) -> Response:
        return Response(signing_keys_published())


urlpatterns = [
    path("canaries/<int:id>/evidence/", CanaryEvidence.as_view(), name="api-canary-evidence"),
    path("signing-keys/", SigningKeys.as_view(), name="api-signing-keys"),
]
