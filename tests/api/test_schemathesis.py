"""Property-based fuzzing of the whole REST API from its own OpenAPI document: whatever
schemathesis sends, the server must never answer 5xx, and must answer with what the schema
documents, and must refuse what the schema forbids. Bounded (examples per operation) so the run stays well under a minute."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, settings

from canaryhub.wsgi import application
from governance.access.permissions import Role
from governance.tokens.services import token_create
from releases.canaries import services as lifecycle
from releases.register import services
from tests.factories import make_evaluation

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Calling the WSGI app directly fires request_started/request_finished, which close the database
    connection in the middle of the test's transaction; Django's own test client disconnects
    the same handler for the same reason."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@dataclass(frozen=True)
class ApiData:
    token: str
    canary_id: int


@pytest.fixture
def api_data(role_user) -> ApiData:
    """A register with a high-risk model, and a medium-risk model whose canary is running with an
    evaluation, so that the canary operations answer from real rows and not only with 404s."""
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    services.model_register(
        actor=platform, name="fraud-scorer", display_name="Fraud", risk_tier="high", owner="owner", on_call="x"
    )
    services.version_register(actor=platform, model_name="fraud-scorer", version="1.0.0", artifact_uri="s3://x", status="production")
    services.model_register(
        actor=platform, name="ranker", display_name="Ranker", risk_tier="medium", owner="owner", on_call="x"
    )
    services.version_register(actor=platform, model_name="ranker", version="1.0.0", artifact_uri="s3://r1", status="production")
    services.version_register(actor=platform, model_name="ranker", version="1.1.0", artifact_uri="s3://r2")
    canary = lifecycle.canary_initiate(actor=owner, model_name="ranker", version="1.1.0")
    make_evaluation(canary, window_end=timezone.now())
    _, secret = token_create(actor=None, user=platform, name="fuzz")
    return ApiData(token=secret, canary_id=canary.pk)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_matches_its_schema(case, api_data):
    if case.meta is not None and case.meta.generation.mode.is_positive and "id" in (case.path_parameters or {}):
        # A random canary id is a 404 the negative cases already cover; valid requests go to the
        # canary that exists, so its answers (and their schema) are exercised too.
        case.path_parameters["id"] = api_data.canary_id
    # Semantic refusals of schema-valid input (an unknown owner, a reused idempotency key) are
    # correct 400/409/422 answers, so "positive data acceptance" is the one check left out.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {api_data.token}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
