"""Canaries in a real browser: an owner starts a high-risk canary through the form, owner and MRM
sign its start and its first promotion in the signing dialog from two browser sessions, and
the owner's page follows on its own; an owner rolls a canary back with a reason."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from governance.access.permissions import Role
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from tests.browser.conftest import SCREENSHOT_DIR, TIMEOUT_MS
from tests.factories import PASSWORD, make_evaluation

pytestmark = pytest.mark.browser

STATEMENT = "I reviewed the evaluation and the stage plan and approve this step."


@pytest.fixture(autouse=True)
def _fast_refresh(settings, tmp_path) -> None:
    # The canary page refreshes itself every cadence: a short one lets the test watch it happen.
    settings.EVALUATION_CADENCE_S = 2
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def people(role_user) -> dict:
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner", first_name="Olivia", last_name="Owner"),
        "mrm": role_user(Role.MRM, username="mrm", first_name="Mira", last_name="Validator"),
        "platform": role_user(Role.PLATFORM, username="platform"),
    }


def register(people, *, name: str, tier: str) -> None:
    services.model_register(
        actor=people["platform"], name=name, display_name=name.replace("-", " ").capitalize(), risk_tier=tier,
        owner="owner", on_call="fraud-oncall@example.test",
    )
    services.version_register(
        actor=people["platform"], model_name=name, version="1.0.0", artifact_uri="s3://m/1.0.0", status="production"
    )
    services.version_register(actor=people["platform"], model_name=name, version="1.1.0", artifact_uri="s3://m/1.1.0")


@pytest.fixture
def mrm_page(browser: Browser, live_server) -> Iterator[Page]:
    """A second browser context: the MRM validator's own session beside the owner's."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def log_in(page: Page, user) -> Page:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("user-name")).to_be_visible()
    return page


def shot(page: Page, name: str) -> None:
    if SCREENSHOT_DIR:
        page.screenshot(path=str(Path(SCREENSHOT_DIR) / f"canaryhub-{name}.png"), full_page=True)


def open_dialog(page: Page, link_name: str) -> None:
    """Click a link that opens a dialog. Before htmx has loaded (it is deferred, and runs after the
    page's other deferred scripts, Plotly's among them) the same link goes to the full page."""
    page.wait_for_load_state("load")
    page.get_by_role("link", name=link_name).click()


def sign_in_dialog(page: Page, role_label: str, *, password: str = PASSWORD) -> None:
    open_dialog(page, f"Sign as {role_label}")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Statement").fill(STATEMENT)
    dialog.get_by_label("Your password").fill(password)
    dialog.get_by_role("button", name=f"Sign as {role_label}").click()


def test_high_risk_canary_started_and_signed_by_owner_and_mrm(
    page: Page, login: Callable[..., Page], mrm_page: Page, people, screenshot
):
    register(people, name="fraud-scorer", tier="high")
    login(people["owner"])

    # Start it through the form; the preview says who signs before anything is submitted.
    page.goto("/models/fraud-scorer/versions/1.1.0/")
    page.get_by_role("link", name="Start a canary").click()
    expect(page).to_have_url(re.compile(r"/models/fraud-scorer/versions/1\.1\.0/canary/new/$"))
    preview = page.get_by_test_id("canary-preview")
    expect(page.get_by_label("Schedule")).to_have_value("conservative")
    expect(page.get_by_label("Rollback contact")).to_have_value("fraud-oncall@example.test")
    expect(preview.get_by_test_id("preview-signatures")).to_have_count(7)
    expect(preview.get_by_test_id("preview-signatures").first).to_have_text("Model owner + Model risk (MRM)")
    expect(preview).to_contain_text("48 h")
    expect(page.get_by_test_id("preview-warnings")).to_have_count(0)
    # A high-risk model cannot run the accelerated schedule: disabled, with the reason, here and in the preview.
    accelerated = page.get_by_label("Schedule").locator('option[value="accelerated"]')
    expect(accelerated).to_be_disabled()
    expect(accelerated).to_contain_text("allowed only for low-risk models; this model is high risk")
    expect(preview.get_by_test_id("preview-refused")).to_contain_text("(accelerated is allowed only for low-risk models")
    # The preview the form asks for when the schedule changes says so too, should it be asked.
    answer = page.request.get("/models/fraud-scorer/versions/1.1.0/canary/new/?schedule=accelerated",
                              headers={"HX-Request": "true", "HX-Target": "canary-preview"})
    assert "This schedule cannot start: accelerated is allowed only for low-risk models" in answer.text()
    page.get_by_label("Schedule").select_option("standard")
    expect(page.get_by_test_id("preview-warnings")).to_contain_text("recommends the conservative schedule")
    expect(preview.get_by_test_id("preview-signatures")).to_have_count(6)
    page.get_by_label("Schedule").select_option("conservative")
    expect(page.get_by_test_id("preview-warnings")).to_have_count(0)
    page.get_by_label("Rationale").fill("Conservative ramp: first release of the new feature set.")
    screenshot("canary-start")
    page.get_by_role("button", name="Start canary").click()

    expect(page).to_have_url(re.compile(r"/canaries/\d+/$"))
    canary = Canary.objects.get()
    expect(page.get_by_role("status").filter(has_text="initiated")).to_contain_text("Model owner + Model risk (MRM) have signed the start")
    expect(page.get_by_test_id("canary-state")).to_have_text("Pending approval")
    expect(page.get_by_test_id("traffic-percent")).to_have_text("0%")

    # The owner signs the start; a wrong password is refused inside the dialog.
    sign_in_dialog(page, "Model owner", password="not my password")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("alert")).to_contain_text("re-authentication failed")
    expect(dialog.get_by_test_id("sign-meaning")).to_contain_text(
        f"approves starting canary #{canary.pk} of fraud-scorer@1.1.0 at 1% of traffic"
    )
    dialog.get_by_label("Your password").fill(PASSWORD)
    dialog.get_by_role("button", name="Sign as Model owner").click()
    expect(page.get_by_role("status").filter(has_text="signature")).to_contain_text("Still needed: Model risk (MRM).")
    expect(page.get_by_test_id("required-signatures")).to_contain_text("Olivia Owner")

    # MRM, in a session of their own, finds the start in the inbox and signs it there.
    log_in(mrm_page, people["mrm"])
    expect(mrm_page.get_by_test_id("inbox-count")).to_have_text("1")
    mrm_page.get_by_role("link", name="Inbox").click()
    rows = mrm_page.get_by_test_id("inbox-table").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("fraud-scorer")
    expect(rows.first).to_contain_text("Start at 1%")
    shot(mrm_page, "canary-inbox")
    sign_in_dialog(mrm_page, "Model risk (MRM)")
    expect(mrm_page).to_have_url(re.compile(rf"/canaries/{canary.pk}/$"))
    expect(mrm_page.get_by_test_id("canary-state")).to_have_text("Running")
    expect(mrm_page.get_by_test_id("inbox-count")).to_have_count(0)
    # Off the self-refreshing page: the live server shares one in-memory SQLite connection
    # between its request threads, so fewer concurrent requests make a steadier test.
    mrm_page.goto("/inbox/")
    expect(rows.first).to_contain_text("Nothing waits for your signature")

    # The owner's page follows by itself (htmx refresh): the first stage runs at 1%.
    expect(page.get_by_test_id("canary-state")).to_have_text("Running")
    expect(page.get_by_test_id("traffic-percent")).to_have_text("1%")
    expect(page.get_by_test_id("current-stage")).to_have_text("1 of 7")
    expect(page.get_by_test_id("hold-reason")).to_contain_text("Minimum time in this stage")
    expect(page.get_by_test_id("hold-reason")).to_contain_text("Nothing to do but wait")
    timeline = page.get_by_test_id("stage-timeline")
    expect(timeline.locator("tbody tr").first).to_contain_text("Mira Validator")
    screenshot("canary-running")

    # Test setup, not product behaviour: the residence is served and a green evaluation arrives.
    Canary.objects.filter(pk=canary.pk).update(stage_entered_at=timezone.now() - timedelta(hours=49))
    evaluation = make_evaluation(canary, window_end=timezone.now())

    expect(page.get_by_test_id("readiness")).to_contain_text("Ready for signatures")
    expect(page.get_by_test_id("gates").locator("tbody tr")).to_have_count(5)
    open_dialog(page, "Sign as Model owner")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_test_id("sign-evaluation")).to_contain_text(
        f"You are signing on evaluation {evaluation.content_hash[:12]}…"
    )
    expect(dialog.get_by_test_id("sign-meaning")).to_contain_text("from 1% to 5%")
    screenshot("canary-sign-dialog")
    dialog.get_by_label("Statement").fill(STATEMENT)
    dialog.get_by_label("Your password").fill(PASSWORD)
    dialog.get_by_role("button", name="Sign as Model owner").click()
    expect(page.get_by_role("status").filter(has_text="signature")).to_contain_text("Still needed: Model risk (MRM).")

    mrm_page.reload()
    expect(rows.first).to_contain_text("Promote 1% → 5%")
    sign_in_dialog(mrm_page, "Model risk (MRM)")
    expect(mrm_page.get_by_role("status").filter(has_text="signature")).to_contain_text("Stage 2 entered: 5%.")

    expect(page.get_by_test_id("current-stage")).to_have_text("2 of 7")
    expect(page.get_by_test_id("traffic-percent")).to_have_text("5%")
    expect(page.get_by_test_id("canary-state")).to_have_text("Running")
    expect(timeline.locator("tbody tr").nth(1)).to_contain_text("current")
    expect(timeline.locator("tbody tr").nth(1)).to_contain_text("from 1% to 5%")
    screenshot("canary-promoted")


def test_owner_rolls_back_with_a_reason(page: Page, login: Callable[..., Page], people, screenshot):
    register(people, name="churn-predictor", tier="medium")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="churn-predictor", version="1.1.0")
    make_evaluation(canary, window_end=timezone.now(), error_rate="red", inputs={
        "window": {"canary": {"requests": 3000, "errors": 45}, "production": {"requests": 297_000, "errors": 2970}},
        "rollback_window": {"error_rate_two_windows": {"canary": [88, 6000], "production": [5940, 594_000]}}})
    login(people["owner"])
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Canaries").click()
    page.get_by_test_id("canary-table").get_by_role("link", name=f"#{canary.pk}").click()
    expect(page.get_by_test_id("traffic-percent")).to_have_text("1%")
    expect(page.get_by_test_id("gates")).to_contain_text("red")
    # What the error trigger can catch at this traffic (61 errors in 3,000, 102 in 6,000 against 1 %).
    expect(page.get_by_test_id("rollback-sensitivity")).to_contain_text(
        re.compile(r"\(production 1\.00%\):\s+a rise of \+1\.03 pp or more\s+over one window \(3000 canary requests\);"
                   r"\s+a rise of \+0\.70 pp or more\s+over two windows \(6000 canary requests\)\."))

    open_dialog(page, "Roll back")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Every user goes back to the production version")
    dialog.get_by_role("button", name="Roll back now").click()
    expect(dialog.locator('.error[data-field="reason"]')).to_be_visible()  # the reason is required
    dialog.get_by_label("Reason").fill("Error rate red since the last deploy; rolling back while we investigate.")
    dialog.get_by_role("button", name="Roll back now").click()

    expect(page.get_by_test_id("canary-state")).to_have_text("Rolled back")
    expect(page.get_by_test_id("traffic-percent")).to_have_text("0%")
    expect(page.get_by_test_id("end-reason")).to_contain_text("Error rate red since the last deploy")
    expect(page.get_by_role("link", name="Roll back")).to_have_count(0)
    expect(page.get_by_role("link", name="Abort")).to_have_count(0)
    screenshot("canary-rolled-back")
    canary.refresh_from_db()
    assert (canary.state, canary.traffic_percent) == (Canary.State.ROLLED_BACK, 0)

    nav.get_by_role("link", name="Canaries").click()
    page.get_by_test_id("state-filter").select_option("rolled_back")
    expect(page.get_by_test_id("canary-table").locator("tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"\?state=rolled_back"))
    screenshot("canary-list")
    page.get_by_test_id("state-filter").select_option("running")
    expect(page.get_by_test_id("canary-table")).to_contain_text("No canary matches these filters.")
