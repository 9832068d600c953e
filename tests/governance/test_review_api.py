"""The governance review endpoints: threshold change requests and their approvals, MRM's
root-cause review and the owner's re-initiation signature. Service accounts are refused."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from governance.models import AuditEvent, Incident, ThresholdChangeRequest
from governance.permissions import Role
from governance.tokens import token_create
from releases import lifecycle
from tests.factories import PASSWORD
from tests.governance.helpers import make_model

CAUSE = {"cause": "Tokenizer change doubled latency on long prompts.", "fix": "Pin the tokenizer and re-run."}


@pytest.fixture
def people(role_user):
    return {r: role_user(role, username=r) for r, role in [
        ("owner", Role.MODEL_OWNER), ("platform", Role.PLATFORM), ("mrm", Role.MRM), ("gov", Role.AI_GOVERNANCE),
        ("oncall", Role.ON_CALL), ("risk", Role.RISK_OFFICER), ("bot", Role.SERVICE_ACCOUNT)]}


@pytest.fixture
def canary(people):
    make_model(people["platform"])
    return lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def bot_client(people) -> Client:
    _, secret = token_create(actor=people["bot"], user=people["bot"], name="ci", scope=["scorer"])
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def request_change(people, canary, **extra):
    body = {"proposed": {"promote": {"latency_p99_ratio": 1.1}}, "reason": "The consumer team tightened latency."}
    return client_for(people["owner"]).post(f"/api/v1/canaries/{canary.pk}/threshold-changes/", {**body, **extra},
                                            format="json")


def test_threshold_change_request_two_approvals_and_listing(people, canary):
    response = request_change(people, canary)
    assert response.status_code == 201, response.content
    change = response.json()
    assert change["status"] == "pending" and change["current"]["promote"]["latency_p99_ratio"] == 1.2
    assert change["proposed"]["promote"]["latency_p99_ratio"] == 1.1 and change["governance_by"] is None
    url = f"/api/v1/threshold-changes/{change['id']}/approvals/"
    first = client_for(people["gov"]).post(url, {"decision": "approve"}, format="json")
    assert first.status_code == 200, first.content
    assert (first.json()["status"], first.json()["governance_by"]) == ("pending", "gov")
    again = client_for(people["gov"]).post(url, {"decision": "approve"}, format="json")
    assert again.status_code == 409 and again["Content-Type"] == "application/problem+json"
    second = client_for(people["mrm"]).post(url, {"decision": "approve"}, format="json")
    assert second.json()["status"] == "approved"
    assert second.json()["status_display"] == "Approved, applies at the next stage"
    listing = client_for(people["risk"]).get(f"/api/v1/canaries/{canary.pk}/threshold-changes/").json()
    assert [c["id"] for c in listing["results"]] == [change["id"]]
    assert AuditEvent.objects.filter(action="canary.threshold_change_approved").count() == 2


def test_threshold_change_refusals_are_problem_documents(people, canary):
    loose = request_change(people, canary, proposed={"promote": {"latency_p99_ratio": 9}})
    assert loose.status_code == 400 and "proposed.promote.latency_p99_ratio" in str(loose.json()["errors"])
    assert request_change(people, canary, reason="short").status_code == 400
    assert request_change(people, canary, threshold={}).json()["errors"] == {"threshold": ["unknown field"]}
    other = client_for(people["mrm"]).post(f"/api/v1/canaries/{canary.pk}/threshold-changes/",
                                           {"proposed": {}, "reason": "MRM would like it tighter."}, format="json")
    assert other.status_code == 403
    assert client_for(people["owner"]).get("/api/v1/canaries/999/threshold-changes/").status_code == 404
    change = request_change(people, canary).json()
    assert request_change(people, canary).status_code == 409
    url = f"/api/v1/threshold-changes/{change['id']}/approvals/"
    assert client_for(people["owner"]).post(url, {"decision": "approve"}, format="json").status_code == 403
    assert client_for(people["gov"]).post(url, {"decision": "reject"}, format="json").status_code == 400
    assert bot_client(people).post(url, {"decision": "approve"}, content_type="application/json").status_code == 403
    rejected = client_for(people["gov"]).post(url, {"decision": "reject", "note": "Not justified by data."},
                                              format="json")
    assert rejected.json()["status"] == "rejected"
    assert client_for(people["gov"]).post("/api/v1/threshold-changes/999/approvals/", {"decision": "approve"},
                                          format="json").status_code == 404


def test_threshold_change_request_is_idempotent(people, canary):
    headers = {"HTTP_IDEMPOTENCY_KEY": "tc-1"}
    body = {"proposed": {"promote": {"latency_p99_ratio": 1.1}}, "reason": "The consumer team tightened latency."}
    url = f"/api/v1/canaries/{canary.pk}/threshold-changes/"
    first = client_for(people["owner"]).post(url, body, format="json", **headers)
    second = client_for(people["owner"]).post(url, body, format="json", **headers)
    assert first.status_code == second.status_code == 201 and first.json()["id"] == second.json()["id"]
    assert ThresholdChangeRequest.objects.count() == 1


def rolled_back(people, canary) -> Incident:
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="errors up")
    return Incident.objects.get(canary=canary)


def test_root_cause_review_returns_then_accepts_and_owner_signs_reinitiation(people, canary):
    incident = rolled_back(people, canary)
    review = f"/api/v1/incidents/{incident.pk}/root-cause/review/"
    assert client_for(people["mrm"]).post(review, {"decision": "accept"}, format="json").status_code == 409
    file = client_for(people["oncall"]).post(f"/api/v1/incidents/{incident.pk}/root-cause/", CAUSE, format="json")
    assert file.status_code == 201
    assert client_for(people["mrm"]).post(review, {"decision": "return"}, format="json").status_code == 400
    assert client_for(people["oncall"]).post(review, {"decision": "accept"}, format="json").status_code == 403
    returned = client_for(people["mrm"]).post(review, {"decision": "return", "note": "Which prompts? Add data."},
                                              format="json")
    assert returned.status_code == 200 and returned.json()["status"] == "returned"
    client_for(people["oncall"]).post(f"/api/v1/incidents/{incident.pk}/root-cause/", CAUSE, format="json")
    accepted = client_for(people["mrm"]).post(review, {"decision": "accept"}, format="json")
    assert accepted.json()["status"] == "accepted"
    incident.refresh_from_db()
    assert incident.status == "resolved"

    sign = f"/api/v1/incidents/{incident.pk}/reinitiation/"
    statement = "Root cause fixed and accepted; start again."
    wrong = client_for(people["owner"]).post(sign, {"statement": statement, "password": "nope"}, format="json")
    assert wrong.status_code == 403 and "re-authentication" in wrong.json()["detail"]
    assert client_for(people["platform"]).post(sign, {"statement": statement, "password": PASSWORD},
                                               format="json").status_code == 403
    signed = client_for(people["owner"]).post(sign, {"statement": statement, "password": PASSWORD}, format="json")
    assert signed.status_code == 201, signed.content
    assert (signed.json()["version"], signed.json()["signer"]) == ("1.1.0", "owner")
    assert "password" not in signed.json()
    assert client_for(people["owner"]).post(sign, {"statement": statement, "password": PASSWORD},
                                            format="json").status_code == 409
    again = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    assert again.state == "running"


def test_service_accounts_may_neither_review_nor_sign(people, canary):
    incident = rolled_back(people, canary)
    client_for(people["oncall"]).post(f"/api/v1/incidents/{incident.pk}/root-cause/", CAUSE, format="json")
    bot = bot_client(people)
    review = bot.post(f"/api/v1/incidents/{incident.pk}/root-cause/review/", {"decision": "accept"},
                      content_type="application/json")
    assert review.status_code == 403 and review["Content-Type"] == "application/problem+json"
    sign = bot.post(f"/api/v1/incidents/{incident.pk}/reinitiation/",
                    {"statement": "Let the version run again.", "password": PASSWORD}, content_type="application/json")
    assert sign.status_code == 403
    incident.refresh_from_db()
    assert incident.status == "root_cause_filed"
