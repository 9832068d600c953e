"""Response length: output tokens per response, a histogram read over the window (one query),
pushed as `response_tokens_buckets`, recorded as p50 and p95 for both versions (not judged); and
latency p50 and p95 recorded beside p99 from the same buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring.evaluator import decide
from monitoring.providers import DEFAULT_QUERIES, PrometheusProvider
from monitoring.samples import Sample, Target
from monitoring.simulator import ModelServer
from monitoring.thresholds import DEFAULT_THRESHOLDS

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INF = float("inf")


def s(requests, buckets):
    return Sample(requests=requests, errors=0, response_tokens_buckets=buckets,
                  latency_buckets=[(0.1, requests * 0.5), (0.2, requests * 0.95), (1.0, requests), (INF, requests)],
                  last_seen=NOW - timedelta(seconds=5), present=True)


def test_response_tokens_p50_and_p95_are_recorded_for_both_versions_and_not_judged():
    canary = s(1000, [(64, 100.0), (128, 500.0), (256, 950.0), (512, 1000.0), (INF, 1000.0)])
    production = s(100_000, [(64, 10_000.0), (128, 80_000.0), (256, 99_000.0), (512, 100_000.0), (INF, 100_000.0)])
    pair = {"canary": canary, "production": production}
    d = decide(thresholds=DEFAULT_THRESHOLDS, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
               traffic_percent=10, random_split=False, stage_elapsed_s=3600)
    for span in ("window", "stage"):
        c, p = d.inputs[span]["canary"], d.inputs[span]["production"]
        assert c["response_tokens_p50"] == pytest.approx(128.0)
        assert c["response_tokens_p95"] == pytest.approx(256.0)
        assert p["response_tokens_p50"] < c["response_tokens_p50"]
        assert c["p50_s"] == pytest.approx(0.1) and c["p95_s"] == pytest.approx(0.2) and c["p99_s"] is not None
    assert not [g for g in d.gates if "response" in g.name]
    assert not d.rollback


def test_without_the_histogram_the_record_says_none():
    plain = Sample(requests=10, errors=0, last_seen=NOW, present=True)
    pair = {"canary": plain, "production": plain}
    d = decide(thresholds=DEFAULT_THRESHOLDS, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
               traffic_percent=10, random_split=False, stage_elapsed_s=3600)
    assert d.inputs["window"]["canary"]["response_tokens_p50"] is None


def test_prometheus_reads_the_response_tokens_histogram_in_one_window_query():
    class Answer:
        queries: list[str] = []

        def custom_query(self, query, params=None, timeout=None):
            self.queries.append(query)
            if query != DEFAULT_QUERIES["response_tokens_window"].replace("$w", "300s"):
                return []
            return [{"metric": {"model": "m", "version": "1.1.0", "segment": seg, "le": le}, "value": [0, n]}
                    for seg in ("eu", "us") for le, n in (("128", "40"), ("256", "90"), ("+Inf", "100"))]

    client = Answer()
    reading = PrometheusProvider(url="http://x", client=client).fetch(
        [Target(1, "m", "1.1.0", "1.0.0", None, NOW)], now=NOW, window_s=300)[1]
    assert reading.window["canary"].response_tokens_buckets == [(128.0, 80.0), (256.0, 180.0), (INF, 200.0)]
    assert reading.segments_window["us"]["canary"].response_tokens_buckets == [(128.0, 40.0), (256.0, 90.0),
                                                                               (INF, 100.0)]
    assert sum("model_response_tokens_bucket" in q for q in client.queries) == 1


def test_the_simulator_exports_the_response_tokens_histogram():
    server = ModelServer("m", "1.1.0", seed=9)
    server.serve(20_000, "eu")
    families = {f.name: f for f in server.collect()}
    assert families["model_response_tokens"].type == "histogram"
    body = server.window_since(None)
    assert body["response_tokens_buckets"][-1] == ["+Inf", body["requests"] - body["errors"]]
    median_bucket = next(le for le, c in body["response_tokens_buckets"] if c >= body["requests"] / 2)
    assert median_bucket == 128.0  # a median near 105 tokens
