"""A push (releases.routing.services.push_and_record, run by releases.canaries.tasks.push_split)
records every push, retries transient failures, and escalates an unconfirmed rollback; the
reconciler corrects drift."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from governance.access.permissions import Role
from governance.incidents.models import Incident
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
