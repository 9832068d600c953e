"""Faults injected into running processes: real Celery workers (their own processes, on
PostgreSQL and a real Redis broker, as production runs them) while beat is dead, the rollbacks
queue's worker is gone or is killed with `kill -9` in the middle of a rollback, or Redis is stopped. After each fault the canary is in the state the rules demand, the router agrees,
the rollback happened once and the audit chain verifies.

PostgreSQL pass only (a second process must see the test's committed rows)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.audit.services import audit_verify
from governance.incidents.models import Incident
from monitoring.models import Heartbeat, Observation, RollbackDecision
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register
from tests.harness.redis import RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.faults, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture
def stack(tmp_path, settings):
    """Redis, and one Celery worker on the default queue with its watchdog every second. No beat,
    and no worker on the rollbacks queue: both are the faults."""
    redis = RedisServer().start()
    router_dir = tmp_path / "router"
    router_dir.mkdir()
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(router_dir)}}
    settings.PROMETHEUS_URL = ""
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": redis.url, "PROMETHEUS_URL": "",
           "CANARYHUB_ROUTER_FILE_DIR": str(router_dir), "CANARYHUB_VAR_DIR": str(tmp_path / "var"),
           "CANARYHUB_WATCHDOG_INTERVAL_S": "1", "CANARYHUB_ROLLBACK_SWEEP_AFTER_S": "2",
           "CANARYHUB_EVALUATION_CADENCE_S": "2", "CANARYHUB_DEADMAN_LIMIT_S": "5",
           "DJANGO_SETTINGS_MODULE": "canaryhub.settings", "PYTHONUNBUFFERED": "1"}
    worker = start_worker("celery", "faults", env, tmp_path / "worker.log")
    try:
        yield {"router_dir": router_dir, "worker": worker, "log": tmp_path / "worker.log", "redis": redis, "env": env,
               "tmp": tmp_path}
    finally:
        kill_group(worker)
        redis.stop()


def start_worker(queue: str, name: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A Celery worker as production starts one, in a process group of its own; returns once its
    watchdog runs (it is ready)."""
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "celery", "-A", "canaryhub", "worker", "-Q", queue, "-c", "1",
             "-n", f"{name}@%h", "--loglevel=INFO"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while b"watchdog started" not in log_path.read_bytes():
        assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.2)
    return worker


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """kill -9 of the worker's main process and its pool."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def start_canary(role_user):
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="scorer", display_name="s", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    return lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0",
                                     now=timezone.now() - timedelta(minutes=30))


def wait_for(predicate, *, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout_s} s; worker log:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize("fault", ["rollbacks worker gone", "redis stopped"])
def test_a_decided_rollback_is_carried_out_once_by_another_workers_watchdog(stack, role_user, monkeypatch, fault):
    from releases.canaries import tasks

    monkeypatch.setattr(tasks.push_split, "apply_async", lambda *a, **k: None)  # the test process queues nothing
    monkeypatch.setattr(tasks.rollback_canary, "apply_async", lambda *a, **k: None)  # rollbacks queue: no worker
    canary = start_canary(role_user)
    if fault == "redis stopped":
        stack["redis"].kill()  # the broker is gone: the worker's own enqueues fail too
    now = timezone.now().replace(microsecond=0)
    for version, requests_, errors, safety in (("1.0.0", 100_000, 100, 0), ("1.1.0", 1000, 1, 1)):
        Observation.objects.create(model="scorer", version=version, window_start=now - timedelta(seconds=60),
                                   window_end=now, requests=requests_, errors=errors, latency_p99_ms=200.0,
                                   quality_sum=0.8 * requests_, quality_count=requests_, safety_violations=safety)
    decided = time.monotonic()
    assert loop.evaluate_tick(now=now, canary_ids=[canary.pk]).outcomes[0].rollback

    decision = wait_for(lambda: RollbackDecision.objects.filter(done_at__isnull=False).first(), timeout_s=30,
                        log=stack["log"])
    router = stack["router_dir"] / "scorer.json"
    wait_for(lambda: router.exists() and json.loads(router.read_text())["percent"] == 0, timeout_s=30,
             log=stack["log"])
    elapsed = time.monotonic() - decided
    print(f"{fault}: decision → router at 0 % by the other worker's watchdog in {elapsed:.1f} s")
    assert elapsed < 120
    assert (decision.executed_by, decision.outcome) == ("sweeper", "rolled back")
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK and canary.traffic_percent == 0
    time.sleep(3)  # more watchdog rounds: nothing happens twice
    assert AuditEvent.objects.filter(action="canary.rolled_back", object_id=str(canary.pk)).count() == 1
    assert Incident.objects.filter(canary=canary, kind=Incident.Kind.ROLLBACK).count() == 1
    assert audit_verify().ok


def test_with_beat_dead_a_workers_watchdog_trips_the_deadman_switch(stack, role_user, monkeypatch):
    from releases.canaries import tasks

    monkeypatch.setattr(tasks.push_split, "apply_async", lambda *a, **k: None)
    canary = start_canary(role_user)
    Heartbeat.objects.update_or_create(pk=1, defaults={"last_tick_at": timezone.now() - timedelta(seconds=6)})
    # No beat runs: the worker's watchdog alone notices the silence (its limit: 5 s).
    wait_for(lambda: Canary.objects.get(pk=canary.pk).state == Canary.State.SUSPENDED, timeout_s=30,
             log=stack["log"])
    assert Incident.objects.get(kind=Incident.Kind.MONITOR_SILENT).severity == "P1"
    assert audit_verify().ok


def test_kill_9_of_the_rollbacks_worker_in_the_middle_of_a_rollback(stack, role_user, monkeypatch):
    import psycopg
    from celery import Celery

    from releases.canaries import tasks

    monkeypatch.setattr(tasks.push_split, "apply_async", lambda *a, **k: None)
    monkeypatch.setattr(tasks.rollback_canary, "apply_async", lambda *a, **k: None)
    rollbacks_log = stack["tmp"] / "rollbacks.log"
    rollbacks = start_worker("rollbacks", "rollbacks", stack["env"], rollbacks_log)
    canary = start_canary(role_user)
    now = timezone.now().replace(microsecond=0)
    for version, requests_, errors, safety in (("1.0.0", 100_000, 100, 0), ("1.1.0", 1000, 1, 1)):
        Observation.objects.create(model="scorer", version=version, window_start=now - timedelta(seconds=60),
                                   window_end=now, requests=requests_, errors=errors, latency_p99_ms=200.0,
                                   quality_sum=0.8 * requests_, quality_count=requests_, safety_violations=safety)
    outcome = loop.evaluate_tick(now=now, canary_ids=[canary.pk]).outcomes[0]
    # Another session holds the canary's row (before any sweep is due): the rollback task will
    # wait inside its transaction.
    holder = psycopg.connect(database_url(), connect_timeout=5)
    holder.execute("SET lock_timeout = '20s'")
    holder.execute("SELECT id FROM releases_canary WHERE id = %s FOR UPDATE", [canary.pk])
    try:
        assert RollbackDecision.objects.get().done_at is None
        Celery(broker=stack["redis"].url, set_as_current=False).send_task(
            "releases.canaries.tasks.rollback_canary", args=[canary.pk, outcome.evaluation_id, "automatic: test"],
            queue="rollbacks")
        wait_for(lambda: b"rollback_canary" in rollbacks_log.read_bytes(), timeout_s=30, log=rollbacks_log)
        time.sleep(1)  # in the middle of it: blocked on the row, its transaction open
        kill_group(rollbacks)
    finally:
        holder.rollback()
        holder.close()
    decision = wait_for(lambda: RollbackDecision.objects.filter(done_at__isnull=False).first(), timeout_s=30,
                        log=stack["log"])
    router = stack["router_dir"] / "scorer.json"
    wait_for(lambda: router.exists() and json.loads(router.read_text())["percent"] == 0, timeout_s=30,
             log=stack["log"])
    assert decision.executed_by == "sweeper" and decision.outcome == "rolled back"
    time.sleep(3)
    assert AuditEvent.objects.filter(action="canary.rolled_back", object_id=str(canary.pk)).count() == 1
    assert Canary.objects.get(pk=canary.pk).state == Canary.State.ROLLED_BACK
    assert audit_verify().ok
