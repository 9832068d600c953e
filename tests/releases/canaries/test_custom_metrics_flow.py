"""Custom metrics end to end on the push provider: declared through the reviewed metric
configuration change, frozen on the canary, pushed with each window, judged as a gate on the
canary page and rolling the canary back; and who may not declare them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.tokens.services import token_create
from monitoring.models import Evaluation, Observation
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register
from releases.register.models import MetricConfigChange, ModelVersion
from tests.releases.register.test_api import assert_problem

pytestmark = pytest.mark.django_db

REFUSALS = {"kind": "ratio", "worse": "higher", "promote_tolerance": 0.5, "rollback_threshold": 2}
DECLARED = {"provider": "push", "custom": {"refusals": REFUSALS}}


@pytest.fixture
def people(role_user, settings, tmp_path):
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    people = {
        "platform": role_user(Role.PLATFORM, username="platform"),
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "gov": role_user(Role.AI_GOVERNANCE, username="gov"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="bot"),
    }
    platform = people["platform"]
    register.model_register(actor=platform, name="scorer", display_name="s", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    return people


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def token(people, purpose) -> APIClient:
    _, secret = token_create(actor=people["platform"], user=people["bot"], name=purpose, scope=["scorer"],
                             purpose=purpose)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_only_the_reviewed_change_of_a_platform_engineer_declares_custom_metrics(people):
    url = "/api/v1/models/scorer/versions/1.1.0/"
    owner, ci, platform = client_for(people["owner"]), token(people, "ci"), client_for(people["platform"])
    for client in (owner, ci):
        assert_problem(client.patch(url, {"metrics": DECLARED}, format="json"), 403)
        assert_problem(client.post("/api/v1/models/scorer/versions/", {
            "version": "1.2.0", "artifact_uri": "s3://3", "metrics": DECLARED}, format="json"), 403)
        # Nor through the thresholds an owner may tighten: custom metrics are not thresholds.
        assert_problem(client.patch(url, {"thresholds": {"rollback": {"refusals": 0.1}}}, format="json"), 400,
                       "thresholds.rollback.refusals")
        assert_problem(client.patch(url, {"thresholds": {"custom": {"refusals": REFUSALS}}}, format="json"), 400,
                       "thresholds.custom")
    assert APIClient().patch(url, {"metrics": DECLARED}, format="json").status_code in (401, 403)
    assert not MetricConfigChange.objects.exists()
    assert "custom" not in ModelVersion.objects.get(version="1.1.0").metrics
    # A platform engineer's bad declaration: 400 naming the field, nothing recorded.
    bad = {"provider": "push", "custom": {"refusals": {**REFUSALS, "promql": {"numerator": "x_total"}},
                                          "latency_p99": REFUSALS}}
    body = assert_problem(platform.patch(url, {"metrics": bad}, format="json"), 400,
                          "metrics.custom.refusals.promql", "metrics.custom.latency_p99")
    assert body["status"] == 400 and not MetricConfigChange.objects.exists()
    too_many = {"provider": "push", "custom": {f"m{i}": REFUSALS for i in range(11)}}
    assert_problem(platform.patch(url, {"metrics": too_many}, format="json"), 400, "metrics.custom")
    # A good one waits for review, like any metric configuration change.
    assert platform.patch(url, {"metrics": DECLARED}, format="json").status_code == 200
    assert MetricConfigChange.objects.get().status == "pending"
    assert "custom" not in ModelVersion.objects.get(version="1.1.0").metrics


def push_window(pusher, version, *, requests, refusals, answers, end):
    body = {"model": "scorer", "version": version, "window_start": (end - timedelta(seconds=60)).isoformat(),
            "window_end": end.isoformat(), "requests": requests, "errors": requests // 1000,
            "latency_p99_ms": 200.0, "quality_sum": 0.8 * requests, "quality_count": requests,
            "custom": {"refusals": {"numerator": refusals, "denominator": answers}}}
    response = pusher.post("/api/v1/observations/", body, format="json")
    assert response.status_code == 201, response.content


def test_declared_reviewed_pushed_gated_and_rolled_back(people, client, django_capture_on_commit_callbacks):
    platform = client_for(people["platform"])
    assert platform.patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": DECLARED},
                          format="json").status_code == 200
    change = MetricConfigChange.objects.get()
    register.metric_change_review(actor=people["gov"], change_id=change.pk, approve=True)
    register.metric_change_review(actor=people["mrm"], change_id=change.pk, approve=True)
    with django_capture_on_commit_callbacks(execute=True):
        canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0",
                                           now=timezone.now() - timedelta(minutes=30))
    assert canary.metrics["custom"]["refusals"]["kind"] == "ratio"  # frozen at initiation
    pusher = token(people, "observations")
    # Pushed custom values are checked like the rest of a window.
    now = timezone.now().replace(microsecond=0)
    end = now - timedelta(seconds=90)
    bad = pusher.post("/api/v1/observations/", {
        "model": "scorer", "version": "1.1.0", "window_start": (end - timedelta(seconds=60)).isoformat(),
        "window_end": end.isoformat(), "requests": 10, "custom": {"refusals": {"numerator": 11, "denominator": 10}}},
        format="json")
    assert_problem(bad, 400, "custom.refusals.numerator")
    assert not Observation.objects.exists()

    # Healthy: as many refusals as production; the gate is judged and recorded.
    push_window(pusher, "1.0.0", requests=100_000, refusals=2000, answers=100_000, end=end)
    push_window(pusher, "1.1.0", requests=1000, refusals=20, answers=1000, end=end)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=end + timedelta(seconds=1), canary_ids=[canary.pk])
    evaluation = Evaluation.objects.filter(canary=canary).latest("window_end")
    gate = next(g for g in evaluation.gates if g["name"] == "custom.refusals")
    assert gate["status"] == "insufficient" and "needs" in gate["detail"]
    assert evaluation.inputs["custom"]["refusals"]["window"]["canary"] == {"x": 20.0, "n": 1000.0, "value": 0.02,
                                                                            "count": 1000.0}
    canary.refresh_from_db()
    assert canary.state != Canary.State.ROLLED_BACK
    client.force_login(people["owner"])
    page = client.get(f"/canaries/{canary.pk}/").content.decode()
    assert "Refusals (custom metric)" in page

    # Regressing: a fifth of the canary's answers refused. (Judged at the start of the test's clock,
    # before the rollback's own time, which ends the chart's range.)
    later = now
    push_window(pusher, "1.0.0", requests=100_000, refusals=2000, answers=100_000, end=later)
    push_window(pusher, "1.1.0", requests=1000, refusals=200, answers=1000, end=later)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=later, canary_ids=[canary.pk])
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK
    evaluation = Evaluation.objects.filter(canary=canary).latest("window_end")
    assert [t["metric"] for t in evaluation.inputs["rollback_triggers"]] == ["refusals"]
    assert next(g for g in evaluation.gates if g["name"] == "custom.refusals")["status"] == "red"
    # Its chart's numbers (the CSV of the canary page's chart): the last window, 220 of 2,000
    # answers refused (both pushes lie in it) against production's 2 %.
    csv = client.get(f"/canaries/{canary.pk}/charts/custom_1.csv").content.decode().splitlines()
    assert csv[0] == "window_end,canary_value,canary_count,production_value,production_count"
    assert [float(v) for v in csv[-1].split(",")[1:]] == [11.0, 2000, 2.0, 200_000]


def test_on_push_each_segment_is_judged_on_a_custom_metric_and_named_in_the_rollback(
        people, django_capture_on_commit_callbacks):
    platform = client_for(people["platform"])
    assert platform.patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": DECLARED},
                          format="json").status_code == 200
    change = MetricConfigChange.objects.get()
    register.metric_change_review(actor=people["gov"], change_id=change.pk, approve=True)
    register.metric_change_review(actor=people["mrm"], change_id=change.pk, approve=True)
    with django_capture_on_commit_callbacks(execute=True):
        canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0",
                                           now=timezone.now() - timedelta(minutes=30))
    pusher = token(people, "observations")
    end = timezone.now().replace(microsecond=0) - timedelta(seconds=5)
    # Four regions, production refusing 1 % in each; the canary refuses 0.1 % in three and 4 % in
    # "apac": 1.075 % as a whole, within the 2 pp threshold, +3 pp in one region.
    for region, refused in (("us", 10), ("eu", 10), ("latam", 10), ("apac", 400)):
        for version, answers, refusals in (("1.0.0", 100_000, 1000), ("1.1.0", 10_000, refused)):
            response = pusher.post("/api/v1/observations/", {
                "model": "scorer", "version": version, "segment": region,
                "window_start": (end - timedelta(seconds=60)).isoformat(), "window_end": end.isoformat(),
                "requests": answers, "errors": answers // 1000, "latency_p99_ms": 200.0,
                "quality_sum": 0.8 * answers, "quality_count": answers,
                "custom": {"refusals": {"numerator": refusals, "denominator": answers}}}, format="json")
            assert response.status_code == 201, response.content
    with django_capture_on_commit_callbacks(execute=True):
        outcome = loop.evaluate_tick(now=end + timedelta(seconds=1), canary_ids=[canary.pk]).outcomes[0]
    assert outcome.rollback.startswith("segment apac: refusals: share 4.00% vs production 1.00%")
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK
    evaluation = Evaluation.objects.filter(canary=canary).latest("window_end")
    assert not evaluation.inputs["custom"]["refusals"]["fired"]  # the canary as a whole is within limits
    assert [(t["metric"], t.get("segment")) for t in evaluation.inputs["rollback_triggers"]] == [("refusals", "apac")]
    stored = evaluation.inputs["segments"]
    assert stored["judged"]["segments"] == 4
    assert stored["by_segment"]["apac"]["custom"]["refusals"]["window"]["canary"]["x"] == 400
    assert not stored["by_segment"]["us"]["custom"]["refusals"]["fired"]
