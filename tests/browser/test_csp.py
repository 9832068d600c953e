"""Every page of the application, as the roles that use it, under the Content-Security-Policy in a
real browser: a violation (an inline script, handler or style the policy refuses, an eval) or any
console error fails the test. The canary page's charts must be drawn, Swagger UI must render the
API, and the dialog that htmx loads must open and close (behaviour the policy moved out of the
templates into static/js/canaryhub.js)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import TIMEOUT_MS
from tests.factories import PASSWORD
from tests.page_world import make_people, seed_pages

pytestmark = pytest.mark.browser

# Reported to the console (which the test reads) before the page's own scripts run.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`
                + ` at ${e.sourceFile}:${e.lineNumber} (${(e.sample || "").slice(0, 60)})`);
});
"""


@pytest.fixture(autouse=True)
def _router_dir(settings, tmp_path) -> None:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


def pages_for(ids: dict) -> dict[str | None, list[str]]:
    """Who visits what: each page as a role that sees it with content (None: not logged in)."""
    live, done, rolled = ids["live"], ids["done"], ids["rolled"]
    return {
        None: ["/accounts/login/", f"/governance/verify/{ids['certificate']}/", "/api/docs/",
               "/governance/signing-keys/"],
        "owner": ["/", "/home/", "/models/scorer/", "/models/scorer/versions/1.2.0/", "/models/new/",
                  "/models/scorer/versions/new/", "/canaries/", "/fleet/", f"/canaries/{live}/",
                  f"/canaries/{live}/report/", f"/canaries/{done}/report/", f"/canaries/{live}/pushes/",
                  f"/canaries/{live}/sign/owner/", f"/canaries/{live}/rollback/", f"/canaries/{live}/abort/",
                  f"/canaries/{rolled}/", "/inbox/", "/notifications/", "/slo/",
                  "/governance/threshold-changes/", f"/governance/threshold-changes/?canary={live}",
                  "/governance/incidents/", "/api/docs/"],
        "platform": ["/routers/", "/routers/mesh/", "/audit/", "/models/other/versions/1.1.0/canary/new/",
                     "/models/other/versions/1.1.0/canary/urgent/", "/assignments/sticky/",
                     f"/governance/incidents/{ids['incident']}/"],
        "mrm": ["/inbox/", f"/governance/threshold-changes/?canary={live}"],
        "gov": ["/governance/certificates/", f"/governance/certificates/{ids['certificate']}/"],
        "risk": ["/tokens/", "/governance/register/", "/governance/evidence/", f"/governance/evidence/?export={ids['export']}",
                 "/audit/", "/audit/verify/"],
        "oncall": [f"/canaries/{live}/revert/"],
    }


def watch(context: BrowserContext, problems: list[str]) -> Page:
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"{page.url}: {msg.text}"))
    page.on("pageerror", lambda err: problems.append(f"{page.url}: {err}"))
    return page


def visit(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    page.wait_for_load_state("networkidle")


def test_every_page_passes_the_content_security_policy(browser: Browser, live_server, role_user):
    people = make_people(role_user)
    ids = seed_pages(people)
    problems: list[str] = []
    for who, urls in pages_for(ids).items():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        page = watch(context, problems)
        if who is not None:
            visit(page, "/accounts/login/")
            page.get_by_label("Username").fill(who)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_test_id("user-name")).to_be_visible()
        for url in urls:
            visit(page, url)
            if url == f"/canaries/{ids['live']}/":
                # Plotly draws under the policy; the dialog htmx loads opens and closes.
                expect(page.locator('[data-chart="error_rate"][data-drawn]')).to_be_attached()
                expect(page.locator(".main-svg").first).to_be_visible()
                page.get_by_role("link", name="Roll back").click()
                dialog = page.get_by_role("dialog")
                expect(dialog).to_be_visible()
                dialog.get_by_role("button", name="Cancel").click()
                expect(dialog).to_be_hidden()
                expect(page.locator(".meter__fill").first).to_have_attribute("data-meter", "1")
                assert page.locator(".meter__fill").first.evaluate("e => e.style.width") == "1%"
            if url == "/api/docs/":
                expect(page.locator(".swagger-ui .info .title")).to_contain_text("CanaryHub API")
                expect(page.get_by_test_id("api-docs-back")).to_be_visible()
        context.close()
    assert not problems, "\n".join(problems)


def test_a_refused_inline_script_is_reported(browser: Browser, live_server):
    """The walk above would notice a violation: an inline script on one of the pages is caught."""
    problems: list[str] = []
    context = browser.new_context(base_url=live_server.url)
    page = watch(context, problems)
    visit(page, "/accounts/login/")
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.ran = 1";
                          document.body.appendChild(s); }""")
    page.wait_for_timeout(100)
    assert page.evaluate("() => window.ran") is None
    context.close()
    assert any("CSP violation: script-src" in p for p in problems), problems
