"""Django's account signals turned into audit service calls (connected in governance.apps):
logins and failed logins, password and flag changes however they are made (the pages, /admin/,
`manage.py changepassword`), and group membership changes from either side of the relation."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from governance.audit.services import (
    ACCOUNT_FLAGS,
    account_audit_changes,
    account_audit_groups,
    account_audit_login,
    account_changes,
)

_BEFORE = "_canaryhub_account_before"
_REQUEST: ContextVar[Any] = ContextVar("canaryhub_account_request", default=None)


class ActingUserMiddleware:
    """Keeps the request being served, for the signal receivers below to name who acts (a
    password reset in /admin/ is the superuser's act); forgotten when the response is made."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        token = _REQUEST.set(request)
        try:
            return self.get_response(request)
        finally:
            _REQUEST.reset(token)


def acting_user() -> Any:
    """Who is acting in the request being served, or None (a command, a task, a shell)."""
    request = _REQUEST.get()
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def client_address(request: Any) -> str:
    return (getattr(request, "META", {}) or {}).get("REMOTE_ADDR", "") if request is not None else ""


def _fields(user: Any) -> dict[str, Any]:
    return {"password": user.password, **{f: getattr(user, f) for f in ACCOUNT_FLAGS}}


def user_pre_save(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    if raw or instance.pk is None:
        return
    stored = sender.objects.filter(pk=instance.pk).values("password", *ACCOUNT_FLAGS).first()
    setattr(instance, _BEFORE, stored)


def user_post_save(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    before = instance.__dict__.pop(_BEFORE, None)
    if raw or created:
        return
    account_audit_changes(user=instance, actor=acting_user(),
                          changes=account_changes(before=before, after=_fields(instance)))


def groups_changed(sender: Any, instance: Any, action: str, reverse: bool, model: Any, pk_set: Any,
                   **kwargs: Any) -> None:
    """user.groups.add/remove/clear, or group.user_set.add/remove/clear."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    user_model = get_user_model()
    if action == "pre_clear":
        # The members are gone after the clear: name them now.
        if reverse:  # group.user_set.clear()
            pairs = [(u, instance.name) for u in instance.user_set.all()]
        else:
            pairs = [(instance, g.name) for g in instance.groups.all()]
        kind = "removed"
    else:
        kind = "added" if action == "post_add" else "removed"
        if reverse:
            pairs = [(u, instance.name) for u in user_model.objects.filter(pk__in=pk_set or ())]
        else:
            pairs = [(instance, g.name) for g in Group.objects.filter(pk__in=pk_set or ())]
    by_user: dict[Any, tuple[Any, list[str]]] = {}
    for user, group in pairs:
        by_user.setdefault(user.pk, (user, []))[1].append(group)
    for user, groups in by_user.values():
        user.__dict__.pop("_canaryhub_roles", None)  # the cached roles are out of date
        account_audit_groups(user=user, actor=acting_user(), added=groups if kind == "added" else [],
                             removed=groups if kind == "removed" else [])


def logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    account_audit_login(user=user, username=user.get_username(), address=client_address(request), ok=True)


def locked_out(sender: Any, request: Any = None, username: str | None = None, ip_address: str | None = None,
               **kwargs: Any) -> None:
    account_audit_login(user=None, username=username or "", address=ip_address or client_address(request), ok=False,
                        reason="locked out: too many failed attempts")


def login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    username = str(credentials.get("username", ""))
    account_audit_login(user=None, username=username, address=client_address(request), ok=False)
