"""Property-based fuzzing of the whole REST API from its own OpenAPI document: whatever
schemathesis sends, the server must never answer 5xx, and must answer with what the schema
documents, and must refuse what the schema forbids. Bounded (examples per operation) so the run stays well under a minute."""

from __future__ import annotations

import json
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


# --- hostile shapes the generator does not reach ---------------------------------------------------

HOSTILE_VALUES = [
    2**63,  # past a 64-bit integer (OverflowError on SQLite)
    2**31,  # past a PostgreSQL integer column
    -(2**63) - 1,
    1e308,
    "NaN",
    [["NaN", 1], ["+Inf", 1]],  # histogram buckets with a NaN bound
    [[0.1, "inf"], ["+Inf", 1]],
    "x" * 20_000,  # free text far over any bound
    {"a": {"b": {"c": [[[[[[[[[[1]]]]]]]]]]}}},
]


def _operations() -> list[tuple[str, str, dict]]:
    """(method, path template, example request body) of every operation that takes a body."""
    document = schema.raw_schema
    out = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("post", "patch", "put"):
                continue
            content = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {})
            examples = [e.get("value") for e in (content.get("examples") or {}).values()]
            body = next((e for e in examples if isinstance(e, dict)), {})
            out.append((method.upper(), path, body))
    return out


def _fill(path: str, canary_id: int) -> str:
    return (path.replace("{name}", "fraud-scorer").replace("{version}", "1.0.0").replace("{id}", str(canary_id))
            .replace("{pk}", str(canary_id)))


@pytest.mark.django_db
def test_hostile_bodies_never_reach_a_500(api_data, settings):
    """Every operation that takes a body, sent each hostile value in each field of its example, a
    body nested 100,000 levels deep and a body over the upload limit: never a 5xx, and a 413
    problem document for the body that is too big."""
    from django.test import Client  # noqa: PLC0415 - after the fixture above unhooked the connection closing

    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {api_data.token}")
    failures = []
    operations = _operations()
    assert len(operations) >= 10
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200_000
    deep = "[" * 100_000 + "]" * 100_000
    for method, template, example in operations:
        path = _fill(template, api_data.canary_id)
        bodies = [{**example, key: value} for key in example for value in HOSTILE_VALUES]
        for body in [*bodies, deep, '{"x": "' + "a" * 300_000 + '"}']:
            data = body if isinstance(body, str) else json.dumps(body)
            response = client.generic(method, path, data, content_type="application/json")
            if response.status_code >= 500 or not response["Content-Type"].startswith("application/problem+json") \
                    and response.status_code >= 400:
                failures.append((method, path, data[:120], response.status_code, response.content[:200]))
            if body is not deep and isinstance(body, str):
                # 413, unless who may not act was refused before the body was read.
                assert response.status_code in (413, 403, 404), (method, path, response.status_code)
    assert not failures, failures[:10]
