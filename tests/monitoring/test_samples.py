"""Spans' numbers added and subtracted: no count of a Sample is lost on the way."""

from __future__ import annotations

import dataclasses

from monitoring.samples import Sample, samples_sum

# Every plain count of a Sample (a float that starts at 0): what a sum adds and a difference subtracts.
COUNTS = [f.name for f in dataclasses.fields(Sample) if f.default == 0.0 and f.type in ("float", float)]


def _sample(base: float) -> Sample:
    return Sample(**{name: base + index for index, name in enumerate(COUNTS)}, present=True)


def test_the_counts_are_the_ones_the_evaluator_reads():
    assert {"requests", "errors", "tokens_in", "tokens_out", "cost_usd", "guardrail_blocks",
            "schema_failures", "unavailable", "safety_violations"} <= set(COUNTS)


def test_a_sum_keeps_every_count():
    total = samples_sum([_sample(10.0), _sample(100.0)])
    for index, name in enumerate(COUNTS):
        assert getattr(total, name) == 110.0 + 2 * index, name
    assert total.present


def test_a_difference_subtracts_every_count_but_anomaly_alerts():
    later, earlier = _sample(100.0), _sample(10.0)
    stage = later.minus(earlier)
    for name in COUNTS:
        # Alerts firing are a level, not a counter: the later reading is what holds now.
        expected = getattr(later, name) if name == "anomaly_alerts" else 90.0
        assert getattr(stage, name) == expected, name
