"""Segments through the tick: providers keep the segment label, each segment is judged against
production's same segment, its rollback rolls the canary back and its record is stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.access.permissions import Role
from monitoring.models import Evaluation, Observation
from monitoring.providers import PrometheusProvider
from monitoring.samples import Target
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.register import services as register

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def canary(role_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="ranker", display_name="r", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="ranker", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="ranker", version="1.1.0", artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        return lifecycle.canary_initiate(actor=owner, model_name="ranker", version="1.1.0",
                                         now=NOW - timedelta(minutes=30))


def push(version, segment, requests_, errors):
    Observation.objects.create(model="ranker", version=version, segment=segment,
                               window_start=NOW - timedelta(seconds=60), window_end=NOW - timedelta(seconds=5),
                               requests=requests_, errors=errors, latency_p99_ms=200.0,
                               quality_sum=0.8 * requests_, quality_count=requests_)


def test_a_segment_regression_hidden_in_the_aggregate_rolls_back_and_is_stored(canary,
                                                                               django_capture_on_commit_callbacks):
    # Four regions; "apac" fails +2 pp, the others improve: the aggregate is within limits.
    for region, prod_errors, canary_errors in (("us", 1000, 30), ("eu", 1000, 30), ("latam", 1000, 30),
                                               ("apac", 1000, 300)):
        push("1.0.0", region, 100_000, prod_errors)
        push("1.1.0", region, 10_000, canary_errors)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = loop.evaluate_tick(now=NOW, canary_ids=[canary.pk]).outcomes[0]
    assert outcome.rollback.startswith("segment apac: error rate 3.00% vs production 1.00%")
    canary.refresh_from_db()
    assert canary.state == "rolled_back"
    evaluation = Evaluation.objects.get(canary=canary, window_end=NOW)
    assert evaluation.inputs["rollback_window"]["error_rate"]["difference"] < 0.005  # aggregate within limits
    stored = evaluation.inputs["segments"]
    assert set(stored["by_segment"]) == {"us", "eu", "latam", "apac"} and stored["judged"]["segments"] == 4
    assert stored["by_segment"]["apac"]["stage"]["canary"]["errors"] == 300
    assert [t.get("segment") for t in evaluation.inputs["rollback_triggers"]] == ["apac"]


def test_prometheus_provider_keeps_each_segment_with_the_same_queries():
    class Answers:
        def __init__(self):
            self.queries = []

        def custom_query(self, query, params=None, timeout=None):
            self.queries.append(query)
            if "model_requests_total" not in query or "timestamp" in query:
                return [] if "timestamp" not in query else [
                    {"metric": {"model": "m", "version": v}, "value": [0, str(NOW.timestamp())]} for v in ("1.0.0", "1.1.0")]
            rows = []
            for version, scale in (("1.0.0", 10), ("1.1.0", 1)):
                for segment, errors in (("eu", 5), ("us", 50)):
                    rows.append({"metric": {"model": "m", "version": version, "segment": segment, "outcome": "error"},
                                 "value": [0, str(errors * scale)]})
                    rows.append({"metric": {"model": "m", "version": version, "segment": segment,
                                            "outcome": "success"}, "value": [0, str(1000 * scale)]})
            return rows

    client = Answers()
    provider = PrometheusProvider(url="http://x", client=client)
    reading = provider.fetch([Target(1, "m", "1.1.0", "1.0.0", None, NOW - timedelta(hours=1))], now=NOW,
                             window_s=300)[1]
    assert reading.error is None
    assert reading.window["canary"].requests == 2055 and reading.window["canary"].errors == 55
    assert set(reading.segments_window) == {"eu", "us"}
    assert reading.segments_window["us"]["canary"].errors == 50 and reading.segments_window["us"]["production"].errors == 500
    assert reading.segments_totals["eu"]["production"].requests == 10_050
    assert provider.query_count == len(client.queries) <= 18


def test_prometheus_provider_reads_tokens_cost_and_guardrail_blocks_per_segment():
    def rows(query):
        out = []
        for version, scale in (("1.0.0", 10), ("1.1.0", 1)):
            for segment in ("eu", "us"):
                labels = {"model": "m", "version": version, "segment": segment}
                if "model_requests_total" in query and "timestamp" not in query:
                    out.append({"metric": {**labels, "outcome": "success"}, "value": [0, str(100 * scale)]})
                elif "model_tokens_total" in query:
                    out += [{"metric": {**labels, "direction": "input"}, "value": [0, str(35_000 * scale)]},
                            {"metric": {**labels, "direction": "output"}, "value": [0, str(12_000 * scale)]}]
                elif "model_cost_usd_total" in query:
                    out.append({"metric": labels, "value": [0, str(0.5 * scale)]})
                elif "model_guardrail_blocks_total" in query:
                    out.append({"metric": labels, "value": [0, str(3)]})
        return out

    class Answers:
        def custom_query(self, query, params=None, timeout=None):
            return rows(query)

    reading = PrometheusProvider(url="http://x", client=Answers()).fetch(
        [Target(1, "m", "1.1.0", "1.0.0", None, NOW - timedelta(hours=1))], now=NOW, window_s=300)[1]
    canary = reading.window["canary"]
    assert (canary.tokens_in, canary.tokens_out, canary.cost_usd, canary.guardrail_blocks) == (70_000, 24_000, 1.0, 6)
    assert canary.tokens_per_request == 470 and reading.segments_window["eu"]["production"].tokens_in == 350_000
