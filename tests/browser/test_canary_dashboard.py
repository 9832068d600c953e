"""The canary page's charts in a real browser: Plotly draws both series and the limits from the
Evaluation records' numbers, the live refresh adds the newest window in place, a rollback shows
as a marker, and without JavaScript the tables carry the same numbers. Screenshots of the
charts are kept in the test's temporary folder."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from governance.access.permissions import Role
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from tests.browser.conftest import TIMEOUT_MS
from tests.factories import PASSWORD, make_evaluation, window_inputs

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _fast_refresh(settings, tmp_path) -> None:
    settings.EVALUATION_CADENCE_S = 1
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def people(role_user) -> dict:
    return {"owner": role_user(Role.MODEL_OWNER, username="owner"), "platform": role_user(Role.PLATFORM, username="platform")}


@pytest.fixture
def canary(people) -> Canary:
    services.model_register(actor=people["platform"], name="scorer", display_name="Scorer", risk_tier="low",
                            owner="owner", on_call="oncall@example.test")
    services.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0", schedule="standard")
    Canary.objects.filter(pk=canary.pk).update(stage_entered_at=timezone.now() - timedelta(hours=1),
                                               initiated_at=timezone.now() - timedelta(hours=1))
    canary.refresh_from_db()
    now = timezone.now()
    make_evaluation(canary, window_end=now - timedelta(minutes=40), values={"error_rate": (0.2, 0.1)},
                    inputs=window_inputs(canary=(2000, 6), production=(198000, 198), p99_s=(0.3, 0.2)))
    make_evaluation(canary, window_end=now - timedelta(minutes=20), values={"error_rate": (0.05, 0.1)},
                    inputs=window_inputs(canary=(1000, 1), production=(99000, 99)))
    return canary


def plotted(page: Page, key: str) -> dict:
    """The traces Plotly holds for one chart: {name: y values}."""
    return page.evaluate(
        "key => Object.fromEntries(document.querySelector(`[data-chart=\"${key}\"]`).data"
        ".map(t => [t.name, Array.from(t.y || [])]))", key)


def test_charts_draw_both_series_and_the_limits_from_the_records(
        page: Page, login: Callable[..., Page], people, canary, tmp_path):
    login(people["owner"])
    page.goto(f"/canaries/{canary.pk}/")
    expect(page.locator('[data-chart="error_rate"][data-drawn]')).to_be_attached()
    error = plotted(page, "error_rate")
    assert error["Canary"] == [0.3, 0.1]  # 6 / 2000 and 1 / 1000, in percent
    assert error["Production"] == [0.1, 0.1]
    assert error["Promotion limit (production + margin)"] == [0.2, 0.2]
    assert error["Rollback threshold (production + margin)"] == [0.6, 0.6]
    latency = plotted(page, "latency_p99")
    assert latency["Canary p99 (worst window)"] == [300, 200]
    assert latency["Production p99"] == [200, 200]
    # The lines are on screen, not only in the data.
    expect(page.get_by_test_id("chart-error_rate").locator(".scatterlayer .trace")).to_have_count(5)
    # The gate table shows the newest record's gate value and limit.
    gate_row = page.get_by_test_id("gates").locator("tr", has_text="Error rate").first
    expect(gate_row).to_contain_text("0.05")
    # Drawn charts fold their tables away, one click from view.
    expect(page.get_by_test_id("table-error_rate")).not_to_have_attribute("open", "")
    page.screenshot(path=str(tmp_path / "canary-page.png"), full_page=True)
    assert (tmp_path / "canary-page.png").stat().st_size > 10_000


def test_latency_tokens_cost_llm_and_segment_panels_render_the_records(
        page: Page, login: Callable[..., Page], people, canary):
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=5), inputs=window_inputs(
        canary=(1000, 1), production=(99000, 99), p50_s=(0.06, 0.04), p95_s=(0.2, 0.12),
        tokens=((300000, 150000), (29700000, 9900000)), cost_usd=(3.0, 198.0),
        guardrail_blocks=(8, 495), schema_failures=(2, 99), unavailable=(1, 0),
        response_tokens=((320, 1000), (280, 800)),
        segments={"eu": ((500, 0), (49500, 50)), "us": ((500, 4), (49500, 49))}))
    login(people["owner"])
    page.goto(f"/canaries/{canary.pk}/")
    for key in ("latency_p50", "latency_p95", "tokens_per_request", "cost_per_1000", "guardrail_block_rate",
                "schema_failure_rate", "availability", "response_tokens", "segment_1", "segment_2"):
        expect(page.locator(f'[data-chart="{key}"][data-drawn]')).to_be_attached()
    # The LLM panels: the canary against production from the same window, with the limits drawn.
    guard = plotted(page, "guardrail_block_rate")
    assert guard["Canary"] == [None, None, 0.8] and guard["Production"] == [None, None, 0.5]
    assert guard["Promotion limit (production + margin)"] == [None, None, 1]
    assert guard["Rollback threshold (10 blocks a minute at the canary's traffic)"] == [None, None, 5]
    schema = plotted(page, "schema_failure_rate")
    assert schema["Canary"] == [None, None, 0.2] and schema["Rollback threshold (production + margin)"][-1] == 0.6
    assert plotted(page, "availability")["Promotion limit (production − margin)"] == [None, None, 99.9]
    assert plotted(page, "response_tokens")["Canary p95"] == [None, None, 1000]
    expect(page.get_by_test_id("chart-guardrail_block_rate").locator(".scatterlayer .trace")).to_have_count(4)
    expect(page.get_by_test_id("chart-availability").locator(".scatterlayer .trace")).to_have_count(3)
    expect(page.get_by_test_id("csv-response_tokens")).to_have_attribute("href", re.compile(r"/charts/response_tokens"))
    assert plotted(page, "latency_p50")["Canary p50"] == [None, None, 60]  # older windows recorded no p50
    assert plotted(page, "latency_p95")["Production p95"] == [None, None, 120]
    assert plotted(page, "tokens_per_request")["Canary"] == [None, None, 450]
    assert plotted(page, "tokens_per_request")["Promotion limit (production ×)"] == [None, None, 480]
    assert plotted(page, "cost_per_1000")["Production"] == [None, None, 2]
    # The worst segment first: us (0.8 % against 0.099 %) above eu.
    titles = page.locator('[data-testid^="chart-segment_"] h3').all_inner_texts()
    assert [t.split(":")[0] for t in titles] == ["Segment us", "Segment eu"]
    assert plotted(page, "segment_2")["Canary, us"] == [0.8]
    expect(page.get_by_test_id("csv-segment_2")).to_have_attribute("href", re.compile(r"/charts/segment_2"))
    expect(page.get_by_test_id("chart-segment_2").locator(".scatterlayer .trace")).to_have_count(4)


def test_live_refresh_adds_the_new_window_and_the_rollback_marker(
        page: Page, login: Callable[..., Page], people, canary):
    login(people["owner"])
    page.goto(f"/canaries/{canary.pk}/")
    expect(page.locator('[data-chart="error_rate"][data-drawn]')).to_be_attached()
    make_evaluation(canary, window_end=timezone.now(), inputs=window_inputs(canary=(1000, 9), production=(99000, 99)))
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"error_rate\"]').data[0].y.includes(0.9)", timeout=TIMEOUT_MS)
    assert plotted(page, "error_rate")["Canary"] == [0.3, 0.1, 0.9]
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="error rate tripled")
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"error_rate\"]').data.some(t => t.name === 'Rollback')",
        timeout=TIMEOUT_MS)
    texts = page.evaluate(
        "() => document.querySelector('[data-chart=\"error_rate\"]').data.find(t => t.name === 'Rollback').text")
    assert texts == ["Rolled back: error rate tripled"]


def test_without_javascript_the_tables_carry_the_numbers(browser: Browser, live_server, people, canary, tmp_path):
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False,
                                  viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill("owner")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"/canaries/{canary.pk}/")
        table = page.get_by_test_id("table-error_rate")
        expect(table).to_have_attribute("open", "")
        rows = table.locator("tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0).locator("td").nth(4)).to_have_text("0.3")
        expect(rows.nth(1).locator("td").nth(4)).to_have_text("0.1")
        expect(page.get_by_test_id("range-all")).to_have_attribute("href", "?range=all#canary-charts")
        page.screenshot(path=str(tmp_path / "canary-page-no-js.png"), full_page=True)
    finally:
        context.close()


def test_fleet_page_lists_the_canary_and_sorts(page: Page, login: Callable[..., Page], people, canary, tmp_path):
    make_evaluation(canary, window_end=timezone.now(), inputs=window_inputs(difference_pp=0.01))
    login(people["platform"])  # nothing waits for platform: the login lands on the fleet
    expect(page).to_have_url(re.compile(r"/fleet/$"))
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Fleet")).to_have_attribute("aria-current", "page")
    row = page.locator(f'[data-canary="{canary.pk}"]')
    expect(row).to_contain_text("scorer")
    expect(row).to_contain_text("1/6 · 1%")
    expect(row.locator("svg.spark polyline")).to_be_attached()
    page.get_by_test_id("fleet-table").get_by_role("link", name="Model", exact=True).click()
    expect(page).to_have_url(re.compile(r"sort=model"))
    expect(page.get_by_test_id("fleet-count")).to_have_text("1 active canary.")
    page.screenshot(path=str(tmp_path / "fleet-page.png"), full_page=True)
    assert (tmp_path / "fleet-page.png").stat().st_size > 5_000


def test_model_page_lists_past_canaries_with_outcome_and_stage_times(
        page: Page, login: Callable[..., Page], people, canary):
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="error rate tripled")
    login(people["owner"])
    page.goto("/models/scorer/")
    row = page.get_by_test_id("canary-history").locator(f'[data-canary="{canary.pk}"]')
    expect(row.locator('[data-cell="outcome"]')).to_have_text("rolled back")
    expect(row.locator('[data-cell="decided-by"]')).to_have_text("manual rollback: error rate tripled")
    expect(row.locator('[data-cell="stage-times"]')).to_contain_text("1% 1 h")


def test_report_page_after_a_rollback(page: Page, login: Callable[..., Page], people, canary):
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="error rate tripled")
    login(people["owner"])
    page.goto(f"/canaries/{canary.pk}/")
    page.get_by_test_id("report-link").click()
    expect(page.get_by_test_id("report-outcome")).to_have_text("rolled back")
    expect(page.get_by_test_id("report-stages").locator('[data-stage="1"] [data-cell="error-rate"]')).to_have_text(
        "0.233% / 0.1%")  # (6 + 1) errors in 2,000 + 1,000 requests, against 297 in 297,000
    expect(page.get_by_test_id("report-anomalies")).to_contain_text("Rolled back: error rate tripled")
    expect(page.locator('[data-chart="router_split"][data-drawn]')).to_be_attached()
