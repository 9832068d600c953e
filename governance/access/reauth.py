"""Re-authentication for electronic signatures, under the same failure counters as the login
page (django-axes: per user and per address, with a lockout).

`LockoutBackend` is the deployment's first authentication backend: django-axes's, except that
a call without a request (a script, `Client.login` in a test) skips the counters instead of
failing. `reauthenticate` asks the password again through Django's `authenticate` with the
request, so a wrong password counts against the user and the address exactly as a failed login
does, is audited the same way (governance.audit.signals), and a locked-out user or address
cannot sign until the cool-off ends."""

from __future__ import annotations

import json
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth import authenticate
from django.http import HttpResponse

from canaryhub.errors import PermissionRefused
from canaryhub.problems import PROBLEM_CONTENT_TYPE, problem


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request: Any, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        if request is None:
            return None  # nothing to count against: the next backend decides
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (f"too many failed password attempts: re-authentication is locked for {minutes} minutes "
            "for this account or address")


def reauthenticate(user: Any, password: Any, *, request: Any = None) -> None:
    """PermissionRefused unless `password` is `user`'s and neither the user nor the request's
    address is locked out. Without a request (internal callers) the password alone is checked."""
    if not isinstance(password, str) or not password:
        raise PermissionRefused("re-authentication failed: the password does not match")
    if request is None:
        if not user.check_password(password):
            raise PermissionRefused("re-authentication failed: the password does not match")
        return
    django_request = getattr(request, "_request", request)  # a DRF request wraps Django's
    authenticated = authenticate(django_request, username=user.get_username(), password=password)
    if getattr(django_request, "axes_locked_out", False):
        raise PermissionRefused(lockout_message())
    if authenticated is None or authenticated.pk != user.pk:
        raise PermissionRefused("re-authentication failed: the password does not match")


def lockout_response(request: Any, original_response: Any = None, credentials: Any = None, *args: Any,
                     **kwargs: Any) -> Any:
    """What a locked-out caller gets (AXES_LOCKOUT_CALLABLE): 429, a problem document on the
    API, a short page elsewhere; and when to try again."""
    retry = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    detail = lockout_message()
    if request.path.startswith("/api/"):
        response = HttpResponse(json.dumps(problem(429, "locked-out", "Too many failed attempts", detail)),
                                status=429, content_type=PROBLEM_CONTENT_TYPE)
    else:
        response = HttpResponse(f"<!doctype html><title>Locked out</title><h1>Too many failed attempts</h1>"
                                f"<p>{detail.capitalize()}.</p>", status=429, content_type="text/html")
    response["Retry-After"] = retry
    return response
