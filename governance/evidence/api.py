"""REST API of the evidence: one canary's bundle, streamed."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from canaryhub.api import problems
from governance.access.permissions import Action, principal_of, require
from governance.audit.services import audit_append
from governance.evidence.bundles import bundle_stream, canaries_for
from releases.canaries.selectors import canary_get


class CanaryEvidence(APIView):
    @extend_schema(
        operation_id="canaries_evidence_retrieve", tags=["evidence"],
        summary="Download a canary's evidence bundle",
        description="The MRM evidence bundle of the canary as a zip, streamed: its records, evaluations, signatures, "
        "incidents, router pushes, post-canary report, the audit segment with its chain, a manifest of SHA-256 "
        "digests and `verify_bundle.py`, which checks it all offline with Python's standard library. Readers with "
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


urlpatterns = [
    path("canaries/<int:id>/evidence/", CanaryEvidence.as_view(), name="api-canary-evidence"),
]
