"""The dead-man's switch does not depend on what it watches: every worker and web process checks
it in its watchdog thread, and a silence is recorded when it ends even if no check saw it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from canaryhub import watch
from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.audit.services import audit_verify
from governance.incidents.models import Incident
from monitoring.models import Heartbeat
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register


@pytest.fixture
def canary(role_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="scorer", display_name="s", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        return lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0",
                                         now=timezone.now() - timedelta(minutes=30))


def test_with_beat_dead_the_watchdog_of_any_process_trips_the_switch_and_the_gap_is_recorded(
        canary, settings, django_capture_on_commit_callbacks):
    settings.DEADMAN_LIMIT_S = 120
    now = timezone.now().replace(microsecond=0)
    Heartbeat.objects.create(pk=1, last_tick_at=now - timedelta(seconds=121))  # beat died 2 minutes ago
    with django_capture_on_commit_callbacks(execute=True):
        results = watch.run_once()  # what a web process's or a worker's watchdog thread runs
    assert results["releases.canaries.loop.deadman_check"] == "tripped"
    assert Canary.objects.get(pk=canary.pk).state == Canary.State.SUSPENDED
    assert Incident.objects.get(kind=Incident.Kind.MONITOR_SILENT).severity == "P1"
    # Beat is back: its first round records the outage it ends, and the next check lifts the switch.
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=timezone.now().replace(microsecond=0), canary_ids=[])
        assert watch.run_once()["releases.canaries.loop.deadman_check"] == "lifted"
    outage = AuditEvent.objects.get(action="monitor.outage")
    assert outage.payload["silent_s"] > 120 and outage.payload["switch_tripped_at"] is not None
    assert Canary.objects.get(pk=canary.pk).state != Canary.State.SUSPENDED
    assert audit_verify().ok


def test_a_gap_no_check_saw_is_still_recorded_when_the_evaluator_returns(db, settings):
    settings.DEADMAN_LIMIT_S = 120
    now = timezone.now().replace(microsecond=0)
    Heartbeat.objects.create(pk=1, last_tick_at=now - timedelta(seconds=300))
    loop.evaluate_tick(now=now, canary_ids=[])
    outage = AuditEvent.objects.get(action="monitor.outage")
    assert outage.payload["silent_s"] == 300 and outage.payload["switch_tripped_at"] is None
    loop.evaluate_tick(now=now + timedelta(seconds=60), canary_ids=[])  # a healthy round records nothing
    assert AuditEvent.objects.filter(action="monitor.outage").count() == 1


def test_a_web_request_starts_the_process_watchdog_once(client, db, settings, monkeypatch):
    settings.WATCHDOG_INTERVAL_S = 3600
    rounds = []
    monkeypatch.setattr(watch, "_checks", [lambda: rounds.append(1)])
    monkeypatch.setattr(watch, "_started_in", None)
    before = {t.name for t in threading.enumerate()}
    client.get("/healthz")
    client.get("/healthz")
    started = [t for t in threading.enumerate() if t.name == "canaryhub-watchdog-web" and t.name not in before]
    assert len(started) == 1 and started[0].daemon
    started[0].join(timeout=0.5)  # it runs a round at once, then sleeps
    assert rounds == [1]
