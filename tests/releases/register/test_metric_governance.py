"""Who chooses the numbers that judge a canary: the metric source is a platform engineer's act,
frozen on the canary at initiation and shown with it; a CI token cannot push observations and an
observations token can do nothing else. Each attack runs through the API or the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.reports.records import canary_record
from governance.tokens.services import token_create
from monitoring.models import Observation
from releases.canaries import services as lifecycle
from releases.canaries.loop import subject_of
from releases.register import services
from releases.register.models import AIModel, ModelVersion
from tests.releases.register.test_api import assert_problem

pytestmark = pytest.mark.django_db

FORGED = {"provider": "prometheus", "queries": {"errors": "vector(0)"}}
def window() -> dict:
    """A plausible pushed window ending now (now when the test runs, not when it was collected)."""
    end = timezone.now().replace(microsecond=0)
    return {"window_start": (end - timedelta(seconds=60)).isoformat(), "window_end": end.isoformat(), "requests": 100}


@pytest.fixture(autouse=True)
def _router_in_tmp(settings, tmp_path):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    settings.PROMETHEUS_URL = ""  # the deployment's default provider is push


@pytest.fixture
def people(role_user):
    people = {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }
    platform = people["platform"]
    for name in ("scorer", "other"):
        services.model_register(actor=platform, name=name, display_name=name, risk_tier="medium", owner="owner",
                                on_call="oncall@x")
        services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1",
                                  status="production")
    return people


def bearer(people, purpose: str, *scope: str) -> APIClient:
    _, secret = token_create(actor=people["platform"], user=people["bot"], name=purpose, scope=list(scope),
                             purpose=purpose)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def version_body(**extra):
    return {"version": "1.1.0", "artifact_uri": "s3://2", **extra}


def test_the_owner_cannot_choose_the_metrics_that_judge_its_canary(people):
    api = as_user(people["owner"])
    refused = api.post("/api/v1/models/scorer/versions/", version_body(metrics=FORGED), format="json")
    assert_problem(refused, 403)
    assert not ModelVersion.objects.filter(version="1.1.0").exists()
    # Registering without metrics gets the deployment's default; changing it later is refused too.
    assert api.post("/api/v1/models/scorer/versions/", version_body(), format="json").status_code == 201
    assert ModelVersion.objects.get(version="1.1.0", model__name="scorer").metrics == {"provider": "push", "queries": {}}
    assert_problem(api.patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": FORGED}, format="json"), 403)
    assert_problem(api.patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": {"provider": "push"}},
                             format="json"), 403)
    assert ModelVersion.objects.get(version="1.1.0", model__name="scorer").metrics["queries"] == {}


def test_the_owners_page_form_has_no_metric_source_and_smuggled_fields_are_ignored(people):
    client = Client()
    client.force_login(people["owner"])
    page = client.get("/models/scorer/versions/new/").content.decode()
    assert 'name="provider"' not in page and 'name="query_errors"' not in page
    response = client.post("/models/scorer/versions/new/", {
        "version": "1.1.0", "artifact_uri": "s3://2", "status": "registered", "provider": "prometheus",
        "query_errors": "vector(0)",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ModelVersion.objects.get(version="1.1.0", model__name="scorer").metrics == {"provider": "push", "queries": {}}


def test_a_ci_token_cannot_set_metrics_nor_push_observations(people):
    ci = bearer(people, "ci", "scorer")
    assert_problem(ci.post("/api/v1/models/scorer/versions/", version_body(metrics={"provider": "push"}),
                           format="json"), 403)
    assert ci.post("/api/v1/models/scorer/versions/", version_body(), format="json").status_code == 201
    assert_problem(ci.patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": FORGED}, format="json"), 403)
    pushed = ci.post("/api/v1/observations/", {"model": "scorer", "version": "1.1.0", **window()}, format="json")
    assert_problem(pushed, 403)


def test_an_observations_token_pushes_only_for_its_models_and_does_nothing_else(people):
    services.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    obs = bearer(people, "observations", "scorer")
    ok = obs.post("/api/v1/observations/", {"model": "scorer", "version": "1.1.0", **window()}, format="json")
    assert ok.status_code == 201, ok.content
    # Out of scope answers as unknown: 404 like a model that does not exist.
    other = obs.post("/api/v1/observations/", {"model": "other", "version": "1.0.0", **window()}, format="json")
    missing = obs.post("/api/v1/observations/", {"model": "nope", "version": "1.0.0", **window()}, format="json")
    assert_problem(other, 404) and assert_problem(missing, 404)
    assert other.json()["detail"].replace("other", "X") == missing.json()["detail"].replace("nope", "X")
    assert_problem(obs.post("/api/v1/models/scorer/versions/", version_body(version="1.2.0"), format="json"), 403)
    assert_problem(obs.patch("/api/v1/models/scorer/versions/1.1.0/", {"artifact_uri": "s3://x"}, format="json"), 403)
    assert_problem(obs.post("/api/v1/canaries/", {"model": "scorer", "version": "1.1.0"}, format="json"), 403)
    assert not AIModel.objects.get(name="scorer").canaries.exists()


def test_metrics_are_frozen_on_the_canary_and_shown_on_its_page_and_in_the_evidence(people):
    platform = people["platform"]
    config = {"provider": "prometheus", "queries": {"errors": 'sum(rate(errors_total{model="$model"}[$window]))'}}
    response = as_user(platform).post("/api/v1/models/scorer/versions/", version_body(metrics=config), format="json")
    assert response.status_code == 201, response.content
    event = AuditEvent.objects.filter(action="version.registered").order_by("-pk").first()
    assert event.payload["metrics"]["queries"] == config["queries"]
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    assert canary.metrics == {"provider": "prometheus", "queries": config["queries"]}
    # A change of the version's configuration is only a request now (reviewed, for the next canary),
    # and the canary keeps its copy whatever the row says.
    pending = as_user(platform).patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": FORGED}, format="json")
    assert pending.status_code == 200 and pending.json()["metrics"]["queries"] == config["queries"]
    ModelVersion.objects.filter(pk=canary.version_id).update(metrics=FORGED)
    canary.refresh_from_db()
    assert subject_of(canary).target.queries == config["queries"]
    client = Client()
    client.force_login(people["owner"])
    page = client.get(f"/canaries/{canary.pk}/").content.decode()
    assert 'data-testid="canary-metrics"' in page and "errors_total{model=&quot;$model&quot;}" in page
    assert canary_record(canary)["metrics"] == canary.metrics


def test_an_idempotency_key_of_one_token_never_replays_for_another(people):
    """Two CI tokens of one service account, scoped to different models: token B reusing token
    A's key must not receive A's response (which names A's model's new version)."""
    services.version_register(actor=people["platform"], model_name="other", version="1.1.0", artifact_uri="s3://o")
    token_a = bearer(people, "ci", "scorer")
    token_b = bearer(people, "ci", "other")
    body = version_body(version="1.2.0", artifact_uri="s3://same")
    first = token_a.post("/api/v1/models/scorer/versions/", body, format="json", HTTP_IDEMPOTENCY_KEY="build-7")
    assert first.status_code == 201
    replay = token_a.post("/api/v1/models/scorer/versions/", body, format="json", HTTP_IDEMPOTENCY_KEY="build-7")
    assert replay.status_code == 201 and replay.json() == first.json()  # the same credential replays
    # Token B, same key and body, on a model it may not see: answered on its own merits.
    other = token_b.post("/api/v1/models/scorer/versions/", body, format="json", HTTP_IDEMPOTENCY_KEY="build-7")
    assert_problem(other, 404)
    assert "scorer" not in str(other.json().get("id", "")) and other.json() != first.json()


def test_an_observations_token_cannot_push_schema_failures_for_another_model(people):
    obs = bearer(people, "observations", "scorer")
    other = obs.post("/api/v1/observations/", {"model": "other", "version": "1.0.0", "schema_failures": 100,
                                                **window()}, format="json")
    assert_problem(other, 404)
    assert not Observation.objects.filter(model="other").exists()


def test_an_observations_token_cannot_push_an_outage_for_another_model(people):
    obs = bearer(people, "observations", "scorer")
    other = obs.post("/api/v1/observations/", {"model": "other", "version": "1.0.0", "errors": 100,
                                                "unavailable": 100, **window()}, format="json")
    assert_problem(other, 404)
    assert not Observation.objects.filter(model="other").exists()


def test_an_observations_token_cannot_push_response_lengths_for_another_model(people):
    obs = bearer(people, "observations", "scorer")
    other = obs.post("/api/v1/observations/", {"model": "other", "version": "1.0.0",
                                                "response_tokens_buckets": [[128, 50], ["+Inf", 100]], **window()},
                     format="json")
    assert_problem(other, 404)
    assert not Observation.objects.filter(model="other").exists()
