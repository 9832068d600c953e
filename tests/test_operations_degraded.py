"""A dependency down: a committed act is never answered with a 500 because its prompt could not
be queued, and a request the database cannot serve is a 503 problem with Retry-After."""

from __future__ import annotations

from datetime import timedelta

import kombu.exceptions
import pytest
from django.db import OperationalError, connection
from rest_framework.test import APIClient

from canaryhub import events
from governance.access.permissions import Role
from governance.tokens.services import token_create
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.canaries.tasks import push_split
from releases.register import services as register
from releases.routing.models import RouterPush


def failures(fact):
    return events.ANNOUNCE_FAILURES.labels(fact=fact)._value.get()


@pytest.mark.django_db(transaction=True)
def test_a_manual_rollback_with_the_broker_down_is_answered_200_and_its_push_is_swept(
        role_user, settings, tmp_path, monkeypatch):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="scorer", display_name="s", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0")

    def broker_down(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Error 111 connecting to localhost:6379. Connection refused.")

    monkeypatch.setattr(push_split, "apply_async", broker_down)
    before = failures("canary.split_changed")
    client = APIClient()
    client.force_authenticate(owner)
    response = client.post(f"/api/v1/canaries/{canary.pk}/rollback/", {"reason": "users complain"}, format="json")
    assert response.status_code == 200, response.content
    assert failures("canary.split_changed") == before + 1
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK and canary.traffic_percent == 0
    # The push is on record from the moment it was queued, and nothing carried it out.
    pushes = RouterPush.objects.filter(canary=canary, generation=canary.split_generation)
    assert [p.status for p in pushes] == [RouterPush.Status.QUEUED]
    # The sweeper carries the 0 % push the broker refused.
    swept = loop.rollbacks_sweep(now=canary.ended_at + timedelta(seconds=settings.ROLLBACK_SWEEP_AFTER_S + 1))
    assert swept["pushed"] == 1
    applied = RouterPush.objects.filter(canary=canary, generation=canary.split_generation,
                                        status=RouterPush.Status.APPLIED)
    assert [p.ok for p in applied] == [True]


@pytest.mark.django_db
def test_with_the_database_down_the_api_answers_503_with_retry_after(role_user, monkeypatch):
    platform = role_user(Role.PLATFORM, username="platform")
    role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="scorer", display_name="s", risk_tier="medium", owner="owner",
                            on_call="x")
    bot = role_user(Role.SERVICE_ACCOUNT, username="ci")
    _, secret = token_create(actor=platform, user=bot, name="ci", scope=["scorer"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    def refused(*args, **kwargs):
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    monkeypatch.setattr(connection, "create_cursor", refused)
    body = {"model": "scorer", "version": "1.1.0", "window_start": "2026-01-01T00:00:00Z",
            "window_end": "2026-01-01T00:01:00Z", "requests": 100}
    for response in (client.post("/api/v1/observations/", body, format="json"), client.get("/api/v1/canaries/")):
        assert response.status_code == 503, response.content
        assert response["Content-Type"] == "application/problem+json"
        assert response["Retry-After"] == "5"
        assert response.json()["type"].endswith("database-unavailable")


def test_a_failing_subscriber_is_logged_and_counted_not_raised(db, caplog, django_capture_on_commit_callbacks):
    def refuses(**data):
        raise ConnectionError("broker gone")

    seen = []
    events.subscribe("test.fact", refuses)
    events.subscribe("test.fact", lambda **data: seen.append(data))
    try:
        before = failures("test.fact")
        with django_capture_on_commit_callbacks(execute=True):
            events.announce("test.fact", x=1)
        assert failures("test.fact") == before + 1 and seen == [{"x": 1}]
        assert "left to the sweeper" in caplog.text
    finally:
        events._handlers.pop("test.fact")
