"""A push (releases.routing.services.push_and_record, run by releases.canaries.tasks.push_split)
records every push, retries transient failures, and escalates an unconfirmed rollback; the
reconciler corrects drift."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.incidents.models import Incident
from monitoring.models import NotificationEvent
from releases.canaries import services as lifecycle
from releases.canaries import tasks
from releases.canaries.models import Canary
from releases.register import services
from releases.routing import services as routing
from releases.routing.models import RouterPush
from releases.routing.routers import Router, Split, TransientRouterError
from releases.routing.routers.file import FileRouter


class FlakyRouter(Router):
    """Fails `failures` times with a transient error, then behaves like a memory router."""

    kind = "flaky"
    failures = 0
    applied: dict[str, Split] = {}

    def __init__(self, **config: object) -> None:
        pass

    def apply(self, split: Split):
        if FlakyRouter.failures > 0:
            FlakyRouter.failures -= 1
            raise TransientRouterError("data plane busy")
        FlakyRouter.applied[split.model] = split
        from releases.routing.routers import AppliedSplit

        return AppliedSplit(split=split, changed=True, location="memory")

    def read_back(self, model: str):
        return FlakyRouter.applied.get(model)


@pytest.fixture(autouse=True)
def _routers(monkeypatch, settings, tmp_path):
    monkeypatch.setattr("releases.routing.routers.base._REGISTERED", {"flaky": FlakyRouter})
    # A rollback's 2-minute window shrunk to 0.3 s, and short real sleeps: the loop stays the same.
    monkeypatch.setattr(routing, "ROLLBACK_SLO", timedelta(seconds=0.3))
    monkeypatch.setattr(routing, "BACKOFF_FIRST_S", 0.01)
    monkeypatch.setattr(routing, "BACKOFF_MAX_S", 0.02)
    FlakyRouter.failures, FlakyRouter.applied = 0, {}
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def canary(role_user, django_capture_on_commit_callbacks):
    platform, owner = role_user(Role.PLATFORM, username="platform"), role_user(Role.MODEL_OWNER, username="owner")
    services.model_register(actor=platform, name="scorer", display_name="S", risk_tier="medium", owner="owner", on_call="x")
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1", status="production")
    services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")

    def start(router="flaky"):
        with django_capture_on_commit_callbacks(execute=True):
            return lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0", router=router)

    return start


def test_transient_failures_are_retried_and_recorded_in_one_push(canary):
    FlakyRouter.failures = 2
    c = canary()
    push = RouterPush.objects.get(canary=c)
    assert (push.ok, push.attempts, push.reason, push.error) == (True, 3, "transition", "")
    assert push.applied == push.requested and push.requested["percent"] == 1 and push.duration_ms is not None


def test_a_rollback_never_confirmed_opens_a_p1_naming_the_manual_override(canary, django_capture_on_commit_callbacks):
    c = canary()
    FlakyRouter.failures = 10_000
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.canary_rollback(actor=None, canary_id=c.pk, reason="breach", automatic=True)
    push = RouterPush.objects.filter(canary=c).order_by("-id").first()
    assert push.ok is False and push.attempts >= 3 and "busy" in push.error
    incident = Incident.objects.get(canary=c, kind=Incident.Kind.ROLLBACK_UNCONFIRMED)
    assert incident.severity == "P1" and "Manual override" in incident.summary
    assert "0%" in incident.details["manual_override"]


def test_a_rollback_confirmed_later_is_recorded_on_its_open_p1_once(canary, django_capture_on_commit_callbacks,
                                                                     client, role_user):
    c = canary()
    FlakyRouter.failures = 10_000
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.canary_rollback(actor=None, canary_id=c.pk, reason="breach", automatic=True)
    incident = Incident.objects.get(canary=c, kind=Incident.Kind.ROLLBACK_UNCONFIRMED)
    assert "confirmed_at" not in incident.details
    FlakyRouter.failures = 0  # the data plane answers again: the reconciler pushes 0 % and it applies
    assert tasks.reconcile_routers() == {"corrected": 1}
    assert FlakyRouter.applied["scorer"].percent == 0
    incident.refresh_from_db()
    assert incident.details["confirmed_at"] and incident.status == Incident.Status.OPEN  # root cause still owed
    assert AuditEvent.objects.filter(action="incident.rollback_confirmed", object_id=str(incident.pk)).count() == 1
    told = NotificationEvent.objects.get(kind="incident.rollback_confirmed")
    assert told.payload["incident"] == incident.pk and "platform" in told.audience
    # In sync from now on: nothing more is recorded.
    assert tasks.reconcile_routers() == {"in-sync": 1}
    assert AuditEvent.objects.filter(action="incident.rollback_confirmed").count() == 1
    assert NotificationEvent.objects.filter(kind="incident.rollback_confirmed").count() == 1
    client.force_login(role_user(Role.ON_CALL, username="oncall"))
    page = client.get(f"/governance/incidents/{incident.pk}/").content.decode()
    assert "Rollback confirmed at 0%" in page and "the root cause is still owed" in page


def test_an_in_sync_rollback_without_a_p1_records_nothing(canary, django_capture_on_commit_callbacks):
    c = canary()
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.canary_rollback(actor=None, canary_id=c.pk, reason="breach", automatic=True)
    assert tasks.reconcile_routers() == {"in-sync": 1}
    assert not Incident.objects.filter(canary=c, kind=Incident.Kind.ROLLBACK_UNCONFIRMED).exists()
    assert not AuditEvent.objects.filter(action="incident.rollback_confirmed").exists()


def test_reconciler_corrects_drift_and_records_it(canary, tmp_path):
    c = canary(router="file")
    state = FileRouter(tmp_path / "router").state_path("scorer")
    state.unlink()  # the data plane lost its configuration (restarted empty)
    assert tasks.reconcile_routers() == {"corrected": 1}
    assert json.loads(state.read_text())["percent"] == 1
    push = RouterPush.objects.filter(canary=c, reason="reconcile").get()
    assert push.ok and push.applied["percent"] == 1
    assert tasks.reconcile_routers() == {"in-sync": 1}
    assert Canary.objects.get(pk=c.pk).traffic_percent == 1


def test_a_hand_edit_at_the_same_generation_is_reported_as_drift_not_overwritten(canary, tmp_path):
    c = canary(router="file")
    state = FileRouter(tmp_path / "router").state_path("scorer")
    state.write_text(json.dumps(json.loads(state.read_text()) | {"percent": 50}))
    # The router refuses to replace a generation with a different split: a person must look.
    assert tasks.reconcile_routers() == {"drift": 1}
    push = RouterPush.objects.get(canary=c, reason="reconcile")
    assert push.ok is False and "different split" in push.error


# --- every push is recorded, the lost ones included -------------------------------------------------


class Broker:
    """Drops every push message while `dropping`: the transition commits, no worker runs it."""

    def __init__(self, deliver):
        self.dropping, self.deliver = True, deliver

    def __call__(self, *args, **kwargs):
        return None if self.dropping else self.deliver(*args, **kwargs)


@pytest.fixture
def lost_messages(monkeypatch):
    broker = Broker(tasks.push_split.apply_async)
    monkeypatch.setattr(tasks.push_split, "apply_async", broker)
    return broker


def test_a_push_is_recorded_queued_when_its_split_changes_and_taken_by_the_worker(canary):
    c = canary()
    push = RouterPush.objects.get(canary=c)
    assert push.status == RouterPush.Status.APPLIED and push.reason == "transition"
    assert push.queued_at <= push.started_at <= push.finished_at


def test_a_lost_push_stays_visible_then_the_sweeper_marks_it_lost_and_pushes_again(canary, lost_messages, settings,
                                                                                  django_capture_on_commit_callbacks):
    from django.utils import timezone

    from releases.canaries import loop

    c = canary()
    queued = RouterPush.objects.get(canary=c)
    assert (queued.status, queued.started_at, queued.requested["percent"]) == (RouterPush.Status.QUEUED, None, 1)
    assert FlakyRouter.applied == {}  # nothing reached the router
    now = timezone.now()
    # Before the limit a queued push may still be taken: left alone.
    assert loop.pushes_sweep(now=now) == {"lost": 0, "queued": 0}
    later = now + timedelta(seconds=settings.ROUTER_PUSH_LOST_AFTER_S + 1)
    lost_messages.dropping = False  # the broker is back
    with django_capture_on_commit_callbacks(execute=True):
        assert loop.pushes_sweep(now=later) == {"lost": 1, "queued": 1}
    queued.refresh_from_db()
    assert queued.status == RouterPush.Status.LOST and "not taken by a worker" in queued.error and not queued.ok
    retry = RouterPush.objects.get(canary=c, reason="retry")
    assert retry.status == RouterPush.Status.APPLIED and retry.generation == queued.generation
    assert FlakyRouter.applied["scorer"].percent == 1
    # A second sweep (another process) finds nothing more to do.
    assert loop.pushes_sweep(now=later) == {"lost": 0, "queued": 0}


def test_a_re_queued_push_lost_again_is_on_record_too(canary, lost_messages, settings):
    from django.utils import timezone

    from releases.canaries import loop

    c = canary()
    later = timezone.now() + timedelta(seconds=settings.ROUTER_PUSH_LOST_AFTER_S + 1)
    assert loop.pushes_sweep(now=later) == {"lost": 1, "queued": 1}
    retry = RouterPush.objects.get(canary=c, reason="retry")
    assert retry.status == RouterPush.Status.QUEUED  # the broker still drops it: visible, waiting
    assert loop.pushes_sweep(now=later + timedelta(seconds=settings.ROUTER_PUSH_LOST_AFTER_S + 1)) == {
        "lost": 1, "queued": 1}
    assert list(RouterPush.objects.filter(canary=c).values_list("status", flat=True).order_by("id")) == [
        "lost", "lost", "queued"]


def test_a_lost_push_of_a_replaced_split_is_marked_but_not_pushed_again(canary, lost_messages, settings,
                                                                         django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from releases.canaries import loop

    c = canary()
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.canary_abort(actor=get_user_model().objects.get(username="owner"), canary_id=c.pk, reason="stop")
    c.refresh_from_db()
    later = timezone.now() + timedelta(seconds=settings.ROUTER_PUSH_LOST_AFTER_S + 1)
    lost_messages.dropping = False
    result = loop.pushes_sweep(now=later)
    lost = RouterPush.objects.filter(canary=c, status=RouterPush.Status.LOST)
    assert result["lost"] == lost.count() == 2
    # Only the split in force (the newer generation) is pushed again.
    assert result["queued"] == 1
    assert list(RouterPush.objects.filter(canary=c, reason="retry").values_list("generation", flat=True)) == [
        c.split_generation]


def test_a_push_whose_worker_died_mid_push_is_marked_lost(canary, django_capture_on_commit_callbacks):
    from django.utils import timezone

    from releases.canaries import loop

    c = canary()
    push = RouterPush.objects.get(canary=c)
    started = timezone.now() - timedelta(seconds=loop.PUSH_HARD_LIMIT_S + 5)
    RouterPush.objects.filter(pk=push.pk).update(status=RouterPush.Status.PUSHING, started_at=started,
                                                 finished_at=None, ok=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert loop.pushes_sweep()["lost"] == 1
    push.refresh_from_db()
    assert push.status == RouterPush.Status.LOST and "did not finish" in push.error
    # The split in force was pushed again and confirmed.
    assert RouterPush.objects.get(canary=c, reason="retry").status == RouterPush.Status.APPLIED


def test_a_queued_push_superseded_before_a_worker_took_it_says_so(canary, lost_messages):
    from releases.canaries import loop

    c = canary()
    queued = RouterPush.objects.get(canary=c)
    Canary.objects.filter(pk=c.pk).update(split_generation=c.split_generation + 1)
    assert loop.push(canary_id=c.pk, generation=queued.generation).startswith("skipped")
    queued.refresh_from_db()
    assert queued.status == RouterPush.Status.SUPERSEDED and "superseded" in queued.error


def test_a_worker_taking_a_push_the_sweeper_marked_lost_records_a_new_one(canary, lost_messages, settings):
    from django.utils import timezone

    from releases.canaries import loop

    c = canary()
    queued = RouterPush.objects.get(canary=c)
    routing.pushes_mark_lost(now=timezone.now() + timedelta(seconds=settings.ROUTER_PUSH_LOST_AFTER_S + 1),
                             queued_limit_s=settings.ROUTER_PUSH_LOST_AFTER_S, running_limit_s=600)
    # The late message runs after all: the lost row stays lost, the push it does has its own row.
    assert "confirmed" in loop.push(canary_id=c.pk, generation=queued.generation)
    queued.refresh_from_db()
    assert queued.status == RouterPush.Status.LOST
    assert RouterPush.objects.filter(canary=c, status=RouterPush.Status.APPLIED).count() == 1


def test_router_pushes_by_status_are_on_metrics(canary, lost_messages):
    from releases.canaries import selectors

    canary()
    selectors.metrics_refresh()
    from canaryhub.metrics import REGISTRY

    assert REGISTRY.get_sample_value("canaryhub_router_pushes", {"status": "queued"}) == 1
    assert REGISTRY.get_sample_value("canaryhub_router_pushes", {"status": "lost"}) == 0
