from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.audit.services import refusals_flush
from governance.tokens.models import ApiToken
from governance.tokens.services import token_create, token_revoke
from releases.register.models import AIModel, ModelVersion

PROBLEM = "application/problem+json"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def as_platform(api, platform):
    api.force_authenticate(platform)
    return api


@pytest.fixture
def model_body(owner):
    return {
        "name": "fraud-scorer",
        "display_name": "Fraud scorer",
        "risk_tier": "high",
        "owner": "owner",
        "on_call": "fraud-oncall@example.test",
        "consumers": [{"name": "payments", "contact": "payments@example.test", "channel": "slack"}],
    }


@pytest.fixture
def registered(as_platform, model_body):
    assert as_platform.post("/api/v1/models/", model_body, format="json").status_code == 201
    body = {"version": "1.0.0", "artifact_uri": "s3://m/1.0.0", "status": "production"}
    assert as_platform.post("/api/v1/models/fraud-scorer/versions/", body, format="json").status_code == 201
    return AIModel.objects.get(name="fraud-scorer")


def assert_problem(response, status: int, *fields: str):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["type"].startswith("urn:canaryhub:problem:")
    assert body["title"] and body["detail"]
    for field in fields:
        assert field in body.get("errors", {}), body
    return body


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_gets_401_problem_with_bearer_challenge(api):
    response = api.get("/api/v1/models/")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer nonsense", "Bearer chk_aaaa_bbbb", "Bearer a b"])
def test_bad_token_is_401_and_audited(api, header):
    response = api.get("/api/v1/models/", HTTP_AUTHORIZATION=header)
    assert_problem(response, 401)
    # Counted (per minute and address), and in the chain once the minute is flushed.
    assert refusals_flush(include_current=True) == 1
    assert AuditEvent.objects.get(action="access.refused_unknown").payload["by_status"] == {"401": 1}


@pytest.mark.django_db
def test_token_authenticates_records_last_use_and_revocation_stops_it(platform, registered):
    api = APIClient()
    token, secret = token_create(actor=platform, user=platform, name="laptop")
    assert api.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.key_hash != secret and secret not in str(ApiToken.objects.values())
    token_revoke(actor=platform, prefix=token.prefix)
    assert_problem(api.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer {secret}"), 401)


@pytest.mark.django_db
def test_service_account_sees_only_its_scope_and_cannot_register_models(role_user, registered, model_body):
    api = APIClient()
    bot = role_user(Role.SERVICE_ACCOUNT, username="ci")
    other = AIModel.objects.create(name="other", display_name="Other", risk_tier="low", owner=registered.owner, on_call="x")
    _, secret = token_create(actor=None, user=bot, name="ci", scope=["fraud-scorer"])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    names = [m["name"] for m in api.get("/api/v1/models/", **auth).json()["results"]]
    assert names == ["fraud-scorer"]
    assert_problem(api.get(f"/api/v1/models/{other.name}/", **auth), 404)
    refused = api.post("/api/v1/models/", {**model_body, "name": "new"}, format="json", **auth)
    assert_problem(refused, 403)
    assert AuditEvent.objects.filter(action="access.refused", actor_name="ci").exists()
    ok = api.post("/api/v1/models/fraud-scorer/versions/", {"version": "1.1.0", "artifact_uri": "s3://x"}, format="json", **auth)
    assert ok.status_code == 201
    assert ok.json()["registered_by"] == "ci"


# --- models ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_register_model_and_read_it_back(as_platform, model_body):
    response = as_platform.post("/api/v1/models/", model_body, format="json")
    assert response.status_code == 201
    assert response["Location"] == "/api/v1/models/fraud-scorer/"
    got = as_platform.get("/api/v1/models/fraud-scorer/").json()
    assert got["owner"] == "owner" and got["consumers"] == model_body["consumers"]
    assert got["risk_tier"] == "high"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"name": True}, "name"),
        ({"name": "Not A Slug"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": None}, "name"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": ["list"]}, "display_name"),
        ({"risk_tier": "extreme"}, "risk_tier"),
        ({"risk_tier": 3}, "risk_tier"),
        ({"owner": "ghost"}, "owner"),
        ({"owner": {"id": 1}}, "owner"),
        ({"on_call": ""}, "on_call"),
        ({"consumers": "payments"}, "consumers"),
        ({"consumers": [{"name": "a", "contact": "b", "channel": "fax"}]}, "consumers[0].channel"),
        ({"consumers": [{"name": "a"}]}, "consumers[0].contact"),
        ({"consumers": [{"name": "a", "contact": "b", "x": 1}]}, "consumers[0].x"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_model_input_is_400_with_field_errors(as_platform, model_body, patch, field):
    response = as_platform.post("/api/v1/models/", {**model_body, **patch}, format="json")
    assert_problem(response, 400, field)
    assert not AIModel.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("missing", ["name", "display_name", "risk_tier", "owner", "on_call"])
def test_missing_required_field_is_400(as_platform, model_body, missing):
    body = {k: v for k, v in model_body.items() if k != missing}
    assert_problem(as_platform.post("/api/v1/models/", body, format="json"), 400, missing)


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b"{bad json", b"[]", b"null", b"12", b'"text"'])
def test_malformed_bodies_are_400(as_platform, raw):
    response = as_platform.post("/api/v1/models/", raw, content_type="application/json")
    assert_problem(response, 400)


@pytest.mark.django_db
def test_wrong_media_type_is_415_problem(as_platform):
    assert_problem(as_platform.post("/api/v1/models/", b"name=x", content_type="application/x-www-form-urlencoded"), 415)


@pytest.mark.django_db
def test_duplicate_model_is_409(as_platform, registered, model_body):
    assert_problem(as_platform.post("/api/v1/models/", model_body, format="json"), 409)


@pytest.mark.django_db
def test_list_filters_and_pagination(as_platform, registered, owner):
    for i in range(3):
        AIModel.objects.create(name=f"low-{i}", display_name=f"Low {i}", risk_tier="low", owner=owner, on_call="x")
    body = as_platform.get("/api/v1/models/?risk_tier=low&page_size=2").json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]
    assert [m["name"] for m in as_platform.get("/api/v1/models/?q=fraud").json()["results"]] == ["fraud-scorer"]
    assert as_platform.get("/api/v1/models/?owner=nobody").json()["count"] == 0
    assert_problem(as_platform.get("/api/v1/models/?risk_tier=extreme"), 400, "risk_tier")
    assert_problem(as_platform.get("/api/v1/models/?page_size=0"), 400, "page_size")
    assert_problem(as_platform.get("/api/v1/models/?page=99"), 404)


@pytest.mark.django_db
def test_patch_model(as_platform, registered, role_user):
    role_user(Role.MODEL_OWNER, username="new-owner")
    response = as_platform.patch("/api/v1/models/fraud-scorer/", {"owner": "new-owner", "risk_tier": "medium"}, format="json")
    assert response.status_code == 200 and response.json()["owner"] == "new-owner"
    assert_problem(as_platform.patch("/api/v1/models/fraud-scorer/", {"name": "renamed"}, format="json"), 400, "name")
    assert_problem(as_platform.patch("/api/v1/models/nope/", {}, format="json"), 404)


@pytest.mark.django_db
def test_owner_cannot_patch_someone_elses_model(api, registered, role_user):
    other_owner = role_user(Role.MODEL_OWNER, username="mallory")
    api.force_authenticate(other_owner)
    assert_problem(api.patch("/api/v1/models/fraud-scorer/", {"risk_tier": "low"}, format="json"), 403)


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.RISK_OFFICER, Role.AUDITOR])
def test_readers_read_everything_and_change_nothing(api, registered, role_user, model_body, role):
    api.force_authenticate(role_user(role))
    assert api.get("/api/v1/models/fraud-scorer/versions/").status_code == 200
    assert_problem(api.post("/api/v1/models/", {**model_body, "name": "x"}, format="json"), 403)
    assert_problem(api.patch("/api/v1/models/fraud-scorer/", {"risk_tier": "low"}, format="json"), 403)
    assert_problem(api.post("/api/v1/models/fraud-scorer/versions/", {"version": "2.0.0", "artifact_uri": "s3://x"}, format="json"), 403)


# --- versions -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_register_version_and_read_it(as_platform, registered):
    response = as_platform.post(
        "/api/v1/models/fraud-scorer/versions/",
        {"version": "1.2.0", "artifact_uri": "s3://m/1.2.0", "thresholds": {"promote": {"error_rate_pp": 0.05}},
         "metrics": {"provider": "prometheus", "queries": {"errors": 'sum(rate(e{model="$model"}[$window]))'}}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response["Location"] == "/api/v1/models/fraud-scorer/versions/1.2.0/"
    got = as_platform.get("/api/v1/models/fraud-scorer/versions/1.2.0/").json()
    assert got["status"] == "registered" and got["change_type"] == "MINOR" and got["baseline"] == "1.0.0"
    assert got["thresholds"]["promote"]["error_rate_pp"] == 0.05
    assert got["thresholds"]["rollback"]["latency_p99_ratio"] == 1.5
    listed = as_platform.get("/api/v1/models/fraud-scorer/versions/?status=registered").json()
    assert [v["version"] for v in listed["results"]] == ["1.2.0"]
    assert_problem(as_platform.get("/api/v1/models/fraud-scorer/versions/?status=bogus"), 400, "status")
    assert_problem(as_platform.get("/api/v1/models/fraud-scorer/versions/9.9.9/"), 404)
    assert_problem(as_platform.get("/api/v1/models/nope/versions/"), 404)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"version": "1.2"}, "version"),
        ({"version": 120}, "version"),
        ({"version": "0.9.0"}, "version"),  # below production
        ({"artifact_uri": ""}, "artifact_uri"),
        ({"artifact_uri": "s" * 501}, "artifact_uri"),
        ({"thresholds": "strict"}, "thresholds"),
        ({"thresholds": {"promote": {"error_rate_pp": 1}}}, "thresholds.promote.error_rate_pp"),
        ({"thresholds": {"rollback": {"latency_p99_ratio": "fast"}}}, "thresholds.rollback.latency_p99_ratio"),
        ({"metrics": {"provider": "statsd"}}, "metrics.provider"),
        ({"metrics": {"queries": {"errors": "rate(x[5m]"}}}, "metrics.queries.errors"),
        ({"status": "canary"}, "status"),
        ({"status": "production"}, None),  # the model already has versions: 409, below
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_version_input(as_platform, registered, patch, field):
    body = {"version": "1.1.0", "artifact_uri": "s3://x", **patch}
    response = as_platform.post("/api/v1/models/fraud-scorer/versions/", body, format="json")
    if field is None:
        assert_problem(response, 409)
    else:
        assert_problem(response, 400, field)
    assert ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_frozen_thresholds_answer_409_saying_why(as_platform, registered):
    as_platform.post("/api/v1/models/fraud-scorer/versions/", {"version": "1.1.0", "artifact_uri": "s3://x"}, format="json")
    url = "/api/v1/models/fraud-scorer/versions/1.1.0/"
    assert as_platform.patch(url, {"thresholds": {"promote": {"quality_ratio": 0.99}}}, format="json").status_code == 200
    ModelVersion.objects.filter(version="1.1.0").update(status="canary")
    body = assert_problem(as_platform.patch(url, {"thresholds": {}}, format="json"), 409)
    assert "frozen" in body["detail"]


# --- idempotency ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_same_key_same_body_replays_without_acting_twice(as_platform, model_body):
    first = as_platform.post("/api/v1/models/", model_body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = as_platform.post("/api/v1/models/", model_body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true" and second["Location"] == first["Location"]
    assert AIModel.objects.count() == 1
    assert AuditEvent.objects.filter(action="model.registered").count() == 1


@pytest.mark.django_db
def test_same_key_different_body_is_422(as_platform, model_body):
    as_platform.post("/api/v1/models/", model_body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = as_platform.post("/api/v1/models/", {**model_body, "name": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert_problem(response, 422)
    assert AIModel.objects.count() == 1


@pytest.mark.django_db
def test_refusals_are_replayed_too(as_platform, model_body):
    bad = {**model_body, "risk_tier": "extreme"}
    first = as_platform.post("/api/v1/models/", bad, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    second = as_platform.post("/api/v1/models/", bad, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert first.status_code == second.status_code == 400
    assert second["Content-Type"].startswith(PROBLEM) and second.json() == first.json()


@pytest.mark.django_db
def test_keys_belong_to_their_user(api, platform, role_user, model_body):
    other = role_user(Role.PLATFORM, username="platform-2")
    api.force_authenticate(platform)
    api.post("/api/v1/models/", model_body, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    api.force_authenticate(other)
    response = api.post("/api/v1/models/", {**model_body, "name": "second"}, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert response.status_code == 201


@pytest.mark.django_db
def test_overlong_key_is_400(as_platform, model_body):
    assert_problem(as_platform.post("/api/v1/models/", model_body, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256), 400)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_parallel_retries_with_one_key_register_once(platform, model_body):
    results: list[tuple[int, dict]] = []
    barrier = threading.Barrier(4)

    def post() -> None:
        client = APIClient()
        client.force_authenticate(platform)
        barrier.wait()
        response = client.post("/api/v1/models/", model_body, format="json", HTTP_IDEMPOTENCY_KEY="race")
        results.append((response.status_code, response.json()))
        close_old_connections()
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for status, _ in results] == [201] * 4
    assert all(body == results[0][1] for _, body in results)
    assert AIModel.objects.count() == 1
    assert AuditEvent.objects.filter(action="model.registered").count() == 1


# --- audit API, schema, docs ----------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_list_filters_and_verify(api, registered, role_user):
    api.force_authenticate(role_user(Role.RISK_OFFICER))
    events = api.get("/api/v1/audit/?object=model:fraud-scorer").json()["results"]
    assert [e["action"] for e in events] == ["model.registered"]
    assert api.get("/api/v1/audit/?actor=platform&action=version.").json()["count"] == 1
    assert api.get("/api/v1/audit/?since=2999-01-01T00:00:00Z").json()["count"] == 0
    assert_problem(api.get("/api/v1/audit/?since=yesterday"), 400, "since")
    verify = api.get("/api/v1/audit/verify/").json()
    assert verify["ok"] is True and verify["first_bad_seq"] is None and verify["length"] >= 2


@pytest.mark.django_db
def test_service_accounts_cannot_read_the_audit_trail(api, role_user):
    bot = role_user(Role.SERVICE_ACCOUNT)
    api.force_authenticate(bot)
    assert_problem(api.get("/api/v1/audit/verify/"), 403)


@pytest.mark.django_db
def test_unknown_api_path_is_a_problem_404(as_platform):
    assert_problem(as_platform.get("/api/v1/does-not-exist/"), 404)


@pytest.mark.django_db
def test_schema_and_docs_are_served_without_a_cdn(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/models/" in schema.content
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs
    assert "cdn" not in docs.lower() and "https://" not in docs.replace("https://github", "")


@pytest.mark.django_db
def test_nul_characters_anywhere_in_input_are_400(as_platform, model_body):
    body = {**model_body, "consumers": [{"name": "a\x00", "contact": "c", "channel": "email"}]}
    assert_problem(as_platform.post("/api/v1/models/", body, format="json", HTTP_IDEMPOTENCY_KEY="nul-1"), 400, "consumers[0].name")
    weird = {**model_body, "bad\x00key": 1}
    response = as_platform.post("/api/v1/models/", weird, format="json", HTTP_IDEMPOTENCY_KEY="nul-2")
    assert_problem(response, 400)
    replay = as_platform.post("/api/v1/models/", weird, format="json", HTTP_IDEMPOTENCY_KEY="nul-2")
    assert replay.json() == response.json()


@pytest.mark.django_db
def test_stored_request_hash_is_keyed_not_a_plain_digest_of_the_body(as_platform, model_body):
    import hashlib
    import json

    from governance.tokens.models import IdempotencyRecord

    as_platform.post("/api/v1/models/", model_body, format="json", HTTP_IDEMPOTENCY_KEY="hmac-1")
    record = IdempotencyRecord.objects.get(key="hmac-1")
    body = json.dumps(model_body, sort_keys=True, separators=(",", ":")).encode()
    plain = hashlib.sha256(b"POST /api/v1/models/\n" + body).hexdigest()
    assert record.request_hash != plain and len(record.request_hash) == 64
