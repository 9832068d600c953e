"""A decided rollback is a row of the evaluation's transaction, carried out by whoever sees it
first (the queued task or any process's sweeper), once; one still pending past its SLO pages."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from canaryhub import watch
from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.incidents.models import Incident
from monitoring.models import Observation, RollbackDecision
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.canaries.tasks import rollback_canary
from releases.register import services as register
from releases.routing.models import RouterPush

NOW = timezone.now().replace(microsecond=0)


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
        c = lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0",
                                      now=NOW - timedelta(minutes=30))
    return c


def breach(end):
    for version, requests_, errors, safety in (("1.0.0", 100_000, 100, 0), ("1.1.0", 1000, 1, 1)):
        Observation.objects.create(model="scorer", version=version, window_start=end - timedelta(seconds=60),
                                   window_end=end, requests=requests_, errors=errors, latency_p99_ms=200.0,
                                   quality_sum=0.8 * requests_, quality_count=requests_, safety_violations=safety)


def decide_and_lose_the_message(canary, django_capture_on_commit_callbacks, now):
    """A round decides the rollback; its prompt is never delivered (a worker killed, a broker gone)."""
    breach(now)
    with django_capture_on_commit_callbacks(execute=False) as lost:
        outcome = loop.evaluate_tick(now=now, canary_ids=[canary.pk]).outcomes[0]
    assert outcome.rollback and lost  # the prompt was there, and is dropped
    return outcome


def router_percent(tmp_path):
    return json.loads((tmp_path / "scorer.json").read_text())["percent"]


def test_the_decision_is_recorded_with_the_evaluation_and_the_sweeper_carries_out_a_lost_one_once(
        canary, tmp_path, settings, django_capture_on_commit_callbacks):
    now = timezone.now().replace(microsecond=0)
    outcome = decide_and_lose_the_message(canary, django_capture_on_commit_callbacks, now)
    decision = RollbackDecision.objects.get()
    assert (decision.canary_id, decision.evaluation_id, decision.done_at) == (canary.pk, outcome.evaluation_id, None)
    assert decision.decided_at == now and "safety" in decision.reason
    # A second round while it waits keeps the one pending decision (its SLO runs from the first).
    later = now + timedelta(seconds=5)
    breach(later)
    with django_capture_on_commit_callbacks(execute=False):
        assert loop.evaluate_tick(now=later, canary_ids=[canary.pk]).outcomes[0].rollback
    assert RollbackDecision.objects.count() == 1

    # Within the sweep delay the queued task still has its chance: the sweeper leaves it.
    settings.ROLLBACK_SWEEP_AFTER_S = 10
    assert loop.rollbacks_sweep(now=now + timedelta(seconds=5))["rolled_back"] == 0
    assert Canary.objects.get(pk=canary.pk).state == Canary.State.RUNNING
    with django_capture_on_commit_callbacks(execute=True):
        swept = loop.rollbacks_sweep(now=now + timedelta(seconds=11))
    assert swept == {"rolled_back": 1, "alarmed": 0, "pushed": 0}
    canary.refresh_from_db()
    decision.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK and router_percent(tmp_path) == 0
    assert decision.done_at is not None and (decision.outcome, decision.executed_by) == ("rolled back", "sweeper")

    # The lost message turns up after all (a redelivery): nothing happens twice.
    assert rollback_canary(canary.pk, outcome.evaluation_id, "automatic: late").startswith("skipped")
    with django_capture_on_commit_callbacks(execute=True):
        assert loop.rollbacks_sweep(now=now + timedelta(seconds=30))["rolled_back"] == 0
    assert AuditEvent.objects.filter(object_type="canary", object_id=str(canary.pk),
                                     action="canary.rolled_back").count() == 1
    assert Incident.objects.filter(canary=canary, kind=Incident.Kind.ROLLBACK).count() == 1
    assert not Incident.objects.filter(kind=Incident.Kind.ROLLBACK_UNCONFIRMED).exists()


def test_the_queued_task_closes_the_decision_it_carries_out(canary, django_capture_on_commit_callbacks):
    now = timezone.now().replace(microsecond=0)
    breach(now)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=now, canary_ids=[canary.pk])
    decision = RollbackDecision.objects.get()
    assert decision.done_at is not None and (decision.outcome, decision.executed_by) == ("rolled back", "task")
    assert Canary.objects.get(pk=canary.pk).state == Canary.State.ROLLED_BACK


def test_a_decision_pending_past_its_slo_raises_one_p1_from_the_sweeper(
        canary, settings, django_capture_on_commit_callbacks, monkeypatch):
    now = timezone.now().replace(microsecond=0)
    decide_and_lose_the_message(canary, django_capture_on_commit_callbacks, now)

    def broken(**kw):
        raise RuntimeError("database refused the write")

    monkeypatch.setattr(lifecycle, "canary_rollback", broken)
    assert loop.rollbacks_sweep(now=now + timedelta(seconds=60))["alarmed"] == 0  # failing, but within the SLO
    for seconds in (settings.ROLLBACK_SLO_S + 1, settings.ROLLBACK_SLO_S + 30):
        with django_capture_on_commit_callbacks(execute=True):
            loop.rollbacks_sweep(now=now + timedelta(seconds=seconds))
    incident = Incident.objects.get(kind=Incident.Kind.ROLLBACK_UNCONFIRMED)
    assert incident.severity == "P1" and incident.canary_id == canary.pk and "not carried out" in incident.summary
    assert RollbackDecision.objects.get().alarmed_at is not None


def test_metrics_and_readiness_show_decided_rollbacks_not_carried_out(
        canary, client, settings, django_capture_on_commit_callbacks):
    settings.CELERY_BROKER_URL = "memory://"
    decide_and_lose_the_message(canary, django_capture_on_commit_callbacks,
                                timezone.now().replace(microsecond=0) - timedelta(seconds=90))
    text = client.get("/metrics").content.decode()
    assert "canaryhub_rollbacks_pending 1.0" in text
    oldest = next(line for line in text.splitlines() if line.startswith("canaryhub_rollback_pending_oldest_seconds "))
    assert float(oldest.split()[1]) >= 89
    assert 'canaryhub_broker_queue_depth{queue="rollbacks"}' in text
    ready = client.get("/readyz")
    assert ready.status_code == 503, ready.content
    assert "1 decided rollback(s) not carried out" in ready.json()["checks"]["rollbacks"]
    with django_capture_on_commit_callbacks(execute=True):
        loop.rollbacks_sweep()
    assert client.get("/readyz").json()["checks"]["rollbacks"] == "ok"
    assert "canaryhub_rollbacks_pending 0.0" in client.get("/metrics").content.decode()


def test_readiness_fails_while_messages_pile_up_on_the_rollbacks_queue(client, db, settings, tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(folder)}
    settings.READY_MAX_ROLLBACKS_QUEUED = 2
    for i in range(3):
        (folder / f"{i}_id{i}.rollbacks.msg").write_text("{}")
    (folder / "9_other.celery.msg").write_text("{}")
    body = client.get("/readyz").json()
    assert body["checks"]["queues"].startswith("3 messages wait on the rollbacks queue")
    assert 'canaryhub_broker_queue_depth{queue="celery"} 1.0' in client.get("/metrics").content.decode()


def test_the_sweeper_carries_a_stopped_canarys_lost_zero_push(canary, tmp_path, settings,
                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # the 0 % push's message is lost
        lifecycle.canary_rollback(actor=None, canary_id=canary.pk, reason="by hand", automatic=True)
    assert router_percent(tmp_path) != 0
    canary.refresh_from_db()
    assert loop.rollbacks_sweep(now=canary.ended_at + timedelta(seconds=2))["pushed"] == 0  # not yet due
    assert loop.rollbacks_sweep(now=canary.ended_at + timedelta(seconds=settings.ROLLBACK_SWEEP_AFTER_S + 1)) == {
        "rolled_back": 0, "alarmed": 0, "pushed": 1}
    assert router_percent(tmp_path) == 0
    assert RouterPush.objects.filter(canary=canary, generation=canary.split_generation, ok=True).count() == 1
    # Confirmed: the next sweep leaves it.
    assert loop.rollbacks_sweep(now=canary.ended_at + timedelta(seconds=30))["pushed"] == 0


def test_the_watchdog_runs_every_registered_check_and_survives_a_failing_one(caplog, monkeypatch):
    assert loop.rollbacks_sweep in watch._checks and loop.deadman_check in watch._checks

    def boom():
        raise RuntimeError("broken check")

    ran = []

    def fine():
        ran.append(1)
        return "fine"

    monkeypatch.setattr(watch, "_checks", [boom, fine])
    results = watch.run_once()
    assert ran == [1] and list(results.values()) == ["error: RuntimeError: broken check", "fine"]
    assert "watchdog check" in caplog.text and "boom" in caplog.text


def test_the_watchdog_is_off_at_interval_zero(settings):
    settings.WATCHDOG_INTERVAL_S = 0
    assert watch.ensure_running(role="web") is False


def test_the_broker_redelivers_a_rollback_whose_worker_died():
    from canaryhub.celery import app

    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert rollback_canary.acks_late and rollback_canary.reject_on_worker_lost
