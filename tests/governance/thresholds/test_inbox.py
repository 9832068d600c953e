"""Threshold reviews and break-glass retrospective reviews in the Inbox's work list."""

from __future__ import annotations

import pytest

from governance.access.permissions import Role
from governance.thresholds import services as reviews
from governance.thresholds.inbox import threshold_reviews
from releases.canaries import presenters
from releases.canaries import services as lifecycle
from tests.governance.helpers import make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(role_user):
    return {r: role_user(role, username=r) for r, role in [
        ("owner", Role.MODEL_OWNER), ("platform", Role.PLATFORM), ("mrm", Role.MRM), ("gov", Role.AI_GOVERNANCE),
        ("oncall", Role.ON_CALL)]}


def whats(user) -> list[str]:
    return [item.what for item in presenters.other_work(user)]


def test_a_pending_change_waits_for_each_reviewer_until_they_have_reviewed(people):
    make_model(people["platform"])
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    change = reviews.threshold_change_request(
        actor=people["owner"], canary_id=canary.pk,
        proposed={**canary.thresholds, "promote": {**canary.thresholds["promote"], "latency_p99_ratio": 1.1}},
        reason="The consumer team tightened its latency budget.")
    assert "Threshold change to review as AI Governance" in whats(people["gov"])
    assert "Threshold change to review as MRM" in whats(people["mrm"])
    assert not threshold_reviews(people["owner"])  # the requester never reviews
    reviews.threshold_change_review(actor=people["gov"], request_id=change.pk, approve=True)
    assert not threshold_reviews(people["gov"])
    assert [i.subject.split(" · ")[1] for i in threshold_reviews(people["mrm"])] == [f"canary #{canary.pk}"]
    reviews.threshold_change_review(actor=people["mrm"], request_id=change.pk, approve=True)
    assert not threshold_reviews(people["mrm"])
    assert presenters.inbox_count(people["gov"]) == 0


def test_a_break_glass_rollback_asks_mrm_for_its_retrospective_review(people):
    from governance.incidents.models import Incident
    from governance.rootcause import services as rootcause

    make_model(people["platform"])
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="quality dropped")
    incident = Incident.objects.get()
    Incident.objects.filter(pk=incident.pk).update(details={**incident.details, "break_glass": True})
    assert "Root cause to file (break-glass act: retrospective review)" in whats(people["oncall"])
    rootcause.root_cause_file(actor=people["oncall"], incident_id=incident.pk, cause="The prompt lost its system message.",
                              fix="Restore it and add a regression test.")
    assert "Retrospective review of a break-glass act" in whats(people["mrm"])
