"""A version's metric configuration changes only through review: a platform engineer's change
is recorded as pending, AI Governance and MRM each approve it (neither the requester), a
rejection discards it, and a canary already started keeps the configuration frozen on it."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from canaryhub.errors import Conflict, PermissionRefused, ValidationFailed
from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from releases.canaries import services as lifecycle
from releases.register import services
from releases.register.models import MetricConfigChange, ModelVersion
from tests.releases.register.test_api import assert_problem
from tests.releases.register.test_metric_governance import FORGED, bearer

pytestmark = pytest.mark.django_db

PROMQL = {"provider": "prometheus", "queries": {"errors": 'sum(rate(errors_total{model="$model"}[$window]))'}}


@pytest.fixture(autouse=True)
def _router_in_tmp(settings, tmp_path):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    settings.PROMETHEUS_URL = ""


@pytest.fixture
def people(role_user):
    people = {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "platform2": role_user(Role.PLATFORM, Role.AI_GOVERNANCE, username="platform2"),
        "gov": role_user(Role.AI_GOVERNANCE, username="gov"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "both": role_user(Role.AI_GOVERNANCE, Role.MRM, username="both"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }
    platform = people["platform"]
    services.model_register(actor=platform, name="scorer", display_name="scorer", risk_tier="medium",
                            owner="owner", on_call="oncall@x")
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    return people


def version() -> ModelVersion:
    return ModelVersion.objects.get(model__name="scorer", version="1.1.0")


def request_change(actor, metrics=PROMQL) -> MetricConfigChange:
    services.version_update(actor=actor, model_name="scorer", version="1.1.0", changes={"metrics": metrics})
    return MetricConfigChange.objects.get(status="pending")


def test_a_change_waits_for_both_reviews_then_applies_to_the_version(people):
    change = request_change(people["platform"])
    assert version().metrics == {"provider": "push", "queries": {}}  # not written at once
    assert change.current == {"provider": "push", "queries": {}} and change.proposed == PROMQL
    services.metric_change_review(actor=people["gov"], change_id=change.pk, approve=True)
    assert version().metrics["provider"] == "push"  # one approval is not enough
    services.metric_change_review(actor=people["mrm"], change_id=change.pk, approve=True)
    change.refresh_from_db()
    assert change.status == "applied" and version().metrics == PROMQL
    actions = list(AuditEvent.objects.filter(action__startswith="version.metrics_change").order_by("pk")
                   .values_list("action", flat=True))
    assert actions == ["version.metrics_change_requested", "version.metrics_change_approved",
                       "version.metrics_change_approved", "version.metrics_change_applied"]


def test_a_rejection_discards_the_change_and_needs_a_reason(people):
    change = request_change(people["platform"])
    with pytest.raises(ValidationFailed):
        services.metric_change_review(actor=people["mrm"], change_id=change.pk, approve=False, note="no")
    services.metric_change_review(actor=people["mrm"], change_id=change.pk, approve=False,
                                  note="These queries count the wrong service.")
    change.refresh_from_db()
    assert change.status == "rejected" and version().metrics["provider"] == "push"
    with pytest.raises(Conflict):  # a discarded change cannot be approved afterwards
        services.metric_change_review(actor=people["gov"], change_id=change.pk, approve=True)
    assert AuditEvent.objects.filter(action="version.metrics_change_rejected").exists()


def test_segregation_of_duties(people):
    change = request_change(people["platform2"])  # a platform engineer who is also AI Governance
    with pytest.raises(PermissionRefused):  # the requester cannot approve their own change
        services.metric_change_review(actor=people["platform2"], change_id=change.pk, approve=True)
    for who in ("owner", "platform", "bot"):  # a reviewer without the role cannot approve
        with pytest.raises(PermissionRefused):
            services.metric_change_review(actor=people[who], change_id=change.pk, approve=True)
    services.metric_change_review(actor=people["both"], change_id=change.pk, approve=True)
    with pytest.raises(Conflict):  # one person gives one side only, however many roles they hold
        services.metric_change_review(actor=people["both"], change_id=change.pk, approve=True)
    with pytest.raises(Conflict):  # the governance side is taken: a second AI Governance cannot add to it
        services.metric_change_review(actor=people["gov"], change_id=change.pk, approve=True)
    services.metric_change_review(actor=people["mrm"], change_id=change.pk, approve=True)
    change.refresh_from_db()
    assert change.status == "applied"
    assert {change.governance_by.username, change.mrm_by.username} == {"both", "mrm"}


def test_one_pending_change_at_a_time(people):
    request_change(people["platform"])
    with pytest.raises(Conflict):
        request_change(people["platform"], metrics=FORGED)
    assert MetricConfigChange.objects.count() == 1


def test_owner_ci_token_and_anonymous_cannot_request_and_ci_cannot_switch_to_push(people):
    owner = APIClient()
    owner.force_authenticate(people["owner"])
    ci = bearer(people, "ci", "scorer")
    for client in (owner, ci):
        assert_problem(client.patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": FORGED},
                                    format="json"), 403)
        assert_problem(client.patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": {"provider": "push"}},
                                    format="json"), 403)
    assert APIClient().patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": FORGED},
                             format="json").status_code in (401, 403)
    assert not MetricConfigChange.objects.exists()


def test_the_running_canary_keeps_its_frozen_metrics_until_the_next_canary(people):
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    frozen = dict(canary.metrics)
    platform = APIClient()
    platform.force_authenticate(people["platform"])
    response = platform.patch("/api/v1/models/scorer/versions/1.1.0/", {"metrics": PROMQL}, format="json")
    assert response.status_code == 200, response.content
    change = MetricConfigChange.objects.get(status="pending")
    services.metric_change_review(actor=people["gov"], change_id=change.pk, approve=True)
    services.metric_change_review(actor=people["mrm"], change_id=change.pk, approve=True)
    canary.refresh_from_db()
    assert version().metrics == PROMQL  # the version's configuration, for its next canary
    assert canary.metrics == frozen != PROMQL  # the running canary is judged as it started


def test_the_api_lists_and_reviews_changes_and_refuses_the_requester_and_machines(people):
    def as_user(who):
        client = APIClient()
        client.force_authenticate(people[who])
        return client

    change = request_change(people["platform2"])
    listed = as_user("gov").get("/api/v1/metric-changes/?status=pending").json()
    assert [row["id"] for row in listed["results"]] == [change.pk]
    assert listed["results"][0]["proposed"] == PROMQL and "next canary" in listed["results"][0]["applies_to"]
    url = f"/api/v1/metric-changes/{change.pk}/approvals/"
    assert_problem(as_user("platform2").post(url, {"decision": "approve"}, format="json"), 403)  # own change
    assert_problem(as_user("platform").post(url, {"decision": "approve"}, format="json"), 403)  # no reviewer role
    assert_problem(bearer(people, "ci", "scorer").post(url, {"decision": "approve"}, format="json"), 403)
    assert_problem(bearer(people, "ci", "scorer").get("/api/v1/metric-changes/"), 403)
    assert_problem(as_user("mrm").post(url, {"decision": "reject", "note": "short"}, format="json"), 400)
    assert_problem(as_user("gov").post("/api/v1/metric-changes/999999/approvals/", {"decision": "approve"},
                                       format="json"), 404)
    assert as_user("gov").post(url, {"decision": "approve"}, format="json").json()["governance_by"] == "gov"
    done = as_user("mrm").post(url, {"decision": "approve"}, format="json").json()
    assert done["status"] == "applied" and version().metrics == PROMQL
    assert_problem(as_user("mrm").post(url, {"decision": "approve"}, format="json"), 409)
