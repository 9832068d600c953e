"""The LLM serving series read from a real Prometheus scraping the traffic simulator: the LLM
counters' totals query (grouped by metric name), output-schema failures, unavailable requests
and the response-length histogram run and read what the simulator exports, at a fixed number of
queries."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.evaluator import decide
from monitoring.providers import DEFAULT_QUERIES, PrometheusProvider
from monitoring.samples import Target
from monitoring.simulator import Behaviour, Simulator
from monitoring.thresholds import DEFAULT_THRESHOLDS
from tests.harness.prometheus import PrometheusServer


@pytest.fixture(scope="module")
def source():
    """A simulated model of its own at a fixed 10 % split, its canary in a partial outage, and a
    real Prometheus scraping it every second."""
    sim = Simulator("sim-llm", "1.0.0", "1.1.0", rps=300_000, percent=10, seed=43,
                    production_behaviour=Behaviour(), canary_behaviour=Behaviour(unavailable_rate=0.01))
    sim.start(step_s=0.2)
    prometheus = PrometheusServer(sim.targets()).start()
    try:
        yield prometheus.url
    finally:
        prometheus.stop()
        sim.stop()


def test_the_llm_series_are_read_from_prometheus(source):
    target = Target(1, "sim-llm", "1.1.0", "1.0.0", None, timezone.now() - timedelta(minutes=5))
    deadline = time.monotonic() + 30
    while True:
        now = timezone.now()
        provider = PrometheusProvider(url=source)
        reading = provider.fetch([target], now=now, window_s=30)[1]
        assert reading.error is None, reading.error
        window, totals = reading.window, reading.totals
        if all(window[role].schema_failures > 0 and window[role].response_tokens_buckets
               and totals[role].schema_failures > 0 for role in ("canary", "production")) \
                and window["canary"].unavailable > 0:
            break
        assert time.monotonic() < deadline, (window, totals)
        time.sleep(1.0)  # one scrape
    assert provider.query_count == len(DEFAULT_QUERIES)
    for role in ("canary", "production"):
        w, t = window[role], totals[role]
        # The totals query (grouped by metric name) read every LLM counter: 350 in, 120 out a request.
        assert t.tokens_in / t.requests == pytest.approx(350, rel=0.01)
        assert t.tokens_out / t.requests == pytest.approx(120, rel=0.01)
        assert t.cost_usd / t.requests == pytest.approx(0.0004, rel=0.01)
        assert t.schema_failures >= w.schema_failures
        assert w.response_tokens_buckets[-1][1] == pytest.approx(w.requests - w.errors, rel=0.05)
    assert window["production"].unavailable == 0
    assert window["canary"].errors >= window["canary"].unavailable
    stage = {role: totals[role] for role in ("canary", "production")}
    d = decide(thresholds=DEFAULT_THRESHOLDS, window=window, stage=stage, now=now, staleness_limit_s=300,
               traffic_percent=10, random_split=True, stage_elapsed_s=300)
    gates = {g.name: g for g in d.gates}
    # The same tokens and cost a request: those gates are not red; the outage shows in availability.
    assert gates["tokens_per_request"].status.value == "green"
    assert gates["cost_per_request"].status.value == "green"
    assert gates["schema_failure_rate"].status.value != "red"
    assert gates["availability"].status.value == "red", gates["availability"].detail
    assert 100 < d.inputs["window"]["canary"]["response_tokens_p50"] < 128
