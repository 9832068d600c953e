"""After 100 %: the post-promotion watch, the previous version's hot standby, and the revert
(by hand, and by the control loop on a breach of the rollback rule)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from canaryhub.errors import Conflict, PermissionRefused, ValidationFailed
from governance.access.permissions import Principal, Role
from governance.audit.models import AuditEvent
from governance.audit.services import audit_verify
from governance.incidents.models import Incident
from monitoring.models import Evaluation, NotificationEvent, Observation
from monitoring.samples import Sample
from releases.canaries import loop, states
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register
from releases.register.models import ModelVersion
from releases.routing.models import RouterPush
from tests.factories import PASSWORD, make_evaluation

State = Canary.State
Standby = states.Standby
STATEMENT = "I reviewed the evaluation and approve this step."


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "other_owner": role_user(Role.MODEL_OWNER, username="other"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "risk": role_user(Role.RISK_OFFICER, username="risk"),
        "on_call": role_user(Role.ON_CALL, username="oncall"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }


def production_stage(requests_: int = 200_000, errors: int = 100) -> dict:
    """What an evaluation stores as production's stage-so-far numbers."""
    return Sample(requests=requests_, errors=errors, latency_p99_s=0.2, quality_sum=0.8 * requests_,
                  quality_count=requests_, present=True, last_seen=timezone.now()).to_dict()


def complete(people, settings, tmp_path, capture, *, now=None):
    """A medium-risk canary taken through every stage of the standard schedule to 100 %; each stage's
    evaluation records production's numbers, as the evaluator does."""
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    platform = people["platform"]
    register.model_register(actor=platform, name="scorer", display_name="s", risk_tier="medium", owner="owner",
                            on_call="oncall@x")
    register.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    now = now or timezone.now().replace(microsecond=0) - timedelta(days=6)
    with capture(execute=True):
        canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0", now=now)
    while True:
        canary.refresh_from_db()
        if canary.state == State.COMPLETED:
            return canary
        now += timedelta(hours=24)
        evaluation = make_evaluation(canary, window_end=now - timedelta(seconds=30),
                                     inputs={"raw": {"stage": {"production": production_stage()}}})
        roles = ["owner", "mrm"] if canary.stage_index == len(canary.stages) - 2 else ["owner"]
        with capture(execute=True):
            for role in roles:
                lifecycle.canary_sign(actor=people[role], canary_id=canary.pk, role=role, statement=STATEMENT,
                                      password=PASSWORD, evaluation_hash=evaluation.content_hash, now=now)


@pytest.fixture
def completed(people, settings, tmp_path, django_capture_on_commit_callbacks):
    return complete(people, settings, tmp_path, django_capture_on_commit_callbacks)


def observe(version, *, requests_=20_000, errors=10, end=None):
    end = end or timezone.now()
    Observation.objects.create(model="scorer", version=version, window_start=end - timedelta(seconds=60),
                               window_end=end, requests=requests_, errors=errors, latency_p99_ms=200.0,
                               quality_sum=0.8 * requests_, quality_count=requests_)


def statuses():
    return dict(ModelVersion.objects.values_list("version", "status"))


# --- the watch starts at completion -----------------------------------------------------------------


def test_completion_starts_the_watch_with_the_previous_versions_numbers_from_the_stages(completed, settings):
    assert completed.standby == Standby.WATCHING
    assert completed.watch_until - completed.ended_at == timedelta(hours=settings.HOT_STANDBY_HOURS)
    # Five stages before 100 % each measured production: their numbers added up.
    assert completed.watch_baseline["requests"] == 5 * 200_000
    assert completed.watch_baseline["errors"] == 5 * 100
    assert statuses() == {"1.0.0": "deprecated", "1.1.0": "production"}


def test_the_hot_standby_setting_is_refused_outside_48_to_72_hours():
    import subprocess
    import sys

    for hours, ok in (("47", False), ("73", False), ("72", True)):
        result = subprocess.run(
            [sys.executable, "-c", "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='canaryhub.settings'; "
             "django.setup(); from django.conf import settings; print(settings.HOT_STANDBY_HOURS)"],
            env={**__import__("os").environ, "CANARYHUB_HOT_STANDBY_HOURS": hours}, capture_output=True, text=True,
            timeout=60,
        )
        assert (result.returncode == 0) is ok, result.stderr[-500:]
        if not ok:
            assert "CANARYHUB_HOT_STANDBY_HOURS" in result.stderr


# --- the loop keeps judging the new production version ------------------------------------------------


def test_a_healthy_new_version_is_judged_green_and_nothing_is_reverted(completed, django_capture_on_commit_callbacks):
    observe("1.1.0", errors=10)
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = loop.watch_tick()
    assert [(o.canary_id, o.verdict, o.rollback) for o in outcomes] == [(completed.pk, "green", "")]
    evaluation = Evaluation.objects.filter(canary=completed).first()
    assert evaluation.inputs["phase"] == "watch" and evaluation.gates[0]["name"] == "post_promotion"
    completed.refresh_from_db()
    assert (completed.state, completed.standby) == (State.COMPLETED, Standby.WATCHING)


def test_a_breach_after_100_percent_reverts_to_the_previous_version(completed, django_capture_on_commit_callbacks):
    observe("1.1.0", errors=1_000)  # 5 % errors against the previous version's 0.05 %
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = loop.watch_tick()
    assert outcomes[0].rollback and "error rate" in outcomes[0].rollback
    completed.refresh_from_db()
    assert (completed.state, completed.standby, completed.traffic_percent) == (State.REVERTED, Standby.USED, 0)
    assert statuses() == {"1.0.0": "production", "1.1.0": "rolled_back"}
    incident = Incident.objects.get(canary=completed)
    assert incident.kind == Incident.Kind.ROLLBACK and incident.evaluation_id == outcomes[0].evaluation_id
    assert NotificationEvent.objects.filter(kind="canary.reverted", canary=completed).exists()
    event = AuditEvent.objects.get(action="canary.reverted")
    assert event.actor is None and event.payload["automatic"] is True and event.payload["reinstated"] == "1.0.0"
    push = RouterPush.objects.filter(canary=completed).order_by("-id").first()
    assert push.ok and push.requested["percent"] == 0 and push.requested["production_version"] == "1.0.0"
    assert audit_verify().ok
    # Decided again (a retried task): reverted once.
    assert loop.rollback_decided(canary_id=completed.pk, evaluation_id=None, reason="again").startswith("skipped")
    assert AuditEvent.objects.filter(action="canary.reverted").count() == 1


def test_stale_data_after_100_percent_is_recorded_and_reverts_nothing(completed, django_capture_on_commit_callbacks):
    observe("1.1.0", errors=1_000, end=timezone.now() - timedelta(minutes=20))
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = loop.watch_tick()
    assert [(o.verdict, o.rollback) for o in outcomes] == [("stale", "")]
    completed.refresh_from_db()
    assert completed.state == State.COMPLETED


def test_the_watch_ends_by_releasing_the_standby(completed, django_capture_on_commit_callbacks):
    later = completed.watch_until + timedelta(seconds=1)
    loop.watch_tick(now=completed.watch_until - timedelta(minutes=1), canary_ids=[])
    completed.refresh_from_db()
    assert completed.standby == Standby.WATCHING
    assert loop.watch_tick(now=later) == []
    completed.refresh_from_db()
    assert (completed.state, completed.standby) == (State.COMPLETED, Standby.RELEASED)
    assert AuditEvent.objects.filter(action="canary.standby_released").count() == 1
    assert NotificationEvent.objects.filter(kind="canary.standby_released").exists()
    with pytest.raises(Conflict, match="standby was released"):
        lifecycle.canary_revert(actor=completed.owner, canary_id=completed.pk, reason="too late")


# --- the revert by hand -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "platform"])
def test_owner_or_platform_revert_during_the_watch(completed, people, who, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        canary = lifecycle.canary_revert(actor=people[who], canary_id=completed.pk, reason="customers complain")
    assert (canary.state, canary.traffic_percent, canary.end_reason) == (State.REVERTED, 0, "customers complain")
    assert statuses() == {"1.0.0": "production", "1.1.0": "rolled_back"}
    assert AuditEvent.objects.get(action="canary.reverted").actor == people[who]
    assert AuditEvent.objects.filter(action="version.reinstated").count() == 1
    assert Incident.objects.filter(canary=canary, kind=Incident.Kind.ROLLBACK).count() == 1
    with pytest.raises(Conflict, match="reverted already"):
        lifecycle.canary_revert(actor=people[who], canary_id=completed.pk, reason="twice")


def test_a_certified_canary_can_still_be_reverted_while_watched(completed, people):
    Canary.objects.filter(pk=completed.pk).update(state=State.CERTIFIED)
    canary = lifecycle.canary_revert(actor=people["owner"], canary_id=completed.pk, reason="late regression")
    assert canary.state == State.REVERTED


@pytest.mark.parametrize("who", ["other_owner", "mrm", "risk", "on_call", "bot"])
def test_others_may_not_revert(completed, people, who):
    with pytest.raises(PermissionRefused):
        lifecycle.canary_revert(actor=people[who], canary_id=completed.pk, reason="not mine")
    completed.refresh_from_db()
    assert completed.state == State.COMPLETED


def test_a_scoped_token_may_not_revert_even_within_its_scope(completed, people):
    principal = Principal(user=people["bot"], scope=frozenset({completed.model_id}))
    with pytest.raises(PermissionRefused):
        lifecycle.canary_revert(actor=principal, canary_id=completed.pk, reason="ci says so")


def test_a_revert_needs_a_reason(completed, people):
    with pytest.raises(ValidationFailed):
        lifecycle.canary_revert(actor=people["owner"], canary_id=completed.pk, reason="  ")


def test_a_running_canary_cannot_be_reverted(people, settings, tmp_path):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    register.model_register(actor=people["platform"], name="scorer", display_name="s", risk_tier="medium",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    with pytest.raises(Conflict, match="not watched"):
        lifecycle.canary_revert(actor=people["owner"], canary_id=canary.pk, reason="use rollback")


def test_a_revert_waits_for_a_newer_canary_of_the_model(completed, people):
    register.version_register(actor=people["platform"], model_name="scorer", version="1.2.0", artifact_uri="s3://3")
    newer = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.2.0")
    with pytest.raises(Conflict, match=f"#{newer.pk}"):
        lifecycle.canary_revert(actor=people["owner"], canary_id=completed.pk, reason="old one is bad")


# --- the API ---------------------------------------------------------------------------------------


def test_api_revert(completed, people, client):
    client.force_login(people["owner"])
    url = f"/api/v1/canaries/{completed.pk}/revert/"
    assert client.post(url, {}, content_type="application/json").status_code == 400
    response = client.post(url, {"reason": "wrong answers"}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "reverted"
    again = client.post(url, {"reason": "again"}, content_type="application/json")
    assert again.status_code == 409 and again["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize("who", ["other_owner", "risk", "on_call"])
def test_api_revert_refused_for_others(completed, people, client, who):
    client.force_login(people[who])
    response = client.post(f"/api/v1/canaries/{completed.pk}/revert/", json.dumps({"reason": "x"}),
                           content_type="application/json")
    assert response.status_code == 403
    completed.refresh_from_db()
    assert completed.state == State.COMPLETED


def test_api_revert_anonymous_and_tokens(completed, people, client):
    from governance.tokens.services import token_create

    url = f"/api/v1/canaries/{completed.pk}/revert/"
    assert client.post(url, {"reason": "x"}, content_type="application/json").status_code == 401
    register.model_register(actor=people["platform"], name="other", display_name="o", risk_tier="medium",
                            owner="owner", on_call="x")
    _, scoped = token_create(actor=people["platform"], user=people["bot"], name="ci", scope=["scorer"])
    _, outside = token_create(actor=people["platform"], user=people["bot"], name="ci2", scope=["other"])
    for raw, expected in ((scoped, 403), (outside, 404)):
        response = client.post(url, {"reason": "x"}, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert response.status_code == expected, response.content
    completed.refresh_from_db()
    assert completed.state == State.COMPLETED
