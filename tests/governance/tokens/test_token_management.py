"""Managing API tokens through the API and the /tokens/ page, tried as each role would abuse it:
an owner revoking someone else's token, a token minting a successor, an anonymous caller, and
the secret surfacing again after the one answer that shows it."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.tokens.models import ApiToken
from governance.tokens.services import MAX_ACTIVE_PERSONAL_TOKENS, token_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "other": role_user(Role.MODEL_OWNER, username="other"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "nobody": role_user(username="nobody"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }


def session(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _scorer(platform):
    from releases.register import services

    services.model_register(actor=platform, name="scorer", display_name="scorer", risk_tier="medium", owner="owner",
                            on_call="x")


def test_a_person_creates_a_token_that_is_shown_once_and_never_again(people):
    owner = session(people["owner"])
    created = owner.post("/api/v1/tokens/", {"name": "laptop"}, format="json")
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert secret.startswith(f"chk_{created.json()['prefix']}_")
    # It works, with the owner's rights.
    assert bearer(secret).get("/api/v1/models/").status_code == 200
    # Never again: not in the list, the page, or any audit event.
    listed = owner.get("/api/v1/tokens/")
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()["results"]] == ["laptop"]
    assert secret not in listed.content.decode() and "secret" not in listed.json()["results"][0]
    page = Client()
    page.force_login(people["owner"])
    assert secret not in page.get("/tokens/").content.decode()
    events = list(AuditEvent.objects.filter(action="token.created"))
    assert len(events) == 1 and events[0].actor_name == "owner"
    assert secret not in json.dumps(events[0].payload) and secret.split("_")[2] not in json.dumps(events[0].payload)
    assert ApiToken.objects.get().key_hash != secret


def test_a_token_cannot_mint_a_token(people):
    _scorer(people["platform"])
    _, ci = token_create(actor=people["platform"], user=people["bot"], name="ci", scope=["scorer"])
    _, personal = token_create(actor=people["platform"], user=people["platform"], name="p")
    before = ApiToken.objects.count()
    for secret in (ci, personal):
        refused = bearer(secret).post("/api/v1/tokens/", {"name": "successor"}, format="json")
        assert refused.status_code == 403, refused.content
    assert ApiToken.objects.count() == before
    # A CI token neither lists nor revokes.
    assert bearer(ci).get("/api/v1/tokens/").status_code == 403
    own = ApiToken.objects.get(name="ci").prefix
    assert bearer(ci).post(f"/api/v1/tokens/{own}/revoke/", {}, format="json").status_code == 403


def test_an_owner_cannot_revoke_or_see_someone_elses_token(people):
    other_token, other_secret = token_create(actor=None, user=people["other"], name="theirs")
    owner = session(people["owner"])
    answer = owner.post(f"/api/v1/tokens/{other_token.prefix}/revoke/", {}, format="json")
    assert answer.status_code == 404, answer.content
    assert owner.post("/api/v1/tokens/nosuch/revoke/", {}, format="json").status_code == 404
    assert owner.get("/api/v1/tokens/").json()["results"] == []
    other_token.refresh_from_db()
    assert other_token.revoked_at is None
    assert bearer(other_secret).get("/api/v1/models/").status_code == 200
    # Through the page too.
    page = Client()
    page.force_login(people["owner"])
    assert page.post(f"/tokens/{other_token.prefix}/revoke/").status_code == 404
    other_token.refresh_from_db()
    assert other_token.revoked_at is None


def test_anonymous_and_roleless_callers_are_refused(people):
    token, _ = token_create(actor=None, user=people["owner"], name="t")
    anonymous = APIClient()
    assert anonymous.get("/api/v1/tokens/").status_code == 401
    assert anonymous.post("/api/v1/tokens/", {"name": "x"}, format="json").status_code == 401
    assert anonymous.post(f"/api/v1/tokens/{token.prefix}/revoke/", {}, format="json").status_code == 401
    assert Client().get("/tokens/").status_code == 302  # to the login page
    assert Client().post("/tokens/create/", {"name": "x"}).status_code == 302
    nobody = session(people["nobody"])
    assert nobody.post("/api/v1/tokens/", {"name": "x"}, format="json").status_code == 403
    page = Client()
    page.force_login(people["nobody"])
    assert page.get("/tokens/").status_code == 403
    assert page.post("/tokens/create/", {"name": "x"}).status_code == 403
    assert ApiToken.objects.count() == 1


def test_the_owner_revokes_their_own_token_and_it_stops_working_audited(people):
    token, secret = token_create(actor=None, user=people["owner"], name="old")
    owner = session(people["owner"])
    answer = owner.post(f"/api/v1/tokens/{token.prefix}/revoke/", {"reason": "laptop replaced"}, format="json")
    assert answer.status_code == 200 and answer.json()["revoked_at"]
    assert bearer(secret).get("/api/v1/models/").status_code == 401
    event = AuditEvent.objects.get(action="token.revoked")
    assert event.actor_name == "owner" and event.payload["reason"] == "laptop replaced"
    again = owner.post(f"/api/v1/tokens/{token.prefix}/revoke/", {}, format="json")
    assert again.status_code == 409


def test_a_platform_engineer_lists_and_revokes_any_token_a_service_accounts_included(people):
    _scorer(people["platform"])
    ci, ci_secret = token_create(actor=people["platform"], user=people["bot"], name="ci", scope=["scorer"])
    token_create(actor=None, user=people["owner"], name="owner's")
    platform = session(people["platform"])
    listed = platform.get("/api/v1/tokens/").json()["results"]
    assert {(t["user"], t["kind"]) for t in listed} == {("ci", "service account"), ("owner", "personal")}
    assert next(t for t in listed if t["user"] == "ci")["models"] == ["scorer"]
    answer = platform.post(f"/api/v1/tokens/{ci.prefix}/revoke/", {"reason": "leaked in a build log"}, format="json")
    assert answer.status_code == 200
    assert bearer(ci_secret).get("/api/v1/models/").status_code == 401
    event = AuditEvent.objects.get(action="token.revoked")
    assert (event.actor_name, event.payload["user"]) == ("platform", "ci")


def test_the_page_shows_the_secret_once_and_a_platform_engineer_revokes_from_it(people):
    page = Client()
    page.force_login(people["owner"])
    created = page.post("/tokens/create/", {"name": "notebook"})
    assert created.status_code == 201
    token = ApiToken.objects.get(name="notebook")
    text = created.content.decode()
    secret = text.split('data-testid="token-secret">')[1].split("<")[0]
    assert secret.startswith(f"chk_{token.prefix}_") and bearer(secret).get("/api/v1/models/").status_code == 200
    assert created["Cache-Control"].startswith("max-age=0")
    assert secret not in page.get("/tokens/").content.decode()
    refused = page.post("/tokens/create/", {"name": ""})
    assert refused.status_code == 400 and ApiToken.objects.count() == 1
    admin = Client()
    admin.force_login(people["platform"])
    assert token.prefix in admin.get("/tokens/").content.decode()
    assert admin.post(f"/tokens/{token.prefix}/revoke/", {"reason": "left the team"}).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(secret).get("/api/v1/models/").status_code == 401


def test_a_person_holds_a_bounded_number_of_active_tokens(people):
    for i in range(MAX_ACTIVE_PERSONAL_TOKENS):
        token_create(actor=None, user=people["owner"], name=f"t{i}")
    answer = session(people["owner"]).post("/api/v1/tokens/", {"name": "one more"}, format="json")
    assert answer.status_code == 409
