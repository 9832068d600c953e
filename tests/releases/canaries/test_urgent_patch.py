"""The platform engineer's urgent PATCH (pattern §3.2 emergency path): faster than the schedule
means shorter residences only; every signature, gate and the rollback rule still apply. A reason,
an incident whose root cause is MRM's retrospective review within 48 h, an audit event and a
notice. Everyone else's attempts, and a MINOR or MAJOR version, are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from canaryhub.errors import PermissionRefused, ValidationFailed
from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.incidents.models import Incident
from governance.rootcause import services as rootcause
from governance.tokens.services import token_create
from monitoring.models import NotificationEvent
from releases.canaries import loop, selectors
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register
from releases.register.models import AIModel

State = Canary.State
REASON = "refund answers quote last year's policy; legal asked for a fix today"
URL = "/api/v1/canaries/urgent-patch/"


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "on_call": role_user(Role.ON_CALL, username="oncall"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }


@pytest.fixture
def model(people, settings, tmp_path):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    register.model_register(actor=people["platform"], name="scorer", display_name="s", risk_tier="high",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    for version in ("1.0.1", "1.1.0", "2.0.0"):
        register.version_register(actor=people["platform"], model_name="scorer", version=version,
                                  artifact_uri=f"s3://{version}")
    return "scorer"


def test_an_urgent_patch_holds_each_stage_the_urgent_residence_and_keeps_every_other_rule(model, people, settings):
    now = timezone.now()
    canary = lifecycle.canary_urgent_patch(actor=people["platform"], model_name=model, version="1.0.1",
                                           reason=REASON, now=now)
    assert canary.urgent_reason == REASON
    stages = selectors.canary_stages(canary)
    assert [s.percent for s in stages] == [1, 5, 10, 25, 50, 100]
    assert [s.min_residence for s in stages] == [timedelta(minutes=settings.URGENT_RESIDENCE_MINUTES)] * 5 + [
        timedelta(0)]
    # A high-risk model still waits for the owner's and MRM's start signatures.
    assert canary.state == State.PENDING_APPROVAL and canary.traffic_percent == 0
    assert canary.thresholds == canary.version.thresholds  # the rollback triggers are the version's own
    # The incident: its root cause is MRM's retrospective review, due within 48 h.
    incident = Incident.objects.get(canary=canary)
    assert (incident.kind, incident.severity) == (Incident.Kind.URGENT_PATCH, Incident.Severity.P2)
    assert incident.root_cause_due_at - incident.opened_at == timedelta(hours=48)
    event = AuditEvent.objects.get(action="canary.urgent_patch")
    assert event.actor == people["platform"] and event.payload["reason"] == REASON
    assert event.payload["incident"] == incident.pk and event.payload["retrospective_review_due_at"]
    notice = NotificationEvent.objects.get(kind="canary.urgent_patch")
    assert {"on_call", "mrm", "platform", "owner"} <= set(notice.audience)


def test_the_residence_is_shorter_but_the_gates_still_decide_and_a_breach_still_rolls_back(model, people, settings):
    settings.URGENT_RESIDENCE_MINUTES = 30
    AIModel.objects.filter(name=model).update(risk_tier="medium")  # starts at once: no start signatures
    now = timezone.now()
    canary = lifecycle.canary_urgent_patch(actor=people["platform"], model_name=model, version="1.0.1",
                                           reason=REASON, now=now)
    assert canary.state == State.RUNNING and canary.traffic_percent == 1
    early = selectors.stage_readiness(canary, now=now + timedelta(minutes=29))
    assert not early.ready and "minimum residence" in early.reason
    # After the residence, no evaluation yet: not ready (the gates, not the clock, decide).
    later = selectors.stage_readiness(canary, now=now + timedelta(minutes=31), evaluation=None)
    assert not later.ready and "residence" not in later.reason
    # The automatic rollback applies as to any canary.
    assert loop.rollback_decided(canary_id=canary.pk, evaluation_id=None, reason="error rate past the trigger") \
        == "rolled back"
    assert Canary.objects.get(pk=canary.pk).state == State.ROLLED_BACK


def test_the_retrospective_review_is_filed_and_reviewed_like_a_root_cause(model, people):
    canary = lifecycle.canary_urgent_patch(actor=people["platform"], model_name=model, version="1.0.1", reason=REASON)
    incident = Incident.objects.get(canary=canary)
    report = rootcause.root_cause_file(actor=people["on_call"], incident_id=incident.pk,
                                       cause="a policy table shipped stale in 1.0.0", fix="1.0.1 reloads it")
    rootcause.root_cause_review(actor=people["mrm"], report_id=report.pk, accept=True, note="justified")
    assert Incident.objects.get(pk=incident.pk).status == Incident.Status.RESOLVED


@pytest.mark.parametrize("who", ["owner", "on_call", "mrm", "bot"])
def test_nobody_but_a_platform_engineer_may(model, people, who):
    with pytest.raises(PermissionRefused):
        lifecycle.canary_urgent_patch(actor=people[who], model_name=model, version="1.0.1", reason=REASON)
    assert not Canary.objects.exists() and not Incident.objects.exists()


@pytest.mark.parametrize("version", ["1.1.0", "2.0.0"])
def test_a_minor_or_major_version_follows_the_schedule(model, people, version):
    with pytest.raises(ValidationFailed) as refused:
        lifecycle.canary_urgent_patch(actor=people["platform"], model_name=model, version=version, reason=REASON)
    assert "PATCH version only" in str(refused.value.errors["version"])
    assert not Canary.objects.exists() and not Incident.objects.exists()


@pytest.mark.parametrize("reason", ["", "   ", "hotfix", None])
def test_a_reason_is_mandatory_and_stated_in_full(model, people, reason):
    with pytest.raises(ValidationFailed) as refused:
        lifecycle.canary_urgent_patch(actor=people["platform"], model_name=model, version="1.0.1", reason=reason)
    assert "reason" in refused.value.errors
    assert not Canary.objects.exists()


def test_the_api_refuses_the_owner_on_call_a_ci_token_and_anonymous_before_reading_the_body(model, people):
    body = {"model": model, "version": "1.0.1", "reason": REASON}
    for who in ("owner", "on_call", "mrm"):
        api = APIClient()
        api.force_authenticate(people[who])
        assert api.post(URL, body, format="json").status_code == 403
    _, ci = token_create(actor=people["platform"], user=people["bot"], name="ci", scope=[model])
    assert Client(HTTP_AUTHORIZATION=f"Bearer {ci}").post(URL, body, content_type="application/json"
                                                            ).status_code == 403
    assert APIClient().post(URL, body, format="json").status_code == 401
    platform = APIClient()
    platform.force_authenticate(people["platform"])
    assert platform.post(URL, {**body, "reason": "now"}, format="json").status_code == 400
    assert platform.post(URL, {**body, "version": "1.1.0"}, format="json").status_code == 400
    assert platform.post(URL, {k: v for k, v in body.items() if k != "reason"}, format="json").status_code == 400
    assert not Canary.objects.exists()
    response = platform.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    assert Canary.objects.get(pk=response.json()["id"]).urgent_reason == REASON
