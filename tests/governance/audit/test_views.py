"""The audit page through Django's test client: access, the live filter, chain verification."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.audit.services import audit_append, protection_install_sql, protection_remove_sql, protection_run

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def events():
    audit_append(actor=None, action="model.registered", object_type="model", object_id="fraud-scorer")
    audit_append(actor=None, action="version.registered", object_type="model_version", object_id="fraud-scorer@1.0.0")
    audit_append(actor=None, action="model.registered", object_type="model", object_id="ranker")


def test_audit_page_lists_events_newest_first(owner, events):
    response = client_for(owner).get("/audit/")
    assert response.status_code == 200
    # The owner's group membership is the first event; the fixture's three follow.
    seqs = [row["event"].seq for row in response.context["rows"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == AuditEvent.objects.count()


def test_audit_live_filter_returns_the_table_fragment(owner, events):
    response = client_for(owner).get("/audit/", {"action": "model.", "object": "model:ranker"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "<html" not in body
    assert [row["event"].object_id for row in response.context["rows"]] == ["ranker"]
    assert "HX-Request" in response["Vary"]


def test_verify_reports_an_intact_chain(owner, events):
    response = client_for(owner).get("/audit/verify/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert f"Chain verified: {AuditEvent.objects.count()} events" in response.content.decode()


def test_verify_without_htmx_renders_the_whole_page(owner, events):
    response = client_for(owner).get("/audit/verify/")
    assert b"<html" in response.content and b"Chain verified" in response.content


def test_verify_names_the_first_bad_event(owner, events):
    # Forge an event the way only someone who lifted the database protection could.
    protection_run(protection_remove_sql(connection.vendor))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE governance_auditevent SET action = 'forged' WHERE seq = 2")
    protection_run(protection_install_sql(connection.vendor))
    response = client_for(owner).get("/audit/verify/", HTTP_HX_REQUEST="true")
    assert "Chain broken at event #2" in response.content.decode()


@pytest.mark.parametrize("roles", [(), (Role.SERVICE_ACCOUNT,)])
def test_audit_page_is_refused_to_users_not_allowed_to_verify(role_user, roles):
    client = client_for(role_user(*roles))
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/verify/").status_code == 403
    assert b'href="/audit/"' not in client.get("/accounts/login/").content


def test_audit_requires_login(client: Client):
    assert client.get("/audit/").status_code == 302


def test_the_page_pages_by_sequence_with_no_cap(owner):
    for n in range(120):
        audit_append(actor=None, action="model.registered", object_type="model", object_id=f"m{n}")
    client = client_for(owner)
    first = client.get("/audit/", {"action": "model."})
    seqs = [row["event"].seq for row in first.context["rows"]]
    assert len(seqs) == 50 and first.context["newer_url"] == ""
    second = client.get(first.context["older_url"])
    more = [row["event"].seq for row in second.context["rows"]]
    assert len(more) == 50 and max(more) < min(seqs) and "action=model." in first.context["older_url"]
    third = client.get(second.context["older_url"])
    last = [row["event"].seq for row in third.context["rows"]]
    assert len(last) == 20 and third.context["older_url"] == ""
    back = client.get(third.context["newer_url"])
    assert [row["event"].seq for row in back.context["rows"]] == more


def test_field_level_history_is_hidden_unless_asked_for(owner, events):
    audit_append(actor=None, action="field_changes.update", object_type="releases.modelversion", object_id="2")
    client = client_for(owner)
    actions = [row["event"].action for row in client.get("/audit/").context["rows"]]
    assert "field_changes.update" not in actions
    shown = [row["event"].action for row in client.get("/audit/", {"internal": "1"}).context["rows"]]
    assert "field_changes.update" in shown
    by_name = client.get("/audit/", {"action": "field_changes."}).context["rows"]
    assert [row["event"].action for row in by_name] == ["field_changes.update"]
