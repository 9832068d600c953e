"""The LLM serving promotion gates (monitoring.llm, through monitoring.evaluator.decide): tokens and
cost per request against production's, the guardrail block rate, and the Prometheus totals they
read over the stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canaryhub.errors import ValidationFailed
from monitoring.evaluations import GateStatus
from monitoring.evaluator import decide
from monitoring.providers import DEFAULT_QUERIES, PrometheusProvider
from monitoring.samples import Sample, Target
from monitoring.thresholds import DEFAULT_THRESHOLDS, thresholds_with_defaults
from releases.canaries.presenters import explain_gate

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
G, R, INS = GateStatus.GREEN, GateStatus.RED, GateStatus.INSUFFICIENT


def s(requests, tokens=500.0, *, cost=0.001, blocks=0):
    return Sample(requests=requests, errors=0, tokens_in=requests * tokens * 0.7, tokens_out=requests * tokens * 0.3,
                  cost_usd=requests * cost, guardrail_blocks=blocks, last_seen=NOW - timedelta(seconds=5),
                  present=True)


def gates(canary, production=None, thresholds=DEFAULT_THRESHOLDS):
    stage = {"canary": canary, "production": production or s(300_000, blocks=1500)}
    d = decide(thresholds=thresholds, window=stage, stage=stage, now=NOW, staleness_limit_s=300,
               traffic_percent=10, random_split=False, stage_elapsed_s=3600)
    return {g.name: g for g in d.gates}, d


CASES = [
    # (name, canary, gate, status)
    ("A/A tokens", s(3000, blocks=15), "tokens_per_request", G),
    ("A/A cost", s(3000, blocks=15), "cost_per_request", G),
    ("tokens x1.3 on 3000 requests", s(3000, 650, blocks=15), "tokens_per_request", R),
    ("tokens x1.3 on 100 requests", s(100, 650), "tokens_per_request", INS),
    ("tokens x1.6 on 100 requests: overwhelming", s(100, 800), "tokens_per_request", R),
    ("tokens x1.6 on 20 requests", s(20, 800), "tokens_per_request", INS),
    ("cost x1.3 on 3000 requests", s(3000, cost=0.0013, blocks=15), "cost_per_request", R),
    ("cost x1.1 on 3000 requests", s(3000, cost=0.0011, blocks=15), "cost_per_request", G),
    ("guardrail A/A at 0.5 %", s(20_000, blocks=100), "guardrail_block_rate", G),
    ("guardrail 3 % vs 0.5 %", s(3000, blocks=90), "guardrail_block_rate", R),
    ("guardrail A/A on too few requests", s(200, blocks=1), "guardrail_block_rate", INS),
]


@pytest.mark.parametrize("name,canary,gate,status", CASES, ids=[c[0] for c in CASES])
def test_llm_promotion_gates(name, canary, gate, status):
    by_name, _ = gates(canary)
    assert by_name[gate].status is status, by_name[gate].detail


def test_a_red_llm_gate_holds_the_stage_and_an_insufficient_one_keeps_it_from_green():
    by_name, d = gates(s(3000, 650, blocks=15))
    assert d.verdict is R and by_name["tokens_per_request"].limit == 1.2
    assert "tokens per request 650 vs production 500 (×1.300)" in by_name["tokens_per_request"].detail
    _, early = gates(s(100, blocks=0))
    assert early.verdict is not G
    assert early.inputs["gates"]["tokens_per_request"]["required"] == 500


def test_a_model_that_reports_no_tokens_has_no_llm_gates():
    plain = Sample(requests=3000, errors=3, last_seen=NOW - timedelta(seconds=5), present=True)
    by_name, _ = gates(plain, Sample(requests=300_000, errors=300, last_seen=NOW - timedelta(seconds=5), present=True))
    assert not {"tokens_per_request", "cost_per_request", "guardrail_block_rate"} & set(by_name)


def test_a_canary_that_reports_no_tokens_while_production_does_is_not_green():
    silent = Sample(requests=3000, errors=0, last_seen=NOW - timedelta(seconds=5), present=True)
    by_name, d = gates(silent)
    assert by_name["tokens_per_request"].status is INS
    assert "reports no tokens" in by_name["tokens_per_request"].detail
    line = explain_gate("tokens_per_request", "insufficient", d.inputs["gates"]["tokens_per_request"],
                        by_name["tokens_per_request"].detail)
    assert "the canary reports no tokens over 3000 requests" in line.text and "more canary requests" not in line.text
    assert "exports it" in line.action


def test_a_version_may_tighten_the_llm_gates_never_loosen_them():
    tight = thresholds_with_defaults({"promote": {"tokens_per_request_ratio": 1.1, "cost_per_request_ratio": 1.05,
                                                  "guardrail_block_rate_pp": 0.1}})
    by_name, _ = gates(s(3000, 575, cost=0.00108, blocks=15), thresholds=tight)
    assert by_name["tokens_per_request"].status is R and by_name["tokens_per_request"].limit == 1.1
    assert by_name["cost_per_request"].status is R
    for key, value in (("tokens_per_request_ratio", 1.3), ("cost_per_request_ratio", 1.5),
                       ("guardrail_block_rate_pp", 1.0), ("tokens_per_request_ratio", "1.1")):
        with pytest.raises(ValidationFailed) as loose:
            thresholds_with_defaults({"promote": {key: value}})
        assert f"thresholds.promote.{key}" in loose.value.errors
    with pytest.raises(ValidationFailed) as crossed:
        thresholds_with_defaults({"promote": {"tokens_per_request_ratio": 1.2},
                                  "rollback": {"tokens_per_request_ratio": 1.1}})
    assert "thresholds.rollback.tokens_per_request_ratio" in crossed.value.errors


def test_the_hold_reason_names_the_llm_gate_in_words():
    by_name, d = gates(s(3000, 650, blocks=15))
    gate = by_name["tokens_per_request"]
    line = explain_gate(gate.name, gate.status.value, d.inputs["gates"][gate.name], gate.detail)
    assert line.label == "Tokens per request" and "tokens per request 650" in line.text
    early, d2 = gates(s(100, blocks=0))
    line = explain_gate("tokens_per_request", "insufficient", d2.inputs["gates"]["tokens_per_request"])
    assert "needs about 400 more canary requests" in line.text


class LLMTotals:
    """Answers the LLM totals query with one row per metric name, every other query empty."""

    def __init__(self):
        self.queries = []

    def custom_query(self, query, params=None, timeout=None):
        self.queries.append(query)
        if query != DEFAULT_QUERIES["llm_total"]:
            return []
        rows = []
        for version, tokens, cost, blocks in (("1.1.0", 6000, 0.6, 9), ("1.0.0", 50_000, 5.0, 40)):
            base = {"model": "m", "version": version, "segment": "eu"}
            tokens_metric = {**base, "__name__": "model_tokens_total"}
            rows += [{"metric": {**tokens_metric, "direction": "input"}, "value": [0, str(round(tokens * 0.7))]},
                     {"metric": {**tokens_metric, "direction": "output"}, "value": [0, str(round(tokens * 0.3))]},
                     {"metric": {**base, "__name__": "model_cost_usd_total"}, "value": [0, str(cost)]},
                     {"metric": {**base, "__name__": "model_guardrail_blocks_total"}, "value": [0, str(blocks)]},
                     {"metric": {**base, "__name__": "something_else_total"}, "value": [0, "7"]}]
        return rows


def test_prometheus_reads_the_llm_totals_for_the_stage_in_one_query():
    client = LLMTotals()
    reading = PrometheusProvider(url="http://x", client=client).fetch(
        [Target(1, "m", "1.1.0", "1.0.0", None, NOW)], now=NOW, window_s=300)[1]
    assert reading.error is None
    canary, production = reading.totals["canary"], reading.totals["production"]
    assert (canary.tokens_in, canary.tokens_out, canary.cost_usd, canary.guardrail_blocks) == (4200, 1800, 0.6, 9)
    assert production.tokens_in + production.tokens_out == 50_000 and production.guardrail_blocks == 40
    assert reading.segments_totals["eu"]["canary"].tokens_in == 4200
    assert sum("model_tokens_total" in q for q in client.queries) == 2  # the window and the totals
