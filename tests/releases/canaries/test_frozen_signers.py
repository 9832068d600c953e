"""Who must sign a canary is decided by what the model was at initiation: its risk tier and its
owner are frozen on the canary, used by signing, readiness, the inbox and the certificate
checklist, and cannot change on the model while the canary is active.

The attacks: lower a high-risk model's tier mid-canary to drop the MRM sign-off; hand the model
to an accomplice who then signs as owner."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.certificates.services import certificate_checklist
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from releases.register.models import AIModel
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

STATEMENT = "I reviewed the evaluation and approve this step."


@pytest.fixture(autouse=True)
def _router_dir(settings, tmp_path) -> None:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "accomplice": role_user(Role.MODEL_OWNER, username="accomplice"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm"),
    }


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def high_risk_canary(people) -> Canary:
    platform = people["platform"]
    services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="high", owner="owner",
                            on_call="oncall@x")
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=platform, model_name="scorer", version="1.1.0")
    assert canary.state == Canary.State.PENDING_APPROVAL
    return canary


def sign(user, canary: Canary, role: str):
    return api(user).post(f"/api/v1/canaries/{canary.pk}/approvals/",
                          {"role": role, "statement": STATEMENT, "password": PASSWORD}, format="json")


def test_the_canary_freezes_the_tier_and_owner_it_was_started_with(people):
    canary = high_risk_canary(people)
    assert (canary.risk_tier, canary.owner) == ("high", people["owner"])


@pytest.mark.parametrize(("who", "change"), [
    ("platform", {"risk_tier": "low"}),
    ("owner", {"risk_tier": "medium"}),
    ("owner", {"owner": "accomplice"}),
    ("platform", {"owner": "accomplice", "risk_tier": "low"}),
])
def test_tier_and_owner_cannot_change_while_a_canary_is_active(people, who, change):
    high_risk_canary(people)
    response = api(people[who]).patch("/api/v1/models/scorer/", change, format="json")
    assert response.status_code == 409, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert "active canary" in response.json()["detail"]
    model = AIModel.objects.get(name="scorer")
    assert (model.risk_tier, model.owner.username) == ("high", "owner")


def test_other_fields_still_change_and_tier_changes_again_once_the_canary_ends(people):
    canary = high_risk_canary(people)
    assert api(people["owner"]).patch("/api/v1/models/scorer/", {"on_call": "pager:2"}, format="json").status_code == 200
    lifecycle.canary_abort(actor=people["platform"], canary_id=canary.pk, reason="release train cancelled")
    response = api(people["platform"]).patch("/api/v1/models/scorer/", {"risk_tier": "low"}, format="json")
    assert response.status_code == 200, response.content
    assert AIModel.objects.get(name="scorer").risk_tier == "low"


def test_a_tier_lowered_behind_the_services_back_still_needs_the_mrm_sign_off(people):
    """Even when the model row changes by other means (a database edit), the canary is signed by
    the tier it started with: the owner's signature alone does not start it."""
    canary = high_risk_canary(people)
    AIModel.objects.filter(pk=canary.model_id).update(risk_tier="low")
    assert sign(people["owner"], canary, "owner").status_code == 201
    detail = api(people["owner"]).get(f"/api/v1/canaries/{canary.pk}/").json()
    assert detail["state"] == "pending_approval"
    assert detail["required_approvals"] == {"step": "start", "roles": ["mrm", "owner"], "outstanding": ["mrm"]}
    canary.refresh_from_db()
    signatures = {item.key: item for item in certificate_checklist(canary, chain_ok=True)}["signatures"]
    assert not signatures.ok and "missing mrm" in signatures.detail
    assert sign(people["mrm"], canary, "mrm").status_code == 201
    canary.refresh_from_db()
    assert canary.state == Canary.State.RUNNING


def test_an_accomplice_handed_the_model_mid_canary_cannot_sign_as_owner(people):
    canary = high_risk_canary(people)
    AIModel.objects.filter(pk=canary.model_id).update(owner=people["accomplice"])
    refused = sign(people["accomplice"], canary, "owner")
    assert refused.status_code == 403, refused.content
    assert page(people["accomplice"]).get(f"/canaries/{canary.pk}/sign/owner/").status_code == 403
    posted = page(people["accomplice"]).post(f"/canaries/{canary.pk}/sign/owner/",
                                             {"statement": STATEMENT, "password": PASSWORD, "evaluation_hash": ""})
    assert posted.status_code == 403
    assert not canary.approvals.exists()
    # The owner the canary started with still signs, on the page too.
    inbox = page(people["owner"]).get("/inbox/")
    assert f"/canaries/{canary.pk}/sign/owner/" in inbox.content.decode()
    assert f"/canaries/{canary.pk}/sign/owner/" not in page(people["accomplice"]).get("/inbox/").content.decode()
    assert sign(people["owner"], canary, "owner").status_code == 201
