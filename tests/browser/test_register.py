"""The Model Register in a real browser: log in, browse with the live search, register a model
and a version through the forms, see errors, log out."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from governance.access.permissions import Role
from releases.register.models import AIModel, Consumer, ModelVersion
from tests.factories import AIModelFactory, ModelVersionFactory

pytestmark = pytest.mark.browser


@pytest.fixture
def register(owner) -> AIModel:
    fraud = AIModelFactory(
        name="fraud-scorer", display_name="Fraud scorer", risk_tier="high", owner=owner,
        description="Scores card payments for fraud.",
    )
    Consumer.objects.create(model=fraud, name="payments", contact="payments@example.test")
    ModelVersionFactory(model=fraud, status=ModelVersion.Status.PRODUCTION)
    AIModelFactory(name="churn-predictor", display_name="Churn predictor", risk_tier="low", owner=owner)
    AIModelFactory(name="support-summariser", display_name="Support summariser", owner=owner)
    return fraud


def model_rows(page: Page):
    return page.get_by_test_id("model-table").locator("tbody tr")


def test_login_then_logout(page: Page, login, owner):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    login(owner)
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_test_id("user-roles")).to_have_text("Model owner")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Models")).to_have_attribute("aria-current", "page")
    expect(nav.get_by_role("link", name="Audit")).to_be_visible()
    # Personal pages sit in the user menu, with the user's roles in words.
    page.get_by_test_id("user-name").click()
    menu = page.get_by_test_id("user-menu")
    menu.get_by_role("link", name="API docs").click()
    expect(page).to_have_url(re.compile(r"/api/docs/$"))
    page.get_by_test_id("api-docs-back").click()
    expect(page).to_have_url(re.compile(r"/$"))


def test_the_whole_navigation_fits_one_row_at_1400_px_for_a_user_of_every_role(page: Page, login, role_user):
    from governance.access.permissions import HUMAN_ROLES

    everyone = role_user(*HUMAN_ROLES, username="everyone", first_name="Alexandra", last_name="Montgomery-Smith")
    page.set_viewport_size({"width": 1400, "height": 900})
    login(everyone)
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    expect(links.get_by_text("MRM register")).to_be_visible()
    tops = links.evaluate_all("els => els.map(e => Math.round(e.getBoundingClientRect().top))")
    assert len(tops) >= 12 and len(set(tops)) == 1, tops
    # "Fleet" has taken the room kept for it; some is still left. Personal pages (tokens) go into
    # the user menu.
    expect(links.get_by_text("Fleet", exact=True)).to_be_visible()
    room = page.evaluate("""() => {
        const nav = document.querySelector('.site-nav'); const last = nav.lastElementChild;
        return nav.getBoundingClientRect().right - last.getBoundingClientRect().right; }""")
    assert room >= 50, room
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    expect(page.get_by_test_id("user-roles")).to_have_text(
        "Model owner, Model risk (MRM), AI governance, Platform, On-call, Risk officer, Auditor")

    page.get_by_test_id("user-name").click()  # the user menu
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_test_id("user-name")).to_have_count(0)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))


def test_wrong_password_is_refused(page: Page, owner):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")


def test_browse_the_register_with_live_search(page: Page, login, owner, register, screenshot):
    login(owner)
    expect(model_rows(page)).to_have_count(3)
    expect(page.get_by_role("link", name="Register a model")).to_be_visible()
    screenshot("register")

    # Typing filters the table in place: no navigation, only the fragment is swapped.
    page.get_by_test_id("model-search").press_sequentially("fraud", delay=30)
    expect(model_rows(page)).to_have_count(1)
    expect(model_rows(page).first).to_contain_text("Fraud scorer")
    expect(page).to_have_url(re.compile(r"\?q=fraud"))
    expect(page.get_by_test_id("user-name")).to_be_visible()

    page.get_by_test_id("model-search").fill("")
    page.get_by_test_id("model-search").press("Enter")
    expect(model_rows(page)).to_have_count(3)
    page.get_by_test_id("tier-filter").select_option("low")
    expect(model_rows(page)).to_have_count(1)
    expect(model_rows(page).first).to_contain_text("churn-predictor")
    page.get_by_test_id("tier-filter").select_option("")
    page.get_by_test_id("model-search").press_sequentially("no such model", delay=10)
    expect(model_rows(page).first).to_contain_text("No model matches")

    page.get_by_test_id("model-search").fill("")
    page.get_by_test_id("model-search").press("Enter")
    page.get_by_role("link", name="fraud-scorer").click()
    expect(page).to_have_url(re.compile(r"/models/fraud-scorer/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Fraud scorer")
    expect(page.get_by_test_id("consumer-table")).to_contain_text("payments@example.test")
    expect(page.get_by_test_id("version-table").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name="Register a version")).to_be_visible()
    screenshot("model")

    page.get_by_test_id("version-table").get_by_role("link", name="1.0.0").click()
    expect(page).to_have_url(re.compile(r"/models/fraud-scorer/versions/1\.0\.0/$"))
    expect(page.get_by_test_id("frozen-note")).to_contain_text("Frozen: this version is in production")
    thresholds = page.get_by_test_id("threshold-table")
    expect(thresholds).to_contain_text("canary ≤ production + 0.1 pp")
    expect(thresholds).to_contain_text("canary > production × 1.5")
    expect(page.get_by_test_id("metric-provider")).to_have_text("push")
    screenshot("version")


def test_register_a_model_through_the_form(page: Page, login, owner):
    login(owner)
    page.get_by_role("link", name="Register a model").click()
    expect(page).to_have_url(re.compile(r"/models/new/$"))
    expect(page.get_by_label("Owner")).to_have_value("owner")
    page.get_by_label("Name", exact=True).fill("churn-predictor")
    page.get_by_label("Display name").fill("Churn predictor")
    page.get_by_label("Description").fill("Predicts which customers leave.")
    page.get_by_label("Risk tier").select_option("low")
    page.get_by_label("On-call").fill("oncall@example.test")
    page.get_by_label("Consumers").fill("crm, crm-team@example.test\nmarketing, https://hooks.example.test/m, webhook")
    page.get_by_role("button", name="Register model").click()

    expect(page).to_have_url(re.compile(r"/models/churn-predictor/$"))
    expect(page.get_by_role("status").filter(has_text="registered")).to_contain_text(
        "Model churn-predictor registered."
    )
    consumers = page.get_by_test_id("consumer-table")
    expect(consumers.locator("tbody tr")).to_have_count(2)
    expect(consumers).to_contain_text("https://hooks.example.test/m")
    expect(consumers).to_contain_text("Webhook")
    assert AIModel.objects.get(name="churn-predictor").risk_tier == "low"


def test_model_form_shows_errors_next_to_the_fields(page: Page, login, owner):
    login(owner)
    page.goto("/models/new/")
    page.get_by_label("Name", exact=True).fill("Not A Slug")
    page.get_by_label("Display name").fill("Bad")
    page.get_by_label("On-call").fill("x")
    page.get_by_label("Consumers").fill("only-a-name")
    page.get_by_role("button", name="Register model").click()
    expect(page.locator('.error[data-field="consumers"]')).to_contain_text("line 1:")
    page.get_by_label("Consumers").fill("")
    page.get_by_role("button", name="Register model").click()
    expect(page.locator('.error[data-field="name"]')).to_contain_text("lower-case letters")
    expect(page.get_by_label("Display name")).to_have_value("Bad")


def test_an_owner_registers_a_version_with_the_deployments_metric_source(page: Page, login, owner, register):
    login(owner)
    page.goto("/models/fraud-scorer/versions/new/")
    expect(page.get_by_test_id("metric-source")).to_contain_text("set by a platform engineer")
    expect(page.get_by_label("Metric provider")).to_have_count(0)
    page.get_by_label("Version", exact=True).fill("1.1.0")
    page.get_by_label("Artifact URI").fill("s3://models/fraud-scorer/1.1.0")
    page.get_by_role("button", name="Register version").click()
    expect(page).to_have_url(re.compile(r"/models/fraud-scorer/versions/1\.1\.0/$"))


def test_register_a_version_and_see_it_on_the_model_page(page: Page, login, platform, register, screenshot):
    login(platform)
    page.goto("/models/fraud-scorer/")
    page.get_by_role("link", name="Register a version").click()
    expect(page).to_have_url(re.compile(r"/models/fraud-scorer/versions/new/$"))
    # Pre-filled with the pattern's numbers; production is not offered once a version exists.
    expect(page.locator("#id_promote_latency_p99_ratio")).to_have_value("1.2")
    expect(page.locator("#id_status option")).to_have_count(1)
    screenshot("version-form")

    page.get_by_label("Version", exact=True).fill("1.1.0")
    page.get_by_label("Artifact URI").fill("s3://models/fraud-scorer/1.1.0")
    page.locator("#id_promote_latency_p99_ratio").fill("1.1")
    page.get_by_label("Metric provider").select_option("push")
    page.get_by_text("Query overrides").click()
    page.get_by_label("Errors").fill('sum(rate(errs_total{model="$model"}[$window]))')
    page.get_by_role("button", name="Register version").click()

    expect(page).to_have_url(re.compile(r"/models/fraud-scorer/versions/1\.1\.0/$"))
    expect(page.get_by_role("status").filter(has_text="registered")).to_contain_text(
        "Version 1.1.0 of fraud-scorer registered."
    )
    expect(page.get_by_test_id("threshold-table")).to_contain_text("canary ≤ production × 1.1")
    expect(page.get_by_test_id("query-table")).to_contain_text('errs_total{model="$model"}')
    expect(page.get_by_test_id("frozen-note")).to_have_count(0)

    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="fraud-scorer").click()
    versions = page.get_by_test_id("version-table")
    expect(versions.locator("tbody tr")).to_have_count(2)
    expect(versions.locator("tbody tr").first).to_contain_text("1.1.0")
    expect(versions.locator("tbody tr").first).to_contain_text("Minor")


def test_a_bad_semver_is_shown_on_the_version_form(page: Page, login, owner, register):
    login(owner)
    page.goto("/models/fraud-scorer/versions/new/")
    page.get_by_label("Version", exact=True).fill("1.1")
    page.get_by_label("Artifact URI").fill("s3://models/fraud-scorer/1.1")
    page.locator("#id_promote_error_rate_pp").fill("0.3")
    page.get_by_role("button", name="Register version").click()
    expect(page.locator('.error[data-field="version"]')).to_contain_text("semantic version MAJOR.MINOR.PATCH")
    expect(page.get_by_label("Version", exact=True)).to_have_value("1.1")
    assert not ModelVersion.objects.filter(version="1.1").exists()

    page.get_by_label("Version", exact=True).fill("1.1.0")
    page.get_by_role("button", name="Register version").click()
    expect(page.locator('.error[data-field="promote_error_rate_pp"]')).to_contain_text("never loosening")


def test_risk_officer_reads_but_is_shown_no_register_actions(page: Page, login, role_user, register):
    login(role_user(Role.RISK_OFFICER, username="risk"))
    expect(model_rows(page)).to_have_count(3)
    expect(page.get_by_role("link", name="Register a model")).to_have_count(0)
    page.get_by_role("link", name="fraud-scorer").click()
    expect(page.get_by_role("link", name="Register a version")).to_have_count(0)

    page.goto("/models/new/")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("main")).to_contain_text("your roles may not register model")
    page.goto("/models/no-such-model/")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_demo_clock_banner_is_on_every_page(page: Page, login, owner, register, settings):
    settings.CLOCK_SPEED = 120.0
    login(owner)
    for path in ["/", "/models/fraud-scorer/", "/models/fraud-scorer/versions/1.0.0/", "/audit/"]:
        page.goto(path)
        expect(page.get_by_test_id("clock-banner")).to_have_text("Demo clock: durations are 120× shorter")
