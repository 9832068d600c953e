from __future__ import annotations

import io
import zipfile

import pytest
from rest_framework.test import APIClient

from governance.access.permissions import Role
from tests.governance.helpers import make_model, run_to_completion


@pytest.fixture
def setup(role_user):
    people = {r: role_user(role, username=r) for r, role in [
        ("owner", Role.MODEL_OWNER), ("platform", Role.PLATFORM), ("mrm", Role.MRM),
        ("gov", Role.AI_GOVERNANCE), ("risk", Role.RISK_OFFICER), ("oncall", Role.ON_CALL)]}
    make_model(people["platform"])
    return people, run_to_completion(owner=people["owner"], mrm=people["mrm"])


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_certificate_api_issue_get_verify(setup):
    people, canary = setup
    assert client_for(people["risk"]).post(f"/api/v1/canaries/{canary.pk}/certificate/", {}, format="json").status_code == 403
    response = client_for(people["gov"]).post(f"/api/v1/canaries/{canary.pk}/certificate/", {}, format="json")
    assert response.status_code == 201, response.content
    cert_id = response.json()["id"]
    assert client_for(people["risk"]).get(f"/api/v1/certificates/{cert_id}/").json()["status"] == "issued"
    verification = client_for(people["risk"]).get(f"/api/v1/certificates/{cert_id}/verify/").json()
    assert verification["ok"] is True
    again = client_for(people["gov"]).post(f"/api/v1/canaries/{canary.pk}/certificate/", {}, format="json")
    assert again.status_code == 409


def test_evidence_endpoint_streams_a_zip_for_risk_officers_only(setup):
    people, canary = setup
    response = client_for(people["risk"]).get(f"/api/v1/canaries/{canary.pk}/evidence/")
    assert response.status_code == 200 and response.streaming
    names = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    assert "manifest.json" in names
    assert client_for(people["oncall"]).get(f"/api/v1/canaries/{canary.pk}/evidence/").status_code == 403


def test_incident_api_lists_and_files_root_cause(setup):
    people, _ = setup
    from releases.canaries import services as lifecycle
    from releases.register import services

    services.version_register(actor=people["platform"], model_name="scorer", version="1.2.0", artifact_uri="s3://3")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.2.0")
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="errors up")
    listing = client_for(people["oncall"]).get("/api/v1/incidents/").json()
    incident = listing["results"][0]
    assert incident["severity"] == "P2" and incident["overdue"] is False
    bad = client_for(people["oncall"]).post(f"/api/v1/incidents/{incident['id']}/root-cause/", {"cause": "x"}, format="json")
    assert bad.status_code == 400
    ok = client_for(people["oncall"]).post(
        f"/api/v1/incidents/{incident['id']}/root-cause/",
        {"cause": "A bad feature flag in 1.2.0.", "fix": "Remove the flag and add a test."}, format="json")
    assert ok.status_code == 201 and ok.json()["status"] == "filed"
