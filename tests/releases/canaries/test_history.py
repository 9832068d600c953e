"""A model's past canaries on its page: outcome, time per stage and the metric that decided."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from governance.access.permissions import Role
from releases.canaries import history
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from tests.factories import make_evaluation, window_inputs

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _router_dir(settings, tmp_path) -> None:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def people(role_user):
    return {"owner": role_user(Role.MODEL_OWNER, username="owner"), "platform": role_user(Role.PLATFORM, username="p")}


def test_outcome_time_per_stage_and_deciding_metric(people):
    platform = people["platform"]
    services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="low", owner="owner",
                            on_call="oncall@example.test")
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    for version in ("1.1.0", "1.2.0", "1.3.0"):
        services.version_register(actor=platform, model_name="scorer", version=version, artifact_uri=f"s3://{version}")
    automatic = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0",
                                          schedule="standard")
    inputs = window_inputs()
    inputs["rollback_triggers"] = [{"metric": "latency_p99", "value": 2.0, "limit": 1.5, "detail": "p99 doubled"}]
    evaluation = make_evaluation(automatic, window_end=timezone.now(), inputs=inputs, status="red")
    lifecycle.canary_rollback(actor=None, canary_id=automatic.pk, reason="p99 doubled", automatic=True,
                              evaluation_id=evaluation.pk)
    manual = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.2.0",
                                       schedule="standard")
    lifecycle.canary_rollback(actor=people["owner"], canary_id=manual.pk, reason="customer complaints")
    # Decided between evaluations (the rollback watch): automatic, with no evaluation to name.
    services.version_register(actor=platform, model_name="scorer", version="1.4.0", artifact_uri="s3://1.4.0")
    watched = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.4.0",
                                        schedule="standard")
    lifecycle.canary_rollback(actor=None, canary_id=watched.pk, reason="automatic (rollback watch): errors up",
                              automatic=True)
    running = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.3.0",
                                        schedule="standard")

    canaries = list(Canary.objects.filter(model__name="scorer").order_by("-initiated_at", "-id"))
    with CaptureQueriesContext(connection) as queries:
        rows = {row.canary.pk: row for row in history.canary_history(canaries, now=timezone.now() + timedelta(hours=2))}
    assert len(queries) == 2  # the audited moves, the rollback evaluations: not one per canary
    assert rows[automatic.pk].outcome == "rolled back"
    assert rows[automatic.pk].decided_by == "latency p99 (automatic rollback)"
    assert rows[manual.pk].decided_by == "manual rollback: customer complaints"
    assert rows[watched.pk].decided_by == "automatic rollback: automatic (rollback watch): errors up"
    assert rows[running.pk].outcome == "in progress"
    [stage] = rows[running.pk].stage_times
    assert stage["label"] == "1%" and timedelta(hours=2) <= stage["duration"] < timedelta(hours=2, minutes=1)

    page = Client()
    page.force_login(people["owner"])
    html = page.get(reverse("releases:model-detail", kwargs={"name": "scorer"})).content.decode()
    assert "latency p99 (automatic rollback)" in html and "customer complaints" in html
    assert f'data-canary="{running.pk}"' in html
