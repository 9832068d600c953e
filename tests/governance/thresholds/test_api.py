"""The threshold change endpoints: requests and their approvals. Service accounts are refused."""

from __future__ import annotations

from governance.audit.models import AuditEvent
from releases.canaries.models import ThresholdChangeRequest
from tests.governance.helpers import bot_client, client_for

CAUSE = {"cause": "Tokenizer change doubled latency on long prompts.", "fix": "Pin the tokenizer and re-run."}


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
