"""Threshold change review in a real browser: the owner requests a change from the canary's
frozen thresholds, AI Governance and MRM approve, and it waits for the next stage."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from governance.access.permissions import Role
from releases.canaries import services as lifecycle
from releases.canaries.models import ThresholdChangeRequest
from releases.register import services as register
from releases.register.models import MetricConfigChange, ModelVersion
from tests.governance.helpers import make_model

pytestmark = pytest.mark.browser


@pytest.fixture
def people(role_user):
    return {r: role_user(role, username=r, first_name=r.title(), last_name="Test") for r, role in [
        ("owner", Role.MODEL_OWNER), ("platform", Role.PLATFORM), ("mrm", Role.MRM), ("gov", Role.AI_GOVERNANCE)]}


def test_owner_requests_governance_and_mrm_approve_and_it_applies_at_the_next_stage(page: Page, login, people,
                                                                                    screenshot):
    make_model(people["platform"])
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    login(people["owner"])
    page.get_by_role("link", name="Thresholds").click()
    page.get_by_test_id("threshold-canary").select_option(str(canary.pk))
    form = page.get_by_test_id("threshold-change-form")
    # Stages from 1, as on the canary page; each threshold named in words, labelling its field.
    expect(form).to_contain_text(f"stage 1 of {len(canary.stages)}")
    latency = form.get_by_label("Promote: p99 latency at most this many times production's")
    expect(latency).to_have_attribute("data-testid", "threshold-promote.latency_p99_ratio")
    expect(latency).to_have_value("1.2")  # the canary's frozen value
    expect(form.get_by_test_id("threshold-rollback.quality_ratio")).to_have_value("0.9")
    latency.fill("1.1")
    form.get_by_label("Reason").fill("The consumer team tightened its latency budget.")
    form.get_by_role("button", name="Request change").click()
    change = ThresholdChangeRequest.objects.get()
    status = page.get_by_test_id(f"threshold-change-status-{change.pk}")
    expect(status).to_have_text("Awaiting review")
    row = page.get_by_test_id(f"threshold-change-{change.pk}")
    expect(row).to_contain_text("Promote: p99 latency at most this many times production's: 1.2 → 1.1")
    expect(row).to_contain_text("(stage 1 of")
    expect(row.get_by_role("link", name=f"#{canary.pk}")).to_have_attribute("href", f"/canaries/{canary.pk}/")

    for reviewer in ("gov", "mrm"):
        page.get_by_test_id("user-name").click()  # the user menu
        page.get_by_role("button", name="Log out").click()
        login(people[reviewer])
        # The review waits in the reviewer's Inbox, where the login lands.
        work = page.get_by_test_id("work-table")
        side = "AI Governance" if reviewer == "gov" else "MRM"
        expect(work).to_contain_text(f"Threshold change to review as {side}")
        work.get_by_role("link", name="Approve or reject it").click()
        page.get_by_test_id(f"threshold-change-{change.pk}").get_by_role("button", name="Approve change").click()
        expect(page.get_by_text("Threshold change approved.")).to_be_visible()
    expect(status).to_have_text("Approved, applies at the next stage")
    expect(page.get_by_test_id(f"threshold-change-{change.pk}").get_by_role("button")).to_have_count(0)
    screenshot("threshold-changes")
    canary.refresh_from_db()
    assert canary.thresholds["promote"]["latency_p99_ratio"] == 1.2


def test_a_metric_configuration_change_waits_in_the_inbox_of_both_reviewers_then_applies(page: Page, login,
                                                                                           people):
    make_model(people["platform"])
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    frozen = dict(canary.metrics)
    proposed = {"provider": "prometheus", "queries": {"errors": 'sum(rate(errors_total{model="$model"}[$window]))'},
                "custom": {"refusals": {"kind": "ratio", "worse": "higher", "promote_tolerance": 0.5,
                                        "rollback_threshold": 2.0, "promql": {
                                            "numerator": 'model_answers_total{outcome="refused"}',
                                            "denominator": "model_answers_total"}}}}
    register.version_update(actor=people["platform"], model_name="scorer", version="1.1.0",
                            changes={"metrics": proposed})
    change = MetricConfigChange.objects.get()
    for n, reviewer in enumerate(("gov", "mrm")):
        if n:
            page.get_by_test_id("user-name").click()
            page.get_by_role("button", name="Log out").click()
        login(people[reviewer])
        work = page.get_by_test_id("work-table")
        side = "AI Governance" if reviewer == "gov" else "MRM"
        expect(work).to_contain_text(f"Metric configuration change to review as {side}")
        work.get_by_role("link", name="Approve or reject it").last.click()
        page.wait_for_load_state()
        expect(page.locator("#metric-changes + p")).to_contain_text("a canary already running keeps the configuration")
        row = page.get_by_test_id(f"metric-change-{change.pk}")
        expect(row).to_contain_text("errors_total")
        # A reviewer sees the custom metrics they approve, with the counters they read.
        expect(row.get_by_test_id("custom-metric-refusals")).to_contain_text(
            'ratio, worse when higher, promotion tolerance 0.5 pp, rollback threshold 2.0 pp; numerator '
            'model_answers_total{outcome="refused"}; denominator model_answers_total')
        row.get_by_role("button", name="Approve change").click()
        expect(page.get_by_text("Metric configuration change approved.")).to_be_visible()
    expect(page.get_by_test_id(f"metric-change-status-{change.pk}")).to_have_text("Approved and applied to the version")
    canary.refresh_from_db()
    assert ModelVersion.objects.get(pk=canary.version_id).metrics == proposed and canary.metrics == frozen
