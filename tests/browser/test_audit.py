"""The audit page in a real browser: readable lines with linked objects, the live filter, paging,
field-level history hidden until asked for, a long record that never widens the page, and the
chain verification."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from governance.audit.services import audit_append
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
    expect(rows.nth(1).get_by_test_id("audit-summary")).to_have_text("owner registered version ranker 1.0.0")
    # Registering a version writes field-level history too; it is hidden until asked for.
    expect(page.locator('[data-action^="field_changes."]')).to_have_count(0)
    page.get_by_test_id("audit-internal-filter").check()
    expect(page.locator('[data-action^="field_changes."]').first).to_be_visible()
    expect(page).to_have_url(re.compile(r"internal=1"))
    total = rows.count()
    page.get_by_test_id("audit-internal-filter").uncheck()
    expect(page.locator('[data-action^="field_changes."]')).to_have_count(0)
    assert rows.count() >= 3

    page.get_by_test_id("audit-action-filter").press_sequentially("model.", delay=30)
    expect(rows).to_have_count(2)
    page.get_by_test_id("audit-object-filter").press_sequentially("model:ranker", delay=20)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("registered model ranker")
    rows.first.get_by_text("raw record").click()
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


def test_audit_lines_link_their_objects_page_on_and_keep_long_records_in_their_box(
        page: Page, login, owner, screenshot):
    long_statement = "I have reviewed the evaluation and accept it " * 40
    audit_append(actor=owner, action="canary.signed", object_type="canary", object_id=4,
                 payload={"step": "promote:0->1", "role": "owner", "statement": long_statement})
    for n in range(55):
        audit_append(actor=None, action="model.registered", object_type="model", object_id=f"model-{n}")
    page.set_viewport_size({"width": 1400, "height": 900})
    login(owner)
    page.goto("/audit/")
    rows = page.get_by_test_id("audit-table").locator("tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.get_by_role("link", name="model-53", exact=True)).to_have_attribute("href", "/models/model-53/")
    page.get_by_test_id("audit-older").click()
    expect(page).to_have_url(re.compile(r"before=\d+"))
    signed = page.locator('[data-action="canary.signed"]')
    expect(signed.get_by_test_id("audit-summary")).to_have_text(
        "owner signed the promotion to stage 2 of canary #4 as model owner")
    expect(signed.get_by_role("link", name="canary #4")).to_have_attribute("href", "/canaries/4/")
    signed.get_by_text("raw record").click()
    payload = signed.get_by_test_id("audit-payload")
    expect(payload).to_contain_text("I have reviewed")
    widths = page.evaluate("""() => ({doc: document.documentElement.scrollWidth, view: window.innerWidth,
        box: document.querySelector('[data-action="canary.signed"] pre').clientWidth,
        text: document.querySelector('[data-action="canary.signed"] pre').scrollWidth})""")
    # The record scrolls inside its box; the page itself is never wider than the window.
    assert widths["doc"] <= widths["view"] == 1400
    assert widths["text"] > widths["box"]
    screenshot("audit-record-open")
    page.get_by_test_id("audit-newer").click()
    expect(rows.get_by_role("link", name="model-54", exact=True)).to_be_visible()
    expect(rows.first.get_by_test_id("audit-summary")).to_have_text("owner logged in")
