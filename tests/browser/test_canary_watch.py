"""After 100 % in a real browser: the owner sees the post-promotion watch on the canary page and
reverts to the previous version from it; after the watch the page says the standby is released."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from governance.access.permissions import Role
from releases.canaries import loop
from releases.canaries.models import Canary
from releases.register.models import ModelVersion
from tests.releases.canaries.test_watch import complete

pytestmark = pytest.mark.browser


@pytest.fixture
def people(role_user) -> dict:
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "risk": role_user(Role.RISK_OFFICER, username="risk"),
    }


@pytest.fixture
def completed(people, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.EVALUATION_CADENCE_S = 2
    return complete(people, settings, tmp_path, django_capture_on_commit_callbacks)


def test_owner_reverts_a_watched_canary_from_its_page(page: Page, login: Callable[..., Page], people, completed,
                                                      screenshot):
    login(people["owner"])
    page.goto(f"/canaries/{completed.pk}/")
    expect(page.get_by_test_id("canary-state")).to_have_text("Completed")
    expect(page.get_by_test_id("watch-status")).to_contain_text("Watched after 100%")
    expect(page.get_by_test_id("watch-status")).to_contain_text("1.0.0 is on hot standby")
    screenshot("canary-watched")
    page.get_by_test_id("revert-button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Every user goes back to the previous version")
    dialog.get_by_role("button", name="Revert to the previous version now").click()
    expect(dialog.locator('.error[data-field="reason"]')).to_be_visible()  # the reason is required
    dialog.get_by_label("Reason").fill("Refund answers wrong since the promotion.")
    dialog.get_by_role("button", name="Revert to the previous version now").click()
    expect(page.get_by_test_id("canary-state")).to_have_text("Reverted after completion")
    expect(page.get_by_test_id("traffic-percent")).to_have_text("0%")
    expect(page.get_by_test_id("end-reason")).to_contain_text("every user is back on 1.0.0")
    expect(page.get_by_test_id("revert-button")).to_have_count(0)
    screenshot("canary-reverted")
    completed.refresh_from_db()
    assert completed.state == Canary.State.REVERTED
    assert dict(ModelVersion.objects.values_list("version", "status")) == {"1.0.0": "production",
                                                                           "1.1.0": "rolled_back"}


def test_a_risk_officer_sees_the_watch_but_no_revert_button(page: Page, login: Callable[..., Page], people, completed):
    login(people["risk"])
    page.goto(f"/canaries/{completed.pk}/")
    expect(page.get_by_test_id("watch-status")).to_be_visible()
    expect(page.get_by_test_id("revert-button")).to_have_count(0)
    assert page.request.get(f"/canaries/{completed.pk}/revert/").status == 403


def test_after_the_watch_the_page_says_the_standby_is_released(page: Page, login: Callable[..., Page], people,
                                                              completed):
    loop.watch_tick(now=completed.watch_until, canary_ids=[])
    login(people["owner"])
    page.goto(f"/canaries/{completed.pk}/")
    expect(page.get_by_test_id("watch-status")).to_contain_text("Watch over")
    expect(page.get_by_test_id("watch-status")).to_contain_text("hot standby is released")
    expect(page.get_by_test_id("revert-button")).to_have_count(0)


def test_on_call_rolls_back_under_break_glass_from_the_page(page: Page, login: Callable[..., Page], people,
                                                            role_user, settings, tmp_path):
    from governance.audit.models import AuditEvent
    from releases.canaries import services as lifecycle
    from releases.register import services as register

    settings.EVALUATION_CADENCE_S = 2
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    on_call = role_user(Role.ON_CALL, username="oncall")
    register.model_register(actor=people["platform"], name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    login(on_call)
    page.goto(f"/canaries/{canary.pk}/")
    expect(page.get_by_role("link", name="Abort")).to_have_count(0)  # not an emergency: not on-call's
    page.get_by_role("link", name="Roll back").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_test_id("break-glass")).to_contain_text("MRM reviews this act in retrospect")
    dialog.get_by_label("Reason").fill("too short")
    dialog.get_by_role("button", name="Roll back now").click()
    expect(dialog.locator('.error[data-field="reason"]')).to_contain_text("20 characters")
    dialog.get_by_label("Reason").fill("Checkout errors tripled since 14:02; owner unreachable.")
    dialog.get_by_role("button", name="Roll back now").click()
    expect(page.get_by_test_id("canary-state")).to_have_text("Rolled back")
    assert AuditEvent.objects.get(action="canary.break_glass").actor == on_call


def test_the_slo_page_shows_the_measured_figures(page: Page, login: Callable[..., Page], people, completed):
    login(people["risk"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="SLOs").click()
    expect(page.get_by_role("heading", name="SLOs measured")).to_be_visible()
    # The five signed promotions of the completed canary, timed to the router's confirmation.
    expect(page.get_by_test_id("slo-promotion").locator("td").nth(1)).to_have_text("5")
    expect(page.get_by_test_id("slo-rollback")).to_contain_text("nothing measured yet")
    expect(page.get_by_test_id("slo-row")).to_have_count(5)
    # Each SLO is charted against its target, drawn by Plotly, with its numbers as a table.
    promotions = page.get_by_test_id("slo-chart-promotion")
    expect(promotions.locator('[data-chart="slo-promotion"]')).to_have_attribute("data-drawn", "true")
    expect(promotions.locator(".scatterlayer .point")).to_have_count(5)
    expect(promotions).to_contain_text("target 1800 s")
    expect(page.get_by_test_id("slo-table-promotion").locator("tbody tr")).to_have_count(5)
    expect(page.get_by_test_id("slo-table-rollback")).to_contain_text("Nothing measured yet")
    expect(page.get_by_test_id("slo-chart-staleness").locator('[data-chart="slo-staleness"]')).to_have_attribute(
        "data-drawn", "true")
    page.get_by_test_id("slo-row").first.get_by_role("link", name=f"#{completed.pk}").click()
    expect(page.get_by_test_id("canary-state")).to_have_text("Completed")


def test_the_owner_sees_a_metric_gap(page: Page, login: Callable[..., Page], people, settings, tmp_path):
    from django.utils import timezone

    from releases.canaries import services as lifecycle
    from releases.register import services as register
    from tests.factories import make_evaluation

    settings.EVALUATION_CADENCE_S = 2
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    register.model_register(actor=people["platform"], name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    make_evaluation(canary, status="insufficient", window_end=timezone.now(),
                    inputs={"window": {"canary": {"requests": 4200, "quality_count": 0}}})
    login(people["owner"])
    page.goto(f"/canaries/{canary.pk}/")
    expect(page.get_by_test_id("metric-gap")).to_contain_text("no quality scores for the canary's 4200 requests")
