"""Routers in a real browser: a platform engineer registers a webhook router with a signing
secret and sees it listed as set but never shown, then follows a canary's pushes to the file
router from the canary page to its push history."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from governance.access.permissions import Role
from releases.canaries import services as lifecycle
from releases.register import services
from releases.routing.models import RouterConfig

pytestmark = pytest.mark.browser

SECRET = "whsec-browser-test-7f3a9c"


@pytest.fixture(autouse=True)
def _router_dir(settings, tmp_path) -> None:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


def test_platform_registers_a_webhook_router_and_reads_a_canarys_push_history(
    page: Page, login: Callable[..., Page], role_user, tmp_path, screenshot
):
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    login(platform)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Routers").click()
    expect(page).to_have_url(re.compile(r"/routers/$"))
    expect(page.get_by_role("heading", name="Routers", exact=True)).to_be_visible()
    # Before any config is registered, the file router from the server's settings is in force.
    in_force = page.get_by_test_id("routers-in-force")
    expect(in_force.locator('[data-kind="file"]')).to_contain_text("server settings (CANARYHUB_ROUTER_FILE_DIR)")
    expect(in_force.locator('[data-kind="webhook"]')).to_have_count(0)
    form = page.get_by_test_id("router-form")
    form.get_by_label("Name").fill("mesh")
    form.get_by_label("Kind").select_option("webhook")
    form.get_by_label("Target").fill("https://mesh.example.test/canary-split")
    form.get_by_label("Secret").fill(SECRET)
    form.get_by_label("Options").fill('{"timeout_s": 3}')
    form.get_by_role("button", name="Add router").click()

    expect(page.get_by_role("status")).to_contain_text("Router mesh saved.")
    row = page.get_by_test_id("router-row").filter(has_text="mesh")
    expect(row).to_contain_text("HTTP webhook")
    expect(row).to_contain_text("https://mesh.example.test/canary-split")
    expect(row.get_by_test_id("router-secret")).to_have_text("secret: set")
    expect(in_force.locator('[data-kind="webhook"]')).to_contain_text("registered config mesh")
    expect(in_force).not_to_contain_text(SECRET)
    screenshot("routers")
    assert SECRET not in page.content()
    assert page.get_by_label("Secret").input_value() == ""
    assert RouterConfig.objects.get(name="mesh").secret == SECRET

    # A canary through the file router (the server's setting): its first split is pushed on commit.
    services.model_register(
        actor=platform, name="ranker", display_name="Ranker", risk_tier="medium", owner="owner", on_call="x@example.test"
    )
    services.version_register(
        actor=platform, model_name="ranker", version="1.0.0", artifact_uri="s3://r/1.0.0", status="production"
    )
    services.version_register(actor=platform, model_name="ranker", version="1.1.0", artifact_uri="s3://r/1.1.0")
    canary = lifecycle.canary_initiate(actor=owner, model_name="ranker", version="1.1.0", router="file")
    assert (tmp_path / "router" / "ranker.json").exists()

    page.goto(f"/canaries/{canary.pk}/")
    section = page.get_by_test_id("canary-router-pushes")
    expect(section.get_by_test_id("router-push")).to_have_count(1)  # loaded by htmx
    section.get_by_role("link", name="Push history page").click()
    expect(page).to_have_url(re.compile(rf"/canaries/{canary.pk}/pushes/$"))
    expect(page.get_by_role("heading", name="Router pushes")).to_be_visible()
    push = page.get_by_test_id("router-push")
    expect(push).to_have_count(1)
    expect(push.get_by_test_id("push-requested")).to_have_text("1%")
    expect(push.get_by_test_id("push-applied")).to_have_text("1%")
    expect(push.get_by_test_id("push-result")).to_have_text("applied")
    expect(push).to_contain_text("transition")
    screenshot("router-pushes")


def test_a_platform_engineer_sweeps_the_sticky_store_from_its_page_and_an_owner_only_reads(
    page: Page, login, role_user, settings
):
    from releases.canaries import assign as api_assign
    from releases.routing import assignment
    from releases.routing.models import StickySweep

    settings.REDIS_URL = ""
    api_assign.reset_caches()
    api_assign._the_store().put(f"{assignment.KEY_PREFIX}ranker:9:{'d' * 40}", b"forged")
    platform = role_user(Role.PLATFORM, username="platform")
    login(platform)
    page.goto("/routers/")
    page.get_by_test_id("sticky-link").click()
    expect(page.get_by_role("heading", name="Sticky assignments")).to_be_visible()
    expect(page.get_by_test_id("sticky-sweeps")).to_contain_text("has not been swept yet")
    form = page.get_by_test_id("sticky-form")
    form.get_by_label("Reason").fill("short")
    form.get_by_role("button", name="Sweep the sticky store now").click()
    expect(page.locator('.error[data-field="reason"]')).to_contain_text("10 characters")
    assert not StickySweep.objects.exists()
    page.get_by_test_id("sticky-form").get_by_label("Reason").fill("Users report switching versions mid-chat.")
    page.get_by_test_id("sticky-form").get_by_role("button", name="Sweep the sticky store now").click()
    expect(page.get_by_role("status").filter(has_text="Sticky store swept")).to_contain_text("1 of 1")
    row = page.get_by_test_id("sticky-sweep")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("platform")
    expect(row.get_by_test_id("sweep-unsigned")).to_have_text("1")
    api_assign.reset_caches()

    page.context.clear_cookies()
    login(role_user(Role.MODEL_OWNER, username="owner"))
    page.goto("/assignments/sticky/")
    expect(page.get_by_test_id("sticky-sweep")).to_have_count(1)
    expect(page.get_by_test_id("sticky-form")).to_have_count(0)
