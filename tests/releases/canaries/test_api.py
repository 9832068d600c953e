from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.audit.services import audit_verify
from governance.tokens.services import token_create
from releases.canaries import services as lifecycle
from releases.canaries.models import Approval, Canary
from releases.register import services
from releases.register.models import ModelVersion
from tests.factories import PASSWORD, make_evaluation
from tests.releases.register.test_api import PROBLEM, assert_problem

State = Canary.State
STATEMENT = "I reviewed the evaluation and approve this step."
HOUR = timedelta(hours=1)


@pytest.fixture(autouse=True)
def _router_in_tmp(settings, tmp_path):
    # Transactional tests run the router push after commit: keep its files out of var/.
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner", first_name="Olivia", last_name="Owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm", first_name="Mira", last_name="Validator"),
        "risk": role_user(Role.RISK_OFFICER, username="risk"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
        "nobody": role_user(username="nobody"),
    }


def make_model(people, *, tier: str = "medium", name: str = "scorer") -> None:
    platform = people["platform"]
    services.model_register(actor=platform, name=name, display_name=name, risk_tier=tier, owner="owner", on_call="oncall@x")
    services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1", status="production")
    services.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def bearer(people, *scope: str) -> APIClient:
    """The CI service account with a token scoped to `scope`, over real bearer authentication."""
    _, secret = token_create(actor=people["platform"], user=people["bot"], name="ci", scope=list(scope))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def start_body(**overrides):
    return {"model": "scorer", "version": "1.1.0", **overrides}


def started_long_ago(people, *, actor: str = "owner", name: str = "scorer", tier: str = "medium") -> Canary:
    """A running canary whose first stage has sat out its residence (the API signs in real time)."""
    make_model(people, name=name, tier=tier)
    return lifecycle.canary_initiate(
        actor=people[actor], model_name=name, version="1.1.0", now=timezone.now() - 25 * HOUR
    )


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- start ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_start_answers_201_with_location_and_the_frozen_canary(people):
    make_model(people)
    api = client_for(people["owner"])
    response = api.post("/api/v1/canaries/", start_body(), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    canary = Canary.objects.get()
    assert response["Location"] == f"/api/v1/canaries/{canary.pk}/"
    assert body["id"] == canary.pk
    assert (body["model"], body["version"], body["baseline"]) == ("scorer", "1.1.0", "1.0.0")
    assert (body["state"], body["schedule"], body["traffic_percent"]) == ("running", "standard", 1)
    assert [s["percent"] for s in body["stages"]] == [1, 5, 10, 25, 50, 100]
    assert body["stages"][0] == {"index": 0, "percent": 1, "cohort": None, "min_residence_s": 86400.0}
    assert body["segmentation"] == {"strategy": "random", "values": []}
    assert body["thresholds"] == canary.version.thresholds
    assert [e["percent"] for e in body["expected_timeline"]] == [1, 5, 10, 25, 50, 100]
    assert (body["rollback_contact"], body["router"], body["initiated_by"]) == ("oncall@x", "file", "owner")
    assert body["hold_reason"] == "" and body["ended_at"] is None and body["end_reason"] == ""
    assert body["clock_speed"] == 1.0 and body["initiated_at"]
    stage = body["stage"]
    assert (stage["index"], stage["percent"], stage["cohort"]) == (0, 1, None)
    assert when(stage["min_residence_until"]) - when(stage["entered_at"]) == 24 * HOUR
    assert body["readiness"]["ready"] is False and "minimum residence" in body["readiness"]["reason"]
    assert body["gates"] == [] and body["latest_evaluation"] is None and body["approvals"] == []
    assert body["required_approvals"] == {"step": "promote:0->1", "roles": ["owner"], "outstanding": ["owner"]}
    got = api.get(response["Location"]).json()
    assert {k: v for k, v in got.items() if k != "readiness"} == {k: v for k, v in body.items() if k != "readiness"}
    assert ModelVersion.objects.get(version="1.1.0").status == "canary"


@pytest.mark.django_db
def test_start_takes_every_documented_field(people):
    make_model(people)
    body = start_body(
        schedule="conservative", segmentation={"strategy": "region", "values": ["eu-west", "eu-north"]},
        rationale="EU regions first: the fairness review found no vulnerable group exposed.",
        shadow_evidence_ref="shadow-7", rollback_contact="pager:scorer", router="file",
    )
    response = client_for(people["platform"]).post("/api/v1/canaries/", body, format="json")
    assert response.status_code == 201, response.content
    got = response.json()
    assert got["schedule"] == "conservative" and len(got["stages"]) == 7
    assert got["segmentation"] == {"strategy": "region", "values": ["eu-west", "eu-north"]}
    assert got["rationale"].startswith("EU regions first") and got["shadow_evidence_ref"] == "shadow-7"
    assert (got["rollback_contact"], got["initiated_by"]) == ("pager:scorer", "platform")


@pytest.mark.django_db
def test_idempotent_start_replays_and_never_starts_two_canaries(people):
    make_model(people)
    api = client_for(people["owner"])
    first = api.post("/api/v1/canaries/", start_body(), format="json", HTTP_IDEMPOTENCY_KEY="ci-run-1")
    second = api.post("/api/v1/canaries/", start_body(), format="json", HTTP_IDEMPOTENCY_KEY="ci-run-1")
    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true" and second["Location"] == first["Location"]
    assert second.json() == first.json()
    assert Canary.objects.count() == 1
    assert AuditEvent.objects.filter(action="canary.initiated").count() == 1


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_422(people):
    make_model(people)
    api = client_for(people["owner"])
    api.post("/api/v1/canaries/", start_body(), format="json", HTTP_IDEMPOTENCY_KEY="ci-run-1")
    response = api.post(
        "/api/v1/canaries/", start_body(schedule="conservative"), format="json", HTTP_IDEMPOTENCY_KEY="ci-run-1"
    )
    assert_problem(response, 422)
    assert Canary.objects.get().schedule == "standard"


@pytest.mark.django_db
def test_second_start_while_one_is_active_is_409_naming_the_active_canary(people):
    make_model(people)
    services.version_register(actor=people["platform"], model_name="scorer", version="1.2.0", artifact_uri="s3://3")
    api = client_for(people["owner"])
    first = api.post("/api/v1/canaries/", start_body(), format="json").json()
    body = assert_problem(api.post("/api/v1/canaries/", start_body(version="1.2.0"), format="json"), 409)
    assert f"#{first['id']}" in body["detail"] and "running" in body["detail"]
    assert Canary.objects.count() == 1


REGION = "Regional rollout: the fairness review covered every region listed here."


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"model": 7}, "model"),
        ({"version": 110}, "version"),
        ({"version": "9.9.9"}, "version"),  # the service: the model has no such version
        ({"version": "x" * 41}, "version"),
        ({"schedule": "fast"}, "schedule"),
        ({"schedule": 1}, "schedule"),
        ({"schedule": ["standard"]}, "schedule"),
        ({"segmentation": "random"}, "segmentation"),
        ({"segmentation": ["random"]}, "segmentation"),
        ({"segmentation": {}}, "segmentation.strategy"),
        ({"segmentation": {"strategy": "zodiac"}}, "segmentation.strategy"),
        ({"segmentation": {"strategy": "region", "values": ["eu"], "weights": [1]}}, "segmentation.weights"),
        ({"segmentation": {"strategy": "region", "values": "eu"}}, "segmentation.values"),
        ({"segmentation": {"strategy": "region", "values": [1]}, "rationale": REGION}, "segmentation.values[0]"),
        ({"segmentation": {"strategy": "region", "values": [""]}, "rationale": REGION}, "segmentation.values[0]"),
        ({"segmentation": {"strategy": "region", "values": [" eu"]}, "rationale": REGION}, "segmentation.values[0]"),
        ({"segmentation": {"strategy": "region", "values": ["eu", "eu"]}, "rationale": REGION}, "segmentation.values[1]"),
        ({"segmentation": {"strategy": "region", "values": []}, "rationale": REGION}, "segmentation.values"),
        ({"segmentation": {"strategy": "random", "values": ["eu"]}}, "segmentation.values"),
        ({"segmentation": {"strategy": "region", "values": ["eu"]}}, "rationale"),  # fairness review
        ({"schedule": "cohort_first"}, "segmentation.strategy"),
        ({"schedule": "cohort_first", "segmentation": {"strategy": "cohort", "values": ["staff"]}, "rationale": REGION},
         "segmentation.values"),
        ({"rationale": 42}, "rationale"),
        ({"rationale": ["text"]}, "rationale"),
        ({"rationale": None}, "rationale"),
        ({"rationale": "x" * 10_001}, "rationale"),
        ({"shadow_evidence_ref": 5}, "shadow_evidence_ref"),
        ({"shadow_evidence_ref": "r" * 501}, "shadow_evidence_ref"),
        ({"rollback_contact": {"pager": "x"}}, "rollback_contact"),
        ({"rollback_contact": "c" * 201}, "rollback_contact"),
        ({"router": "carrier-pigeon"}, "router"),
        ({"router": None}, "router"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_start_input_is_400_with_field_errors(people, patch, field):
    make_model(people)
    response = client_for(people["owner"]).post("/api/v1/canaries/", start_body(**patch), format="json")
    assert_problem(response, 400, field)
    assert not Canary.objects.exists()
    assert ModelVersion.objects.get(version="1.1.0").status == "registered"


@pytest.mark.django_db
@pytest.mark.parametrize("missing", ["model", "version"])
def test_start_without_a_required_field_is_400(people, missing):
    make_model(people)
    body = {k: v for k, v in start_body().items() if k != missing}
    assert_problem(client_for(people["owner"]).post("/api/v1/canaries/", body, format="json"), 400, missing)


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b"{bad json", b"[]", b"null", b'"scorer"'])
def test_malformed_start_bodies_are_400(people, raw):
    response = client_for(people["owner"]).post("/api/v1/canaries/", raw, content_type="application/json")
    assert_problem(response, 400)


@pytest.mark.django_db
def test_unknown_model_is_404_and_a_version_that_is_not_registered_is_409(people):
    make_model(people)
    api = client_for(people["owner"])
    assert_problem(api.post("/api/v1/canaries/", start_body(model="nope"), format="json"), 404)
    body = assert_problem(api.post("/api/v1/canaries/", start_body(version="1.0.0"), format="json"), 409)
    assert "production" in body["detail"]


@pytest.mark.django_db
def test_accelerated_is_refused_for_medium_risk_and_allowed_for_low_with_rationale(people):
    make_model(people, tier="medium")
    make_model(people, tier="low", name="low")
    api = client_for(people["owner"])
    reasons = {"rationale": "A 14-day shadow run showed parity on every gate.", "shadow_evidence_ref": "shadow-42"}
    refused = api.post("/api/v1/canaries/", start_body(schedule="accelerated", **reasons), format="json")
    body = assert_problem(refused, 400, "schedule")
    assert "low-risk" in body["errors"]["schedule"][0]
    assert_problem(
        api.post("/api/v1/canaries/", start_body(model="low", schedule="accelerated"), format="json"),
        400, "rationale", "shadow_evidence_ref",
    )
    ok = api.post("/api/v1/canaries/", start_body(model="low", schedule="accelerated", **reasons), format="json")
    assert ok.status_code == 201 and [s["percent"] for s in ok.json()["stages"]] == [1, 10, 25, 100]


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["mrm", "risk"])
def test_only_owner_and_platform_start_canaries(people, who):
    make_model(people)
    assert_problem(client_for(people[who]).post("/api/v1/canaries/", start_body(), format="json"), 403)
    assert not Canary.objects.exists()
    assert AuditEvent.objects.filter(action="access.refused", actor_name=who).exists()


# --- reading --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_is_newest_first_with_model_and_state_filters(people):
    make_model(people)
    make_model(people, name="ranker")
    old = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    lifecycle.canary_abort(actor=people["owner"], canary_id=old.pk, reason="release train cancelled")
    again = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    other = lifecycle.canary_initiate(actor=people["owner"], model_name="ranker", version="1.1.0")
    api = client_for(people["risk"])
    listed = api.get("/api/v1/canaries/").json()
    assert listed["count"] == 3 and [c["id"] for c in listed["results"]] == [other.pk, again.pk, old.pk]
    row = listed["results"][0]
    assert (row["model"], row["version"], row["state"], row["traffic_percent"]) == ("ranker", "1.1.0", "running", 1)
    assert row["stage"]["percent"] == 1 and row["initiated_by"] == "owner"
    assert [c["id"] for c in api.get("/api/v1/canaries/?model=scorer").json()["results"]] == [again.pk, old.pk]
    assert [c["id"] for c in api.get("/api/v1/canaries/?state=aborted").json()["results"]] == [old.pk]
    assert [c["id"] for c in api.get("/api/v1/canaries/?model=scorer&state=running").json()["results"]] == [again.pk]
    assert api.get("/api/v1/canaries/?model=nope").json()["count"] == 0
    page = api.get("/api/v1/canaries/?page_size=2").json()
    assert len(page["results"]) == 2 and page["next"]
    assert_problem(api.get("/api/v1/canaries/?state=paused"), 400, "state")
    assert_problem(api.get("/api/v1/canaries/?state="), 400, "state")
    assert_problem(api.get("/api/v1/canaries/?colour=red"), 400, "colour")
    assert_problem(api.get("/api/v1/canaries/?page_size=0"), 400, "page_size")


@pytest.mark.django_db
def test_reading_needs_a_role(people):
    assert_problem(client_for(people["nobody"]).get("/api/v1/canaries/"), 403)
    assert_problem(APIClient().get("/api/v1/canaries/"), 401)


@pytest.mark.django_db
def test_detail_shows_the_stage_its_gates_and_what_a_signer_must_send_back(people):
    canary = started_long_ago(people)
    evaluation = make_evaluation(canary, window_end=timezone.now(), latency_p99="red")
    body = client_for(people["risk"]).get(f"/api/v1/canaries/{canary.pk}/").json()
    assert body["latest_evaluation"] == {
        "id": evaluation.pk, "content_hash": evaluation.content_hash, "verdict": "red",
        "window_start": body["latest_evaluation"]["window_start"], "window_end": body["latest_evaluation"]["window_end"],
    }
    assert when(body["latest_evaluation"]["window_end"]) == evaluation.window_end
    gates = {g["name"]: g for g in body["gates"]}
    assert set(gates) == {"error_rate", "latency_p99", "quality", "safety_violations", "anomaly_alerts"}
    assert gates["latency_p99"]["status"] == "red" and gates["quality"]["status"] == "green"
    assert set(gates["quality"]) == {"name", "status", "value", "limit", "detail"}
    assert body["readiness"] == {"ready": False, "reason": "latency_p99 is red"}
    assert when(body["stage"]["min_residence_until"]) < timezone.now()
    green = make_evaluation(canary, window_end=timezone.now() + timedelta(seconds=1))
    body = client_for(people["risk"]).get(f"/api/v1/canaries/{canary.pk}/").json()
    assert body["readiness"]["ready"] is True and body["latest_evaluation"]["content_hash"] == green.content_hash
    assert body["required_approvals"] == {"step": "promote:0->1", "roles": ["owner"], "outstanding": ["owner"]}


@pytest.mark.django_db
def test_evaluations_are_listed_newest_first(people):
    canary = started_long_ago(people)
    now = timezone.now()
    made = [make_evaluation(canary, window_end=now - timedelta(minutes=m)) for m in (10, 0, 5)]
    api = client_for(people["risk"])
    body = api.get(f"/api/v1/canaries/{canary.pk}/evaluations/").json()
    assert body["count"] == 3
    assert [e["id"] for e in body["results"]] == [made[1].pk, made[2].pk, made[0].pk]
    first = body["results"][0]
    assert set(first) == {"id", "stage_index", "window_start", "window_end", "verdict", "gates", "inputs",
                          "content_hash", "created_at"}
    assert first["content_hash"] == made[1].content_hash and first["inputs"] == {"source": "test"}
    assert first["verdict"] == "green" and len(first["gates"]) == 5 and first["stage_index"] == 0
    assert len(api.get(f"/api/v1/canaries/{canary.pk}/evaluations/?page_size=2").json()["results"]) == 2
    assert_problem(api.get(f"/api/v1/canaries/{canary.pk}/evaluations/?page_size=201"), 400, "page_size")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("get", "evaluations/"), ("post", "approvals/"), ("post", "rollback/"), ("post", "abort/")],
)
def test_unknown_canary_is_404_everywhere(people, method, suffix):
    api = client_for(people["platform"])
    body = {"reason": "x", "role": "owner", "statement": STATEMENT, "password": PASSWORD}
    response = getattr(api, method)(f"/api/v1/canaries/999/{suffix}", *([body] if method == "post" else []), format="json")
    assert_problem(response, 404)


# --- signatures -----------------------------------------------------------------------------------


def sign(client: APIClient, canary: Canary, as_role: str, **extra):
    body = {"role": as_role, "statement": STATEMENT, "password": PASSWORD, **extra}
    return client.post(f"/api/v1/canaries/{canary.pk}/approvals/", body, format="json")


@pytest.mark.django_db
def test_high_risk_start_is_signed_over_the_api_by_owner_then_mrm(people):
    make_model(people, tier="high")
    created = client_for(people["platform"]).post("/api/v1/canaries/", start_body(schedule="conservative"), format="json")
    assert created.status_code == 201
    body = created.json()
    assert (body["state"], body["traffic_percent"], body["stage"]["entered_at"]) == ("pending_approval", 0, None)
    assert body["required_approvals"] == {"step": "start", "roles": ["mrm", "owner"], "outstanding": ["mrm", "owner"]}
    assert body["readiness"]["ready"] is True
    canary = Canary.objects.get()

    owner_signed = sign(client_for(people["owner"]), canary, "owner")
    assert owner_signed.status_code == 201, owner_signed.content
    approval = owner_signed.json()["approval"]
    assert (approval["role"], approval["signer"], approval["printed_name"]) == ("owner", "owner", "Olivia Owner")
    assert (approval["step"], approval["stage_index"], approval["evaluation_hash"]) == ("start", 0, "")
    assert "approves starting canary" in approval["meaning"] and approval["statement"] == STATEMENT
    assert "password" not in owner_signed.json()["approval"]
    after_owner = owner_signed.json()["canary"]
    assert after_owner["state"] == "pending_approval"
    assert after_owner["required_approvals"]["outstanding"] == ["mrm"]

    mrm_signed = sign(client_for(people["mrm"]), canary, "mrm")
    assert mrm_signed.status_code == 201, mrm_signed.content
    running = mrm_signed.json()["canary"]
    assert (running["state"], running["traffic_percent"], running["stage"]["percent"]) == ("running", 1, 1)
    assert when(running["stage"]["min_residence_until"]) - when(running["stage"]["entered_at"]) == 48 * HOUR
    assert [(a["role"], a["signer"]) for a in running["approvals"]] == [("owner", "owner"), ("mrm", "mrm")]
    assert running["required_approvals"] == {"step": "promote:0->1", "roles": ["mrm", "owner"],
                                             "outstanding": ["mrm", "owner"]}


@pytest.mark.django_db
def test_wrong_password_is_403_audited_and_signs_nothing(people):
    make_model(people, tier="high")
    canary = lifecycle.canary_initiate(actor=people["platform"], model_name="scorer", version="1.1.0")
    response = sign(client_for(people["owner"]), canary, "owner", password="not the password")
    body = assert_problem(response, 403)
    assert "re-authentication" in body["detail"]
    assert not Approval.objects.exists()
    assert AuditEvent.objects.filter(action="access.refused", actor_name="owner").exists()
    assert "not the password" not in str(list(AuditEvent.objects.values("payload")))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"role": "ceo"}, "role"),
        ({"role": None}, "role"),
        ({"statement": "ok"}, "statement"),
        ({"statement": 1234567890123}, "statement"),
        ({"password": None}, "password"),
        ({"password": 1234}, "password"),
        ({"evaluation_hash": "abc"}, "evaluation_hash"),
        ({"evaluation_hash": 42}, "evaluation_hash"),
        ({"signed_at": "2020-01-01T00:00:00Z"}, "signed_at"),
    ],
)
def test_bad_signature_input_is_400(people, patch, field):
    canary = started_long_ago(people)
    assert_problem(sign(client_for(people["owner"]), canary, "owner", **patch), 400, field)
    assert not Approval.objects.exists()


@pytest.mark.django_db
def test_promotion_is_signed_on_the_evaluation_hash_shown(people):
    canary = started_long_ago(people)
    evaluation = make_evaluation(canary, window_end=timezone.now())
    owner = client_for(people["owner"])
    shown = owner.get(f"/api/v1/canaries/{canary.pk}/").json()["latest_evaluation"]["content_hash"]
    assert_problem(sign(owner, canary, "owner"), 400, "evaluation_hash")
    response = sign(owner, canary, "owner", evaluation_hash=shown)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["approval"]["evaluation_hash"] == evaluation.content_hash
    assert body["approval"]["step"] == "promote:0->1" and "from 1% to 5%" in body["approval"]["meaning"]
    promoted = body["canary"]
    assert (promoted["state"], promoted["traffic_percent"]) == ("running", 5)
    assert (promoted["stage"]["index"], promoted["stage"]["percent"]) == (1, 5)
    assert promoted["latest_evaluation"] is None and promoted["gates"] == []  # a new stage has no evaluation yet
    assert promoted["required_approvals"]["step"] == "promote:1->2"


@pytest.mark.django_db
def test_a_stale_evaluation_hash_is_409(people):
    canary = started_long_ago(people)
    now = timezone.now()
    seen = make_evaluation(canary, window_end=now - timedelta(minutes=2))
    make_evaluation(canary, window_end=now - timedelta(minutes=1))
    body = assert_problem(sign(client_for(people["owner"]), canary, "owner", evaluation_hash=seen.content_hash), 409)
    assert "no longer the newest" in body["detail"]
    assert not Approval.objects.exists()


@pytest.mark.django_db
def test_signing_before_the_residence_is_over_is_409_saying_how_long(people):
    make_model(people)
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    evaluation = make_evaluation(canary, window_end=timezone.now())
    body = assert_problem(sign(client_for(people["owner"]), canary, "owner", evaluation_hash=evaluation.content_hash), 409)
    assert "running" in body["detail"] and "minimum residence" in body["detail"]


# --- service accounts -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_service_account_starts_and_aborts_within_scope_but_never_signs(people):
    make_model(people)
    make_model(people, name="ranker")
    elsewhere = lifecycle.canary_initiate(actor=people["owner"], model_name="ranker", version="1.1.0")
    ci = bearer(people, "scorer")

    started = ci.post("/api/v1/canaries/", start_body(), format="json", HTTP_IDEMPOTENCY_KEY="pipeline-81")
    assert started.status_code == 201, started.content
    canary_id = started.json()["id"]
    assert started.json()["initiated_by"] == "ci"
    assert [c["id"] for c in ci.get("/api/v1/canaries/").json()["results"]] == [canary_id]
    assert ci.get("/api/v1/canaries/?model=ranker").json()["count"] == 0
    assert_problem(ci.get(f"/api/v1/canaries/{elsewhere.pk}/"), 404)
    assert_problem(ci.post(f"/api/v1/canaries/{elsewhere.pk}/abort/", {"reason": "not mine"}, format="json"), 404)
    assert_problem(ci.post("/api/v1/canaries/", start_body(model="ranker"), format="json"), 404)

    canary = Canary.objects.get(pk=canary_id)
    refused = assert_problem(sign(ci, canary, "owner"), 403)
    assert "service accounts never sign" in refused["detail"]
    assert AuditEvent.objects.filter(action="access.refused", actor_name="ci").exists()
    assert_problem(ci.post(f"/api/v1/canaries/{canary_id}/rollback/", {"reason": "red"}, format="json"), 403)

    aborted = ci.post(f"/api/v1/canaries/{canary_id}/abort/", {"reason": "pipeline cancelled"}, format="json")
    assert aborted.status_code == 200, aborted.content
    assert (aborted.json()["state"], aborted.json()["traffic_percent"]) == ("aborted", 0)
    assert Canary.objects.get(pk=elsewhere.pk).state == State.RUNNING


# --- rollback and abort ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_rollback_sends_traffic_to_zero_and_a_second_attempt_is_409(people):
    make_model(people)
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    owner = client_for(people["owner"])
    response = owner.post(f"/api/v1/canaries/{canary.pk}/rollback/", {"reason": "users complain"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["traffic_percent"], body["end_reason"]) == ("rolled_back", 0, "users complain")
    assert body["ended_at"] is not None and body["readiness"]["ready"] is False
    assert body["required_approvals"] == {"step": None, "roles": [], "outstanding": []}
    assert ModelVersion.objects.get(version="1.1.0").status == "rolled_back"
    again = assert_problem(owner.post(f"/api/v1/canaries/{canary.pk}/rollback/", {"reason": "again"}, format="json"), 409)
    assert "rolled_back" in again["detail"]
    aborted = assert_problem(owner.post(f"/api/v1/canaries/{canary.pk}/abort/", {"reason": "again"}, format="json"), 409)
    assert "rolled_back" in aborted["detail"]
    assert AuditEvent.objects.filter(action="canary.rolled_back").count() == 1


@pytest.mark.django_db
def test_abort_stops_the_canary_and_a_second_abort_is_409(people):
    make_model(people)
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    platform = client_for(people["platform"])
    response = platform.post(f"/api/v1/canaries/{canary.pk}/abort/", {"reason": "release train cancelled"}, format="json")
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["traffic_percent"]) == ("aborted", 0)
    assert ModelVersion.objects.get(version="1.1.0").status == "registered"
    again = assert_problem(platform.post(f"/api/v1/canaries/{canary.pk}/abort/", {"reason": "x"}, format="json"), 409)
    assert "aborted" in again["detail"]


@pytest.mark.django_db
def test_a_pending_canary_cannot_be_rolled_back_only_aborted(people):
    make_model(people, tier="high")
    canary = lifecycle.canary_initiate(actor=people["platform"], model_name="scorer", version="1.1.0")
    owner = client_for(people["owner"])
    body = assert_problem(owner.post(f"/api/v1/canaries/{canary.pk}/rollback/", {"reason": "x"}, format="json"), 409)
    assert "pending_approval" in body["detail"] and "abort" in body["detail"]
    assert owner.post(f"/api/v1/canaries/{canary.pk}/abort/", {"reason": "x"}, format="json").json()["state"] == "aborted"


@pytest.mark.django_db
def test_rollback_retried_with_its_key_acts_once(people):
    make_model(people)
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    owner = client_for(people["owner"])
    url = f"/api/v1/canaries/{canary.pk}/rollback/"
    first = owner.post(url, {"reason": "error budget burnt"}, format="json", HTTP_IDEMPOTENCY_KEY="rb-1")
    second = owner.post(url, {"reason": "error budget burnt"}, format="json", HTTP_IDEMPOTENCY_KEY="rb-1")
    assert first.status_code == second.status_code == 200 and second.json() == first.json()
    assert AuditEvent.objects.filter(action="canary.rolled_back").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("verb", ["rollback", "abort"])
def test_risk_officer_may_not_roll_back_or_abort(people, verb):
    make_model(people)
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    response = client_for(people["risk"]).post(f"/api/v1/canaries/{canary.pk}/{verb}/", {"reason": "x"}, format="json")
    assert_problem(response, 403)
    assert Canary.objects.get().state == State.RUNNING
    assert AuditEvent.objects.filter(action="access.refused", actor_name="risk").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": 3}, {"reason": "r" * 2001},
                                  {"reason": "x", "force": True}])
@pytest.mark.parametrize("verb", ["rollback", "abort"])
def test_stopping_needs_a_reason(people, verb, body):
    make_model(people)
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    response = client_for(people["owner"]).post(f"/api/v1/canaries/{canary.pk}/{verb}/", body, format="json")
    assert_problem(response, 400)
    assert response["Content-Type"].startswith(PROBLEM)
    assert Canary.objects.get().state == State.RUNNING


# --- concurrency on PostgreSQL --------------------------------------------------------------------


def _in_parallel(count: int, request) -> list:  # type: ignore[no-untyped-def]
    """Run `request(i)` from `count` threads released together; each thread closes its own
    database connection, as Django opens one per thread."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = request(i)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_parallel_retries_of_one_start_start_one_canary(people):
    make_model(people)

    def post(_: int):  # type: ignore[no-untyped-def]
        response = client_for(people["owner"]).post(
            "/api/v1/canaries/", start_body(), format="json", HTTP_IDEMPOTENCY_KEY="ci-run-7"
        )
        return response.status_code, response.json(), response.get("Location")

    results = _in_parallel(4, post)
    assert [status for status, _, _ in results] == [201] * 4
    assert all(result == results[0] for result in results)
    assert Canary.objects.count() == 1
    assert AuditEvent.objects.filter(action="canary.initiated").count() == 1
    assert audit_verify().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_parallel_starts_with_different_keys_start_one_canary(people):
    make_model(people)

    def post(i: int):  # type: ignore[no-untyped-def]
        response = client_for(people["owner"]).post(
            "/api/v1/canaries/", start_body(), format="json", HTTP_IDEMPOTENCY_KEY=f"ci-run-{i}"
        )
        return response.status_code, response.json()

    results = _in_parallel(4, post)
    assert sorted(status for status, _ in results) == [201, 409, 409, 409]
    assert all("already has an active canary" in body["detail"] for status, body in results if status == 409)
    assert Canary.objects.count() == 1
    assert AuditEvent.objects.filter(action="canary.initiated").count() == 1
    assert audit_verify().ok
