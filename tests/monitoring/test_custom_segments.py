"""Custom metrics judged segment by segment (monitoring.custom.judge_segment, through
monitoring.evaluator.judge_segments): each segment against production's same segment at the
segments' share of the levels, naming the segment in the rollback and in the `segments` gate,
and read segment by segment from the one Prometheus query a declared metric costs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from monitoring import custom
from monitoring import statistics as st
from monitoring.evaluations import readiness
from monitoring.evaluator import decide
from monitoring.providers import PrometheusProvider
from monitoring.samples import Sample, Target, samples_sum
from monitoring.thresholds import DEFAULT_THRESHOLDS

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REFUSALS = {"kind": "ratio", "worse": "higher", "promote_tolerance": 0.5, "rollback_threshold": 2.0}
CALLS = {"kind": "rate", "worse": "higher", "promote_tolerance": 0.1, "rollback_threshold": 0.5}


def answers(n, refused):
    """`n` answered requests (no errors), `refused` of them refused."""
    return Sample(requests=n, present=True, last_seen=NOW - timedelta(seconds=5),
                  custom={"refusals": {"x": float(refused), "n": float(n)}})


def run(segments, decls=None):
    """`segments`: {name: (canary, production)}, the same for window and stage; the canary as a
    whole is their sum."""
    parts = {name: {"window": {"canary": c, "production": p}, "stage": {"canary": c, "production": p}}
             for name, (c, p) in segments.items()}
    pair = {"canary": samples_sum([c for c, _ in segments.values()]),
            "production": samples_sum([p for _, p in segments.values()])}
    for s in pair.values():
        s.last_seen = NOW - timedelta(seconds=5)
    return decide(thresholds=DEFAULT_THRESHOLDS, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
                  traffic_percent=10, random_split=False, stage_elapsed_s=3600, segments=parts,
                  custom=decls or {"refusals": REFUSALS})


def gate(decision, name):
    return next(g for g in decision.gates if g.name == name)


def test_simpsons_paradox_on_a_custom_metric_better_overall_worse_in_one_segment_rolls_back():
    # Easy questions (production refuses 1 %) and hard ones (5 %). The canary answers mostly easy
    # ones, so it refuses 1.25 % overall against production's 3 %, while refusing 8 % of hard ones.
    d = run({"easy": (answers(90_000, 450), answers(500_000, 5000)),
             "hard": (answers(10_000, 800), answers(500_000, 25_000))})
    whole = d.inputs["custom"]["refusals"]
    assert whole["rollback"]["difference_pp"] < 0 and not whole["fired"]  # better as a whole
    assert gate(d, "custom.refusals").status.value == "green"
    assert [(t.metric, t.segment) for t in d.rollback] == [("refusals", "hard")]
    assert d.rollback_reason.startswith("segment hard: refusals: share 8.00% vs production 5.00% (+3.00 pp worse")
    seg = gate(d, "segments")
    assert seg.status.value == "red" and seg.detail.startswith("segment hard: refusals (custom) +3.00 pp worse")
    assert "easy" not in seg.detail
    by = d.inputs["segments"]["by_segment"]
    assert by["hard"]["rollback"] == ["refusals"] and by["easy"]["rollback"] == [] and by["easy"]["red"] == []
    assert by["hard"]["custom"]["refusals"]["fired"] and not by["easy"]["custom"]["refusals"]["fired"]
    assert by["hard"]["custom"]["refusals"]["stage"]["canary"] == {"x": 800.0, "n": 10_000.0, "value": 0.08,
                                                                   "count": 10_000.0}
    # The test in the segment ran at the segment's share of the level.
    assert d.inputs["segments"]["judged"]["rollback_alpha"] == pytest.approx(st.ROLLBACK_ALPHA / 2)


def test_a_segment_past_the_tolerance_but_short_of_the_threshold_holds_and_names_it():
    # Hard questions: 6 % refused against production's 5 % (+1 pp: past the 0.5 pp tolerance with
    # confidence, short of the 2 pp rollback threshold); better overall.
    d = run({"easy": (answers(180_000, 900), answers(500_000, 5000)),
             "hard": (answers(20_000, 1200), answers(500_000, 25_000))})
    assert d.rollback == []
    assert gate(d, "custom.refusals").status.value == "green"
    seg = gate(d, "segments")
    assert seg.status.value == "red" and seg.detail.startswith("segment hard: refusals (custom) +1.00 pp worse")

    class Latest:
        window_end, verdict, gates = NOW, d.verdict.value, [g.to_dict() for g in d.gates]

    why = readiness(Latest(), now=NOW, staleness_limit_s=300).reason
    assert "segments is red (segment hard: refusals (custom) +1.00 pp worse" in why
    # Short of evidence (the same +1 pp on 500 answers), a segment holds nothing.
    d = run({"easy": (answers(180_000, 900), answers(500_000, 5000)),
             "hard": (answers(500, 30), answers(500_000, 25_000))})
    assert gate(d, "segments").status.value == "green" and d.rollback == []


def test_a_rate_and_the_lower_is_worse_direction_per_segment():
    calls = {"kind": "rate", "worse": "lower", "promote_tolerance": 0.1, "rollback_threshold": 0.5}

    def served(n, per_request):
        return Sample(requests=n, present=True, last_seen=NOW - timedelta(seconds=5),
                      custom={"calls": {"x": float(round(n * per_request))}})

    # Tool calls per request: the canary calls more tools overall (easy mix), a third as many in "eu".
    d = run({"us": (served(50_000, 2.0), served(500_000, 1.0)), "eu": (served(5000, 0.3), served(500_000, 1.0))},
            {"calls": calls})
    assert [(t.metric, t.segment) for t in d.rollback] == [("calls", "eu")]
    assert gate(d, "custom.calls").status.value == "green"
    assert gate(d, "segments").detail.startswith("segment eu: calls (custom) +233.2% worse")


def test_the_per_test_level_is_the_familys_share_among_k_segments():
    # 47 refusals in 1,000 answers against production's 2 %: +2.7 pp, p between 1e-6 / 8 and 1e-6 / 2.
    bad = (answers(1000, 47), answers(300_000, 6000))
    healthy = (answers(1000, 20), answers(300_000, 6000))
    window = {"canary": bad[0], "production": bad[1]}
    fired, detail = custom.trigger("refusals", REFUSALS, window)
    assert fired is not None and st.ROLLBACK_ALPHA / 8 < detail["p_worse"] < st.ROLLBACK_ALPHA / 2
    assert custom.trigger("refusals", REFUSALS, window, alpha=st.segment_alpha(st.ROLLBACK_ALPHA, 2))[0] is not None
    assert custom.trigger("refusals", REFUSALS, window, alpha=st.segment_alpha(st.ROLLBACK_ALPHA, 8))[0] is None
    # The decision divides the level by the segments judged: alone among two it rolls back, among
    # eight it does not.
    two = run({"bad": bad, "ok": healthy})
    eight = run({"bad": bad, **{f"ok{i}": healthy for i in range(7)}})
    assert [(t.metric, t.segment) for t in two.rollback] == [("refusals", "bad")]
    assert eight.rollback == []
    assert two.inputs["segments"]["judged"]["rollback_alpha"] == pytest.approx(st.ROLLBACK_ALPHA / 2)
    assert eight.inputs["segments"]["judged"]["rollback_alpha"] == pytest.approx(st.ROLLBACK_ALPHA / 8)
    assert eight.inputs["segments"]["judged"]["gate_alpha"] == pytest.approx(st.ALPHA / 8)
    # The promotion veto's bound is taken at the gate's share too: the same segment is red among
    # two (lower bound past 0.5 pp at 0.05 / 2) and its bound is wider among eight.
    low_two = two.inputs["segments"]["by_segment"]["bad"]["custom"]["refusals"]["gate"]["ci_pp"][0]
    low_eight = eight.inputs["segments"]["by_segment"]["bad"]["custom"]["refusals"]["gate"]["ci_pp"][0]
    assert low_eight < low_two


def test_identical_canaries_over_four_segments_are_not_rolled_back():
    # 200 draws of a canary identical to production in each of 4 segments (3 % refusals, 1.2 tool
    # calls per request), judged with a tight 0.5 pp rollback threshold: no rollback, and no
    # segment held (a veto needs the bound at 0.05 / 4 past the tolerance, not a noisy estimate).
    rng = random.Random(11)
    decls = {"refusals": {**REFUSALS, "rollback_threshold": 0.5}, "calls": CALLS}
    rolled, red = 0, 0

    def draw(n, p):
        return max(0, round(n * p + rng.gauss(0, (n * p * (1 - p)) ** 0.5)))

    def one(n):
        s = answers(n, draw(n, 0.03))
        s.custom["calls"] = {"x": float(max(0, round(n * 1.2 + rng.gauss(0, (n * 1.2) ** 0.5))))}
        return s

    for _ in range(200):
        d = run({f"s{i}": (one(5000), one(50_000)) for i in range(4)}, decls)
        assert d.inputs["segments"]["judged"]["segments"] == 4
        rolled += bool(d.rollback)
        red += gate(d, "segments").status.value == "red"
    assert rolled == 0
    assert red == 0


class Answers:
    """A Prometheus client answering the default queries and a custom metric's query with two
    segments' series."""

    def __init__(self):
        self.queries = []

    def custom_query(self, query, params=None, timeout=None):
        self.queries.append(query)
        rows = []
        if "canaryhub_span" in query:
            for version, scale in (("1.0.0", 10), ("1.1.0", 1)):
                for seg, refused in (("eu", 10), ("us", 80)):
                    for span, k in (("window", 1), ("total", 5)):
                        for part, value in (("numerator", refused), ("denominator", 1000)):
                            rows.append({"metric": {"model": "m", "version": version, "segment": seg,
                                                    "canaryhub_span": span, "canaryhub_part": part},
                                         "value": [0, str(value * scale * k)]})
            return rows
        if "timestamp" in query:
            return [{"metric": {"model": "m", "version": v}, "value": [0, str(NOW.timestamp())]}
                    for v in ("1.0.0", "1.1.0")]
        if "model_requests_total" in query:
            for version, scale in (("1.0.0", 10), ("1.1.0", 1)):
                for seg in ("eu", "us"):
                    rows.append({"metric": {"model": "m", "version": version, "segment": seg, "outcome": "success"},
                                 "value": [0, str(1000 * scale)]})
        return rows


def test_prometheus_reads_each_segment_of_a_custom_metric_from_its_one_query():
    decl = {**REFUSALS, "promql": {"numerator": 'model_answers_total{outcome="refused"}',
                                   "denominator": "model_answers_total"}}
    plain = PrometheusProvider(url="http://x", client=Answers())
    plain.fetch([Target(2, "m", "1.1.0", "1.0.0", None, NOW - timedelta(hours=1))], now=NOW, window_s=300)
    client = Answers()
    provider = PrometheusProvider(url="http://x", client=client)
    reading = provider.fetch([Target(1, "m", "1.1.0", "1.0.0", None, NOW - timedelta(hours=1),
                                     custom={"refusals": decl})], now=NOW, window_s=300)[1]
    assert reading.error is None
    assert provider.query_count == plain.query_count + 1  # the metric's one query, segments included
    query = next(q for q in client.queries if "canaryhub_span" in q)
    assert "sum by (model, version, segment)" in query
    assert reading.window["canary"].custom["refusals"] == {"x": 90.0, "n": 2000.0}
    assert reading.segments_window["us"]["canary"].custom["refusals"] == {"x": 80.0, "n": 1000.0}
    assert reading.segments_window["eu"]["production"].custom["refusals"] == {"x": 100.0, "n": 10_000.0}
    assert reading.segments_totals["us"]["production"].custom["refusals"] == {"x": 4000.0, "n": 50_000.0}
    # A canary of one segment reads that segment only.
    one = PrometheusProvider(url="http://x", client=Answers()).fetch(
        [Target(1, "m", "1.1.0", "1.0.0", ("eu",), NOW - timedelta(hours=1), custom={"refusals": decl})],
        now=NOW, window_s=300)[1]
    assert set(one.segments_window) == {"eu"} and one.window["canary"].custom["refusals"] == {"x": 10.0, "n": 1000.0}


def test_on_prometheus_a_segments_stage_is_its_counters_less_those_at_the_stage_start():
    from monitoring import services as monitor
    from monitoring.models import CanaryWatch
    from monitoring.samples import Reading

    decls = {"refusals": REFUSALS}
    subject = monitor.Subject(canary_id=1, stage_index=0, thresholds=DEFAULT_THRESHOLDS, traffic_percent=10,
                              random_split=True, stage_since=NOW - timedelta(hours=1), provider="prometheus",
                              target=Target(1, "m", "1.1.0", "1.0.0", None, NOW - timedelta(hours=1), custom=decls))

    # Production refuses 10 % in "eu" and 2 % in "us"; the canary 0.5 % and 8 %: better as a whole.
    refused = {"eu": {"canary": 0.005, "production": 0.1}, "us": {"canary": 0.08, "production": 0.02}}
    served = {"canary": 1000, "production": 10_000}

    def segments(scale):
        return {seg: {role: answers(served[role] * scale, round(served[role] * scale * share))
                      for role, share in by_role.items()} for seg, by_role in refused.items()}

    def reading(scale):
        totals = segments(scale)
        window = segments(1)
        return Reading(window={role: samples_sum([window["eu"][role], window["us"][role]]) for role in served},
                       totals={role: samples_sum([totals["eu"][role], totals["us"][role]]) for role in served},
                       segments_window=window, segments_totals=totals, source="prometheus")

    watch = CanaryWatch(canary_id=1)
    monitor.judge(subject, reading(5), now=NOW, watch=watch)
    assert watch.stage_baseline["segments"]["us"]["canary"]["custom"]["refusals"] == {"x": 400.0, "n": 5000.0}
    later = monitor.judge(subject, reading(25), now=NOW + timedelta(minutes=1), watch=watch)
    us = later.evaluation.inputs["segments"]["by_segment"]["us"]["custom"]["refusals"]
    assert us["stage"]["canary"] == {"x": 1600.0, "n": 20_000.0, "value": 0.08, "count": 20_000.0}
    # 8 % against 2 % in "us": rolled back, naming the segment.
    assert [(t.metric, t.segment) for t in later.decision.rollback] == [("refusals", "us")]
