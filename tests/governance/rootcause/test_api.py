"""The root-cause endpoints: MRM's review and the owner's re-initiation signature. Service
accounts are refused."""

from __future__ import annotations

from governance.incidents.models import Incident
from releases.canaries import services as lifecycle
from tests.factories import PASSWORD
from tests.governance.helpers import bot_client, client_for

CAUSE = {"cause": "Tokenizer change doubled latency on long prompts.", "fix": "Pin the tokenizer and re-run."}


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
