"""RFC 9457 problem documents for every error the API returns, 500 included.

Shape: {"type", "title", "status", "detail", "errors": {field: [messages]}} with the media type
application/problem+json. DRF's own exceptions, Django's Http404/PermissionDenied and our
DomainError all pass through `exception_handler`; anything that escapes it on an /api/ path is
caught by `ApiProblemMiddleware` so that a client never sees an HTML error page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from canaryhub.errors import DomainError

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "urn:canaryhub:problem:"

_DRF_SLUGS: dict[type[drf_exceptions.APIException], tuple[str, str]] = {
    drf_exceptions.ValidationError: ("validation-error", "Invalid input"),
    drf_exceptions.ParseError: ("malformed-request", "Malformed request body"),
    drf_exceptions.AuthenticationFailed: ("unauthenticated", "Authentication failed"),
    drf_exceptions.NotAuthenticated: ("unauthenticated", "Authentication required"),
    drf_exceptions.PermissionDenied: ("forbidden", "Not allowed"),
    drf_exceptions.NotFound: ("not-found", "Not found"),
    drf_exceptions.MethodNotAllowed: ("method-not-allowed", "Method not allowed"),
    drf_exceptions.NotAcceptable: ("not-acceptable", "Not acceptable"),
    drf_exceptions.UnsupportedMediaType: ("unsupported-media-type", "Unsupported media type"),
    drf_exceptions.Throttled: ("throttled", "Too many requests"),
}


def problem(status: int, slug: str, title: str, detail: str, errors: dict | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def _flatten(data: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF nests field errors (`{"thresholds": {"promote": {"x": [...]}}}`); flatten to dotted
    paths so every client reads `errors` the same way."""
    out: dict[str, list[str]] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, int):
                name = f"{prefix}[{key}]"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                name = prefix or "non_field_errors"
            for k, v in _flatten(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(data, list):
        if all(not isinstance(item, (dict, list)) for item in data):
            out[prefix or "non_field_errors"] = [str(item) for item in data]
        else:
            for index, item in enumerate(data):
                for k, v in _flatten(item, f"{prefix}[{index}]").items():
                    out.setdefault(k, []).extend(v)
    else:
        out[prefix or "non_field_errors"] = [str(data)]
    return out


def problem_for(exc: Exception) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The problem document and headers for an exception the API answers, or None for one it
    does not (a 500, caught by ApiProblemMiddleware)."""
    headers: dict[str, str] = {}
    if isinstance(exc, DomainError):
        body = problem(exc.status, exc.slug, exc.title, exc.detail, exc.errors)
    elif isinstance(exc, RequestDataTooBig) or (
        isinstance(exc, drf_exceptions.APIException) and exc.status_code == 413
    ):
        body = problem(413, "payload-too-large", "Payload too large",
                       f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")
    elif isinstance(exc, Http404):
        body = problem(404, "not-found", "Not found", str(exc) or "No such object.")
    elif isinstance(exc, PermissionDenied):
        body = problem(403, "forbidden", "Not allowed", str(exc) or "You may not do this.")
    elif isinstance(exc, drf_exceptions.APIException):
        slug, title = next(
            (v for k, v in _DRF_SLUGS.items() if isinstance(exc, k)), ("error", "Request failed")
        )
        if isinstance(exc, drf_exceptions.ValidationError):
            errors = _flatten(exc.detail)
            detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items())
        else:
            errors = {}
            detail = str(exc.detail)
        body = problem(exc.status_code, slug, title, detail, errors)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
            headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')
    else:
        return None
    return body, headers


def is_refusal(exc: Exception, body: dict[str, Any]) -> bool:
    """A refused action (403) or a bad credential (401 from authentication itself)."""
    return body["status"] == 403 or isinstance(exc, drf_exceptions.AuthenticationFailed)


def problem_response(body: dict[str, Any], headers: dict[str, str]) -> Response:
    set_rollback()
    return Response(body, status=body["status"], headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's exception handler: every error a problem document. (The deployed handler,
    governance.audit.api.exception_handler, also puts each refusal in the audit trail.)"""
    found = problem_for(exc)
    return problem_response(*found) if found is not None else None


RETRY_AFTER_S = 5


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot serve now (down, restarting, connection lost, busy), as opposed to a
    query it refused: OperationalError and InterfaceError, or a DatabaseError caused by one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (OperationalError, InterfaceError)):
            return True
        if not isinstance(seen, DatabaseError):
            return False
        seen = seen.__cause__
    return False


class ApiProblemMiddleware:
    """Last line of defence for /api/: unhandled errors and Django's own 404 become problem
    documents instead of HTML pages."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/v1/")
            and response.status_code == 404
            and not response.get("Content-Type", "").startswith(("application/problem+json", "application/json"))
        ):
            return JsonResponse(
                problem(404, "not-found", "Not found", f"No resource at {request.path}."),
                status=404,
                content_type=PROBLEM_CONTENT_TYPE,
            )
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if database_unavailable(exception):
            # Nothing was done (the transaction could not commit): the client may retry.
            logger.error("database unavailable on %s: %s", request.path, exception)
            if not request.path.startswith("/api/"):
                response = HttpResponse("The database is unavailable; try again shortly.\n", status=503,
                                        content_type="text/plain; charset=utf-8")
            else:
                response = JsonResponse(
                    problem(503, "database-unavailable", "Service unavailable",
                            "The database cannot be reached; nothing was changed. Retry after the given seconds."),
                    status=503, content_type=PROBLEM_CONTENT_TYPE,
                )
            response["Retry-After"] = str(RETRY_AFTER_S)
            return response
        if not request.path.startswith("/api/"):
            return None
        found = problem_for(exception) if isinstance(exception, RequestDataTooBig) else None
        if found is not None:  # raised before DRF's handler could answer it
            return JsonResponse(found[0], status=found[0]["status"], content_type=PROBLEM_CONTENT_TYPE)
        logger.exception("unhandled error on %s", request.path)
        return JsonResponse(
            problem(500, "internal-error", "Internal error", "The server failed; the error was logged."),
            status=500,
            content_type=PROBLEM_CONTENT_TYPE,
        )

