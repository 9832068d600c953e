"""Segment values reach PromQL overrides escaped: a value with quotes, braces or regex characters
matches itself only and cannot change the query around it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from monitoring.providers import PrometheusProvider
from monitoring.samples import Reading, Sample, Target

HOSTILE = ('eu"} or vector(1) or {x="', "a|b", "x.y", "back\\slash")


class Recorder:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def custom_query(self, promql, params=None, timeout=None):  # noqa: ANN001, ANN201
        self.queries.append(promql)
        return []


def _string_literals(query: str) -> list[str]:
    """The double-quoted PromQL strings of a query, unescaped (Go-style backslash escapes)."""
    return [re.sub(r"\\(.)", r"\1", raw) for raw in re.findall(r'"((?:[^"\\]|\\.)*)"', query)]


def test_hostile_segment_values_stay_inside_their_matcher():
    recorder = Recorder()
    provider = PrometheusProvider("http://prometheus.test", client=recorder)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    target = Target(canary_id=1, model="scorer", version="1.1.0", baseline="1.0.0", segments=HOSTILE,
                    stage_since=now - timedelta(minutes=5),
                    queries={"errors": 'sum(increase(errors_total{model="$model",segment=~"$segment"}[$window]))'})
    reading = Reading(window={"canary": Sample(), "production": Sample()}, stage={})
    provider._apply_overrides(target, reading, now=now, window_s=300)
    assert recorder.queries
    for query in recorder.queries:
        literals = _string_literals(query)
        assert len(literals) == 2, query  # the template's two strings, nothing broke out of them
        model, pattern = literals
        assert model == "scorer"
        for value in HOSTILE:
            assert re.fullmatch(pattern, value), (pattern, value)
        for other in ("a", "b", "xzy", "eu", "anything"):
            assert not re.fullmatch(pattern, other), (pattern, other)
