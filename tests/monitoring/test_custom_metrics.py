"""Custom metrics (monitoring.custom): the declaration's validation, the promotion gate and the
rollback trigger of each kind in either direction, the values a sample carries and what the
Prometheus provider asks for them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from canaryhub.errors import ValidationFailed
from monitoring import custom
from monitoring.evaluator import decide
from monitoring.providers import PrometheusProvider
from monitoring.samples import Sample, Target
from monitoring.thresholds import DEFAULT_THRESHOLDS, metrics_with_defaults

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

RATIO = {"kind": "ratio", "worse": "higher", "promote_tolerance": 0.5, "rollback_threshold": 2}
RATE = {"kind": "rate", "worse": "higher", "promote_tolerance": 0.1, "rollback_threshold": 0.5}
HIST = {"kind": "histogram", "worse": "higher", "promote_tolerance": 0.1, "rollback_threshold": 0.3}
BOUNDS = (0.5, 1.0, 2.0, 5.0, 10.0, math.inf)


# --- validation -----------------------------------------------------------------------------------


def test_a_declaration_is_cleaned_and_kept_beside_the_provider():
    clean = metrics_with_defaults({"provider": "push", "custom": {"refusals": RATIO}}, default_provider="push")
    assert clean == {"provider": "push", "queries": {},
                     "custom": {"refusals": {**RATIO, "promote_tolerance": 0.5, "rollback_threshold": 2.0}}}
    # Without custom metrics the configuration is as it always was.
    assert metrics_with_defaults({"provider": "push"}, default_provider="push") == {"provider": "push", "queries": {}}
    prom = metrics_with_defaults({"provider": "prometheus", "custom": {"tool_calls": {
        **RATE, "promql": {"events": 'model_tool_calls_total{tool!="search"}'}}}}, default_provider="push")
    assert prom["custom"]["tool_calls"]["promql"] == {"events": 'model_tool_calls_total{tool!="search"}'}


BAD = [
    ({"provider": "push", "custom": {"error_rate": RATIO}}, "metrics.custom.error_rate"),
    ({"provider": "push", "custom": {"Refusals!": RATIO}}, "metrics.custom.Refusals!"),
    ({"provider": "push", "custom": {"x" * 41: RATIO}}, "metrics.custom." + "x" * 41),
    ({"provider": "push", "custom": {f"m{i}": RATIO for i in range(11)}}, "metrics.custom"),
    ({"provider": "push", "custom": ["refusals"]}, "metrics.custom"),
    ({"provider": "push", "custom": {"r": {**RATIO, "kind": "gauge"}}}, "metrics.custom.r.kind"),
    ({"provider": "push", "custom": {"r": {**RATIO, "worse": "up"}}}, "metrics.custom.r.worse"),
    ({"provider": "push", "custom": {"r": {**RATIO, "rollback_threshold": 0.1}}}, "metrics.custom.r.rollback_threshold"),
    ({"provider": "push", "custom": {"r": {**RATIO, "promote_tolerance": float("nan")}}},
     "metrics.custom.r.promote_tolerance"),
    ({"provider": "push", "custom": {"r": {**RATIO, "promote_tolerance": True}}}, "metrics.custom.r.promote_tolerance"),
    ({"provider": "push", "custom": {"r": {**RATE, "rollback_threshold": 11}}}, "metrics.custom.r.rollback_threshold"),
    ({"provider": "push", "custom": {"r": {**RATIO, "url": "http://evil:9090"}}}, "metrics.custom.r.url"),
    # With push, windows carry the values: a query is refused (it would run nowhere).
    ({"provider": "push", "custom": {"r": {**RATE, "promql": {"events": "x_total"}}}}, "metrics.custom.r.promql"),
    ({"provider": "prometheus", "custom": {"r": RATE}}, "metrics.custom.r.promql"),
    ({"provider": "prometheus", "custom": {"r": {**RATIO, "promql": {"numerator": "a_total"}}}},
     "metrics.custom.r.promql.denominator"),
    ({"provider": "prometheus", "custom": {"r": {**RATE, "promql": {"events": "x_total{model=\"$model\"}"}}}},
     "metrics.custom.r.promql.events"),
    ({"provider": "prometheus", "custom": {"r": {**RATE, "promql": {"events": "rate(x_total[$w])"}}}},
     "metrics.custom.r.promql.events"),
    ({"provider": "prometheus", "custom": {"r": {**RATE, "promql": {"events": "sum(x_total) or vector(1)"}}}},
     "metrics.custom.r.promql.events"),
    ({"provider": "prometheus", "custom": {"r": {**RATE, "promql": {"events": 'x_total{a="b"'}}}},
     "metrics.custom.r.promql.events"),
    ({"provider": "prometheus", "custom": {"r": {**RATE, "promql": {"events": 'x_total{a="b"}}'}}}},
     "metrics.custom.r.promql.events"),
    ({"provider": "prometheus", "custom": {"r": {**RATE, "promql": {"events": 'x_total{version="1.0.0"}'}}}},
     "metrics.custom.r.promql.events"),
    ({"provider": "prometheus", "custom": {"r": {**RATE, "promql": {"events": "x" * 301}}}},
     "metrics.custom.r.promql.events"),
    ({"provider": "prometheus", "custom": {"h": {**HIST, "promql": {"buckets": "model_tokens_total"}}}},
     "metrics.custom.h.promql.buckets"),
    ({"provider": "prometheus", "custom": {"r": {**RATE, "promql": {"events": "x_total", "url": "http://x"}}}},
     "metrics.custom.r.promql.url"),
]


@pytest.mark.parametrize("value,path", BAD, ids=[p for _, p in BAD])
def test_a_bad_declaration_is_refused_naming_the_field(value, path):
    with pytest.raises(ValidationFailed) as refused:
        metrics_with_defaults(value, default_provider="push")
    assert path in refused.value.errors, refused.value.errors


def test_pushed_custom_values_are_checked():
    ok = {"refusals": {"numerator": 3, "denominator": 100}, "calls": {"events": 250},
          "wait": {"buckets": [[1, 10], [5, 90], ["+Inf", 100]]}}
    assert custom.observation_custom_problem(ok, 100, max_count=1e12, max_buckets=64) is None
    for bad, field in [
        ({"refusals": {"numerator": 101, "denominator": 100}}, "custom.refusals.numerator"),
        ({"refusals": {"numerator": 1}}, "custom.refusals"),
        ({"refusals": {"numerator": -1, "denominator": 5}}, "custom.refusals.numerator"),
        ({"refusals": {"numerator": 1.5, "denominator": 5}}, "custom.refusals.numerator"),
        ({"error_rate": {"events": 1}}, "custom.error_rate"),
        ({"calls": {"sql": "drop"}}, "custom.calls"),
        ({"wait": {"buckets": [[1, 10], [5, 9], ["+Inf", 100]]}}, "custom.wait.buckets"),
        ({"wait": {"buckets": [[1, 10], ["+Inf", 101]]}}, "custom.wait.buckets"),
        ({f"m{i}": {"events": 1} for i in range(11)}, "custom"),
    ]:
        assert custom.observation_custom_problem(bad, 100, max_count=1e12, max_buckets=64)[0] == field, bad


# --- decisions ------------------------------------------------------------------------------------


def ratio(trials, events, name="refusals"):
    return Sample(requests=trials, errors=0, present=True, last_seen=NOW - timedelta(seconds=5),
                  custom={name: {"x": float(events), "n": float(trials)}})


def rate(requests, per_request, name="calls"):
    return Sample(requests=requests, present=True, last_seen=NOW - timedelta(seconds=5),
                  custom={name: {"x": float(round(requests * per_request))}})


def hist(counts, name="wait"):
    cumulative, total = [], 0.0
    for le, c in zip(BOUNDS, counts, strict=True):
        total += c
        cumulative.append((le, total))
    return Sample(requests=total, present=True, last_seen=NOW - timedelta(seconds=5),
                  custom={name: {"buckets": cumulative}})


def run(decls, canary, production):
    window = {"canary": canary, "production": production}
    return decide(thresholds=DEFAULT_THRESHOLDS, window=window, stage=window, now=NOW, staleness_limit_s=300,
                  traffic_percent=10, random_split=False, stage_elapsed_s=3600, custom=decls)


def gate_of(decision, name):
    return next(g for g in decision.gates if g.name == f"custom.{name}")


SHAPE = (400, 300, 200, 80, 15, 5)


CASES = [
    # (case, declaration, name, canary, production, gate, rolls back)
    ("ratio A/A", RATIO, "refusals", ratio(20_000, 400), ratio(200_000, 4000), "green", False),
    ("ratio worse, higher", RATIO, "refusals", ratio(20_000, 1000), ratio(200_000, 4000), "red", True),
    ("ratio better, higher", RATIO, "refusals", ratio(20_000, 2), ratio(200_000, 4000), "green", False),
    ("ratio small sample", RATIO, "refusals", ratio(500, 10), ratio(200_000, 4000), "insufficient", False),
    ("ratio worse, lower", {**RATIO, "worse": "lower"}, "refusals", ratio(20_000, 10_000), ratio(200_000, 180_000),
     "red", True),
    ("ratio better, lower", {**RATIO, "worse": "lower"}, "refusals", ratio(50_000, 49_975), ratio(200_000, 180_000),
     "green", False),
    ("rate A/A", RATE, "calls", rate(20_000, 1.5), rate(200_000, 1.5), "green", False),
    ("rate worse, higher", RATE, "calls", rate(20_000, 3.0), rate(200_000, 1.5), "red", True),
    ("rate better, higher", RATE, "calls", rate(20_000, 0.1), rate(200_000, 1.5), "green", False),
    ("rate small sample", RATE, "calls", rate(100, 1.5), rate(200_000, 1.5), "insufficient", False),
    ("rate worse, lower", {**RATE, "worse": "lower"}, "calls", rate(20_000, 0.5), rate(200_000, 1.5), "red", True),
    ("rate better, lower", {**RATE, "worse": "lower"}, "calls", rate(20_000, 6.0), rate(200_000, 1.5), "green",
     False),
    ("histogram A/A", HIST, "wait", hist([c * 10 for c in SHAPE]), hist([c * 100 for c in SHAPE]), "green", False),
    ("histogram worse, higher", HIST, "wait", hist([50, 100, 200, 300, 300, 50]), hist([c * 100 for c in SHAPE]),
     "red", True),
    ("histogram better, higher", HIST, "wait", hist([9000, 1000, 0, 0, 0, 0]), hist([c * 100 for c in SHAPE]),
     "green", False),
    ("histogram small sample", HIST, "wait", hist(SHAPE[:1] + (0,) * 5), hist([c * 100 for c in SHAPE]),
     "insufficient", False),
    ("histogram worse, lower", {**HIST, "worse": "lower"}, "wait", hist([9000, 1000, 0, 0, 0, 0]),
     hist([c * 100 for c in SHAPE]), "red", True),
    ("histogram better, lower", {**HIST, "worse": "lower"}, "wait", hist([500, 1000, 2000, 3000, 3000, 500]),
     hist([c * 100 for c in SHAPE]), "green", False),
]


@pytest.mark.parametrize("case,decl,name,canary,production,status,rolls", CASES, ids=[c[0] for c in CASES])
def test_gate_and_trigger_of_each_kind_in_either_direction(case, decl, name, canary, production, status, rolls):
    d = run({name: decl}, canary, production)
    assert gate_of(d, name).status.value == status, gate_of(d, name)
    assert (name in [t.metric for t in d.rollback]) is rolls, d.rollback_reason
    record = d.inputs["custom"][name]
    assert record["declaration"]["kind"] == decl["kind"] and record["fired"] is rolls
    assert record["window"]["canary"] and record["stage"]["production"]
    if rolls:
        assert name.replace("_", " ") in d.rollback_reason and "p=" in d.rollback_reason


def test_overwhelming_evidence_is_red_before_the_sample_target_and_a_handful_never_rolls_back():
    # 60 refusals in 300 answers against production's 2 %: short of the sample, past any doubt.
    d = run({"refusals": RATIO}, ratio(300, 60), ratio(200_000, 4000))
    g = gate_of(d, "refusals")
    assert g.status.value == "red" and d.inputs["custom"]["refusals"]["gate"]["overwhelming"]
    assert [t.metric for t in d.rollback] == ["refusals"]
    # Four events: past the threshold, but under the rule's five-event floor.
    d = run({"refusals": RATIO}, ratio(40, 4), ratio(200_000, 0))
    assert d.rollback == []


def test_a_custom_metric_with_no_data_is_insufficient_and_holds_the_stage():
    d = run({"refusals": RATIO}, Sample(requests=10_000, present=True, last_seen=NOW),
            Sample(requests=100_000, present=True, last_seen=NOW))
    assert gate_of(d, "refusals").status.value == "insufficient" and d.verdict.value != "green"
    assert d.rollback == []


def test_an_identical_canary_rolls_back_rarely():
    # A/A at the boundary of evidence: many draws of an identical canary, none rolls back.
    import random

    rng = random.Random(7)
    fired = 0
    for _ in range(300):
        n_c, n_p, p = 5000, 50_000, 0.03
        x_c = sum(rng.random() < p for _ in range(n_c))
        x_p = round(n_p * p + rng.gauss(0, math.sqrt(n_p * p * (1 - p))))
        fired += bool(run({"refusals": {**RATIO, "rollback_threshold": 0.5}}, ratio(n_c, x_c),
                          ratio(n_p, x_p)).rollback)
    assert fired == 0


# --- values and the Prometheus provider ----------------------------------------------------------


def test_a_sample_carries_custom_values_through_the_record_and_the_stage_arithmetic():
    later = Sample(requests=100, custom={"r": {"x": 10.0, "n": 100.0}, "h": {"buckets": [(1.0, 5.0), (math.inf, 9.0)]}})
    earlier = Sample(requests=40, custom={"r": {"x": 4.0, "n": 40.0}, "h": {"buckets": [(1.0, 2.0), (math.inf, 3.0)]}})
    assert Sample.from_dict(later.to_dict()).custom == later.custom
    assert later.to_dict()["custom"]["h"]["buckets"][-1] == ["+Inf", 9.0]
    assert later.minus(earlier).custom == {"r": {"x": 6.0, "n": 60.0}, "h": {"buckets": [(1.0, 3.0), (math.inf, 6.0)]}}
    assert "custom" not in Sample().to_dict()  # records of versions without custom metrics are unchanged


class Recording:
    """A Prometheus client that answers the custom metrics' queries with fixed series."""

    def __init__(self):
        self.queries = []

    def custom_query(self, query, params=None, timeout=None):
        self.queries.append(query)
        if "canaryhub_span" not in query:
            return []
        rows = []
        for version, (num, den) in (("1.1.0", (30, 1000)), ("1.0.0", (200, 10_000))):
            for span, k in (("window", 1), ("total", 5)):
                for seg in ("eu", "us"):
                    for part, value in (("numerator", num), ("denominator", den)):
                        rows.append({"metric": {"model": "m", "version": version, "segment": seg,
                                                "canaryhub_span": span, "canaryhub_part": part},
                                     "value": [0, str(value * k / 2)]})
        return rows


def test_prometheus_reads_each_declared_metric_with_one_query_for_every_canary():
    decl = {**RATIO, "promql": {"numerator": 'model_answers_total{outcome="refused"}',
                                "denominator": "model_answers_total"}}
    other = {**RATE, "promql": {"events": "model_tool_calls_total"}}
    targets = [Target(i, "m", "1.1.0", "1.0.0", None, NOW, custom={"refusals": decl, **({"calls": other} if i % 2
                                                                                          else {})})
               for i in range(1, 51)]
    client = Recording()
    base = PrometheusProvider(url="http://x", client=Recording())
    base.fetch([Target(99, "m", "1.1.0", "1.0.0", None, NOW)], now=NOW, window_s=300)
    provider = PrometheusProvider(url="http://x", client=client)
    readings = provider.fetch(targets, now=NOW, window_s=300)
    assert provider.query_count == base.query_count + 2  # one per distinct declared metric, 50 canaries
    query = next(q for q in client.queries if "model_answers_total" in q)
    assert "increase(model_answers_total[300s])" in query and "$" not in query
    r = readings[1]
    assert r.error is None
    assert r.window["canary"].custom["refusals"] == {"x": 30.0, "n": 1000.0}
    assert r.totals["production"].custom["refusals"] == {"x": 1000.0, "n": 50_000.0}
    # A canary of one segment reads only that segment's series.
    seg = PrometheusProvider(url="http://x", client=Recording()).fetch(
        [Target(1, "m", "1.1.0", "1.0.0", ("eu",), NOW, custom={"refusals": decl})], now=NOW, window_s=300)[1]
    assert seg.window["canary"].custom["refusals"] == {"x": 15.0, "n": 500.0}


def test_gate_labels_name_the_custom_metric_in_words():
    assert custom.gate_label("custom.tool_calls") == "Tool calls (custom metric)"
    assert custom.gate_label("error_rate") is None


def test_on_prometheus_the_stage_so_far_is_the_counters_less_those_at_the_stage_start():
    from monitoring import services as monitor
    from monitoring.models import CanaryWatch
    from monitoring.samples import Reading

    decls = {"refusals": RATIO}
    subject = monitor.Subject(canary_id=1, stage_index=0, thresholds=DEFAULT_THRESHOLDS, traffic_percent=10,
                              random_split=True, stage_since=NOW - timedelta(hours=1), provider="prometheus",
                              target=Target(1, "m", "1.1.0", "1.0.0", None, NOW - timedelta(hours=1), custom=decls))

    def reading(canary_total, production_total):
        return Reading(window={"canary": ratio(1000, 20), "production": ratio(10_000, 200)},
                       totals={"canary": ratio(*canary_total), "production": ratio(*production_total)},
                       source="prometheus")

    watch = CanaryWatch(canary_id=1)
    first = monitor.judge(subject, reading((5000, 100), (50_000, 1000)), now=NOW, watch=watch)
    assert first.evaluation.inputs["custom"]["refusals"]["stage"]["canary"] == {"x": 0.0, "n": 0.0, "value": None,
                                                                               "count": 0.0}
    assert watch.stage_baseline["canary"]["custom"]["refusals"] == {"x": 100.0, "n": 5000.0}
    later = monitor.judge(subject, reading((25_000, 500), (250_000, 5000)), now=NOW + timedelta(minutes=1),
                          watch=watch)
    record = later.evaluation.inputs["custom"]["refusals"]
    assert record["stage"]["canary"] == {"x": 400.0, "n": 20_000.0, "value": 0.02, "count": 20_000.0}
    assert record["stage"]["production"] == {"x": 4000.0, "n": 200_000.0, "value": 0.02, "count": 200_000.0}
    assert next(g for g in later.decision.gates if g.name == "custom.refusals").status.value == "green"


def test_within_twenty_percent_of_the_rollback_threshold_is_an_early_warning():
    # +1.7 pp against a 2 pp threshold, on 370 events: a warning, not a rollback.
    d = run({"refusals": RATIO}, ratio(10_000, 370), ratio(200_000, 4000))
    assert d.rollback == [] and [w.metric for w in d.warnings] == ["refusals"]
    assert "within 20% of the 2 pp rollback threshold" in d.warnings[0].detail
    # +1 pp: neither.
    d = run({"refusals": RATIO}, ratio(10_000, 300), ratio(200_000, 4000))
    assert d.rollback == [] and d.warnings == []
