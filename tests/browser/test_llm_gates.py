"""The LLM serving gates on the canary page, in a real browser: the evaluator's gates of an LLM
canary (tokens per request red, availability short of data) in the gates table, named in words,
and in what the stage waits for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from canaryhub.canonical import normalise_json
from governance.access.permissions import Role
from monitoring.evaluations import evaluation_hash
from monitoring.evaluator import decide
from monitoring.models import Evaluation
from monitoring.samples import Sample
from monitoring.thresholds import DEFAULT_THRESHOLDS
from releases.canaries import services as lifecycle
from releases.register import services

pytestmark = pytest.mark.browser


def sample(requests, tokens, unavailable, end):
    return Sample(requests=requests, errors=unavailable, unavailable=unavailable, tokens_in=requests * tokens,
                  cost_usd=requests * 0.001, schema_failures=requests // 1000, last_seen=end, present=True)


def test_the_canary_page_names_the_llm_gates_in_words(page: Page, login: Callable[..., Page], role_user, settings,
                                                      tmp_path, screenshot):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    settings.PROMETHEUS_URL = ""
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    services.model_register(actor=platform, name="chat", display_name="Chat", risk_tier="medium", owner="owner",
                            on_call="x@example.test")
    services.version_register(actor=platform, model_name="chat", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="chat", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=owner, model_name="chat", version="1.1.0")
    end = timezone.now()
    start = end - timedelta(minutes=5)
    pair = {"canary": sample(3000, 650, 1, end), "production": sample(300_000, 500, 30, end)}
    d = decide(thresholds=DEFAULT_THRESHOLDS, window=pair, stage=pair, now=end, staleness_limit_s=300,
               traffic_percent=1, random_split=False, stage_elapsed_s=3600)
    gates = normalise_json([g.to_dict() for g in d.gates])
    inputs = normalise_json(d.inputs)
    verdict = d.verdict.value
    Evaluation.objects.create(
        canary=canary, stage_index=canary.stage_index, window_start=start, window_end=end, gates=gates,
        verdict=verdict, inputs=inputs,
        content_hash=evaluation_hash(canary_id=canary.pk, stage_index=canary.stage_index, window_start=start,
                                     window_end=end, gates=gates, verdict=verdict, inputs=inputs))
    login(owner)
    page.goto(f"/canaries/{canary.pk}/")
    rows = page.get_by_test_id("gates").locator("tbody tr")
    tokens = rows.filter(has_text="Tokens per request")
    expect(tokens).to_have_count(1)
    expect(tokens).to_contain_text("red")
    expect(tokens).to_contain_text("tokens per request 650 vs production 500")
    for label in ("Cost per request", "Guardrail block rate", "Output-schema failures", "Availability"):
        expect(rows.filter(has_text=label)).to_have_count(1)
    waits = page.get_by_test_id("hold-reason")
    expect(waits).to_contain_text("Tokens per request: worse than the promotion gate allows")
    expect(waits).to_contain_text("Availability: needs about")
    screenshot("canary-llm-gates")
