"""Pushed metric windows are believed only when plausible: each refused window is a 400 naming
the field, is counted on /metrics, and stores nothing. Each shape is one the review pushed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from canaryhub.metrics import scrape
from governance.access.permissions import Role
from governance.tokens.services import token_create
from monitoring.models import Observation
from releases.register import services
from tests.factories import AIModelFactory
from tests.releases.register.test_api import assert_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def pusher(role_user, settings) -> APIClient:
    settings.STALENESS_LIMIT_S = 300
    settings.EVALUATION_WINDOW_S = 300
    settings.OBSERVATION_CLOCK_SKEW_S = 60
    platform = role_user(Role.PLATFORM, username="platform")
    bot = role_user(Role.SERVICE_ACCOUNT, username="metrics-bot")
    model = AIModelFactory(name="scorer")
    services.version_register(actor=platform, model_name=model.name, version="1.0.0", artifact_uri="s3://1",
                              status="production")
    _, secret = token_create(actor=platform, user=bot, name="metrics", scope=["scorer"], purpose="observations")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def window(**overrides):
    end = timezone.now().replace(microsecond=0)
    body = {"model": "scorer", "version": "1.0.0", "window_start": (end - timedelta(seconds=60)).isoformat(),
            "window_end": end.isoformat(), "requests": 100, "errors": 1, "latency_p99_ms": 200.0,
            "latency_buckets": [[0.1, 40], [0.5, 99], ["+Inf", 100]], "quality_sum": 80.0, "quality_count": 100}
    return {**body, **overrides}


def refused_count(field: str) -> float:
    for line in scrape().decode().splitlines():
        if line.startswith(f'canaryhub_observations_refused_total{{field="{field}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_plausible_window_is_stored(pusher):
    response = pusher.post("/api/v1/observations/", window(), format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        # A window "ending" in 2099 counts in every evaluation and never goes stale.
        ({"window_start": "2099-01-01T00:00:00Z", "window_end": "2099-01-01T00:01:00Z"}, "window_end"),
        # Times relative to when the test runs (a function of now), not to when it was collected.
        (lambda now: {"window_end": (now + timedelta(minutes=5)).isoformat()}, "window_end"),
        (lambda now: {"window_start": (now - timedelta(hours=2)).isoformat(),
                      "window_end": (now - timedelta(hours=1)).isoformat()}, "window_end"),  # older than staleness
        (lambda now: {"window_start": (now - timedelta(hours=1)).isoformat()}, "window_start"),  # longer than the window
        ({"latency_p99_ms": 1e308}, "latency_p99_ms"),  # rolled a canary back
        ({"anomaly_alerts": 2**40}, "anomaly_alerts"),
        ({"safety_violations": 101}, "safety_violations"),
        ({"quality_count": 101, "quality_sum": 1}, "quality_count"),
        ({"latency_buckets": [[0.1, 10**12], ["+Inf", 10**12]]}, "latency_buckets"),  # 10^12 on 100 requests
        ({"latency_buckets": [[i / 1000, i] for i in range(1, 10_001)] + [["+Inf", 10_000]]}, "latency_buckets"),
        ({"latency_buckets": [["NaN", 1], ["+Inf", 2]]}, "latency_buckets"),
        ({"latency_buckets": [[0.1, "inf"], ["+Inf", 2]]}, "latency_buckets"),
        ({"requests": 2**63}, "requests"),
        ({"tokens_in": 2**64}, "tokens_in"),
        ({"cost_usd": 1e300}, "cost_usd"),
        ({"errors": -1}, "errors"),
    ],
)
def test_an_implausible_window_is_refused_naming_the_field_and_counted(pusher, overrides, field):
    if callable(overrides):
        overrides = overrides(timezone.now())
    before = refused_count(field)
    response = pusher.post("/api/v1/observations/", window(**overrides), format="json")
    assert_problem(response, 400)
    assert field in response.json().get("errors", {}), response.json()
    assert refused_count(field) == before + 1
    assert not Observation.objects.exists()


def test_the_window_may_end_within_the_clock_skew(pusher):
    end = timezone.now().replace(microsecond=0) + timedelta(seconds=30)
    response = pusher.post("/api/v1/observations/", window(window_start=(end - timedelta(seconds=60)).isoformat(),
                                                           window_end=end.isoformat()), format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(("value", "expected"), [(-1, 400), ("many", 400), (1.5, 400), (None, 400), (101, 400),
                                                 ([3], 400), (2**63, 400)])
def test_schema_failures_are_a_count_within_the_requests(pusher, value, expected):
    response = pusher.post("/api/v1/observations/", window(schema_failures=value), format="json")
    assert_problem(response, expected)
    assert "schema_failures" in response.json().get("errors", {}), response.json()
    assert not Observation.objects.exists()


def test_schema_failures_are_stored_and_read_by_the_push_provider(pusher):
    from monitoring.providers import _sum_observations

    response = pusher.post("/api/v1/observations/", window(schema_failures=3), format="json")
    assert response.status_code == 201, response.content
    assert _sum_observations(list(Observation.objects.all())).schema_failures == 3


@pytest.mark.parametrize("value", [-1, "down", 2.5, None, 2, 2**63])
def test_unavailable_requests_are_a_count_within_the_errors(pusher, value):
    response = pusher.post("/api/v1/observations/", window(unavailable=value), format="json")  # errors: 1
    assert_problem(response, 400)
    assert "unavailable" in response.json().get("errors", {}), response.json()
    assert not Observation.objects.exists()


def test_unavailable_requests_are_stored_and_read_by_the_push_provider(pusher):
    from monitoring.providers import _sum_observations

    response = pusher.post("/api/v1/observations/", window(errors=3, unavailable=2), format="json")
    assert response.status_code == 201, response.content
    assert _sum_observations(list(Observation.objects.all())).unavailable == 2


@pytest.mark.parametrize("value", [[[64, -1], ["+Inf", 5]], "long", [[64, 10], [32, 20], ["+Inf", 30]],
                                   [[64, 10], ["+Inf", 101]], [[64, "ten"], ["+Inf", 20]], [[64, 10]]])
def test_response_tokens_buckets_are_cumulative_counts_within_the_requests(pusher, value):
    response = pusher.post("/api/v1/observations/", window(response_tokens_buckets=value), format="json")
    assert_problem(response, 400)
    assert "response_tokens_buckets" in response.json().get("errors", {}), response.json()
    assert not Observation.objects.exists()


def test_response_tokens_buckets_are_optional_stored_and_read_by_the_push_provider(pusher):
    from monitoring.providers import _sum_observations

    response = pusher.post("/api/v1/observations/", window(response_tokens_buckets=[[128, 60], ["+Inf", 99]]),
                           format="json")
    assert response.status_code == 201, response.content
    assert _sum_observations(list(Observation.objects.all())).response_tokens_buckets == [(128.0, 60.0),
                                                                                         (float("inf"), 99.0)]
