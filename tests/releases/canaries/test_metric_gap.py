"""Quality-metric lag: the canary's requests arrive but their quality scores do not yet. The stage
extends (the quality gate cannot grow its sample) and the owner sees a "metric gap" on the canary
page and gets a notification (at most hourly)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.access.permissions import Role
from monitoring.evaluator import metric_gap
from monitoring.models import NotificationEvent, Observation
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.register import services as register


def test_metric_gap_rule():
    assert metric_gap({"window": {"canary": {"requests": 500, "quality_count": 0}}}).startswith("metric gap")
    assert metric_gap({"window": {"canary": {"requests": 500, "quality_count": 3}}}) is None
    assert metric_gap({"window": {"canary": {"requests": 0, "quality_count": 0}}}) is None
    assert metric_gap({}) is None


def observe(version, *, scored: bool, end, requests_=20_000):
    Observation.objects.create(model="scorer", version=version, window_start=end - timedelta(seconds=60),
                               window_end=end, requests=requests_, errors=5, latency_p99_ms=200.0,
                               quality_sum=0.8 * requests_ if scored else 0.0,
                               quality_count=requests_ if scored else 0)


@pytest.fixture
def canary(role_user, settings, tmp_path):
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    platform = role_user(Role.PLATFORM, username="platform")
    role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="scorer", display_name="s", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.get(username="owner")
    return lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0",
                                     now=timezone.now() - timedelta(minutes=10))


def test_lagging_quality_scores_are_told_to_the_owner_and_shown_on_the_page(canary, client):
    now = timezone.now().replace(microsecond=0)
    observe("1.1.0", scored=False, end=now - timedelta(seconds=30))
    observe("1.0.0", scored=True, end=now - timedelta(seconds=30), requests_=2_000_000)
    loop.evaluate_tick(now=now, canary_ids=[canary.pk])
    notice = NotificationEvent.objects.get(kind="metric_gap", canary=canary)
    assert notice.audience == ["owner"] and "no quality scores" in notice.payload["detail"]
    # A minute later, still lagging: not told again within the hour.
    loop.evaluate_tick(now=now + timedelta(seconds=60), canary_ids=[canary.pk])
    assert NotificationEvent.objects.filter(kind="metric_gap", canary=canary).count() == 1
    client.force_login(canary.owner)
    page = client.get(f"/canaries/{canary.pk}/").content.decode()
    assert 'data-testid="metric-gap"' in page and "the stage extends" in page


def test_scored_traffic_shows_no_gap(canary, client):
    now = timezone.now().replace(microsecond=0)
    observe("1.1.0", scored=True, end=now - timedelta(seconds=30))
    observe("1.0.0", scored=True, end=now - timedelta(seconds=30), requests_=2_000_000)
    loop.evaluate_tick(now=now, canary_ids=[canary.pk])
    assert not NotificationEvent.objects.filter(kind="metric_gap").exists()
    client.force_login(canary.owner)
    assert 'data-testid="metric-gap"' not in client.get(f"/canaries/{canary.pk}/").content.decode()
