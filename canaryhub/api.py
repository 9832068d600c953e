"""Small shared pieces of the REST API: strict input serializers and the problem schema."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser

from canaryhub.pagination import Pagination

# Free text that is copied into the audit trail: bounded so one request cannot bloat the chain.
REASON_MAX = 2000
STATEMENT_MAX = 2000
DESCRIPTION_MAX = 5000
PASSWORD_MAX = 1024
# No request body of the API nests deeper than this; deeper JSON is refused before it is used.
JSON_MAX_DEPTH = 32


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "the request body is larger than the server accepts"
    default_code = "payload_too_large"


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with the body size limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 413) and a nesting
    limit (JSON_MAX_DEPTH, 400) enforced before anything reads the data."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        request = (parser_context or {}).get("request")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int((request.META if request is not None else {}).get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError(f"JSON nested deeper than {JSON_MAX_DEPTH} levels") from exc
        if _depth_exceeds(data, JSON_MAX_DEPTH):
            raise exceptions.ParseError(f"JSON nested deeper than {JSON_MAX_DEPTH} levels")
        return data


def _nul_paths(value: Any, path: str = "") -> list[str]:
    """Where a JSON value holds a NUL character (keys included): PostgreSQL cannot store one in
    text or jsonb, so it is refused at the door instead of failing at the database."""
    if isinstance(value, str):
        return [path or "non_field_errors"] if "\x00" in value else []
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                found.append(path or "non_field_errors")
            found.extend(_nul_paths(item, name))
        return found
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _nul_paths(item, f"{path}[{index}]")]
    return []


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (a misspelt `threshold` is a 400, not silently ignored)
    and NUL characters anywhere in the input."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            with_nul = _nul_paths(dict(data))
            if with_nul:
                raise serializers.ValidationError(
                    {path.replace("\x00", "\\u0000"): ["null characters are not allowed"] for path in with_nul}
                )
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
            too_long = _too_long(self.fields, data)
            if too_long:
                raise serializers.ValidationError(too_long)
        return super().to_internal_value(data)


def _too_long(fields: Any, data: dict) -> dict[str, list[str]]:
    """Text longer than its field's maximum, counted as sent: DRF trims white space before it
    checks the length, so a value one character over the limit that starts with a line break
    would pass although the schema's maxLength refuses it."""
    return {
        name: [f"Ensure this field has no more than {field.max_length} characters."]
        for name, field in fields.items()
        if isinstance(field, serializers.CharField) and field.max_length is not None
        and isinstance(data.get(name), str) and len(data[name]) > field.max_length
    }


class StrictCharField(serializers.CharField):
    """Text only: DRF's CharField turns 42 into "42", which would let a wrong JSON type pass."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)  # as sent, before white space is trimmed
        return super().to_internal_value(data)


class QueryFilters(StrictSerializer):
    """Query-string filters. An empty value for a field that does not allow blanks is an error,
    not "unset" (DRF otherwise falls back to the default for an empty query value)."""

    def to_internal_value(self, data: Any) -> Any:
        empty = {
            name: ["must not be empty"]
            for name, field in self.fields.items()
            if hasattr(data, "get") and data.get(name) == "" and not getattr(field, "allow_blank", False)
        }
        if empty:
            raise serializers.ValidationError(empty)
        return super().to_internal_value(data)


def no_filter() -> str:
    """The value of a query filter that was not given: "" (do not filter). A callable default, so
    that the OpenAPI document declares no default for the parameter: "" is not one of an enum's
    values, and client generators drop an operation whose parameter has an invalid default."""
    return ""


ProblemSerializer = inline_serializer(
    name="Problem",
    fields={
        "type": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "errors": serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False),
    },
)


def example_request(value: dict[str, Any], name: str = "request") -> OpenApiExample:
    """A request body's example for the OpenAPI document (`name` tells several apart)."""
    return OpenApiExample(name, value=value, request_only=True)


def example_response(value: dict[str, Any], status: int = 200) -> OpenApiExample:
    """An answer's example for the OpenAPI document."""
    return OpenApiExample("answer", value=value, response_only=True, status_codes=[status])


def example_page(item: dict[str, Any]) -> dict[str, Any]:
    """A one-item page, as canaryhub.pagination answers a list."""
    return {"count": 1, "next": None, "previous": None, "results": [item]}


# One problem document per status, as the API writes them (canaryhub.problems): the schema's examples.
PROBLEM_EXAMPLES: dict[int, dict[str, Any]] = {
    400: {"type": "urn:canaryhub:problem:validation-error", "title": "Invalid input", "status": 400,
          "detail": "version: must be greater than the production version 1.4.0",
          "errors": {"version": ["must be greater than the production version 1.4.0"]}},
    401: {"type": "urn:canaryhub:problem:unauthenticated", "title": "Authentication failed", "status": 401,
          "detail": "unknown or revoked token"},
    403: {"type": "urn:canaryhub:problem:forbidden", "title": "Not allowed", "status": 403,
          "detail": "this token is not scoped to model 'fraud-scorer'"},
    404: {"type": "urn:canaryhub:problem:not-found", "title": "Not found", "status": 404,
          "detail": "no canary #42"},
    409: {"type": "urn:canaryhub:problem:conflict", "title": "Conflict with the current state", "status": 409,
          "detail": "support-bot already has an active canary (#7, running); finish, roll back or abort it first"},
    422: {"type": "urn:canaryhub:problem:idempotency-key-reused", "title": "Idempotency key reused", "status": 422,
          "detail": "the key 'ci-4711' was first used with a different request; use a new key for a new request"},
}


def problems(*statuses: int) -> dict[tuple[int, str], OpenApiResponse]:
    """The problem-document responses of an operation, each described and with an example."""
    descriptions = {
        400: "Invalid input (field errors in `errors`)",
        401: "Not authenticated",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict with the current state",
        422: "Idempotency key reused with a different request",
    }
    return {
        (s, "application/problem+json"): OpenApiResponse(
            ProblemSerializer, description=descriptions.get(s, ""),
            examples=[OpenApiExample(f"problem {s}", value=PROBLEM_EXAMPLES[s], response_only=True, status_codes=[s])]
            if s in PROBLEM_EXAMPLES else [],
        )
        for s in statuses
    }


def paginated(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """The schema of a page of `serializer_class` items, as canaryhub.pagination returns it."""
    return inline_serializer(
        name=f"Paginated{serializer_class.__name__}",
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )


def paginate(request: Any, view: Any, queryset: Any, serializer_class: Any, *, to_item: Any = None) -> Any:
    """One page of `queryset` as a paginated response; `to_item` turns each row into what the
    serializer reads."""
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    items = [to_item(obj) for obj in page] if to_item else page
    return paginator.get_paginated_response(serializer_class(items, many=True).data)
