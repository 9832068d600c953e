"""Password guessing: the login page and the signature's re-authentication share per-user and
per-address failure counters with a lockout (django-axes), audited; and the signing endpoint
answers whether the step can be signed before it looks at the password (no password oracle)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.incidents.models import Incident
from governance.incidents.services import incident_open
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from tests.factories import PASSWORD, make_evaluation

pytestmark = pytest.mark.django_db
STATEMENT = "I reviewed the evaluation and approve this step."


@pytest.fixture(autouse=True)
def _small_limit(settings, tmp_path):
    settings.AXES_FAILURE_LIMIT = 3
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


def login(username: str, password: str, address: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=address).post("/accounts/login/", {"username": username, "password": password})


def test_a_user_is_locked_out_after_the_failure_limit_even_with_the_right_password(role_user):
    role_user(Role.MRM, username="mira")
    for _ in range(2):
        assert login("mira", "guess", address="10.0.0.1").status_code == 200  # the form again
    assert login("mira", "guess", address="10.0.0.1").status_code == 429  # the limit reached
    locked = login("mira", PASSWORD, address="10.0.0.2")  # per user: another address is locked too
    assert locked.status_code == 429
    assert AuditEvent.objects.filter(action="user.login_failed", payload__reason__startswith="locked out").exists()
    assert not AuditEvent.objects.filter(action="user.logged_in").exists()


def test_an_address_is_locked_out_after_guessing_many_names(role_user):
    role_user(Role.MRM, username="mira")
    for name in ("alice", "bob", "carol"):
        login(name, "guess", address="10.0.0.9")
    assert login("mira", PASSWORD, address="10.0.0.9").status_code == 429
    assert login("mira", PASSWORD, address="10.0.0.10").status_code == 302  # the user is not locked


@pytest.fixture
def people(role_user):
    return {"owner": role_user(Role.MODEL_OWNER, username="owner"), "platform": role_user(Role.PLATFORM)}


def running_canary(people) -> Canary:
    platform = people["platform"]
    services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="medium", owner="owner",
                            on_call="oncall@x")
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    return lifecycle.canary_initiate(actor=platform, model_name="scorer", version="1.1.0")


def sign(user, canary, password, evaluation_hash=""):
    client = APIClient(REMOTE_ADDR="10.0.0.5")
    client.force_authenticate(user)
    return client.post(f"/api/v1/canaries/{canary.pk}/approvals/",
                       {"role": "owner", "statement": STATEMENT, "password": password,
                        "evaluation_hash": evaluation_hash}, format="json")


def test_signing_a_step_that_is_not_ready_answers_the_same_for_any_password(people):
    canary = running_canary(people)  # the first stage's residence has just begun
    wrong = sign(people["owner"], canary, "not-the-password")
    right = sign(people["owner"], canary, PASSWORD)
    assert wrong.status_code == right.status_code == 409, (wrong.content, right.content)
    assert wrong.json()["detail"] == right.json()["detail"]
    assert not AuditEvent.objects.filter(action="user.login_failed").exists()  # no password was tried


def test_failed_reauthentications_lock_signing_and_the_login_page_and_are_audited(people):
    canary = running_canary(people)
    Canary.objects.filter(pk=canary.pk).update(stage_entered_at=timezone.now() - timedelta(hours=25))
    evaluation = make_evaluation(canary, window_end=timezone.now())
    for _ in range(2):
        refused = sign(people["owner"], canary, "guess", evaluation.content_hash)
        assert refused.status_code == 403 and "does not match" in refused.json()["detail"]
    third = sign(people["owner"], canary, "guess", evaluation.content_hash)
    assert third.status_code == 429 and third["Content-Type"] == "application/problem+json"
    assert int(third["Retry-After"]) > 0
    assert AuditEvent.objects.filter(action="user.login_failed", payload__username="owner").count() >= 3
    locked = sign(people["owner"], canary, PASSWORD, evaluation.content_hash)
    assert locked.status_code in (403, 429) and "locked" in locked.json()["detail"]
    assert not canary.approvals.exists()
    assert login("owner", PASSWORD, address="10.0.0.77").status_code == 429  # the same counters


def test_a_reinitiation_that_cannot_be_approved_answers_the_same_for_any_password(people):
    canary = running_canary(people)
    incident = incident_open(severity=Incident.Severity.P2, kind=Incident.Kind.ROLLBACK, canary_id=canary.pk,
                             summary="rolled back", actor=None, now=timezone.now())
    client = APIClient(REMOTE_ADDR="10.0.0.6")
    client.force_authenticate(people["owner"])
    answers = [client.post(f"/api/v1/incidents/{incident.pk}/reinitiation/",
                           {"statement": STATEMENT, "password": password}, format="json")
               for password in ("not-the-password", PASSWORD)]
    assert [a.status_code for a in answers] == [409, 409], [a.content for a in answers]  # no root cause accepted
    assert answers[0].json()["detail"] == answers[1].json()["detail"]
