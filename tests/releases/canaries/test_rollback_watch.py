"""The rollback watch between evaluations: the error-rate test on the stage's counts now, from
the memory the stage's last evaluation left, recorded through the durable rollback decision."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.access.permissions import Role
from monitoring.models import CanaryWatch, Evaluation, Observation, RollbackDecision
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register

T0 = timezone.now().replace(microsecond=0) - timedelta(minutes=20)


@pytest.fixture
def canary(role_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    settings.STALENESS_LIMIT_S = 10**6  # the windows here are pushed for moments in the past
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="ranker", display_name="r", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="ranker", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="ranker", version="1.1.0", artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        return lifecycle.canary_initiate(actor=owner, model_name="ranker", version="1.1.0",
                                         now=T0 - timedelta(minutes=30))


def window(end, *, canary_errors, minutes=5):
    """A window at 1 %: 600 canary requests a minute against 59,400 in production at 1 %."""
    for version, requests_, errors in (("1.0.0", 59_400 * minutes, 594 * minutes),
                                       ("1.1.0", 600 * minutes, canary_errors)):
        Observation.objects.create(model="ranker", version=version, window_start=end - timedelta(minutes=minutes),
                                   window_end=end, requests=requests_, errors=errors, latency_p99_ms=200.0,
                                   quality_sum=0.8 * requests_, quality_count=requests_)


def test_a_rise_after_the_last_evaluation_is_rolled_back_by_the_watch(canary, django_capture_on_commit_callbacks):
    window(T0, canary_errors=30)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=T0, canary_ids=[canary.pk])
    evaluations = Evaluation.objects.count()
    memory = CanaryWatch.objects.get(canary=canary).sequential
    assert memory["stage_index"] == canary.stage_index and memory["canary"]["requests"] == 3000
    # Twenty seconds later: 200 requests, 40 of them errors (20 % against 1 %).
    window(T0 + timedelta(seconds=20), canary_errors=40, minutes=1 / 3)
    with django_capture_on_commit_callbacks(execute=True):
        decided = loop.rollback_watch_tick(now=T0 + timedelta(seconds=20), canary_ids=[canary.pk])
    assert decided == [canary.pk]
    decision = RollbackDecision.objects.get(canary=canary)
    assert decision.evaluation_id is None and "rollback watch" in decision.reason
    assert "sequential test" in decision.reason
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK
    # The watch stores no evaluation, and leaves the memory as the evaluation left it.
    assert Evaluation.objects.count() == evaluations
    assert CanaryWatch.objects.get(canary=canary).sequential == memory


def test_a_healthy_canary_is_left_alone(canary, django_capture_on_commit_callbacks):
    window(T0, canary_errors=30)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=T0, canary_ids=[canary.pk])
    window(T0 + timedelta(seconds=20), canary_errors=2, minutes=1 / 3)
    assert loop.rollback_watch_tick(now=T0 + timedelta(seconds=20), canary_ids=[canary.pk]) == []
    assert not RollbackDecision.objects.filter(canary=canary).exists()


def test_nothing_is_judged_before_the_stage_has_an_evaluation(canary, django_capture_on_commit_callbacks):
    window(T0, canary_errors=300)  # 10 %: it would roll back, but the stage has no memory yet
    assert loop.rollback_watch_tick(now=T0, canary_ids=[canary.pk]) == []
    CanaryWatch.objects.update_or_create(canary=canary, defaults={"sequential": {"stage_index": 7, "canary": {}}})
    assert loop.rollback_watch_tick(now=T0, canary_ids=[canary.pk]) == []  # another stage's memory
    assert not RollbackDecision.objects.filter(canary=canary).exists()


def test_beat_runs_the_watch_on_the_rollbacks_queue_every_ten_seconds():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["rollback-watch"]
    assert entry["task"] == "releases.canaries.tasks.rollback_watch" and entry["schedule"] == 10.0
    assert entry["options"]["queue"] == "rollbacks"
