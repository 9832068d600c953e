"""Output-schema failures: the `schema_failure_rate` promotion gate and rollback trigger
(monitoring.llm through monitoring.evaluator.decide), the window Prometheus reads, and the
simulator's counter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canaryhub.errors import ValidationFailed
from monitoring.evaluations import GateStatus
from monitoring.evaluator import decide
from monitoring.providers import DEFAULT_QUERIES, PrometheusProvider
from monitoring.samples import Sample, Target
from monitoring.simulator import Behaviour, ModelServer, inject
from monitoring.thresholds import DEFAULT_THRESHOLDS, thresholds_with_defaults

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
G, R, INS = GateStatus.GREEN, GateStatus.RED, GateStatus.INSUFFICIENT


def s(requests, failures, *, tokens=500.0):
    return Sample(requests=requests, errors=0, schema_failures=failures, tokens_in=requests * tokens,
                  last_seen=NOW - timedelta(seconds=5), present=True)


PRODUCTION = s(300_000, 300)  # 0.1 %


def run(canary, production=PRODUCTION, thresholds=DEFAULT_THRESHOLDS):
    pair = {"canary": canary, "production": production}
    return decide(thresholds=thresholds, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
                  traffic_percent=10, random_split=False, stage_elapsed_s=3600)


GATE_CASES = [
    ("A/A on enough requests", s(40_000, 40), G),
    ("0.6 % vs 0.1 % on 20 000 requests", s(20_000, 120), R),
    ("A/A on too few requests", s(500, 0), INS),
    ("1 of 300 on too few requests", s(300, 1), INS),
    ("4 of 300: the lower bound already past the tolerance", s(300, 4), R),
]


@pytest.mark.parametrize("name,canary,status", GATE_CASES, ids=[c[0] for c in GATE_CASES])
def test_schema_failure_rate_gate(name, canary, status):
    gate = {g.name: g for g in run(canary).gates}["schema_failure_rate"]
    assert gate.status is status, gate.detail
    assert gate.limit == 0.1


TRIGGER_CASES = [
    ("A/A", s(30_000, 30), False),
    ("3 % vs 0.1 % over a window", s(3000, 90), True),
    ("4 failures in 100 requests: fewer than five", s(100, 4), False),
    ("0.5 % vs 0.1 %: within the 0.5 pp tolerance", s(30_000, 150), False),
    ("0.9 % vs 0.1 % on 30 000 requests", s(30_000, 270), True),
]


@pytest.mark.parametrize("name,canary,rolls", TRIGGER_CASES, ids=[c[0] for c in TRIGGER_CASES])
def test_schema_failures_roll_back_by_the_error_rates_fixed_level_rule(name, canary, rolls):
    d = run(canary)
    assert ("schema_failure_rate" in [t.metric for t in d.rollback]) is rolls, d.inputs["rollback_window"]
    if rolls:
        assert d.rollback_reason.startswith("output-schema failures ")


def test_the_schema_rule_applies_to_a_model_that_reports_no_tokens_but_its_gate_does_not():
    d = run(s(3000, 90, tokens=0), s(300_000, 300, tokens=0))
    assert "schema_failure_rate" in [t.metric for t in d.rollback]
    assert "schema_failure_rate" not in [g.name for g in d.gates]


def test_a_version_may_tighten_the_schema_thresholds_never_loosen_them():
    tight = thresholds_with_defaults({"promote": {"schema_failure_rate_pp": 0.05},
                                      "rollback": {"schema_failure_rate_pp": 0.2}})
    d = run(s(30_000, 150), thresholds=tight)  # 0.5 % vs 0.1 %
    assert "schema_failure_rate" in [t.metric for t in d.rollback]
    for section, value in (("promote", 0.2), ("rollback", 1.0), ("rollback", -0.1), ("promote", True)):
        with pytest.raises(ValidationFailed) as loose:
            thresholds_with_defaults({section: {"schema_failure_rate_pp": value}})
        assert f"thresholds.{section}.schema_failure_rate_pp" in loose.value.errors
    with pytest.raises(ValidationFailed):
        thresholds_with_defaults({"promote": {"schema_failure_rate_pp": 0.1}, "rollback": {"schema_failure_rate_pp": 0.05}})


def test_prometheus_reads_the_schema_failures_of_the_window():
    class Answer:
        def custom_query(self, query, params=None, timeout=None):
            if query.startswith("sum by (model, version, segment) (increase(model_output_schema_failures_total"):
                return [{"metric": {"model": "m", "version": v, "segment": "eu"}, "value": [0, n]}
                        for v, n in (("1.1.0", "7.4"), ("1.0.0", "3"))]
            return []

    assert "model_output_schema_failures_total" in DEFAULT_QUERIES["llm_total"]
    reading = PrometheusProvider(url="http://x", client=Answer()).fetch(
        [Target(1, "m", "1.1.0", "1.0.0", None, NOW)], now=NOW, window_s=300)[1]
    assert reading.window["canary"].schema_failures == 7 and reading.window["production"].schema_failures == 3


def test_the_simulator_exports_schema_failures_and_injects_them():
    server = ModelServer("m", "1.1.0", Behaviour(schema_failure_rate=0.0), seed=3)
    server.serve(10_000, "eu")
    assert server.window_since(None)["schema_failures"] == 0
    inject(server, "schema_failure")
    before = server.snapshot()
    server.serve(10_000, "eu")
    assert 350 < server.window_since(before)["schema_failures"] < 650  # about 5 % of the served outputs
    names = {family.name for family in server.collect()}
    assert "model_output_schema_failures" in names
