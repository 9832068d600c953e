"""Break-glass (the emergency path): on-call rolls a canary back, or reverts a watched one, at once,
with a reason in full, a page, an incident, and MRM's retrospective review through the incident's
root cause due within 48 h. Everyone else's attempts at the same path are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from canaryhub.errors import PermissionRefused, ValidationFailed
from governance.access.permissions import Principal, Role
from governance.audit.models import AuditEvent
from governance.audit.services import audit_verify
from governance.incidents.models import Incident
from monitoring.models import NotificationEvent
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register
from tests.releases.canaries.test_watch import complete

State = Canary.State
REASON = "error budget burning on checkout since 14:02, owner unreachable"


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "on_call": role_user(Role.ON_CALL, username="oncall"),
        "risk": role_user(Role.RISK_OFFICER, username="risk"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }


@pytest.fixture
def running(people, settings, tmp_path):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    register.model_register(actor=people["platform"], name="scorer", display_name="s", risk_tier="medium",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    return lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")


def test_on_call_rolls_back_under_break_glass(running, people):
    canary = lifecycle.canary_rollback(actor=people["on_call"], canary_id=running.pk, reason=REASON, break_glass=True)
    assert (canary.state, canary.traffic_percent) == (State.ROLLED_BACK, 0)
    incident = Incident.objects.get(canary=canary)
    assert incident.details["break_glass"] is True and "break-glass" in incident.summary
    # The retrospective review is the incident's root cause: due within 48 h, reviewed by MRM.
    assert incident.root_cause_due_at - incident.opened_at == timedelta(hours=48)
    event = AuditEvent.objects.get(action="canary.break_glass")
    assert event.actor == people["on_call"] and event.payload["act"] == "rollback"
    assert event.payload["incident"] == incident.pk and event.payload["retrospective_review_due_at"]
    page = NotificationEvent.objects.get(kind="canary.break_glass")
    assert {"on_call", "mrm", "platform", "owner"} <= set(page.audience)
    assert AuditEvent.objects.get(action="canary.rolled_back").payload["break_glass"] is True
    assert audit_verify().ok


def test_on_call_reverts_a_watched_canary_under_break_glass(people, settings, tmp_path,
                                                            django_capture_on_commit_callbacks):
    completed = complete(people, settings, tmp_path, django_capture_on_commit_callbacks)
    canary = lifecycle.canary_revert(actor=people["on_call"], canary_id=completed.pk, reason=REASON, break_glass=True)
    assert canary.state == State.REVERTED
    assert AuditEvent.objects.get(action="canary.break_glass").payload["act"] == "revert"


def test_on_call_without_break_glass_is_refused(running, people):
    with pytest.raises(PermissionRefused):
        lifecycle.canary_rollback(actor=people["on_call"], canary_id=running.pk, reason=REASON)
    running.refresh_from_db()
    assert running.state == State.RUNNING


def test_break_glass_needs_the_reason_in_full(running, people):
    for reason in ("", "bad", "too short a reason"):
        with pytest.raises(ValidationFailed):
            lifecycle.canary_rollback(actor=people["on_call"], canary_id=running.pk, reason=reason, break_glass=True)
    running.refresh_from_db()
    assert running.state == State.RUNNING
    assert not AuditEvent.objects.filter(action="canary.break_glass").exists()


def test_owner_without_a_reason_is_refused_break_glass_or_not(running, people):
    for break_glass in (False, True):
        with pytest.raises(ValidationFailed):
            lifecycle.canary_rollback(actor=people["owner"], canary_id=running.pk, reason=" ", break_glass=break_glass)
    running.refresh_from_db()
    assert running.state == State.RUNNING


@pytest.mark.parametrize("who", ["owner", "platform", "mrm", "risk"])
def test_break_glass_is_on_calls_path_only(running, people, who):
    with pytest.raises(PermissionRefused):
        lifecycle.canary_rollback(actor=people[who], canary_id=running.pk, reason=REASON, break_glass=True)
    running.refresh_from_db()
    assert running.state == State.RUNNING


def test_a_scoped_ci_token_never_breaks_glass(running, people):
    principal = Principal(user=people["bot"], scope=frozenset({running.model_id}))
    with pytest.raises(PermissionRefused):
        lifecycle.canary_rollback(actor=principal, canary_id=running.pk, reason=REASON, break_glass=True)


def test_on_call_may_not_take_non_urgent_acts(running, people):
    """Break-glass is for stopping harm: aborting, starting or changing a canary stays refused."""
    with pytest.raises(PermissionRefused):
        lifecycle.canary_abort(actor=people["on_call"], canary_id=running.pk, reason=REASON)
    register.version_register(actor=people["platform"], model_name="scorer", version="1.2.0", artifact_uri="s3://3")
    with pytest.raises(PermissionRefused):
        lifecycle.canary_initiate(actor=people["on_call"], model_name="scorer", version="1.2.0")


# --- the API ---------------------------------------------------------------------------------------


def test_api_break_glass(running, people, client):
    url = f"/api/v1/canaries/{running.pk}/rollback/"
    assert client.post(url, {"reason": REASON, "break_glass": True},
                       content_type="application/json").status_code == 401  # anonymous
    client.force_login(people["on_call"])
    assert client.post(url, {"reason": REASON}, content_type="application/json").status_code == 403
    short = client.post(url, {"reason": "meh", "break_glass": True}, content_type="application/json")
    assert short.status_code == 400 and "reason" in short.json()["errors"], short.content
    abort = client.post(f"/api/v1/canaries/{running.pk}/abort/", {"reason": REASON},
                        content_type="application/json")
    assert abort.status_code == 403
    response = client.post(url, {"reason": REASON, "break_glass": True}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "rolled_back"


def test_api_break_glass_with_a_ci_token_is_refused(running, people, client):
    from governance.tokens.services import token_create

    _, raw = token_create(actor=people["platform"], user=people["bot"], name="ci", scope=["scorer"])
    response = client.post(f"/api/v1/canaries/{running.pk}/rollback/", {"reason": REASON, "break_glass": True},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403
    running.refresh_from_db()
    assert running.state == State.RUNNING
