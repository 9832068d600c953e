"""The LLM serving rules through the tick: pushed tokens and guardrail blocks are read, and the
window before comes back from its stored evaluation for the ten-minute tokens rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.access.permissions import Role
from monitoring.models import Evaluation, Observation
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.register import services as register

T0 = timezone.now().replace(microsecond=0) - timedelta(minutes=20)


@pytest.fixture
def canary(role_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    settings.STALENESS_LIMIT_S = 10**6  # the windows here are pushed for moments in the past
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="chat", display_name="c", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="chat", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="chat", version="1.1.0", artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        return lifecycle.canary_initiate(actor=owner, model_name="chat", version="1.1.0",
                                         now=T0 - timedelta(minutes=30))


def window(end, *, canary_tokens, blocks=0):
    for version, requests_, tokens, b in (("1.0.0", 297_000, 500, 0), ("1.1.0", 3000, canary_tokens, blocks)):
        Observation.objects.create(model="chat", version=version, window_start=end - timedelta(minutes=5),
                                   window_end=end, requests=requests_, errors=requests_ // 100,
                                   latency_p99_ms=200.0, quality_sum=0.8 * requests_, quality_count=requests_,
                                   tokens_in=requests_ * tokens, tokens_out=0, cost_usd=requests_ * 0.001,
                                   guardrail_blocks=b)


def tick(canary, now, capture):
    with capture(execute=True):
        return loop.evaluate_tick(now=now, canary_ids=[canary.pk]).outcomes[0]


def test_tokens_beyond_150_percent_for_ten_minutes_roll_back_on_the_stored_window_before(
        canary, django_capture_on_commit_callbacks):
    first, second = T0, T0 + timedelta(minutes=5)
    window(first, canary_tokens=800)
    assert not tick(canary, first, django_capture_on_commit_callbacks).rollback  # five minutes only
    stored = Evaluation.objects.get(canary=canary, window_end=first).inputs["window"]["canary"]
    assert stored["tokens_in"] == 3000 * 800
    window(second, canary_tokens=800)
    outcome = tick(canary, second, django_capture_on_commit_callbacks)
    assert outcome.rollback.startswith("tokens per request 800 vs production 500")
    canary.refresh_from_db()
    assert canary.state == "rolled_back"


def test_guardrail_blocks_roll_back(canary, django_capture_on_commit_callbacks):
    window(T0, canary_tokens=500, blocks=80)
    outcome = tick(canary, T0, django_capture_on_commit_callbacks)
    assert "80 guardrail blocks in the last window (16.0 a minute > 10)" in outcome.rollback
