"""The platform engineer's urgent PATCH in a real browser: the link on a PATCH version, the form
that says what is faster and what is not, the reason required, and the canary page marked."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from governance.access.permissions import Role
from governance.incidents.models import Incident
from releases.canaries.models import Canary
from releases.register import services as register

pytestmark = pytest.mark.browser


@pytest.fixture
def people(role_user) -> dict:
    return {"owner": role_user(Role.MODEL_OWNER, username="owner"),
            "platform": role_user(Role.PLATFORM, username="platform")}


@pytest.fixture
def versions(people, settings, tmp_path):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    register.model_register(actor=people["platform"], name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.1", artifact_uri="s3://2")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://3")


def test_a_platform_engineer_starts_an_urgent_patch_from_the_version_page(page: Page, login: Callable[..., Page],
                                                                         people, versions, screenshot):
    login(people["platform"])
    page.goto("/models/scorer/versions/1.0.1/")
    page.get_by_test_id("urgent-patch-link").click()
    expect(page.get_by_role("heading", name="Urgent PATCH of Scorer 1.0.1")).to_be_visible()
    expect(page.get_by_test_id("urgent-change-type")).to_have_text("PATCH")
    expect(page.get_by_test_id("urgent-terms")).to_contain_text("60 minutes")
    expect(page.get_by_test_id("urgent-terms")).to_contain_text("automatic rollback rule")
    page.get_by_label("Reason").fill("hotfix")
    page.get_by_role("button", name="Start the urgent PATCH canary").click()
    expect(page.locator('.error[data-field="reason"]')).to_contain_text("20 characters")
    assert not Canary.objects.exists()
    screenshot("urgent-patch-form")
    page.get_by_label("Reason").fill("Refund answers quote last year's policy; legal asked for a fix today.")
    page.get_by_role("button", name="Start the urgent PATCH canary").click()
    expect(page.get_by_test_id("urgent-badge")).to_have_text("urgent PATCH")
    expect(page.get_by_test_id("urgent-reason")).to_contain_text("legal asked for a fix today")
    canary = Canary.objects.get()
    assert canary.urgent_reason and Incident.objects.get(canary=canary).kind == Incident.Kind.URGENT_PATCH


def test_no_urgent_path_for_a_minor_version_or_for_the_owner(page: Page, login: Callable[..., Page], people,
                                                             versions):
    login(people["platform"])
    page.goto("/models/scorer/versions/1.1.0/")
    expect(page.get_by_role("heading", name="Scorer 1.1.0")).to_be_visible()
    expect(page.get_by_test_id("urgent-patch-link")).to_have_count(0)
    page.goto("/models/scorer/versions/1.1.0/canary/urgent/")
    expect(page.get_by_test_id("urgent-not-patch")).to_be_visible()
    page.get_by_label("Reason").fill("Refund answers quote last year's policy; legal asked for a fix today.")
    page.get_by_role("button", name="Start the urgent PATCH canary").click()
    expect(page.locator("[data-testid=urgent-form]")).to_contain_text("PATCH version only")
    assert not Canary.objects.exists()
    page.context.clear_cookies()
    login(people["owner"])
    page.goto("/models/scorer/versions/1.0.1/")
    expect(page.get_by_test_id("urgent-patch-link")).to_have_count(0)
    assert page.request.get("/models/scorer/versions/1.0.1/canary/urgent/").status == 403
