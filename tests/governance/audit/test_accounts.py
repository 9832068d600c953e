"""Who may act is decided by group membership and passwords: their changes, logins and failed
logins reach the audit chain, however they are made — the attack: a superuser resets an MRM
member's password in /admin/ (or adds someone to MRM) to sign as them unseen."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.audit.services import account_changes, audit_verify
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def events(action: str, *, after: int = 0) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, seq__gt=after).order_by("seq"))


def head() -> int:
    last = AuditEvent.objects.order_by("-seq").first()
    return last.seq if last else 0


@pytest.fixture
def admin_client():
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    return root, client


@pytest.mark.parametrize(("before", "after", "changes"), [
    (None, {"password": "b"}, {}),
    ({"password": "a", "is_active": True}, {"password": "a", "is_active": True}, {}),
    ({"password": "a"}, {"password": "b"}, {"password": "changed"}),
    ({"password": "a"}, {"password": ""}, {"password": "removed"}),
    ({"password": "a", "is_superuser": False}, {"password": "a", "is_superuser": True}, {"is_superuser": [False, True]}),
])
def test_account_changes_name_what_changed_and_never_the_hash(before, after, changes):
    assert account_changes(before=before, after=after) == changes


def test_a_superuser_resetting_an_mrm_members_password_in_admin_is_in_the_chain(role_user, admin_client):
    root, client = admin_client
    mira = role_user(Role.MRM, username="mira")
    start = head()
    response = client.post(f"/admin/auth/user/{mira.pk}/password/",
                           {"password1": "N3w-secret-for-mira", "password2": "N3w-secret-for-mira",
                            "usable_password": "true"})
    assert response.status_code == 302, response.content[:500]
    [event] = events("user.password_changed", after=start)
    assert (event.actor_name, event.object_id) == ("root", str(mira.pk))
    assert event.payload == {"username": "mira", "changes": {"password": "changed"}, "by": "another user"}
    assert "pbkdf2" not in str(event.payload) and "md5" not in str(event.payload)
    assert audit_verify().ok


def test_adding_someone_to_mrm_in_admin_or_from_the_group_side_is_in_the_chain(role_user, admin_client):
    root, client = admin_client
    eve = role_user(Role.MODEL_OWNER, username="eve")
    mrm = Group.objects.get_or_create(name=Role.MRM.value)[0]
    owner_group = Group.objects.get(name=Role.MODEL_OWNER.value)
    response = client.post(f"/admin/auth/user/{eve.pk}/change/", {
        "username": "eve", "password": eve.password, "is_active": "on", "groups": [owner_group.pk, mrm.pk],
        "last_login_0": "", "last_login_1": "", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01", "initial-date_joined_1": "00:00:00",
    })
    assert response.status_code == 302, response.content[:2000]
    added = [e for e in events("user.groups_changed") if e.payload["added"] == ["mrm"]]
    assert len(added) == 1 and added[0].actor_name == "root"
    assert added[0].payload["groups_now"] == ["model_owner", "mrm"]
    # From the other side of the relation, by code (a shell, a command): the system did it.
    mrm.user_set.remove(eve)
    removed = events("user.groups_changed")[-1]
    assert removed.payload["removed"] == ["mrm"] and removed.actor_name == "system"


def test_a_password_changed_by_command_is_in_the_chain(role_user, monkeypatch):
    mira = role_user(Role.MRM, username="mira")
    start = head()
    answers = iter(["An0ther-secret!", "An0ther-secret!"])
    monkeypatch.setattr("getpass.getpass", lambda *a, **k: next(answers))
    call_command("changepassword", "mira", stdout=open("/dev/null", "w"))  # noqa: SIM115
    [event] = events("user.password_changed", after=start)
    assert event.object_id == str(mira.pk) and event.actor_name == "system"


def test_logins_and_failed_logins_are_in_the_chain(role_user):
    role_user(Role.MRM, username="mira")
    start = head()
    client = Client()
    assert client.post("/accounts/login/", {"username": "mira", "password": "wrong"}).status_code == 200
    assert client.post("/accounts/login/", {"username": "mira", "password": PASSWORD}).status_code == 302
    [failed] = events("user.login_failed", after=start)
    assert failed.payload["username"] == "mira" and failed.payload["address"] == "127.0.0.1"
    assert "wrong" not in str(failed.payload)
    [ok] = events("user.logged_in", after=start)
    assert ok.actor_name == "mira"
    # Logging in updates last_login: that is no account change.
    assert events("user.account_changed", after=start) == [] and events("user.password_changed", after=start) == []
