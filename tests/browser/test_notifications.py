"""The Notifications page in a real browser: a person's feed with the unread count in the
navigation, and platform's outbox with "retry now"."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from monitoring.models import NotificationDelivery
from releases.canaries import services as lifecycle
from releases.register import services

pytestmark = pytest.mark.browser


@pytest.fixture
def rolled_back(platform, owner, settings):
    settings.NOTIFY_PAGERDUTY_ROUTING_KEY = "pd-key-1234"
    services.model_register(actor=platform, name="ranker", display_name="Ranker", risk_tier="medium",
                            owner="owner", on_call="x")
    services.version_register(actor=platform, model_name="ranker", version="1.0.0", artifact_uri="s3://r1",
                              status="production")
    services.version_register(actor=platform, model_name="ranker", version="1.1.0", artifact_uri="s3://r2")
    canary = lifecycle.canary_initiate(actor=owner, model_name="ranker", version="1.1.0")
    lifecycle.canary_rollback(actor=owner, canary_id=canary.pk, reason="quality drop on long prompts")
    return canary


def test_the_feed_shows_unread_messages_and_marks_them_read(page: Page, login, owner, rolled_back, screenshot):
    login(owner)
    expect(page.get_by_test_id("unread-count")).to_have_text("2")
    page.get_by_role("link", name="Notifications").click()
    items = page.get_by_test_id("feed-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Canary ROLLED BACK")
    expect(items.first).to_contain_text("quality drop on long prompts")
    expect(items.first.get_by_role("link", name="Evidence")).to_have_attribute(
        "href", f"http://127.0.0.1:8000/canaries/{rolled_back.pk}/")
    screenshot("notifications")
    page.get_by_test_id("mark-read").click()
    expect(page.get_by_test_id("feed-unread")).to_have_text("0 unread")
    expect(page.get_by_test_id("unread-count")).to_have_count(0)
    expect(page.get_by_test_id("outbox")).to_have_count(0)


def test_platform_sees_the_outbox_and_retries_a_dead_letter(page: Page, login, platform, rolled_back, screenshot):
    page_row = NotificationDelivery.objects.get(channel="pagerduty")
    NotificationDelivery.objects.filter(pk=page_row.pk).update(status="dead", attempts=7, last_error="HTTP 503: down")
    login(platform)
    page.goto("/notifications/")
    page.get_by_test_id("outbox-status-filter").select_option("dead")
    rows = page.get_by_test_id("outbox-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("HTTP 503: down")
    expect(rows.first).to_contain_text("routing key …1234")
    screenshot("outbox")
    page.get_by_test_id(f"retry-{page_row.pk}").click()
    expect(page.get_by_text(f"Delivery #{page_row.pk} is due again now.")).to_be_visible()
    page_row.refresh_from_db()
    assert page_row.status == "pending"
