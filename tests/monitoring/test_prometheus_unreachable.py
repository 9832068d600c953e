"""A Prometheus that cannot be reached fails the round's queries at once: the first connection
error stops the others being sent through the client's retries, and the reading still says
every query failed (the evaluator counts a source error, and fails closed after four)."""

from __future__ import annotations

from datetime import UTC, datetime

from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from monitoring.providers import DEFAULT_QUERIES, PrometheusProvider
from monitoring.samples import Target

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TARGET = Target(canary_id=1, model="scorer", version="1.1.0", baseline="1.0.0", segments=None, stage_since=NOW,
                queries={})


class Client:
    def __init__(self, exc: Exception | None) -> None:
        self.exc, self.calls = exc, 0

    def custom_query(self, promql, params=None, timeout=None):  # noqa: ANN001, ANN201
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        return []


def test_an_unreachable_prometheus_is_asked_once_per_round_and_every_query_fails():
    client = Client(RequestsConnectionError("Connection refused"))
    provider = PrometheusProvider("http://prometheus.test", client=client, max_in_flight=1)
    reading = provider.fetch([TARGET], now=NOW, window_s=300)[1]
    assert client.calls == 1
    assert reading.error.startswith(f"{len(DEFAULT_QUERIES)} of {len(DEFAULT_QUERIES)} queries failed")
    assert "Connection refused" in reading.error


def test_a_slow_or_failing_query_does_not_stop_the_others():
    client = Client(ReadTimeout("read timed out"))  # reached, but slow: each query is its own
    provider = PrometheusProvider("http://prometheus.test", client=client, max_in_flight=1)
    reading = provider.fetch([TARGET], now=NOW, window_s=300)[1]
    assert client.calls == len(DEFAULT_QUERIES)
    assert reading.error.startswith(f"{len(DEFAULT_QUERIES)} of {len(DEFAULT_QUERIES)} queries failed")


def test_a_reachable_prometheus_answers_every_query():
    client = Client(None)
    provider = PrometheusProvider("http://prometheus.test", client=client, max_in_flight=4)
    reading = provider.fetch([TARGET], now=NOW, window_s=300)[1]
    assert client.calls == len(DEFAULT_QUERIES) and reading.error is None
