"""REST API of the audit trail (`/api/v1/audit/…`), and the API's exception handler, which puts
every refusal in the trail: a known caller's as one event, an unknown caller's counted per minute
and source address."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import QueryFilters, example_page, example_response, paginate, paginated, problems
from canaryhub.problems import is_refusal, problem_for, problem_response
from governance.access.permissions import Action, principal_of, require
from governance.audit import selectors
from governance.audit.services import audit_append, audit_verify, refusal_count_unknown
from governance.audit.signals import client_address


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """canaryhub.problems' problem documents, and for a refusal exactly one trace: an audit event
    saying who tried what."""
    found = problem_for(exc)
    if found is None:
        return None
    body, headers = found
    if is_refusal(exc, body):
        _audit_refusal(context.get("request"), body)
    return problem_response(body, headers)


def _audit_refusal(request: Any, body: dict[str, Any]) -> None:
    """A known caller's refusal is one event naming them; an unknown caller's (no credential, a
    bad or revoked token) is counted per minute and address (governance.audit.services)."""
    if request is None:
        return
    user = getattr(request, "user", None)
    if not getattr(user, "is_authenticated", False):
        refusal_count_unknown(address=client_address(request), status=body["status"],
                              what=f"{request.method} {request.path}")
        return
    audit_append(
        actor=user,
        action="access.refused",
        object_type="request",
        object_id=f"{request.method} {request.path}"[:120],
        payload={"status": body["status"], "reason": body["detail"]},
    )


# --- schema examples ------------------------------------------------------------------------------

_HASH = "4be1" * 16
_EVENT_EXAMPLE = {
    "seq": 1042, "created_at": "2025-05-04T10:12:00Z", "actor": "olivia", "action": "canary.signed",
    "object_type": "canary", "object_id": "7",
    "payload": {"step": "promote:1->2", "role": "owner", "evaluation_hash": "9f2c" * 16},
    "prev_hash": "c0de" * 16, "hash": _HASH,
}


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
        operation_id="audit_list", parameters=[AuditFilters], tags=["audit"],
        summary="List audit events",
        description="The hash-chained audit trail, filtered by object (`canary` or `canary:7`), actor, action and "
        "time. Every role may read it; service-account tokens may not.",
        examples=[example_response(example_page(_EVENT_EXAMPLE))],
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
    @extend_schema(
        operation_id="audit_verify", tags=["audit"],
        summary="Verify the audit chain",
        description="Recomputes every event's hash along the whole chain and names the first bad sequence number, "
        "if any.",
        responses={200: VerifyOutput, **problems(401, 403)},
        examples=[example_response({"ok": True, "length": 1211, "head_hash": _HASH, "first_bad_seq": None,
                                    "reason": ""})],
    )
    def get(self, request: Request) -> Response:
        require(principal_of(request), Action.VERIFY_AUDIT)
        return Response(audit_verify().as_dict())


urlpatterns = [
    path("audit/", AuditList.as_view(), name="api-audit-list"),
    path("audit/verify/", AuditVerify.as_view(), name="api-audit-verify"),
]
