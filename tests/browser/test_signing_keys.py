"""The public signing-keys page in a real browser: anyone sees the keys and downloads the
verifier whose SHA-256 the page shows."""

from __future__ import annotations

import hashlib

import pytest
from playwright.sync_api import Browser, expect

from canaryhub import keyring

pytestmark = pytest.mark.browser


def test_anyone_sees_the_keys_and_downloads_the_verifier_the_page_vouches_for(browser: Browser, live_server):
    key = keyring.active_key()
    context = browser.new_context(base_url=live_server.url, accept_downloads=True)  # not logged in
    page = context.new_page()
    page.goto("/governance/signing-keys/")
    page.wait_for_load_state("load")
    row = page.get_by_test_id(f"signing-key-{key.key_id}")
    expect(row).to_contain_text(key.fingerprint)
    expect(row).to_contain_text("Ed25519")
    expect(page.get_by_test_id(f"public-key-{key.key_id}")).to_contain_text("BEGIN PUBLIC KEY")
    shown = page.get_by_test_id("verifier-sha256").inner_text().strip()
    with page.expect_download() as info:
        page.get_by_test_id("verifier-download").click()
    data = open(info.value.path(), "rb").read()
    assert hashlib.sha256(data).hexdigest() == shown
    assert data.startswith(b"#!/usr/bin/env python3")
    context.close()
