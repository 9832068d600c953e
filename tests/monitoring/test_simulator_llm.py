"""The simulator's LLM serving counts: guardrail blocks at a small base rate (capped in blocks a
minute, so a demo's scaled traffic does not trip the rollback rule's count) and the `guardrail`
fault, exported to Prometheus and pushed with tokens, cost and schema failures, so the push
provider judges the LLM gates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.simulator import (
    FAULTS,
    GUARDRAIL_BASE_PER_MIN,
    GUARDRAIL_BASE_RATE,
    Behaviour,
    ModelServer,
    Pusher,
    Simulator,
    guardrail_base_rate,
    inject,
)


def test_guardrail_blocks_come_at_the_base_rate_and_the_fault_raises_them():
    server = ModelServer("m", "1.1.0", Behaviour(error_rate=0.0), seed=5)
    server.serve(100_000, "eu")
    blocks = server.window_since(None)["guardrail_blocks"]
    assert 140 < blocks < 260  # about 0.2 % of the served requests
    assert "guardrail" in FAULTS
    inject(server, "guardrail")
    before = server.snapshot()
    server.serve(10_000, "eu")
    assert 400 < server.window_since(before)["guardrail_blocks"] < 600  # about 5 %
    families = {family.name: family for family in server.collect()}
    exported = sum(sample.value for sample in families["model_guardrail_blocks"].samples)
    assert exported == server.window_since(None)["guardrail_blocks"]


@pytest.mark.parametrize("rps", [10, 50, 1_000, 72_000])
def test_the_base_rate_keeps_a_version_serving_everything_under_the_cap(rps):
    rate = guardrail_base_rate(rps)
    assert rate <= GUARDRAIL_BASE_RATE
    assert rate * rps * 60 <= GUARDRAIL_BASE_PER_MIN + 1e-9
    sim = Simulator("m", "1.0.0", "1.1.0", rps=rps)
    assert sim.canary.behaviour.guardrail_block_rate == sim.production.behaviour.guardrail_block_rate == rate
    # A rate asked for is kept.
    asked = Simulator("m", "1.0.0", "1.1.0", rps=rps, canary_behaviour=Behaviour(guardrail_block_rate=0.01))
    assert asked.canary.behaviour.guardrail_block_rate == 0.01


def test_a_pushed_window_carries_tokens_cost_guardrail_blocks_and_schema_failures():
    sim = Simulator("m", "1.0.0", "1.1.0", rps=5, percent=50, seed=7,
                    canary_behaviour=Behaviour(guardrail_block_rate=0.01, schema_failure_rate=0.01))
    sent: list[dict] = []
    pusher = Pusher(sim, sent.append)
    sim.step(2000)  # about 10,000 requests, half to each version
    pusher.push(timezone.now())
    body = {b["version"]: b for b in sent}
    canary, production = body["1.1.0"], body["1.0.0"]
    for side in (canary, production):
        assert side["tokens_in"] == 350 * side["requests"] and side["tokens_out"] == 120 * side["requests"]
        assert side["cost_usd"] == pytest.approx(0.0004 * side["requests"])
        assert 0 <= side["guardrail_blocks"] <= side["requests"]
    assert 20 < canary["guardrail_blocks"] < 90 and 20 < canary["schema_failures"] < 90  # about 1 %
    assert production["guardrail_blocks"] < 25  # the base rate
    # The next window carries only what was served since.
    sent.clear()
    pusher.push(timezone.now() + timedelta(seconds=15))
    assert all(b["tokens_in"] == 0 and b["guardrail_blocks"] == 0 for b in sent)
