"""Playwright fixtures: Debian's headless Chromium driving pytest-django's live server.

The browser is the system one (/usr/bin/chromium): these tests never download a browser. When
it is missing they fail with a message saying so, instead of skipping and passing unseen."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Browser, Page, expect, sync_playwright

from governance.access.permissions import Role
from tests.factories import PASSWORD

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a
# thread with a running loop unless told that this synchronous use is deliberate.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 10_000
# Set to a folder to keep screenshots of the main pages, for a look at the layout.
SCREENSHOT_DIR = os.environ.get("CANARYHUB_SCREENSHOT_DIR", "")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium "
            "(apt-get install chromium); they never download a browser.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def _role_groups(live_server) -> None:
    """The role groups are rows written by a migration, and the flush that ends every
    live-server test deletes them: put them back for the next test."""
    for role in Role:
        Group.objects.get_or_create(name=role.value)


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def login(page: Page) -> Callable[..., Page]:
    """Log in through the login form, as a person would."""

    def log_in(user) -> Page:
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(user.get_username())
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_test_id("user-name")).to_be_visible()
        return page

    return log_in


@pytest.fixture
def screenshot(page: Page) -> Callable[[str], None]:
    def take(name: str) -> None:
        if SCREENSHOT_DIR:
            page.screenshot(path=str(Path(SCREENSHOT_DIR) / f"canaryhub-{name}.png"), full_page=True)

    return take
