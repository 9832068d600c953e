"""A router that stops answering during a canary: traffic falls back to production where the
router still takes a push, the canary is suspended, a P1 `router` incident opens, and the split in
force comes back within the 5-minute RTO once the router answers again. Real nginx, stopped and
started."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from canaryhub import watch
from governance.access.permissions import Role
from governance.audit.services import audit_verify
from governance.incidents.models import Incident
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from releases.routing.models import RouterPush
from tests.factories import PASSWORD, make_evaluation
from tests.harness.nginx import NginxServer
from tests.releases.conftest import CANARY_VERSION, PRODUCTION_VERSION
from tests.releases.routing.test_nginx_router import USERS, traffic

RTO_S = 300


@pytest.fixture
def own_nginx():
    """An nginx of this test's own: it is stopped and started."""
    server = NginxServer().start()
    yield server
    server.stop()


def share(nginx):
    served = traffic(nginx, USERS[:1000])
    return 100 * sum(v == CANARY_VERSION for v in served.values()) / len(served)


def test_a_router_that_stops_answering_falls_back_suspends_pages_and_recovers(
        role_user, own_nginx, upstreams, settings, django_capture_on_commit_callbacks):
    settings.CANARYHUB_ROUTERS = {"nginx": own_nginx.router_config(upstreams, confirm_timeout_s=2.0)}
    settings.ROUTER_PUSH_DEADLINE_S = 2.0
    owner, platform = role_user(Role.MODEL_OWNER, username="owner"), role_user(Role.PLATFORM, username="platform")
    services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner", on_call="oncall@x")
    services.version_register(actor=platform, model_name="scorer", version=PRODUCTION_VERSION,
                              artifact_uri="s3://1", status="production")
    services.version_register(actor=platform, model_name="scorer", version=CANARY_VERSION, artifact_uri="s3://2")
    now = timezone.now().replace(microsecond=0) - timedelta(hours=25)
    with django_capture_on_commit_callbacks(execute=True):
        canary = lifecycle.canary_initiate(actor=owner, model_name="scorer", version=CANARY_VERSION, router="nginx",
                                           now=now)
    assert abs(share(own_nginx) - 1) <= 2

    # The router stops answering; the owner's promotion to 5 % cannot reach it.
    own_nginx.halt()
    evaluation = make_evaluation(canary, window_end=timezone.now() - timedelta(seconds=30))
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.canary_sign(actor=owner, canary_id=canary.pk, role="owner", statement="I approve this stage.",
                              password=PASSWORD, evaluation_hash=evaluation.content_hash)
    canary.refresh_from_db()
    assert (canary.state, canary.traffic_percent, canary.stage_index) == (Canary.State.SUSPENDED, 0, 1)
    assert canary.hold_reason.startswith("router failure")
    incident = Incident.objects.get(kind=Incident.Kind.ROUTER)
    assert incident.severity == "P1" and incident.canary_id == canary.pk and "falls back" in incident.summary
    pushes = list(RouterPush.objects.filter(canary=canary).order_by("started_at", "id"))
    assert [(p.requested["percent"], p.ok) for p in pushes] == [(1, True), (5, False), (0, False)]
    assert all(p.error for p in pushes[1:])  # every push is recorded, the failed ones with their error
    # Still down: the watchdog leaves the canary suspended; the dead-man's lift would not resume it either.
    assert loop.routers_recover() == 0
    lifecycle.canary_resume(canary_id=canary.pk, reason="evaluator heartbeat back")
    assert Canary.objects.get(pk=canary.pk).state == Canary.State.SUSPENDED

    # nginx comes back with the last configuration written: the fallback, 100 % production.
    own_nginx.resume()
    back = time.monotonic()
    assert share(own_nginx) == 0
    with django_capture_on_commit_callbacks(execute=True):
        watch.run_once()  # what every worker's and web process's watchdog runs every few seconds
    recovered_s = time.monotonic() - back
    canary.refresh_from_db()
    assert canary.state in {Canary.State.RUNNING, Canary.State.HELD, Canary.State.AWAITING_APPROVAL}
    assert canary.traffic_percent == 5 and not canary.hold_reason.startswith("router failure")
    assert abs(share(own_nginx) - 5) <= 3
    assert RouterPush.objects.filter(canary=canary).order_by("-started_at", "-id").first().ok
    assert recovered_s < RTO_S
    print(f"router back → split in force confirmed in {recovered_s:.2f} s (RTO {RTO_S} s)")
    assert audit_verify().ok


def test_a_router_that_stops_answering_between_pushes_is_found_by_the_reconciler(
        role_user, own_nginx, upstreams, settings, django_capture_on_commit_callbacks):
    settings.CANARYHUB_ROUTERS = {"nginx": own_nginx.router_config(upstreams, confirm_timeout_s=2.0)}
    settings.ROUTER_PUSH_DEADLINE_S = 2.0
    owner, platform = role_user(Role.MODEL_OWNER, username="owner"), role_user(Role.PLATFORM, username="platform")
    services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner", on_call="oncall@x")
    services.version_register(actor=platform, model_name="scorer", version=PRODUCTION_VERSION,
                              artifact_uri="s3://1", status="production")
    services.version_register(actor=platform, model_name="scorer", version=CANARY_VERSION, artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        canary = lifecycle.canary_initiate(actor=owner, model_name="scorer", version=CANARY_VERSION, router="nginx")
    own_nginx.halt()
    with django_capture_on_commit_callbacks(execute=True):
        assert loop.routers_reconcile(sleep=lambda s: None) == {"drift": 1}
    canary.refresh_from_db()
    assert canary.state == Canary.State.SUSPENDED and canary.traffic_percent == 0
    assert Incident.objects.filter(kind=Incident.Kind.ROUTER, canary=canary).count() == 1
    own_nginx.resume()
    with django_capture_on_commit_callbacks(execute=True):
        assert loop.routers_recover() == 1
    canary.refresh_from_db()
    assert canary.traffic_percent == 1 and abs(share(own_nginx) - 1) <= 2
