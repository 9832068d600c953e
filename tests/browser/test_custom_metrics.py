"""A version's custom metric on the canary page, in a real browser: its gate in the gates table,
named in words, with its status and what it measured, and its chart against production's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from canaryhub.canonical import normalise_json
from governance.access.permissions import Role
from monitoring import custom
from monitoring.evaluations import PROMOTION_GATES, Gate, evaluation_hash, overall_verdict
from monitoring.models import Evaluation
from monitoring.samples import Sample
from releases.canaries import services as lifecycle
from releases.register import services

pytestmark = pytest.mark.browser

REFUSALS = {"kind": "ratio", "worse": "higher", "promote_tolerance": 0.5, "rollback_threshold": 2}


def test_the_canary_page_names_a_custom_metric_gate_in_words(page: Page, login: Callable[..., Page], role_user,
                                                            settings, tmp_path, screenshot):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    settings.PROMETHEUS_URL = ""
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    services.model_register(actor=platform, name="help-desk", display_name="Help desk", risk_tier="medium",
                            owner="owner", on_call="x@example.test")
    services.version_register(actor=platform, model_name="help-desk", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="help-desk", version="1.1.0", artifact_uri="s3://2",
                              metrics={"provider": "push", "custom": {"answer_refusals": REFUSALS}})
    canary = lifecycle.canary_initiate(actor=owner, model_name="help-desk", version="1.1.0")
    detail = "share 4.00% vs production 2.00%: +2.000 pp worse (upper bound +2.600 pp, tolerance 0.5 pp) over 3000"
    gates = normalise_json([Gate(name, "green", 0.0, 0.0).to_dict() for name in PROMOTION_GATES]
                           + [Gate("custom.answer_refusals", "red", 2.0, 0.5, detail).to_dict()])
    end = timezone.now()
    start = end - timedelta(minutes=5)
    verdict = overall_verdict(gates).value
    window = {"canary": Sample(requests=3000, custom={"answer_refusals": {"x": 120.0, "n": 3000.0}}),
              "production": Sample(requests=30_000, custom={"answer_refusals": {"x": 600.0, "n": 30_000.0}})}
    _, _, _, record = custom.judge({"answer_refusals": {**REFUSALS, "rollback_threshold": 2.0}}, window, window)
    inputs = normalise_json({"source": "push", "custom": record})
    Evaluation.objects.create(
        canary=canary, stage_index=canary.stage_index, window_start=start, window_end=end, gates=gates,
        verdict=verdict, inputs=inputs,
        content_hash=evaluation_hash(canary_id=canary.pk, stage_index=canary.stage_index, window_start=start,
                                     window_end=end, gates=gates, verdict=verdict, inputs=inputs))
    login(owner)
    page.goto(f"/canaries/{canary.pk}/")
    row = page.get_by_test_id("gates").locator("tbody tr").filter(has_text="Answer refusals (custom metric)")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("red")
    expect(row).to_contain_text("+2.000 pp worse")
    expect(page.get_by_test_id("gates").locator("tbody tr")).to_have_count(6)
    # The declaration frozen on the canary, and on the version's page.
    expect(page.get_by_test_id("canary-metrics")).to_contain_text(
        "custom metric answer_refusals: ratio, worse when higher, promotion tolerance 0.5 pp, rollback threshold 2.0 pp")
    # Its chart: 4 % against production's 2 %, the limits 0.5 pp and 2 pp above production's.
    expect(page.locator('[data-chart="custom_1"][data-drawn]')).to_be_attached()
    expect(page.get_by_test_id("chart-custom_1").locator("h3")).to_contain_text(
        "Answer refusals (custom metric), canary against production")
    lines = page.evaluate(
        "() => Object.fromEntries(document.querySelector('[data-chart=\"custom_1\"]').data"
        ".map(t => [t.name, Array.from(t.y || [])]))")
    assert lines == {"Canary": [4], "Production": [2], "Promotion limit (production + 0.5 pp)": [2.5],
                     "Rollback threshold (production + 2 pp)": [4]}
    screenshot("canary-custom-metric")
    page.goto("/models/help-desk/versions/1.1.0/")
    expect(page.get_by_test_id("custom-metrics")).to_contain_text("custom metric answer_refusals: ratio")
