"""A canary driven through its stages by the lifecycle services moves real nginx traffic."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.access.permissions import Role
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from releases.routing.models import RouterPush
from tests.factories import PASSWORD, make_evaluation
from tests.releases.conftest import CANARY_VERSION, PRODUCTION_VERSION
from tests.releases.routing.test_nginx_router import USERS, traffic

DAY = timedelta(hours=24)


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner", first_name="Olivia", last_name="Owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm"),
    }


def test_a_canary_driven_through_its_stages_moves_real_nginx_traffic(
    people, nginx_router, nginx_server, upstreams, settings, django_capture_on_commit_callbacks
):
    settings.CANARYHUB_ROUTERS = {"nginx": nginx_server.router_config(upstreams)}
    services.model_register(actor=people["platform"], name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner", on_call="oncall@x")
    services.version_register(actor=people["platform"], model_name="scorer", version=PRODUCTION_VERSION,
                              artifact_uri="s3://1", status="production")
    services.version_register(actor=people["platform"], model_name="scorer", version=CANARY_VERSION, artifact_uri="s3://2")
    now = timezone.now().replace(microsecond=0)
    with django_capture_on_commit_callbacks(execute=True):
        canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version=CANARY_VERSION,
                                           router="nginx", now=now)
    in_canary: set[str] = set()
    for expected in [1, 5, 10, 25]:
        canary.refresh_from_db()
        assert canary.traffic_percent == expected
        served = traffic(nginx_server, USERS)
        now_canary = {u for u, v in served.items() if v == CANARY_VERSION}
        assert abs(100 * len(now_canary) / len(USERS) - expected) <= 3
        assert in_canary <= now_canary
        in_canary = now_canary
        if expected == 25:
            break
        now += DAY
        evaluation = make_evaluation(canary, window_end=now - timedelta(seconds=30))
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.canary_sign(actor=people["owner"], canary_id=canary.pk, role="owner", statement="I approve this stage.",
                                  password=PASSWORD, evaluation_hash=evaluation.content_hash, now=now)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.canary_rollback(actor=None, canary_id=canary.pk, reason="error rate breach", automatic=True)
    assert set(traffic(nginx_server, USERS).values()) == {PRODUCTION_VERSION}
    pushes = list(RouterPush.objects.filter(canary=canary).order_by("started_at", "id"))
    assert [p.requested["percent"] for p in pushes] == [1, 5, 10, 25, 0]
    assert all(p.ok and p.attempts == 1 and p.applied == p.requested and p.duration_ms > 0 for p in pushes)
    assert Canary.objects.get(pk=canary.pk).state == Canary.State.ROLLED_BACK
