"""The LLM serving rules: tokens per request and guardrail blocks (monitoring.evaluator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring.evaluator import decide
from monitoring.samples import Sample
from monitoring.thresholds import DEFAULT_THRESHOLDS

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def s(requests, tokens_per_request, *, blocks=0, cost=0.0):
    return Sample(requests=requests, errors=requests // 100, tokens_in=requests * tokens_per_request * 0.7,
                  tokens_out=requests * tokens_per_request * 0.3, guardrail_blocks=blocks, cost_usd=cost,
                  last_seen=NOW - timedelta(seconds=5), present=True)


def run(window, earlier=None):
    return decide(thresholds=DEFAULT_THRESHOLDS, window=window, stage=window, now=NOW, staleness_limit_s=300,
                  traffic_percent=10, random_split=True, stage_elapsed_s=3600, earlier=earlier)


CASES = [
    # (name, canary tokens/request now, the window before (None: none), canary requests, rolls back)
    ("x1.6 for ten minutes", 800, 800, 3000, True),
    ("x1.6 in the last window only", 800, 500, 3000, False),
    ("x1.6 with no window before", 800, None, 3000, False),
    ("x1.4 for ten minutes", 700, 700, 3000, False),
    ("x1.6 on a handful of requests", 800, 800, 20, False),
]


@pytest.mark.parametrize("name,now_tpr,before_tpr,requests,rolls", CASES, ids=[c[0] for c in CASES])
def test_tokens_per_request_beyond_150_percent_for_ten_minutes_rolls_back(name, now_tpr, before_tpr, requests,
                                                                            rolls):
    window = {"canary": s(requests, now_tpr), "production": s(300_000, 500)}
    earlier = None if before_tpr is None else {"canary": s(requests, before_tpr), "production": s(300_000, 500)}
    d = run(window, earlier)
    assert ("tokens_per_request" in [t.metric for t in d.rollback]) is rolls
    if rolls:
        assert "for 10 minutes" in d.rollback_reason and d.inputs["rollback_window"]["tokens_per_request"]["ratios"] \
            == [1.6, 1.6]


@pytest.mark.parametrize("blocks,rolls", [(51, True), (50, False), (0, False)])
def test_guardrail_blocks_beyond_ten_a_minute_over_the_window_roll_back(blocks, rolls):
    d = run({"canary": s(3000, 500, blocks=blocks), "production": s(300_000, 500)})
    assert ("guardrail_blocks" in [t.metric for t in d.rollback]) is rolls


def test_a_frozen_configuration_may_tighten_the_llm_rules_and_cost_is_recorded():
    thresholds = {**DEFAULT_THRESHOLDS, "rollback": {**DEFAULT_THRESHOLDS["rollback"], "tokens_per_request_ratio": 1.2,
                                                     "guardrail_blocks_per_min": 2}}
    window = {"canary": s(3000, 650, blocks=11, cost=6.0), "production": s(300_000, 500, cost=300.0)}
    d = decide(thresholds=thresholds, window=window, stage=window, now=NOW, staleness_limit_s=300,
               traffic_percent=10, random_split=True, stage_elapsed_s=3600, earlier=window)
    assert sorted(t.metric for t in d.rollback) == ["guardrail_blocks", "tokens_per_request"]
    assert d.inputs["rollback_window"]["cost_per_request_usd"] == {"canary": 0.002, "production": 0.001}
    assert d.inputs["window"]["canary"]["tokens_in"] == pytest.approx(3000 * 650 * 0.7)


def test_a_version_may_tighten_the_llm_rules_never_loosen_them():
    from canaryhub.errors import ValidationFailed
    from monitoring.thresholds import thresholds_with_defaults

    tight = thresholds_with_defaults({"rollback": {"tokens_per_request_ratio": 1.2, "guardrail_blocks_per_min": 2}})
    assert tight["rollback"]["tokens_per_request_ratio"] == 1.2 and tight["rollback"]["guardrail_blocks_per_min"] == 2
    with pytest.raises(ValidationFailed) as loose:
        thresholds_with_defaults({"rollback": {"tokens_per_request_ratio": 2.0}})
    assert "thresholds.rollback.tokens_per_request_ratio" in loose.value.errors


def test_the_record_keeps_latency_p50_and_p95_beside_p99():
    import math

    buckets = [(0.1, 500.0), (0.2, 950.0), (0.5, 995.0), (1.0, 1000.0), (math.inf, 1000.0)]
    c = Sample(requests=1000, errors=10, latency_buckets=buckets, last_seen=NOW, present=True)
    d = run({"canary": c, "production": c})
    recorded = d.inputs["window"]["canary"]
    assert (recorded["p50_s"], recorded["p95_s"], recorded["p99_s"]) == (0.1, 0.2, pytest.approx(0.2 + 0.3 * 40 / 45))
