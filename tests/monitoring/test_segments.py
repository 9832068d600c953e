"""Every segment judged against production's same segment (monitoring.evaluator.judge_segments)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring import statistics as st
from monitoring.evaluations import readiness
from monitoring.evaluator import decide
from monitoring.samples import Sample
from monitoring.thresholds import DEFAULT_THRESHOLDS

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def s(requests, errors):
    return Sample(requests=requests, errors=errors, last_seen=NOW - timedelta(seconds=5), present=True)


def total(*samples):
    return s(sum(x.requests for x in samples), sum(x.errors for x in samples))


def run(segments):
    """`segments`: {name: (canary Sample, production Sample)}, the same for window and stage."""
    parts = {name: {"window": {"canary": c, "production": p}, "stage": {"canary": c, "production": p}}
             for name, (c, p) in segments.items()}
    c = total(*(c for c, _ in segments.values()))
    p = total(*(p for _, p in segments.values()))
    pair = {"canary": c, "production": p}
    return decide(thresholds=DEFAULT_THRESHOLDS, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
                  traffic_percent=10, random_split=False, stage_elapsed_s=3600, segments=parts)


def test_simpsons_paradox_better_overall_worse_in_one_segment_rolls_back():
    # Easy traffic (0.5 % errors) and hard traffic (5 %). The canary serves mostly easy requests, so
    # its overall rate (1.25 %) beats production's (2.75 %), while on hard requests it fails 8 %.
    d = run({"easy": (s(90_000, 450), s(500_000, 2500)), "hard": (s(10_000, 800), s(500_000, 25_000))})
    assert d.inputs["rollback_window"]["error_rate"]["difference"] < 0  # better on the aggregate
    assert [(t.metric, t.segment) for t in d.rollback] == [("error_rate", "hard")]
    assert d.rollback_reason.startswith("segment hard: error rate 8.00% vs production 5.00%")
    gate = next(g for g in d.gates if g.name == "segments")
    assert gate.status.value == "red" and "hard" in gate.detail and "easy" not in gate.detail
    by = d.inputs["segments"]["by_segment"]
    assert by["hard"]["rollback"] == ["error_rate"] and by["easy"]["rollback"] == [] and by["easy"]["red"] == []


def test_a_segment_worse_than_the_gate_but_short_of_rollback_holds_and_names_it():
    # +0.3 pp in "eu" (beyond the 0.1 pp gate with confidence, within the 0.5 pp rollback threshold).
    d = run({"us": (s(200_000, 200), s(2_000_000, 2000)), "eu": (s(200_000, 800), s(2_000_000, 2000))})
    assert not d.rollback
    gate = next(g for g in d.gates if g.name == "segments")
    assert gate.status.value == "red" and gate.detail.startswith("segment eu: error rate +0.30 pp")

    class Latest:
        window_end, verdict, gates = NOW, d.verdict.value, [g.to_dict() for g in d.gates]

    why = readiness(Latest(), now=NOW, staleness_limit_s=300).reason
    assert "segments is red (segment eu: error rate +0.30 pp" in why


def test_healthy_segments_are_green_and_short_of_evidence_does_not_hold():
    d = run({"a": (s(200_000, 200), s(2_000_000, 2000)), "b": (s(300, 1), s(2_000_000, 2000))})
    gate = next(g for g in d.gates if g.name == "segments")
    assert gate.status.value == "green" and not d.rollback


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_the_per_segment_level_is_the_familys_share(k):
    names = {f"s{i}": (s(100_000, 100), s(1_000_000, 1000)) for i in range(max(k, 2))}
    d = run(names)
    levels = d.inputs["segments"]["judged"]
    assert levels["segments"] == max(k, 2) and levels["rollback_alpha"] == pytest.approx(st.ROLLBACK_ALPHA / max(k, 2))
    assert st.segment_alpha(st.ROLLBACK_ALPHA, k) * k == pytest.approx(st.ROLLBACK_ALPHA)


def test_a_segment_test_that_passes_alone_is_held_to_its_share_among_many():
    # One segment at +1.07 pp on 3,000 requests: p between 1e-6 / 8 and 1e-6 / 2.
    bad = (s(3000, 62), s(300_000, 3000))
    p = st.poisson_rate_test(62, 3000, 3000, 300_000)
    assert st.ROLLBACK_ALPHA / 8 < p < st.ROLLBACK_ALPHA / 2
    healthy = (s(3000, 30), s(300_000, 3000))
    two = run({"bad": bad, "ok": healthy})
    eight = run({"bad": bad, **{f"ok{i}": healthy for i in range(7)}})
    assert [t.segment for t in two.rollback] == ["bad"] and not eight.rollback


def test_no_segment_judgement_with_a_single_segment():
    pair = {"canary": s(100_000, 100), "production": s(1_000_000, 1000)}
    d = decide(thresholds=DEFAULT_THRESHOLDS, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
               traffic_percent=10, random_split=True, stage_elapsed_s=3600,
               segments={"all": {"window": pair, "stage": pair}})
    assert "segments" not in d.inputs and "segments" not in {g.name for g in d.gates}
