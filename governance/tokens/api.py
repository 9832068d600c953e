"""REST API of API tokens (`/api/v1/tokens/…`): a person lists, creates (the secret is in the
answer once) and revokes their own personal tokens; a platform engineer lists and revokes any.
A token never creates a token; a service account manages none. Rules: governance.tokens.services."""

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
from governance.access.permissions import Role, principal_of
from governance.tokens.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from governance.tokens.services import (
    token_create_personal,
    token_get_revocable,
    token_require_creator,
    token_revoke,
    tokens_visible,
)

_TOKEN_EXAMPLE = {
    "prefix": "3f9a12c4", "name": "laptop scripts", "user": "olivia", "kind": "personal", "purpose": None,
    "models": [], "created_at": "2025-05-03T12:00:00Z", "last_used_at": "2025-05-04T08:30:00Z",
    "revoked_at": None,
}


class TokenOutput(serializers.Serializer):
    prefix = serializers.CharField(help_text="the token's public part: chk_<prefix>_…")
    name = serializers.CharField()
    user = serializers.CharField(source="user.username")
    kind = serializers.ChoiceField(choices=["personal", "service account"])
    purpose = serializers.CharField(allow_null=True, help_text="a service account's token: ci or observations")
    models = serializers.ListField(child=serializers.CharField(), help_text="a service account's token's scope")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class TokenCreatedOutput(TokenOutput):
    secret = serializers.CharField(help_text="the bearer secret: shown in this answer only, never again")


def _item(token: Any) -> dict[str, Any]:
    service = token.user.groups.filter(name=Role.SERVICE_ACCOUNT.value).exists()
    return {
        "prefix": token.prefix, "name": token.name, "user": token.user,
        "kind": "service account" if service else "personal",
        "purpose": token.purpose if service else None, "models": sorted(m.name for m in token.scope.all()),
        "created_at": token.created_at, "last_used_at": token.last_used_at, "revoked_at": token.revoked_at,
    }


class TokenFilters(QueryFilters):
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class TokenCreateInput(StrictSerializer):
    name = StrictCharField(min_length=1, max_length=100, help_text="a label to recognise the token by")


class TokenRevokeInput(StrictSerializer):
    reason = StrictCharField(required=False, default="", allow_blank=True, max_length=500,
                             help_text="why (kept in the audit trail)")


class Tokens(APIView):
    @extend_schema(operation_id="tokens_list", parameters=[TokenFilters], tags=["tokens"],
                   summary="List API tokens",
                   description="Your own API tokens, revoked ones included (a platform engineer sees every "
                   "token). Secrets are never shown: only the prefix.",
                   examples=[example_response(example_page(_TOKEN_EXAMPLE))],
                   responses={200: paginated(TokenOutput), **problems(400, 401, 403, 404)})
    def get(self, request: Request) -> Response:
        tokens = tokens_visible(principal_of(request))
        TokenFilters(data=request.query_params).is_valid(raise_exception=True)
        return paginate(request, self, tokens, TokenOutput, to_item=_item)

    @extend_schema(operation_id="tokens_create", request=TokenCreateInput, tags=["tokens"],
                   summary="Create a personal API token",
                   description="Creates a token that acts with your own rights, never more. The secret is in "
                   "this answer only; store it now. Only in a signed-in session: a token cannot create "
                   "tokens. No Idempotency-Key: the answer holds the secret, which is never stored.",
                   examples=[example_request({"name": "laptop scripts"}),
                             example_response({**_TOKEN_EXAMPLE, "last_used_at": None,
                                               "secret": "chk_3f9a12c4_" + "x" * 43}, 201)],
                   responses={201: TokenCreatedOutput, **problems(400, 401, 403, 409)})
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        token_require_creator(principal)  # 403 before the body is read
        data = TokenCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        token, secret = token_create_personal(actor=principal, name=data.validated_data["name"])
        return Response(TokenCreatedOutput({**_item(token), "secret": secret}).data, status=status.HTTP_201_CREATED)


class TokenRevoke(APIView):
    @extend_schema(operation_id="tokens_revoke_create", request=TokenRevokeInput, tags=["tokens"],
                   summary="Revoke an API token",
                   description="Revokes one of your tokens (a platform engineer: anyone's). It stops working at "
                   "once; it stays listed, revoked, so the audit trail can name it. Another person's token "
                   "is unknown (404) to you.",
                   examples=[example_request({"reason": "the laptop was replaced"}),
                             example_response({**_TOKEN_EXAMPLE, "revoked_at": "2025-05-05T09:00:00Z"})],
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={200: TokenOutput, **problems(400, 401, 403, 404, 409, 422)})
    @idempotent
    def post(self, request: Request, prefix: str) -> Response:
        principal = principal_of(request)
        token_get_revocable(actor=principal, prefix=prefix)  # 403/404 before the body is read
        data = TokenRevokeInput(data=request.data)
        data.is_valid(raise_exception=True)
        token = token_revoke(actor=principal.user, prefix=prefix, reason=data.validated_data["reason"])
        return Response(TokenOutput(_item(token)).data)


urlpatterns = [
    path("tokens/", Tokens.as_view(), name="api-tokens"),
    path("tokens/<str:prefix>/revoke/", TokenRevoke.as_view(), name="api-token-revoke"),
]
