"""Drive a canary through its whole schedule with signatures, as tests/releases/canaries/test_services does."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from governance.tokens.services import token_create
from releases.canaries import services as lifecycle
from releases.register import services
from tests.factories import PASSWORD, make_evaluation

DAY = timedelta(hours=24)
STATEMENT = "I reviewed the evaluation and approve this step."


def make_model(platform, *, name: str = "scorer", tier: str = "medium", version: str = "1.1.0") -> None:
    services.model_register(actor=platform, name=name, display_name=name, risk_tier=tier, owner="owner",
                            on_call="oncall@x")
    services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name=name, version=version, artifact_uri="s3://2")


def sign(user, canary, role, *, now, evaluation=None):
    return lifecycle.canary_sign(
        actor=user, canary_id=canary.pk, role=role, statement=STATEMENT, password=PASSWORD,
        evaluation_hash=evaluation.content_hash if evaluation else "", now=now,
    )


def run_to_completion(*, owner, mrm, model_name: str = "scorer", version: str = "1.1.0"):
    """A medium-risk standard canary from 1% to COMPLETED (owner signs each stage, MRM the last)."""
    start = timezone.now() - 7 * DAY
    canary = lifecycle.canary_initiate(actor=owner, model_name=model_name, version=version, now=start)
    now = start
    for _ in range(5):
        now += DAY
        canary.refresh_from_db()
        evaluation = make_evaluation(canary, window_end=now - timedelta(seconds=30))
        final_step = canary.stage_index == len(canary.stages) - 2
        sign(owner, canary, "owner", now=now, evaluation=evaluation)
        if final_step:
            sign(mrm, canary, "mrm", now=now, evaluation=evaluation)
    canary.refresh_from_db()
    assert canary.state == "completed", canary.state
    return canary


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def bot_client(people) -> Client:
    """A client with the CI service account's token, scoped to the helpers' model."""
    _, secret = token_create(actor=people["bot"], user=people["bot"], name="ci", scope=["scorer"])
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
