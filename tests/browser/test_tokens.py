"""API tokens in a real browser: a person creates a token from the user menu's API tokens link, sees
its secret once, no longer after reloading, and revokes it; a platform engineer revokes a
service account's token."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.tokens.models import ApiToken
from governance.tokens.services import token_create
from releases.register import services

pytestmark = pytest.mark.browser


def open_tokens(page: Page) -> None:
    """The API tokens page, through the user menu."""
    page.get_by_test_id("user-name").click()
    page.get_by_test_id("user-menu").get_by_test_id("nav-tokens").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()


def works(secret: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client.get("/api/v1/models/").status_code == 200


def test_a_person_creates_a_token_sees_it_once_and_revokes_it(page: Page, login, role_user, screenshot):
    owner = role_user(Role.MODEL_OWNER, username="owner", first_name="Olivia", last_name="Owner")
    login(owner)
    open_tokens(page)
    page.get_by_test_id("token-name").fill("laptop scripts")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("token-secret").inner_text()
    token = ApiToken.objects.get(name="laptop scripts")
    assert secret.startswith(f"chk_{token.prefix}_") and works(secret)
    screenshot("token-created")
    open_tokens(page)
    expect(page.get_by_test_id(f"token-{token.prefix}")).to_be_visible()
    expect(page.get_by_test_id("token-secret")).to_have_count(0)
    assert secret not in page.content()
    page.get_by_test_id(f"revoke-{token.prefix}").click()
    expect(page.get_by_test_id(f"token-status-{token.prefix}")).to_contain_text("revoked")
    assert not works(secret)


def test_a_platform_engineer_revokes_a_service_accounts_token(page: Page, login, role_user):
    platform = role_user(Role.PLATFORM, username="platform", first_name="Pat", last_name="Platform")
    bot = role_user(Role.SERVICE_ACCOUNT, username="ci")
    role_user(Role.MODEL_OWNER, username="owner")
    services.model_register(actor=platform, name="scorer", display_name="scorer", risk_tier="medium", owner="owner",
                            on_call="x")
    ci, secret = token_create(actor=platform, user=bot, name="ci", scope=["scorer"])
    login(platform)
    open_tokens(page)
    row = page.get_by_test_id("all-tokens").get_by_test_id(f"token-{ci.prefix}")
    expect(row).to_contain_text("ci: scorer")
    row.get_by_placeholder("reason (optional)").fill("printed in a build log")
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text(f"Token {ci.prefix} (ci) of ci revoked.")).to_be_visible()
    expect(page.get_by_test_id(f"token-status-{ci.prefix}")).to_contain_text("revoked")
    assert not works(secret)
