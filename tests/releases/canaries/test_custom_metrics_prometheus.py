"""Custom metrics read from a real Prometheus scraping the traffic simulator: the query CanaryHub
writes around a declared selector runs, costs one query per declared metric, and reads the same
numbers as the built-in queries it mirrors."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.evaluator import decide
from monitoring.providers import PrometheusProvider
from monitoring.samples import Target
from monitoring.simulator import Behaviour, Simulator
from monitoring.thresholds import DEFAULT_THRESHOLDS, metrics_with_defaults
from tests.harness.prometheus import PrometheusServer

DECLARED = {
    "provider": "prometheus",
    "custom": {
        # The error rate again, as a ratio of two selectors, and the latency histogram's mean.
        "failed_share": {"kind": "ratio", "worse": "higher", "promote_tolerance": 0.5, "rollback_threshold": 2,
                         "promql": {"numerator": 'model_requests_total{outcome="error"}',
                                    "denominator": "model_requests_total"}},
        "duration": {"kind": "histogram", "worse": "higher", "promote_tolerance": 0.2, "rollback_threshold": 0.5,
                     "promql": {"buckets": "model_request_duration_seconds_bucket"}},
    },
}


@pytest.fixture(scope="module")
def source():
    """A simulated model of its own at a fixed 10 % split (no router file shared with other
    tests) and a real Prometheus scraping it every second."""
    sim = Simulator("sim-custom", "1.0.0", "1.1.0", rps=300_000, percent=10, seed=41,
                    production_behaviour=Behaviour(error_rate=0.002), canary_behaviour=Behaviour(error_rate=0.002))
    sim.start(step_s=0.2)
    prometheus = PrometheusServer(sim.targets()).start()
    try:
        yield prometheus.url
    finally:
        prometheus.stop()
        sim.stop()


def test_declared_selectors_read_what_the_built_in_queries_read(source):
    custom = metrics_with_defaults(DECLARED, default_provider="push")["custom"]
    url = source
    target = Target(1, "sim-custom", "1.1.0", "1.0.0", None, timezone.now() - timedelta(minutes=5), custom=custom)
    plain = Target(1, "sim-custom", "1.1.0", "1.0.0", None, timezone.now() - timedelta(minutes=5))
    deadline = time.monotonic() + 30
    while True:
        now = timezone.now()
        provider = PrometheusProvider(url=url)
        reading = provider.fetch([target], now=now, window_s=30)
        assert reading[1].error is None, reading[1].error
        window = reading[1].window
        if all(window[role].custom.get("failed_share", {}).get("n", 0) > 1000 and window[role].errors > 0
               and window[role].latency_buckets for role in ("canary", "production")):
            break
        assert time.monotonic() < deadline, window
        time.sleep(1.0)  # one scrape
    base = PrometheusProvider(url=url)
    base.fetch([plain], now=now, window_s=30)
    assert provider.query_count == base.query_count + 2  # one query per declared metric
    for role in ("canary", "production"):
        mine, builtin = window[role].custom["failed_share"], window[role]
        assert abs(mine["n"] - builtin.requests) <= 1 and abs(mine["x"] - builtin.errors) <= 1
        assert [le for le, _ in window[role].custom["duration"]["buckets"]] == [
            le for le, _ in builtin.latency_buckets]
        assert reading[1].totals[role].custom["failed_share"]["n"] >= mine["n"]
    # Identical versions: both gates judged, neither rolls back.
    d = decide(thresholds=DEFAULT_THRESHOLDS, window=window, stage=window, now=now, staleness_limit_s=300,
               traffic_percent=1, random_split=True, stage_elapsed_s=30, custom=custom)
    gates = {g.name: g for g in d.gates}
    assert gates["custom.failed_share"].status.value in ("green", "insufficient")
    assert gates["custom.duration"].status.value in ("green", "insufficient")
    assert not [t for t in d.rollback if t.metric in custom]
