"""Governance evidence pages in a real browser: certificate queue and page, public
verification, incidents with the root-cause form, the MRM register, evidence export."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from playwright.sync_api import Page, expect

from canaryhub import keyring
from governance.access.permissions import Role
from releases.canaries import services as lifecycle
from tests.governance.helpers import make_model, run_to_completion

pytestmark = pytest.mark.browser


@pytest.fixture
def people(role_user):
    return {r: role_user(role, username=r, first_name=r.title(), last_name="Test") for r, role in [
        ("owner", Role.MODEL_OWNER), ("platform", Role.PLATFORM), ("mrm", Role.MRM),
        ("gov", Role.AI_GOVERNANCE), ("risk", Role.RISK_OFFICER), ("oncall", Role.ON_CALL)]}


@pytest.fixture
def completed(people):
    make_model(people["platform"])
    return run_to_completion(owner=people["owner"], mrm=people["mrm"])


def test_governance_issues_certificate_and_risk_officer_downloads_and_verifies(page: Page, login, people, completed,
                                                                               browser, live_server, screenshot):
    login(people["gov"])
    page.get_by_role("link", name="Certificates").click()
    review = page.get_by_test_id(f"review-{completed.pk}")
    expect(review.get_by_test_id("check-audit_chain")).to_contain_text("passed")
    review.get_by_role("button", name="Issue certificate").click()
    expect(page.get_by_test_id("certificate-version")).to_contain_text("1.1.0")
    key = keyring.active_key()
    expect(page.get_by_test_id("certificate-key-fingerprint")).to_have_text(key.fingerprint)
    screenshot("certificate")

    context = browser.new_context(base_url=live_server.url, accept_downloads=True)
    risk = context.new_page()
    risk.goto("/accounts/login/")
    risk.get_by_label("Username").fill("risk")
    risk.get_by_label("Password").fill("correct horse battery staple")
    risk.get_by_role("button", name="Log in").click()
    risk.get_by_role("link", name="Evidence").click()
    risk.get_by_test_id("evidence-model").select_option("scorer")
    expect(risk.get_by_test_id("evidence-canaries").locator("tbody tr")).to_have_count(1)
    expect(risk.get_by_test_id(f"evidence-canary-{completed.pk}")).to_have_attribute(
        "href", f"/canaries/{completed.pk}/")
    with risk.expect_download() as info:
        risk.get_by_test_id(f"bundle-{completed.pk}").click()
    data = open(info.value.path(), "rb").read()
    assert "manifest.json" in zipfile.ZipFile(io.BytesIO(data)).namelist()
    risk.get_by_test_id(f"certificate-{completed.pk}").click()
    risk.get_by_role("link", name="Verify authenticity").click()
    expect(risk.get_by_test_id("certificate-verdict")).to_contain_text("Genuine and unaltered")
    context.close()


def test_public_verification_page_needs_no_login(page: Page, people, completed):
    from governance.certificates.services import certificate_decide

    cert = certificate_decide(actor=people["gov"], canary_id=completed.pk, issue=True)
    page.goto(f"/governance/verify/{cert.pk}/")
    expect(page.get_by_test_id("certificate-verdict")).to_contain_text("Genuine and unaltered")


def test_oncall_files_root_cause_and_mrm_accepts(page: Page, login, people, browser, live_server):
    make_model(people["platform"])
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="quality dropped")
    login(people["oncall"])
    page.get_by_role("link", name="Incidents").click()
    table = page.get_by_test_id("incident-table")
    expect(table.get_by_role("link", name=f"#{canary.pk}", exact=True)).to_have_attribute(
        "href", f"/canaries/{canary.pk}/")
    table.get_by_role("link").first.click()
    # The canary is a link wherever it is named: in the summary and in the facts.
    expect(page.get_by_test_id("incident-summary").get_by_role("link", name=f"Canary #{canary.pk}")).to_have_attribute(
        "href", f"/canaries/{canary.pk}/")
    expect(page.get_by_test_id("incident-canary")).to_have_attribute("href", f"/canaries/{canary.pk}/")
    incident_url = re.sub(r"^https?://[^/]+", "", page.url)
    form = page.get_by_test_id("root-cause-form")
    # Styled as the main forms: bold field names, bordered full-width inputs, help under them.
    ref = form.get_by_label("Link to the version change")
    expect(ref).to_have_css("border-top-color", "rgb(197, 205, 216)")
    expect(form.locator("label > span").first).to_have_css("font-weight", "600")
    expect(form.get_by_text("What changes before the version is canaried again.")).to_be_visible()
    form.get_by_label("Cause").fill("The 1.1.0 prompt template dropped the system message.")
    form.get_by_label("Fix").fill("Restore the system message; add a regression test.")
    form.get_by_role("button", name="File root cause").click()
    expect(page.get_by_test_id("incident-status")).to_have_text("Root cause filed")
    page.get_by_test_id("user-name").click()  # the user menu
    page.get_by_role("button", name="Log out").click()
    login(people["mrm"])
    page.goto(re.sub(r"^https?://[^/]+", "", page.url) or "/")
    page.get_by_role("link", name="Incidents").click()
    page.get_by_test_id("incident-status-filter").select_option("root_cause_filed")
    expect(page.get_by_test_id("incident-table").locator("tbody tr")).to_have_count(1)
    page.get_by_test_id("incident-table").get_by_role("link").first.click()
    page.get_by_role("button", name="Accept root cause").click()
    expect(page.get_by_test_id("incident-status")).to_have_text("Resolved")
    # The MRM register names the failure's canary and incident as links, stages numbered from 1.
    page.get_by_role("link", name="MRM register").click()
    page.get_by_test_id("register-outcome").select_option("failed")
    row = page.get_by_test_id("register-table").locator("tbody tr").first
    expect(row.get_by_test_id("register-canary")).to_have_attribute("href", f"/canaries/{canary.pk}/")
    expect(row.get_by_test_id("register-incident")).to_have_attribute("href", incident_url)
    expect(row).to_contain_text("rolled back at stage 1")


def test_mrm_register_filters_and_exports_csv(page: Page, login, people, completed):
    login(people["risk"])
    page.get_by_role("link", name="MRM register").click()
    rows = page.get_by_test_id("register-table").locator("tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.last).to_contain_text("stage 1 (")
    expect(rows.first.get_by_test_id("register-canary")).to_have_attribute("href", f"/canaries/{completed.pk}/")
    page.get_by_test_id("register-outcome").select_option("failed")
    expect(rows.first).to_contain_text("No validation event matches")
    with page.expect_download() as info:
        page.get_by_test_id("register-csv").click()
    assert open(info.value.path()).read().startswith("at,model,version")


def test_evidence_export_for_a_model_shows_progress_and_downloads(page: Page, login, people, completed):
    login(people["risk"])
    page.get_by_role("link", name="Evidence").click()
    form = page.get_by_test_id("export-form")
    expect(form.get_by_label("From")).to_have_css("border-top-color", "rgb(197, 205, 216)")
    expect(form.locator("label > span").first).to_have_css("font-weight", "600")
    form.get_by_test_id("export-scope").select_option("model")
    form.get_by_test_id("export-model").select_option("scorer")
    form.get_by_role("button", name="Build export").click()
    expect(page.get_by_test_id("export-status")).to_have_text("Ready")
    # One truth: the list of recent exports says the same as the card.
    expect(page.get_by_test_id("export-list").locator("li").first).to_contain_text("Ready")
    with page.expect_download() as info:
        page.get_by_test_id("export-download").click()
    assert "manifest.json" in zipfile.ZipFile(info.value.path()).namelist()


def test_an_export_built_while_the_page_is_open_reads_ready_on_the_card_and_in_the_list(page: Page, login, people,
                                                                                         completed):
    from django.utils import timezone

    from governance.evidence.models import EvidenceExport
    from governance.evidence.services import evidence_export_build

    # Queued as the worker would find it; the page is opened before it is built.
    export = EvidenceExport.objects.create(scope="canary", canary=completed, requested_by=people["risk"],
                                           created_at=timezone.now())
    login(people["risk"])
    page.goto(f"/governance/evidence/?export={export.pk}")
    expect(page.get_by_test_id("export-status")).to_have_text("Queued")
    expect(page.get_by_test_id(f"export-row-{export.pk}")).to_contain_text("Queued")
    evidence_export_build(export_id=export.pk)
    expect(page.get_by_test_id("export-status")).to_have_text("Ready")
    expect(page.get_by_test_id(f"export-row-{export.pk}")).to_contain_text("Ready")
    expect(page.get_by_test_id(f"export-row-{export.pk}").get_by_role("link", name="download")).to_be_visible()
