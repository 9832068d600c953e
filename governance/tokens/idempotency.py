"""`Idempotency-Key` for every POST of the API.

The first request with a key runs inside one transaction that also inserts the key's record;
a concurrent request with the same key blocks on the record's unique index until the first
commits, then replays its response. Records are kept per credential (the token, or the session's
user), so one token never receives another's response. So a CI retry, however it races, never acts twice. The
same key with a different body is refused with 422. Keys expire after IDEMPOTENCY_KEY_TTL_S.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from canaryhub.problems import PROBLEM_CONTENT_TYPE, problem
from governance.access.permissions import principal_of
from governance.tokens.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
KEY_PATTERN = r"^[!-~]{1,255}$"  # visible ASCII, no spaces
IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
    OpenApiParameter.HEADER,
    description="Retry-safe POST: the same key and body within 24 h returns the first response.",
)


def _request_hash(request: Any) -> str:
    """A keyed hash (HMAC with SECRET_KEY) of method, path and canonical body. Keyed, because a
    body may carry a password (a signature's re-authentication): a plain digest stored in the
    database would let its reader test password guesses offline."""
    raw = request.body or b""
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = raw
    digest = hmac.new(settings.SECRET_KEY.encode(), digestmod=hashlib.sha256)
    digest.update(request.method.encode() + b" " + request.path.encode() + b"\n")
    digest.update(canonical)
    return digest.hexdigest()


def _problem(status: int, slug: str, title: str, detail: str) -> Response:
    return Response(problem(status, slug, title, detail), status=status, content_type=PROBLEM_CONTENT_TYPE)


def _replay(record: IdempotencyRecord, request_hash: str) -> Response:
    if record.request_hash != request_hash:
        return _problem(
            422, "idempotency-key-reused", "Idempotency key reused",
            f"the key {record.key!r} was first used with a different request; use a new key for a new request",
        )
    response = Response(json.loads(record.response_body), status=record.status_code, headers=record.response_headers)
    if record.status_code and record.status_code >= 400:
        response.content_type = PROBLEM_CONTENT_TYPE
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(view_method: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate an APIView's `post`. Without the header the view runs as usual."""

    @functools.wraps(view_method)
    def wrapper(self: Any, request: Any, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not re.match(KEY_PATTERN, key):
            return _problem(
                400, "validation-error", "Invalid input",
                f"{HEADER} must be 1–{MAX_KEY_LENGTH} visible ASCII characters without spaces",
            )
        principal = principal_of(request)
        # Keyed per credential: two tokens of one user (scoped to different models) never
        # replay each other's responses; a session is its user's own credential.
        owner = f"token:{principal.token_prefix}" if principal.token_prefix else f"user:{principal.user.pk}"
        request_hash = _request_hash(request)
        cutoff = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_S)
        with transaction.atomic():
            IdempotencyRecord.objects.filter(principal=owner, key=key, created_at__lt=cutoff).delete()
            try:
                with transaction.atomic():
                    record = IdempotencyRecord.objects.create(
                        key=key, principal=owner, request_hash=request_hash
                    )
            except IntegrityError:
                # Another request with this key committed first (we waited for it on the
                # unique index): answer with what it answered.
                existing = IdempotencyRecord.objects.get(principal=owner, key=key)
                return _replay(existing, request_hash)
            try:
                response = view_method(self, request, *args, **kwargs)
            except Exception as exc:
                # Refusals (400/403/404/409) are answers too: remember them. Anything the
                # handler does not know re-raises and rolls the key back with the request.
                response = self.handle_exception(exc)
            if response.status_code >= 500:
                # Do not remember failures of the server: the retry should run again.
                transaction.set_rollback(True)
                return response
            record.status_code = response.status_code
            record.response_body = json.dumps(response.data, default=str)
            record.response_headers = {k: v for k, v in response.items() if k in ("Location",)}
            record.save(update_fields=["status_code", "response_body", "response_headers"])
            return response

    return wrapper


def idempotency_prune(*, now: Any = None) -> int:
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_S)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
