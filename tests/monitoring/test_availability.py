"""Availability: requests not served at all (outcome "unavailable") are read, recorded and judged
by the `availability` promotion gate (monitoring.availability through monitoring.evaluator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canaryhub.errors import ValidationFailed
from monitoring.evaluations import GateStatus
from monitoring.evaluator import decide
from monitoring.providers import DEFAULT_QUERIES, PrometheusProvider
from monitoring.samples import Sample, Target
from monitoring.simulator import ModelServer, inject
from monitoring.thresholds import DEFAULT_THRESHOLDS, thresholds_with_defaults
from releases.canaries.presenters import explain_gate

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
G, R, INS = GateStatus.GREEN, GateStatus.RED, GateStatus.INSUFFICIENT


def s(requests, unavailable, errors=None):
    return Sample(requests=requests, errors=unavailable if errors is None else errors, unavailable=unavailable,
                  last_seen=NOW - timedelta(seconds=5), present=True)


PRODUCTION = s(300_000, 150)  # 99.95 %


def run(canary, production=PRODUCTION, thresholds=DEFAULT_THRESHOLDS):
    pair = {"canary": canary, "production": production}
    return decide(thresholds=thresholds, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
                  traffic_percent=10, random_split=False, stage_elapsed_s=3600)


CASES = [
    ("A/A on enough requests", s(30_000, 15), G),
    ("99 % vs 99.95 % on 5000 requests", s(5000, 50), R),
    ("A/A on too few requests", s(400, 0), INS),
    ("one unavailable in 300", s(300, 1), INS),
]


@pytest.mark.parametrize("name,canary,status", CASES, ids=[c[0] for c in CASES])
def test_availability_gate(name, canary, status):
    d = run(canary)
    gate = {g.name: g for g in d.gates}["availability"]
    assert gate.status is status, gate.detail
    assert gate.detail.startswith("availability ") and gate.limit == 0.1
    assert d.inputs["stage"]["canary"]["availability"] == pytest.approx(1 - canary.unavailable / canary.requests)


def test_no_version_reporting_unavailable_requests_means_no_availability_gate():
    d = run(s(30_000, 0, errors=30), s(300_000, 0, errors=300))
    assert "availability" not in [g.name for g in d.gates]
    assert d.inputs["stage"]["canary"]["availability"] == 1.0


def test_the_hold_reason_says_availability_in_words():
    d = run(s(5000, 50))
    gate = {g.name: g for g in d.gates}["availability"]
    line = explain_gate(gate.name, gate.status.value, d.inputs["gates"]["availability"], gate.detail)
    assert line.label == "Availability" and "availability 99.000% vs production 99.950%" in line.text


def test_a_version_may_tighten_the_availability_tolerance_never_loosen_it():
    tight = thresholds_with_defaults({"promote": {"availability_pp": 0.02}})
    assert {g.name: g for g in run(s(30_000, 24), thresholds=tight).gates}["availability"].status is not G
    assert {g.name: g for g in run(s(30_000, 24)).gates}["availability"].status is G
    with pytest.raises(ValidationFailed) as loose:
        thresholds_with_defaults({"promote": {"availability_pp": 0.5}})
    assert "thresholds.promote.availability_pp" in loose.value.errors


def test_prometheus_counts_unavailable_requests_as_errors_and_apart():
    class Answer:
        def custom_query(self, query, params=None, timeout=None):
            if query != DEFAULT_QUERIES["requests_window"].replace("$w", "300s"):
                return []
            base = {"model": "m", "version": "1.1.0", "segment": "eu"}
            return [{"metric": {**base, "outcome": o}, "value": [0, n]}
                    for o, n in (("success", "970"), ("error", "20"), ("unavailable", "10"))]

    reading = PrometheusProvider(url="http://x", client=Answer()).fetch(
        [Target(1, "m", "1.1.0", "1.0.0", None, NOW)], now=NOW, window_s=300)[1]
    canary = reading.window["canary"]
    assert (canary.requests, canary.errors, canary.unavailable) == (1000, 30, 10)
    assert reading.segments_window["eu"]["canary"].unavailable == 10


def test_the_simulator_exports_an_outage_as_unavailable_requests():
    server = ModelServer("m", "1.1.0", seed=5)
    server.serve(10_000, "eu")
    assert server.window_since(None)["unavailable"] == 0
    inject(server, "outage")
    before = server.snapshot()
    server.serve(10_000, "eu")
    body = server.window_since(before)
    assert 120 < body["unavailable"] < 280 and body["errors"] >= body["unavailable"]
