"""The statistics' and sequential test's `to_dict` spell exactly what `dataclasses.asdict` spells
(same keys in the same order, same values): evaluation inputs and their hash are evidence, and a
record hashed before must rehash to the same digest."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import pytest

from canaryhub.canonical import canonical_json, normalise_json
from monitoring import sequential as sq
from monitoring import statistics as st
from monitoring.evaluations import evaluation_hash
from monitoring.evaluator import decide
from monitoring.samples import Sample
from monitoring.thresholds import DEFAULT_THRESHOLDS

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INF = math.inf


def _asdict_spelling(obj):
    """The spelling before: dataclasses.asdict, floats rounded, the sequential state's tuples as lists."""
    if isinstance(obj, sq.SequentialState):
        out = dataclasses.asdict(obj)
        out["s"], out["b"] = list(obj.s), list(obj.b)
        return out
    rnd = sq._round if isinstance(obj, sq.SequentialResult) else st._round
    return {k: rnd(v) for k, v in dataclasses.asdict(obj).items()}


CLASSES = (st.ProportionComparison, st.RankTest, sq.SequentialState, sq.SequentialResult)


def _sample(requests, errors, slow_share, quality):
    fast = requests * (1 - slow_share)
    return Sample(
        requests=requests, errors=errors,
        latency_buckets=[(0.1, fast * 0.6), (0.25, fast), (1.0, requests * 0.99), (INF, requests)],
        quality_sum=quality * requests / 2, quality_count=requests / 2,
        quality_buckets=[(0.5, requests * 0.05), (0.8, requests * (1.2 - quality)), (INF, requests / 2)],
        last_seen=NOW - timedelta(seconds=5), present=True,
    )


def _decide_with_segments(sequential=None):
    segments = {
        "eu": (_sample(90_000, 450, 0.02, 0.82), _sample(500_000, 2500, 0.01, 0.84)),
        "us": (_sample(10_000, 800, 0.05, 0.80), _sample(500_000, 25_000, 0.01, 0.81)),
        "apac": (_sample(3_000, 3, 0.0, 0.9), _sample(300_000, 600, 0.02, 0.9)),
        "latam": (_sample(700, 0, 0.1, 0.7), _sample(90_000, 90, 0.01, 0.75)),
    }
    parts = {name: {"window": {"canary": c, "production": p}, "stage": {"canary": c, "production": p}}
             for name, (c, p) in segments.items()}
    c = _sample(103_700, 1253, 0.02, 0.82)
    p = _sample(1_390_000, 28_190, 0.01, 0.83)
    pair = {"canary": c, "production": p}
    return decide(thresholds=DEFAULT_THRESHOLDS, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
                  traffic_percent=10, random_split=False, stage_elapsed_s=3600, segments=parts, stage_index=1,
                  sequential=sequential)


def _evidence(decision):
    inputs = normalise_json({**decision.inputs, "rollback_triggers": [t.to_dict() for t in decision.rollback],
                             "warnings": [t.to_dict() for t in decision.warnings]})
    gates = normalise_json([g.to_dict() for g in decision.gates])
    digest = evaluation_hash(canary_id=7, stage_index=1, window_start=NOW - timedelta(minutes=5), window_end=NOW,
                             gates=gates, verdict=decision.verdict.value, inputs=inputs, normalised=True)
    return canonical_json(inputs), canonical_json(gates), decision.sequential, digest


def test_a_decision_with_segments_is_byte_identical_to_the_asdict_spelling(monkeypatch):
    seen: dict[type, list] = {cls: [] for cls in CLASSES}
    mismatches = []

    def checked(cls, original):
        def to_dict(self):
            new = original(self)
            seen[cls].append(self)
            if list(new.items()) != list(_asdict_spelling(self).items()):
                mismatches.append((cls.__name__, new, _asdict_spelling(self)))
            return new
        return to_dict

    for cls in CLASSES:
        monkeypatch.setattr(cls, "to_dict", checked(cls, cls.to_dict))
    first = _decide_with_segments()
    second = _decide_with_segments(sequential=first.sequential)  # a later look, from the memory
    new = [_evidence(first), _evidence(second)]
    assert not mismatches
    assert all(seen[cls] for cls in CLASSES), {cls.__name__: len(v) for cls, v in seen.items()}
    assert len(first.inputs["segments"]["by_segment"]) == 4

    for cls in CLASSES:
        monkeypatch.setattr(cls, "to_dict", _asdict_spelling)
    first_before = _decide_with_segments()
    second_before = _decide_with_segments(sequential=first_before.sequential)
    assert new == [_evidence(first_before), _evidence(second_before)]


@pytest.mark.parametrize("value", [0.0, -0.0, 1e-300, 0.123456789, 12345678.9, INF, -INF, math.nan])
def test_every_class_spells_odd_values_as_asdict_did(value):
    objects = [
        st.ProportionComparison(value, 0.01, value, -1.5, value, 2.0, value, 1e-9),
        st.RankTest(value, 1.0, value, 0.5, value, -value, 10, 20),
        sq.SequentialState(value, 3.0, value, (value, 1.0, 2.0), (0.0, value, -1.0), 4),
        sq.SequentialResult(True, value, 12.5, value, 0.001, value, 1e-6),
        sq.SequentialResult(False, 1.0, value, 2.0, value, 0.5, value),
    ]
    for obj in objects:
        new, before = obj.to_dict(), _asdict_spelling(obj)
        assert list(new) == list(before)
        assert canonical_json(new) == canonical_json(before)
        assert [type(v) for v in new.values()] == [type(v) for v in before.values()]
