"""Segregation of duties around the certificate and the signatures, tried through the API and
the pages: a person holding AI Governance and the model's owner role certifying their own canary;
an AI Governance member who signed one of its steps; a service account refused before its input
is read."""

from __future__ import annotations

import pytest
from django.test import Client

from governance.access.permissions import Role
from governance.audit import services as audit_services
from governance.certificates.models import Certificate
from governance.tokens.services import token_create
from releases.canaries.models import Canary
from releases.register import services
from tests.governance.helpers import client_for, run_to_completion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _router_dir(settings, tmp_path) -> None:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def people(role_user):
    return {
        "owner_gov": role_user(Role.MODEL_OWNER, Role.AI_GOVERNANCE, username="owner_gov"),
        "mrm_gov": role_user(Role.MRM, Role.AI_GOVERNANCE, username="mrm_gov"),
        "gov": role_user(Role.AI_GOVERNANCE, username="gov"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }


def completed(people) -> Canary:
    platform = people["platform"]
    services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner_gov", on_call="oncall@x")
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    return run_to_completion(owner=people["owner_gov"], mrm=people["mrm_gov"])


def issue(user, canary):
    return client_for(user).post(f"/api/v1/canaries/{canary.pk}/certificate/", {"decision": "issue", "reasons": ""},
                                 format="json")


@pytest.mark.parametrize("who", ["owner_gov", "mrm_gov"])
def test_an_ai_governance_member_who_owns_or_signed_the_canary_cannot_certify_it(people, who):
    canary = completed(people)
    refused = issue(people[who], canary)
    assert refused.status_code == 403, refused.content
    assert "independent" in refused.json()["detail"]
    page = Client()
    page.force_login(people[who])
    response = page.post(f"/governance/certificates/canary/{canary.pk}/decide/", {"decision": "issue"}, follow=True)
    assert "independent" in response.content.decode()
    assert not Certificate.objects.exists()
    canary.refresh_from_db()
    assert canary.state == Canary.State.COMPLETED
    # Returning it is a review decision too: refused the same way.
    returned = client_for(people[who]).post(f"/api/v1/canaries/{canary.pk}/certificate/",
                                            {"decision": "return", "reasons": "I would rather not decide this."},
                                            format="json")
    assert returned.status_code == 403
    # An independent reviewer issues it.
    assert issue(people["gov"], canary).status_code == 201


def test_a_service_account_sending_a_short_statement_is_refused_not_told_what_to_fix(people):
    platform = people["platform"]
    services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner_gov", on_call="oncall@x")
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    _, secret = token_create(actor=platform, user=people["bot"], name="ci", scope=["scorer"])
    bot = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    start = bot.post("/api/v1/canaries/", {"model": "scorer", "version": "1.1.0"}, content_type="application/json")
    assert start.status_code == 201
    canary_id = start.json()["id"]
    response = bot.post(f"/api/v1/canaries/{canary_id}/approvals/",
                        {"role": "owner", "statement": "ok", "password": "x"}, content_type="application/json")
    assert response.status_code == 403, response.content
    assert "statement" not in response.content.decode()


def test_the_certificate_queue_verifies_the_chain_once_per_page(people, monkeypatch):
    platform = people["platform"]
    for name in ("alpha", "beta", "gamma"):
        services.model_register(actor=platform, name=name, display_name=name, risk_tier="medium",
                                owner="owner_gov", on_call="oncall@x")
        services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1",
                                  status="production")
        services.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")
        run_to_completion(owner=people["owner_gov"], mrm=people["mrm_gov"], model_name=name)
    calls = []
    real = audit_services.audit_verify
    monkeypatch.setattr(audit_services, "audit_verify", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr("governance.certificates.views.audit_verify", audit_services.audit_verify)
    monkeypatch.setattr("governance.certificates.services.audit_verify", audit_services.audit_verify)
    page = Client()
    page.force_login(people["gov"])
    response = page.get("/governance/certificates/")
    assert response.status_code == 200
    assert len(response.context["rows"]) == 3
    assert len(calls) == 1
