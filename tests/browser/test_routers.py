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
