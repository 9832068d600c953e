"""The audit page in a real browser: the live filter and the chain verification."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from releases.register import services

pytestmark = pytest.mark.browser


@pytest.fixture
def history(platform, owner) -> None:
    for name in ("fraud-scorer", "ranker"):
        services.model_register(
            actor=platform, name=name, display_name=name.title(), risk_tier="low", owner="owner", on_call="x"
        )
    services.version_register(
        actor=owner, model_name="ranker", version="1.0.0", artifact_uri="s3://r/1", status="production"
    )


def test_audit_trail_filters_live_and_verifies_the_chain(page: Page, login, owner, history, screenshot):
    login(owner)
    page.get_by_role("link", name="Audit").click()
    expect(page).to_have_url(re.compile(r"/audit/$"))
    rows = page.get_by_test_id("audit-table").locator("tbody tr")
    # Newest first: the owner's login is in the chain too, after the version's registration.
    expect(rows.first).to_contain_text("user.logged_in")
    expect(rows.nth(1)).to_contain_text("version.registered")
    total = rows.count()
    assert total >= 3

    page.get_by_test_id("audit-action-filter").press_sequentially("model.", delay=30)
    expect(rows).to_have_count(2)
    page.get_by_test_id("audit-object-filter").press_sequentially("model:ranker", delay=20)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("model:ranker")
    rows.first.get_by_text("payload").click()
    expect(rows.first.locator("pre")).to_contain_text('"risk_tier": "low"')

    page.get_by_role("button", name="Verify chain").click()
    expect(page.get_by_test_id("verify-result")).to_contain_text(f"Chain verified: {total} events")
    screenshot("audit")


def test_a_user_without_a_role_sees_no_audit_link_and_is_refused(page: Page, login, role_user):
    login(role_user(username="nobody"))
    expect(page.get_by_test_id("user-roles")).to_have_text("no role")
    expect(page.get_by_role("link", name="Audit")).to_have_count(0)
    page.goto("/audit/")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
