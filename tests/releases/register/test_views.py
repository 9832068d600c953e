"""The Model Register's HTML views through Django's test client: access, forms, htmx fragments."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from releases.register import services
from releases.register.models import AIModel, Consumer, ModelVersion
from tests.factories import AIModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def fraud(owner) -> AIModel:
    model = AIModelFactory(name="fraud-scorer", display_name="Fraud scorer", owner=owner, risk_tier="high")
    Consumer.objects.create(model=model, name="payments", contact="payments@example.test")
    ModelVersionFactory(model=model, status=ModelVersion.Status.PRODUCTION)
    return model


@pytest.fixture
def risk_officer(role_user):
    return role_user(Role.RISK_OFFICER, username="risk")


def model_form_data(**overrides) -> dict[str, str]:
    data = {
        "name": "churn-predictor",
        "display_name": "Churn predictor",
        "description": "Predicts which customers leave.",
        "risk_tier": "medium",
        "owner": "owner",
        "on_call": "oncall@example.test",
        "consumers": "crm, crm-team@example.test\n\n# the marketing hook\nmarketing, https://hooks.example.test/x?a=1,b=2, webhook",
    }
    return {**data, **overrides}


def version_form_data(**overrides) -> dict[str, str]:
    data = {
        "version": "1.1.0",
        "artifact_uri": "s3://models/fraud-scorer/1.1.0",
        "status": "registered",
        "promote_error_rate_pp": "0.1",
        "promote_latency_p99_ratio": "1.2",
        "promote_quality_ratio": "0.98",
        "promote_safety_violations": "0",
        "promote_anomaly_alerts": "0",
        "rollback_error_rate_pp": "0.5",
        "rollback_latency_p99_ratio": "1.5",
        "rollback_quality_ratio": "0.9",
        "rollback_safety_violations": "0",
        "provider": "",
    }
    return {**data, **overrides}


# --- access --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/models/new/",
        "/models/fraud-scorer/",
        "/models/fraud-scorer/versions/new/",
        "/models/fraud-scorer/versions/1.0.0/",
    ],
)
def test_every_page_redirects_anonymous_users_to_login(client: Client, fraud, url: str):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('login')}?next=")


def test_a_user_without_a_role_is_refused_the_register(role_user):
    response = client_for(role_user()).get("/")
    assert response.status_code == 403


def test_risk_officer_reads_the_register_but_sees_no_register_buttons(risk_officer, fraud):
    client = client_for(risk_officer)
    listing = client.get("/")
    assert listing.status_code == 200
    assert b"fraud-scorer" in listing.content
    assert b"Register a model" not in listing.content
    detail = client.get("/models/fraud-scorer/")
    assert detail.status_code == 200
    assert b"Register a version" not in detail.content


def test_risk_officer_is_refused_both_forms(risk_officer, fraud):
    client = client_for(risk_officer)
    assert client.get("/models/new/").status_code == 403
    assert client.post("/models/new/", model_form_data()).status_code == 403
    assert client.post("/models/fraud-scorer/versions/new/", version_form_data()).status_code == 403
    assert not AIModel.objects.filter(name="churn-predictor").exists()
    assert not ModelVersion.objects.filter(version="1.1.0").exists()


def test_another_owner_cannot_register_a_version_of_a_model_they_do_not_own(role_user, fraud):
    stranger = client_for(role_user(Role.MODEL_OWNER, username="stranger"))
    assert b"Register a version" not in stranger.get("/models/fraud-scorer/").content
    assert stranger.get("/models/fraud-scorer/versions/new/").status_code == 403


def test_unknown_model_and_version_are_404(owner, fraud):
    client = client_for(owner)
    assert client.get("/models/nope/").status_code == 404
    assert client.get("/models/fraud-scorer/versions/9.9.9/").status_code == 404
    assert client.get("/models/nope/versions/new/").status_code == 404


# --- the list and its htmx fragment ------------------------------------------------------------------


def test_list_shows_production_and_latest_versions(owner, fraud):
    ModelVersionFactory(model=fraud, major=1, minor=2, patch=0, change_type="MINOR")
    response = client_for(owner).get("/")
    rows = response.context["rows"]
    assert [(r["model"].name, r["production"].version, r["latest"].version) for r in rows] == [
        ("fraud-scorer", "1.0.0", "1.2.0")
    ]
    assert b"Register a model" in response.content


def test_htmx_request_to_the_list_returns_only_the_table_fragment(owner, fraud):
    AIModelFactory(name="churn-predictor", owner=owner)
    response = client_for(owner).get("/", {"q": "fraud"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and "<header" not in body
    assert 'data-testid="model-table"' in body
    assert "fraud-scorer" in body and "churn-predictor" not in body
    assert "HX-Request" in response["Vary"]


def test_htmx_history_restore_gets_the_whole_page(owner, fraud):
    response = client_for(owner).get("/", HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert b"<html" in response.content


def test_full_page_also_varies_on_hx_request(owner):
    response = client_for(owner).get("/")
    assert b"<html" in response.content
    assert "HX-Request" in response["Vary"]


def test_list_filters_by_risk_tier_and_ignores_an_unknown_tier(owner, fraud):
    AIModelFactory(name="churn-predictor", owner=owner, risk_tier="low")
    client = client_for(owner)
    low = client.get("/", {"risk_tier": "low"})
    assert [r["model"].name for r in low.context["rows"]] == ["churn-predictor"]
    unknown = client.get("/", {"risk_tier": "extreme"})
    assert len(unknown.context["rows"]) == 2


# --- register a model --------------------------------------------------------------------------------


def test_model_form_preselects_the_owner_registering(owner):
    response = client_for(owner).get("/models/new/")
    assert response.status_code == 200
    assert response.context["form"]["owner"].value() == "owner"


def test_owner_registers_a_model_through_the_form(owner):
    response = client_for(owner).post("/models/new/", model_form_data(), follow=True)
    assert response.redirect_chain == [("/models/churn-predictor/", 302)]
    model = AIModel.objects.get(name="churn-predictor")
    assert model.owner == owner and model.risk_tier == "medium"
    assert sorted(model.consumers.values_list("name", "contact", "channel")) == [
        ("crm", "crm-team@example.test", "email"),
        ("marketing", "https://hooks.example.test/x?a=1,b=2", "webhook"),
    ]
    assert AuditEvent.objects.filter(action="model.registered", object_id="churn-predictor").exists()
    assert b"Model churn-predictor registered." in response.content


def test_service_validation_errors_land_on_the_form_fields(owner):
    response = client_for(owner).post("/models/new/", model_form_data(name="Not A Slug"))
    assert response.status_code == 400
    assert response.context["form"].errors["name"]
    assert not AIModel.objects.exists()


def test_a_bad_consumer_line_names_its_line_number(owner):
    response = client_for(owner).post(
        "/models/new/", model_form_data(consumers="crm, crm@example.test\njust-a-name\nx, y, carrier-pigeon")
    )
    assert response.status_code == 400
    errors = response.context["form"].errors["consumers"]
    assert any(e.startswith("line 2:") for e in errors)
    assert any(e.startswith("line 3:") and "carrier-pigeon" in e for e in errors)


def test_a_consumer_error_from_the_service_names_the_form_line(owner):
    response = client_for(owner).post(
        "/models/new/", model_form_data(consumers=f"# comment\ncrm, crm@example.test\nlong, {'x' * 301}")
    )
    assert response.status_code == 400
    assert any(e.startswith("line 3, contact:") for e in response.context["form"].errors["consumers"])


def test_a_duplicate_model_name_is_shown_as_a_conflict(owner, fraud):
    response = client_for(owner).post("/models/new/", model_form_data(name="fraud-scorer"))
    assert response.status_code == 409
    assert "already registered" in " ".join(response.context["form"].non_field_errors())


def test_an_owner_registering_for_someone_else_sees_the_refusal(owner, role_user):
    role_user(Role.MODEL_OWNER, username="olga")
    response = client_for(owner).post("/models/new/", model_form_data(owner="olga"))
    assert response.status_code == 403
    assert response.context["form"].non_field_errors()
    assert not AIModel.objects.exists()


def test_platform_registers_a_model_for_an_owner(platform, owner):
    response = client_for(platform).post("/models/new/", model_form_data(consumers=""))
    assert response.status_code == 302
    assert AIModel.objects.get(name="churn-predictor").owner == owner


# --- register a version -------------------------------------------------------------------------------


def test_version_form_is_prefilled_with_the_pattern_defaults(owner, fraud):
    form = client_for(owner).get("/models/fraud-scorer/versions/new/").context["form"]
    assert form["promote_error_rate_pp"].value() == 0.1
    assert form["rollback_quality_ratio"].value() == 0.9
    # fraud-scorer has a production version: only a first version may be declared production.
    assert [value for value, _ in form.fields["status"].choices] == ["registered"]


def test_first_version_may_be_registered_as_production(owner):
    AIModelFactory(name="fresh", owner=owner)
    client = client_for(owner)
    form = client.get("/models/fresh/versions/new/").context["form"]
    assert "production" in [value for value, _ in form.fields["status"].choices]
    response = client.post(
        "/models/fresh/versions/new/",
        version_form_data(version="1.0.0", artifact_uri="s3://m/fresh/1.0.0", status="production"),
    )
    assert response.status_code == 302
    assert ModelVersion.objects.get(model__name="fresh").status == "production"


def test_platform_registers_a_version_with_its_metric_source_through_the_form(platform, fraud):
    query = 'sum(rate(errs_total{model="$model",version="$version"}[$window]))'
    response = client_for(platform).post(
        "/models/fraud-scorer/versions/new/",
        version_form_data(promote_error_rate_pp="0.05", rollback_quality_ratio="", provider="push", query_errors=query),
        follow=True,
    )
    assert response.redirect_chain == [("/models/fraud-scorer/versions/1.1.0/", 302)]
    version = ModelVersion.objects.get(model=fraud, version="1.1.0")
    assert version.thresholds["promote"]["error_rate_pp"] == 0.05
    assert version.thresholds["rollback"]["quality_ratio"] == 0.9  # left blank: the pattern default
    assert version.metrics == {"provider": "push", "queries": {"errors": query}}
    assert version.change_type == "MINOR" and version.baseline.version == "1.0.0"
    assert b"Version 1.1.0 of fraud-scorer registered." in response.content
    assert b"tightened" in response.content


def test_a_bad_semver_is_shown_next_to_the_version_field(owner, fraud):
    response = client_for(owner).post("/models/fraud-scorer/versions/new/", version_form_data(version="1.1"))
    assert response.status_code == 400
    assert "semantic version" in response.context["form"].errors["version"][0]
    assert not ModelVersion.objects.filter(version="1.1").exists()


def test_a_loosened_threshold_is_shown_next_to_its_input(owner, fraud):
    response = client_for(owner).post(
        "/models/fraud-scorer/versions/new/", version_form_data(promote_error_rate_pp="0.3")
    )
    assert response.status_code == 400
    assert "never loosening" in response.context["form"].errors["promote_error_rate_pp"][0]


def test_a_bad_query_override_is_shown_next_to_its_textarea(platform, fraud):
    response = client_for(platform).post(
        "/models/fraud-scorer/versions/new/", version_form_data(query_quality="rate(x{model=$nope}[5m])")
    )
    assert response.status_code == 400
    assert "placeholder" in response.context["form"].errors["query_quality"][0]


def test_an_already_registered_version_is_a_conflict(owner, fraud):
    response = client_for(owner).post("/models/fraud-scorer/versions/new/", version_form_data(version="1.0.0"))
    assert response.status_code == 409
    assert "already registered" in " ".join(response.context["form"].non_field_errors())


# --- details -------------------------------------------------------------------------------------------


def test_model_detail_lists_consumers_and_versions(owner, fraud):
    response = client_for(owner).get("/models/fraud-scorer/")
    assert response.status_code == 200
    assert b"payments@example.test" in response.content
    assert [v.version for v in response.context["versions"]] == ["1.0.0"]
    assert b"Register a version" in response.content


def test_version_detail_marks_a_frozen_configuration(owner, platform):
    services.model_register(
        actor=platform, name="ranker", display_name="Ranker", risk_tier="low", owner="owner", on_call="x"
    )
    services.version_register(
        actor=owner, model_name="ranker", version="1.0.0", artifact_uri="s3://r/1", status="production"
    )
    response = client_for(owner).get("/models/ranker/versions/1.0.0/")
    assert response.status_code == 200
    assert b"Frozen: this version is in production." in response.content
    assert "canary ≤ production × 1.2" in response.content.decode()


def test_a_registered_version_is_not_marked_frozen(owner, fraud):
    ModelVersionFactory(model=fraud, major=1, minor=1, patch=0, change_type="MINOR")
    response = client_for(owner).get("/models/fraud-scorer/versions/1.1.0/")
    assert b"Frozen" not in response.content


# --- the shell ----------------------------------------------------------------------------------------


def test_navigation_shows_roles_audit_link_and_logout(owner):
    body = client_for(owner).get("/").content.decode()
    assert "Model owner" in body  # governance.access.labels
    assert 'href="/audit/"' in body and 'href="/api/docs/"' in body
    assert 'action="/accounts/logout/"' in body
    assert "htmx.min.js" in body and "https://" not in body.split("<body")[0]


def test_demo_clock_banner_appears_only_when_the_clock_is_fast(owner, settings):
    client = client_for(owner)
    assert b"Demo clock" not in client.get("/").content
    settings.CLOCK_SPEED = 60.0
    assert "Demo clock: durations are 60× shorter" in client.get("/").content.decode()


def test_login_page_renders(client: Client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content
