"""The evaluator's decisions, as pure functions of what the providers read (no database, no
clock: `now` is passed in; no I/O: the numbers are monitoring.samples values). The control loop
(releases.canaries.loop) asks for them through monitoring.services.judge and acts on them.

For one canary and one tick, `decide()` returns:
- the promotion gates over the stage so far (monitoring.statistics says when each is green),
  plus a `router_share` gate: an observed canary share of requests far from the configured
  percent flags a router misconfiguration and holds the stage;
- the rollback triggers that fired: latency and quality on the last window (the rule is in
  monitoring.statistics); the error rate by the same fixed-level rule on the last window, the last
  two windows pooled when `earlier` (the window just before) is given and the stage so far, and by
  the anytime-valid sequential test on the stage so far (monitoring.sequential), whose memory the
  caller carries from one look of the stage to the next (`sequential` in, `Decision.sequential`
  out, also recorded in the inputs); either rule's verdict rolls back;
- early warnings: a metric within 20 % of its rollback threshold (measured from the promotion
  side: error diff ≥ 80 % of the rollback margin, p99 ratio ≥ 1 + 0.8 × 0.5, quality ratio
  ≤ 1 − 0.8 × 0.1), with the same event floor as rollback so noise does not page anyone;
- segments: with two or more segment labels, each segment against production's same segment
  (`judge_segments`): a segment's rollback trigger rolls the canary back, a segment's red gate
  holds the stage as the `segments` gate naming it;
- LLM serving rules (`_llm_triggers`): tokens per request beyond 150 % of production's for ten
  minutes (the last two windows) and guardrail blocks beyond 10 a minute over the window roll
  back, and so do output-schema failures by the error rate's fixed-level rule (monitoring.llm);
  cost per request is recorded beside them; for a model that reports tokens, promotion gates on
  tokens and cost per request, the guardrail block rate and the output-schema failure rate;
- custom metrics a version declares (monitoring.custom): each a promotion gate over the stage
  and a rollback trigger over the window by the same fixed-level rule, and judged segment by
  segment as the built-in metrics are;
- availability (monitoring.availability): when a version reports unavailable requests, a
  promotion gate on the canary's availability against production's;
- fail closed: after `fail_closed_after` consecutive source errors, a rollback; before that,
  and whenever the data is older than the staleness limit, every gate is `stale` (the stage
  holds and extends; it never advances on stale data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitoring import custom as cu
from monitoring import llm
from monitoring import sequential as sq
from monitoring import statistics as st
from monitoring.availability import availability_gate
from monitoring.evaluations import PROMOTION_GATES, SEGMENTS_GATE, Gate, GateStatus, overall_verdict
from monitoring.samples import Sample

WINDOW_S = 300  # the pattern's evaluation window (settings.EVALUATION_WINDOW_S)
FAIL_CLOSED_AFTER = 4  # consecutive source errors, as Argo Rollouts' default
WARNING_FRACTION = 0.8  # "within 20 % of the rollback threshold"
ROUTER_MIN_REQUESTS = 200  # below this the observed share says nothing
ROUTER_RELATIVE_TOLERANCE = 0.5  # |observed / configured − 1| beyond this, and significant, is far off
ROUTER_Z = 5.0
# LLM serving rules (a version's frozen rollback thresholds may set them; these are the defaults):
TOKENS_RATIO = 1.5  # tokens per request beyond 150 % of production's ...
TOKENS_SPAN_WINDOWS = 2  # ... in each of the last two windows (10 minutes) rolls back
TOKENS_MIN_REQUESTS = 50  # canary requests per window behind a tokens-per-request mean
FAIRNESS_MIN = 200  # canary observations of a subgroup before its value enters the disparity
GUARDRAIL_PER_MIN = 10  # guardrail blocks beyond 10 a minute over the 5-minute window roll back


@dataclass(frozen=True)
class Trigger:
    metric: str
    value: float
    limit: float
    detail: str
    segment: str | None = None  # None: the canary as a whole

    def to_dict(self) -> dict[str, Any]:
        out = {"metric": self.metric, "value": _r(self.value), "limit": _r(self.limit), "detail": self.detail}
        if self.segment is not None:
            out["segment"] = self.segment
        return out


@dataclass
class Decision:
    gates: list[Gate]
    verdict: GateStatus
    rollback: list[Trigger] = field(default_factory=list)
    warnings: list[Trigger] = field(default_factory=list)
    fail_closed: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)
    # The error-rate test's memory after this look (monitoring.sequential), for the next look of
    # the stage: {"stage_index": i, "canary": state, "segments": {segment: state}}; None: unchanged.
    sequential: dict[str, Any] | None = None

    @property
    def rolls_back(self) -> bool:
        """Whether this decision sends the canary back to 0 %: a trigger fired, or the metric
        source failed closed."""
        return bool(self.rollback) or self.fail_closed

    @property
    def rollback_reason(self) -> str:
        if self.fail_closed:
            return self.inputs.get("fail_closed", "metric source failing")
        return "; ".join(t.detail for t in self.rollback)


def decide(
    *,
    thresholds: dict[str, dict[str, float]],
    window: dict[str, Sample] | None,
    stage: dict[str, Sample] | None,
    now: datetime,
    staleness_limit_s: float,
    traffic_percent: float,
    random_split: bool,
    stage_elapsed_s: float,
    source_error: str | None = None,
    consecutive_errors: int = 0,
    fail_closed_after: int = FAIL_CLOSED_AFTER,
    earlier: dict[str, Sample] | None = None,
    segments: dict[str, dict[str, dict[str, Sample]]] | None = None,
    stage_index: int = 0,
    sequential: dict[str, Any] | None = None,
    custom: dict[str, dict[str, Any]] | None = None,
) -> Decision:
    """`custom`: the version's custom metric declarations (monitoring.custom), each a promotion
    gate and a rollback trigger of its own.
    `segments`: {segment: {"window": {"canary", "production"}, "stage": {...}}}, each judged
    against production's same segment (`judge_segments`) when there are two or more.
    `sequential`: the error-rate test's memory from the stage's previous look (Decision.sequential;
    None or another stage's: this is the stage's first look)."""
    promote, rollback = thresholds["promote"], thresholds["rollback"]
    inputs: dict[str, Any] = {"staleness_limit_s": staleness_limit_s, "traffic_percent": traffic_percent}
    if source_error is not None:
        inputs["source_error"] = source_error
        inputs["consecutive_errors"] = consecutive_errors
        if consecutive_errors >= fail_closed_after:
            inputs["fail_closed"] = (
                f"metric source failed {consecutive_errors} consecutive times (limit {fail_closed_after}): "
                f"failing closed; last error: {source_error}"
            )[:500]
        gates = _all(GateStatus.STALE, f"metric source error ({consecutive_errors} in a row): {source_error}"[:300])
        return Decision(gates, overall_verdict(gates), fail_closed="fail_closed" in inputs, inputs=inputs)
    assert window is not None and stage is not None
    age = _age(window, now)
    inputs["data_age_s"] = None if age is None else round(age, 1)
    if age is None or age > staleness_limit_s:
        why = "no data from the canary or production" if age is None else (
            f"metrics are {age:.0f} s old (limit {staleness_limit_s:g} s)")
        gates = _all(GateStatus.STALE, why)
        return Decision(gates, overall_verdict(gates), inputs=inputs)

    memory = sequential if sequential and sequential.get("stage_index") == stage_index else {}
    state, seq = sequential_step(memory.get("canary"), stage, rollback["error_rate_pp"],
                                 sq.stage_alpha(sq.ERROR_ALPHA, stage_index))
    new_memory: dict[str, Any] = {"stage_index": stage_index, "canary": state.to_dict(), "segments": {}}
    triggers, warnings, rb_inputs = rollback_triggers(window, rollback, earlier, stage, sequential=seq)
    inputs["rollback_window"] = rb_inputs
    gates: list[Gate] = []
    gate_inputs: dict[str, Any] = {}
    rate = stage["canary"].requests / stage_elapsed_s if stage_elapsed_s > 0 else None
    for build in (_error_gate, _latency_gate, _quality_gate, _safety_gate, _anomaly_gate):
        gate, detail = build(stage, promote, rate)
        gates.append(gate)
        gate_inputs[gate.name] = detail
    # On the stage's numbers, not the window's: right after a promotion the window still holds
    # the previous percent's traffic, which is no sign of a misconfigured router.
    router_gate, router_detail = _router_gate(stage, traffic_percent, random_split)
    gates.append(router_gate)
    gate_inputs[router_gate.name] = router_detail
    for llm_gate, llm_detail in llm.llm_gates(stage, promote, rollback, rate):  # LLM models only
        gates.append(llm_gate)
        gate_inputs[llm_gate.name] = llm_detail
    available = availability_gate(stage, promote, rate)  # when a version reports unavailable requests
    if available is not None:
        gates.append(available[0])
        gate_inputs[available[0].name] = available[1]
    inputs["gates"] = gate_inputs
    inputs["window"] = {role: _summary(s) for role, s in window.items()}
    inputs["stage"] = {role: _summary(s) for role, s in stage.items()}
    inputs["stage_elapsed_s"] = round(stage_elapsed_s, 1)
    if segments and len(segments) >= 2:
        seg_gate, seg_triggers, seg_inputs = judge_segments(segments, promote, rollback, stage_index=stage_index,
                                                            memory=memory.get("segments") or {},
                                                            new_memory=new_memory["segments"], custom=custom)
        gates.append(seg_gate)
        triggers = triggers + seg_triggers
        inputs["segments"] = seg_inputs
    if thresholds.get("fairness"):
        fair_gate, fair_inputs = fairness_gate({n: parts["stage"] for n, parts in (segments or {}).items()},
                                               thresholds["fairness"])
        gates.append(fair_gate)
        inputs["fairness"] = fair_inputs
    if custom:
        custom_gates, custom_fired, custom_warned, inputs["custom"] = cu.judge(custom, window, stage)
        gates += custom_gates
        triggers = triggers + [Trigger(t["metric"], t["value"], t["limit"], t["detail"]) for t in custom_fired]
        warnings = warnings + [Trigger(t["metric"], t["value"], t["limit"], t["detail"]) for t in custom_warned]
    inputs["sequential"] = new_memory
    return Decision(gates, overall_verdict(gates), rollback=triggers, warnings=warnings, inputs=inputs,
                    sequential=new_memory)


def sequential_step(memory: dict[str, Any] | None, stage: dict[str, Sample], margin_pp: float, alpha: float, *,
                    restart: bool = True) -> tuple[sq.SequentialState, sq.SequentialResult]:
    """One look of the error-rate test (monitoring.sequential) on the stage's counts so far."""
    c, p = stage["canary"], stage["production"]
    return sq.step(sq.SequentialState.from_dict(memory), canary=(c.requests, c.errors),
                   production=(p.requests, p.errors), margin=margin_pp / 100, alpha_stage=alpha, restart=restart)


def watch_trigger(thresholds: dict[str, Any], stage: dict[str, Sample] | None, memory: dict[str, Any],
                  stage_index: int, *, segments: dict[str, dict[str, Sample]] | None = None) -> Trigger | None:
    """The rollback watch's look between two evaluations: the error-rate test of the canary as a
    whole on the stage's counts now (`stage`, requests and errors; None: not judged), then of each
    segment the stage's last evaluation judged (`segments`: {segment: {"canary", "production"}},
    its stage counts now), continuing from `memory` (that evaluation's Decision.sequential) without
    restarting or keeping anything. Each test at the level the evaluator gives it: the canary's
    share, or the segments' share divided among the segments judged (`judge_segments`). Ville's
    inequality holds at every moment, so looking more often costs nothing. A segment's rejection
    names the segment."""
    if memory.get("stage_index") != stage_index:
        return None
    margin_pp = thresholds["rollback"]["error_rate_pp"]
    if stage is not None:
        trigger = _watch_test(memory.get("canary"), stage, margin_pp, sq.stage_alpha(sq.ERROR_ALPHA, stage_index))
        if trigger is not None:
            return trigger
    judged = memory.get("segments") or {}
    alpha_seq = sq.stage_alpha(sq.SEGMENTS_ALPHA, stage_index) / max(len(judged), 1)
    for name in sorted(judged):
        pair = (segments or {}).get(name)
        if pair is None:
            continue
        t = _watch_test(judged[name], pair, margin_pp, alpha_seq)
        if t is not None:
            return Trigger(t.metric, t.value, t.limit, f"segment {name}: {t.detail}", segment=name)
    return None


def _watch_test(memory: dict[str, Any] | None, stage: dict[str, Sample], margin_pp: float,
                alpha: float) -> Trigger | None:
    """One error-rate test of the watch, on counts that continue the memory's (counts below the
    memory's are another basis, a counter reset: not judged)."""
    state = sq.SequentialState.from_dict(memory)
    c, p = stage.get("canary"), stage.get("production")
    if state is None or c is None or p is None or c.requests <= 0 or p.requests <= 0:
        return None
    if c.requests < state.requests or c.errors < state.errors:
        return None
    _, result = sequential_step(memory, stage, margin_pp, alpha, restart=False)
    return _sequential_trigger(result, stage, margin_pp)


def judge_segments(
    segments: dict[str, dict[str, dict[str, Sample]]], promote: dict[str, float], rollback: dict[str, float], *,
    stage_index: int = 0, memory: dict[str, Any] | None = None, new_memory: dict[str, Any] | None = None,
    custom: dict[str, dict[str, Any]] | None = None,
) -> tuple[Gate, list[Trigger], dict[str, Any]]:
    """Each segment's canary against production's same segment (monitoring.statistics, SEGMENTS):
    the rollback rule at the family's level shared among the segments judged, and the promotion
    gates as vetoes; each segment's error-rate test (monitoring.sequential) at the segments' share
    of the budget divided among them, its memory read from `memory` and written to `new_memory`
    ({segment: state}). The version's `custom` metrics (monitoring.custom.judge_segment) are judged
    in each segment at the same levels. Returns the `segments` gate (red names the segments), the
    rollback triggers (each naming its segment) and what each segment showed, for the record."""
    judged = {name: parts for name, parts in segments.items()
              if parts["window"]["canary"].requests > 0 and parts["window"]["production"].requests > 0
              or parts["stage"]["canary"].requests > 0 and parts["stage"]["production"].requests > 0}
    k = max(len(judged), 1)
    alpha_roll, alpha_gate = st.segment_alpha(st.ROLLBACK_ALPHA, k), st.segment_alpha(st.ALPHA, k)
    fired: list[Trigger] = []
    reds: list[str] = []
    out: dict[str, Any] = {}
    for name in sorted(judged):
        window, stage = judged[name]["window"], judged[name]["stage"]
        seg_fired: list[Trigger] = []
        tests: dict[str, Any] = {}
        alpha_seq = sq.stage_alpha(sq.SEGMENTS_ALPHA, stage_index) / k
        state, seq = sequential_step((memory or {}).get(name), stage, rollback["error_rate_pp"], alpha_seq)
        if new_memory is not None:
            new_memory[name] = state.to_dict()
        if window["canary"].requests > 0 and window["production"].requests > 0:
            seg_fired, _, tests = rollback_triggers(window, rollback, None, stage, alpha=alpha_roll, safety=False,
                                                    sequential=seq)
        seg_reds = _segment_reds(stage, promote, alpha_gate, alpha_roll)
        custom_record = None
        if custom:
            custom_fired, custom_reds, custom_record = cu.judge_segment(custom, window, stage, alpha_gate=alpha_gate,
                                                                        alpha_roll=alpha_roll)
            seg_fired = seg_fired + [Trigger(t["metric"], t["value"], t["limit"], t["detail"]) for t in custom_fired]
            seg_reds = seg_reds + custom_reds
        for t in seg_fired:
            fired.append(Trigger(t.metric, t.value, t.limit, f"segment {name}: {t.detail}", segment=name))
        reds += [f"{name}: {why}" for why in seg_reds]
        out[name] = {"window": {role: _brief(s) for role, s in window.items()},
                     "stage": {role: _brief(s) for role, s in stage.items()},
                     "tests": tests, "red": seg_reds, "rollback": [t.metric for t in seg_fired],
                     **({"custom": custom_record} if custom_record is not None else {})}
    levels = {"segments": k, "rollback_alpha": alpha_roll, "gate_alpha": alpha_gate,
              "error_rate_alpha": sq.stage_alpha(sq.SEGMENTS_ALPHA, stage_index) / k}
    inputs = {"judged": levels, "by_segment": out}
    if reds:
        gate = Gate(SEGMENTS_GATE, GateStatus.RED, len(reds), 0, ("segment " + "; segment ".join(reds))[:500])
    else:
        gate = Gate(SEGMENTS_GATE, GateStatus.GREEN, 0, 0,
                    f"{len(judged)} segment(s), none worse than production's same segment beyond tolerance")
    return gate, fired, inputs


def fairness_gate(stage: dict[str, dict[str, Sample]], config: dict[str, Any]) -> tuple[Gate, dict[str, Any]]:
    """The disparity between subgroups (segments) must not grow in the canary beyond the frozen
    tolerance compared with production's: disparity is the worst subgroup's value less the best
    one's (error rate in pp, or mean quality in score points), over the subgroups with at least
    FAIRNESS_MIN canary observations. Red when the growth's lower confidence bound is past the
    tolerance, green when its upper bound is within it (normal approximation over the four
    subgroup estimates involved, one-sided at ALPHA), insufficient otherwise."""
    metric, tolerance = config["metric"], float(config["tolerance"])
    values: dict[str, dict[str, tuple[float, float]]] = {"canary": {}, "production": {}}
    for name, pair in stage.items():
        for role, s in pair.items():
            if metric == "error_rate" and s.requests >= FAIRNESS_MIN:
                rate = s.errors / s.requests
                values[role][name] = (rate * 100, max(rate * (1 - rate), 1e-4) / s.requests * 1e4)
            elif metric == "quality" and s.quality_count >= FAIRNESS_MIN and s.quality_mean is not None:
                values[role][name] = (s.quality_mean, _quality_var(s) / s.quality_count)
    common = sorted(set(values["canary"]) & set(values["production"]))
    info: dict[str, Any] = {"metric": metric, "tolerance": tolerance, "subgroups": common,
                            "minimum_per_subgroup": FAIRNESS_MIN}
    unit = "pp" if metric == "error_rate" else "score points"
    if len(common) < 2:
        return Gate("fairness", GateStatus.INSUFFICIENT, None, tolerance,
                    f"needs two subgroups with {FAIRNESS_MIN} canary observations each"), info
    worse_is_high = metric == "error_rate"

    def disparity(role: str) -> tuple[float, float, str, str]:
        ranked = sorted(common, key=lambda n: values[role][n][0], reverse=worse_is_high)
        worst, best = ranked[0], ranked[-1]
        gap = abs(values[role][worst][0] - values[role][best][0])
        return gap, values[role][worst][1] + values[role][best][1], worst, best

    d_c, var_c, worst_c, best_c = disparity("canary")
    d_p, var_p, _, _ = disparity("production")
    growth = d_c - d_p
    z = st.z_quantile(1 - st.ALPHA)
    half = z * math.sqrt(var_c + var_p)
    info.update({"canary_disparity": _r(d_c), "production_disparity": _r(d_p), "growth": _r(growth),
                 "interval": [_r(growth - half), _r(growth + half)], "worst": worst_c, "best": best_c})
    text = (f"disparity {d_c:.3g} {unit} ({worst_c} worst, {best_c} best) vs production {d_p:.3g} {unit}: "
            f"growth {growth:+.3g} (interval {growth - half:+.3g} to {growth + half:+.3g}), tolerance {tolerance:g}")
    if growth - half > tolerance:
        return Gate("fairness", GateStatus.RED, _r(growth), tolerance, text), info
    if growth + half <= tolerance:
        return Gate("fairness", GateStatus.GREEN, _r(growth), tolerance, text), info
    return Gate("fairness", GateStatus.INSUFFICIENT, _r(growth), tolerance, text + "; not yet conclusive"), info


def _segment_reds(stage: dict[str, Sample], promote: dict[str, float], alpha_gate: float,
                  alpha_roll: float) -> list[str]:
    """A segment's promotion gates as vetoes: what is worse than production's same segment beyond
    the promotion tolerance with confidence (or with overwhelming evidence). Short of evidence, a
    segment does not hold the stage."""
    c, p = stage["canary"], stage["production"]
    out: list[str] = []
    if c.requests > 0 and p.requests > 0:
        cmp = st.compare_proportions(int(c.errors), int(c.requests), int(p.errors), int(p.requests), alpha=alpha_gate)
        margin = promote["error_rate_pp"] / 100
        if cmp.difference > margin and (cmp.ci_low > margin or st.rollback_evidence(cmp.p_worse, c.errors,
                                                                                     alpha=alpha_roll)):
            out.append(f"error rate +{cmp.difference * 100:.2f} pp (lower bound +{cmp.ci_low * 100:.2f} pp) "
                       f"> {promote['error_rate_pp']} pp")
    p99_c, p99_p = _p99(c), _p99(p)
    if p99_c is not None and p99_p:
        ratio, limit = p99_c / p99_p, promote["latency_p99_ratio"]
        if ratio > limit and c.latency_buckets and p.latency_buckets:
            ok, tail = _tail_evidence(c, p, p99_p, alpha=alpha_roll)
            rank = _rank(c.latency_buckets, p.latency_buckets)
            shifted = rank is not None and rank.p_greater < alpha_gate and rank.a >= st.MATERIAL_A
            if ok or shifted and c.requests >= st.p99_sample_size():
                out.append(f"p99 ×{ratio:.2f} > ×{limit} ({tail})")
    qc, qp = c.quality_mean, p.quality_mean
    if qc is not None and qp:
        ratio, limit = qc / qp, promote["quality_ratio"]
        p_lower = _quality_p_lower(c, p)
        if ratio < limit and p_lower is not None and (
                p_lower < alpha_gate and c.quality_count >= st.QUALITY_MIN_SCORED
                or st.rollback_evidence(p_lower, c.quality_count, alpha=alpha_roll)):
            out.append(f"quality ×{ratio:.3f} < ×{limit} (p={p_lower:.1e})")
    return out


def metric_gap(inputs: dict[str, Any]) -> str | None:
    """Quality data lagging behind traffic, read off an evaluation's inputs: the canary served
    requests in the last window but none of them has a quality score yet (the scores arrive later
    than the requests). The quality gate cannot grow its sample, so the stage extends; the owner is
    told why. None when there is no gap."""
    canary = ((inputs or {}).get("window") or {}).get("canary") or {}
    requests = canary.get("requests") or 0
    if requests > 0 and not canary.get("quality_count"):
        return (f"metric gap: no quality scores for the canary's {int(requests)} requests of the last window; "
                "the quality gate waits for them and the stage extends")
    return None


# The one gate of an evaluation after 100 % (the post-promotion watch).
WATCH_GATE = "post_promotion"


def decide_watch(
    *,
    thresholds: dict[str, dict[str, float]],
    window: dict[str, Sample] | None,
    baseline: Sample,
    now: datetime,
    staleness_limit_s: float,
    source_error: str | None = None,
) -> Decision:
    """The post-promotion watch: the new production version's last window judged with the rollback
    rule against `baseline`, the previous version's numbers over the canary's last stages (it no
    longer serves, so there is no live production window to compare with). A breach reverts. A
    metric source error or stale data is recorded (stale) and reverts nothing: an outage is not
    evidence against the version that passed every stage."""
    inputs: dict[str, Any] = {"phase": "watch", "staleness_limit_s": staleness_limit_s,
                              "baseline": _summary(baseline)}
    if source_error is not None:
        inputs["source_error"] = source_error
        gate = Gate(WATCH_GATE, GateStatus.STALE, None, None, f"metric source error: {source_error}"[:300])
        return Decision([gate], GateStatus.STALE, inputs=inputs)
    current = (window or {}).get("canary")
    age = None if current is None or current.last_seen is None else (now - current.last_seen).total_seconds()
    inputs["data_age_s"] = None if age is None else round(age, 1)
    if current is None or age is None or age > staleness_limit_s:
        why = "no data from the production version" if age is None else (
            f"metrics are {age:.0f} s old (limit {staleness_limit_s:g} s)")
        return Decision([Gate(WATCH_GATE, GateStatus.STALE, None, None, why)], GateStatus.STALE, inputs=inputs)
    triggers, warnings, rb_inputs = rollback_triggers({"canary": current, "production": baseline},
                                                      thresholds["rollback"])
    inputs["rollback_window"] = rb_inputs
    inputs["window"] = {"canary": _summary(current)}
    if triggers:
        gate = Gate(WATCH_GATE, GateStatus.RED, len(triggers), 0, "; ".join(t.detail for t in triggers)[:300])
    elif current.requests <= 0:
        gate = Gate(WATCH_GATE, GateStatus.INSUFFICIENT, 0, None, "no requests in the last window")
    else:
        gate = Gate(WATCH_GATE, GateStatus.GREEN, 0, 0,
                    f"no rollback trigger over {int(current.requests)} requests against the previous version's "
                    f"{int(baseline.requests)}")
    return Decision([gate], gate.status, rollback=triggers, warnings=warnings, inputs=inputs)


def rollback_triggers(
    window: dict[str, Sample], rollback: dict[str, float], earlier: dict[str, Sample] | None = None,
    stage: dict[str, Sample] | None = None, *, alpha: float = st.ROLLBACK_ALPHA, safety: bool = True,
    sequential: sq.SequentialResult | None = None,
) -> tuple[list[Trigger], list[Trigger], dict[str, Any]]:
    """The rollback rule over the last window, and the early warnings. Errors are judged by
    monitoring.statistics' fixed-level rule on the window, pooled with `earlier` (the window just
    before, when there is one) and over the `stage` so far (when it holds more than those); with
    `sequential` (a canary's stage: monitoring.sequential's look at the stage so far) that test's
    rejection rolls back too, and is tried first. `alpha`: the evidence level of each fixed-level
    test (a segment's share of it); `safety`: judge content-safety violations (the canary as a
    whole does; its segments need not repeat it)."""
    c, p = window["canary"], window["production"]
    fired: list[Trigger] = []
    warned: list[Trigger] = []
    detail: dict[str, Any] = {}
    # Any content-safety violation: the pattern's rule, no statistics.
    limit_safety = rollback.get("safety_violations", 0)
    if safety and c.safety_violations > limit_safety:
        fired.append(Trigger("safety_violations", c.safety_violations, limit_safety,
                             f"{int(c.safety_violations)} content-safety violation(s) in the last window"))
    # Error rate: the last window, then the last two windows pooled, then the stage so far.
    if c.requests > 0 and p.requests > 0:
        cmp = st.compare_proportions(int(c.errors), int(c.requests), int(p.errors), int(p.requests))
        margin = rollback["error_rate_pp"] / 100
        detail["error_rate"] = cmp.to_dict()
        enough = c.errors >= st.MIN_ROLLBACK_EVENTS
        longer: list[tuple[str, str, Sample, Sample]] = []
        trigger = None
        if sequential is not None:
            trigger = _sequential_trigger(sequential, stage or window, rollback["error_rate_pp"])
            detail["error_rate_sequential"] = sequential.to_dict()
        # The fixed-level rule judges as well, so a rise is never caught later than it was before
        # the sequential test: either rule's verdict rolls back.
        if trigger is None:
            trigger = _error_trigger(cmp, c, rollback["error_rate_pp"], "", alpha)
        if earlier is not None:
            ec, ep = earlier["canary"], earlier["production"]
            longer.append(("error_rate_two_windows", " over the last two windows",
                           Sample(requests=c.requests + ec.requests, errors=c.errors + ec.errors),
                           Sample(requests=p.requests + ep.requests, errors=p.errors + ep.errors)))
        if stage is not None and stage["canary"].requests > (
                longer[-1][2] if longer else c).requests:
            longer.append(("error_rate_stage", " over the stage so far", stage["canary"], stage["production"]))
        for key, span, lc, lp in longer:
            if trigger is not None or lc.requests <= 0 or lp.requests <= 0:
                break
            pooled = st.compare_proportions(int(lc.errors), int(lc.requests), int(lp.errors), int(lp.requests))
            detail[key] = {**pooled.to_dict(), "canary": [int(lc.errors), int(lc.requests)],
                           "production": [int(lp.errors), int(lp.requests)]}
            trigger = _error_trigger(pooled, lc, rollback["error_rate_pp"], span, alpha)
        if trigger is not None:
            fired.append(trigger)
        elif cmp.difference >= WARNING_FRACTION * margin and enough:
            warned.append(Trigger("error_rate", cmp.difference * 100, rollback["error_rate_pp"],
                                  f"error rate +{cmp.difference * 100:.2f} pp, within 20% of the "
                                  f"{rollback['error_rate_pp']} pp rollback threshold"))
    # Latency p99: the ratio, and as evidence the requests beyond production's p99.
    p99_c, p99_p = _p99(c), _p99(p)
    if p99_c is not None and p99_p and p99_p > 0:
        ratio = p99_c / p99_p
        limit = rollback["latency_p99_ratio"]
        evidence, tail = _tail_evidence(c, p, p99_p, alpha=alpha)
        detail["latency_p99"] = {"canary_s": _r(p99_c), "production_s": _r(p99_p), "ratio": _r(ratio),
                                 "tail_test": tail}
        if ratio > limit and evidence:
            fired.append(Trigger("latency_p99", ratio, limit,
                                 f"p99 {p99_c * 1000:.0f} ms vs production {p99_p * 1000:.0f} ms "
                                 f"(×{ratio:.2f} > ×{limit}; {tail})"))
        elif ratio >= 1 + WARNING_FRACTION * (limit - 1) and c.requests >= st.p99_sample_size():
            warned.append(Trigger("latency_p99", ratio, limit, f"p99 ×{ratio:.2f}, within 20% of the ×{limit} "
                                  "rollback threshold"))
    llm_fired, llm_detail = _llm_triggers(c, p, rollback, earlier, window_s=WINDOW_S, alpha=alpha)
    fired += llm_fired
    detail.update(llm_detail)
    # Quality.
    qc, qp = c.quality_mean, p.quality_mean
    if qc is not None and qp and qp > 0:
        ratio = qc / qp
        limit = rollback["quality_ratio"]
        p_lower = _quality_p_lower(c, p)
        detail["quality"] = {"canary": _r(qc), "production": _r(qp), "ratio": _r(ratio), "p_lower": _r(p_lower)}
        enough = c.quality_count >= st.MIN_ROLLBACK_EVENTS
        if ratio < limit and st.rollback_evidence(p_lower, c.quality_count, alpha=alpha):
            fired.append(Trigger("quality", ratio, limit,
                                 f"quality {qc:.3f} vs production {qp:.3f} (×{ratio:.3f} < ×{limit}; "
                                 f"p={p_lower:.1e}, {int(c.quality_count)} scored)"))
        elif ratio <= 1 - WARNING_FRACTION * (1 - limit) and enough:
            warned.append(Trigger("quality", ratio, limit, f"quality ×{ratio:.3f}, within 20% of the ×{limit} "
                                  "rollback threshold"))
    return fired, warned, detail


def _llm_triggers(c: Sample, p: Sample, rollback: dict[str, float], earlier: dict[str, Sample] | None, *,
                  window_s: float, alpha: float = st.ROLLBACK_ALPHA) -> tuple[list[Trigger], dict[str, Any]]:
    """The LLM serving rules: tokens per request (input and output together) beyond
    `tokens_per_request_ratio` × production's in the last window and in the window before (ten
    minutes), each on at least TOKENS_MIN_REQUESTS canary requests; guardrail blocks beyond
    `guardrail_blocks_per_min` a minute on average over the window. Both are magnitudes the
    pattern sets as rules, large against noise at those floors; no statistics."""
    fired: list[Trigger] = []
    detail: dict[str, Any] = {}
    limit = float(rollback.get("tokens_per_request_ratio", TOKENS_RATIO))
    spans = [(c, p)] + ([(earlier["canary"], earlier["production"])] if earlier else [])
    ratios = []
    for sc, sp in spans:
        tc, tp = sc.tokens_per_request, sp.tokens_per_request
        if tc is None or not tp or sc.requests < TOKENS_MIN_REQUESTS:
            break
        ratios.append(tc / tp)
    if ratios:
        detail["tokens_per_request"] = {"canary": _r(c.tokens_per_request), "production": _r(p.tokens_per_request),
                                        "ratios": [_r(x) for x in ratios], "limit": limit}
        if len(ratios) >= TOKENS_SPAN_WINDOWS and all(x > limit for x in ratios):
            fired.append(Trigger("tokens_per_request", ratios[0], limit,
                                 f"tokens per request {c.tokens_per_request:.0f} vs production "
                                 f"{p.tokens_per_request:.0f} (×{ratios[0]:.2f}, ×{ratios[1]:.2f} the window "
                                 f"before; > ×{limit:g} for 10 minutes)"))
    per_min = float(rollback.get("guardrail_blocks_per_min", GUARDRAIL_PER_MIN))
    if c.guardrail_blocks > 0:
        rate = c.guardrail_blocks / (window_s / 60)
        detail["guardrail_blocks"] = {"canary": c.guardrail_blocks, "per_min": _r(rate), "limit_per_min": per_min}
        if rate > per_min:
            fired.append(Trigger("guardrail_blocks", rate, per_min,
                                 f"{int(c.guardrail_blocks)} guardrail blocks in the last window "
                                 f"({rate:.1f} a minute > {per_min:g})"))
    schema_reason, schema_pp, schema_limit, schema_detail = llm.schema_rollback(c, p, rollback, alpha=alpha)
    if schema_detail:
        detail["schema_failure_rate"] = schema_detail
    if schema_reason is not None:
        fired.append(Trigger("schema_failure_rate", schema_pp, schema_limit, schema_reason))
    if c.requests > 0 and p.requests > 0 and (c.cost_usd or p.cost_usd):
        detail["cost_per_request_usd"] = {"canary": _r(c.cost_usd / c.requests),
                                          "production": _r(p.cost_usd / p.requests)}
    return fired, detail


def _error_trigger(cmp: st.ProportionComparison, c: Sample, margin_pp: float, span: str,
                   alpha: float = st.ROLLBACK_ALPHA) -> Trigger | None:
    """The error-rate trigger on one span: beyond the margin, significant, and on enough errors."""
    if not st.error_rollback(cmp.difference, cmp.p_worse, c.errors, margin_pp / 100, alpha=alpha):
        return None
    return Trigger("error_rate", cmp.difference * 100, margin_pp,
                   f"error rate {cmp.canary_rate:.2%} vs production {cmp.production_rate:.2%}{span} "
                   f"(+{cmp.difference * 100:.2f} pp > {margin_pp} pp; "
                   f"p={cmp.p_worse:.1e}, {int(c.errors)} errors in {int(c.requests)} requests)")


def _sequential_trigger(result: sq.SequentialResult, stage: dict[str, Sample], margin_pp: float) -> Trigger | None:
    """The error-rate trigger of a canary's stage: the sequential test rejected "no worse than
    production plus the threshold"."""
    if not result.reject:
        return None
    c, p = stage["canary"], stage["production"]
    rc, rp = c.errors / max(c.requests, 1), p.errors / max(p.requests, 1)
    return Trigger("error_rate", (rc - rp) * 100, margin_pp,
                   f"error rate {rc:.2%} vs production {rp:.2%} over the stage so far: worse than production "
                   f"+{margin_pp} pp (sequential test, evidence e^{result.log_evidence:.1f} ≥ "
                   f"e^{result.log_threshold:.1f}; {int(c.errors)} errors in {int(c.requests)} requests)")


def rollback_sensitivity(inputs: dict[str, Any], rollback: dict[str, float]) -> list[dict[str, Any]]:
    """What the error-rate trigger could catch at an evaluation's traffic: for the last window and
    the two windows pooled (when they were), the smallest rise of the canary's error rate over
    production's that rolls back (`rise_pp` None: no rise at all, too few requests). Only for an
    evaluation decided by that fixed-level rule: one whose error rate the sequential test judged
    (inputs["sequential"]) has no fixed smallest rise, and gets none."""
    if "sequential" in (inputs or {}):
        return []
    spans: list[tuple[str, Any, Any]] = []
    window = inputs.get("window") or {}
    c, p = window.get("canary") or {}, window.get("production") or {}
    if c.get("requests") and p.get("requests"):
        spans.append(("one window", (c.get("errors") or 0, c["requests"]), (p.get("errors") or 0, p["requests"])))
    two = (inputs.get("rollback_window") or {}).get("error_rate_two_windows")
    if two:
        spans.append(("two windows", two["canary"], two["production"]))
    out = []
    margin = rollback["error_rate_pp"] / 100
    for span, (_, n_c), (x_p, n_p) in spans:
        x = st.smallest_rollback_errors(int(n_c), int(x_p), int(n_p), margin)
        out.append({"span": span, "requests": int(n_c), "production_pct": _r(x_p / n_p * 100),
                    "rise_pp": None if x is None else _r((x / n_c - x_p / n_p) * 100)})
    return out


# --- promotion gates ------------------------------------------------------------------------------


def _error_gate(stage: dict[str, Sample], promote: dict[str, float], rate: float | None) -> tuple[Gate, dict]:
    c, p = stage["canary"], stage["production"]
    margin_pp = promote["error_rate_pp"]
    if c.requests <= 0 or p.requests <= 0:
        need = st.proportion_sample_size(0.0, margin_pp / 100, ratio=1.0)
        return Gate("error_rate", GateStatus.INSUFFICIENT, None, margin_pp, "no requests yet"), {
            "sample_size": {"canary": c.requests, "production": p.requests}, "required": need,
            "time_to_sufficiency_s": None}
    cmp = st.compare_proportions(int(c.errors), int(c.requests), int(p.errors), int(p.requests))
    need = st.proportion_sample_size(cmp.production_rate, margin_pp / 100, ratio=p.requests / c.requests)
    tts = st.time_to_sufficiency(c.requests, need, rate)
    diff_pp, upper_pp = cmp.difference * 100, cmp.ci_high * 100
    info = {"test": "two-proportion, one-sided Agresti-Caffo bounds", **cmp.to_dict(),
            "ci_pp": [_r(cmp.ci_low * 100), _r(upper_pp)], "confidence": 1 - st.ALPHA,
            "sample_size": {"canary": c.requests, "production": p.requests}, "required": need,
            "time_to_sufficiency_s": _r(tts)}
    text = f"+{diff_pp:.3f} pp (upper bound {upper_pp:.3f} pp) over {int(c.requests)} requests"
    # Red with the evidence: the lower bound past the margin, or the canary worse than production
    # at the rollback's level with the point estimate past the margin, before the sample target.
    overwhelming = diff_pp > margin_pp and st.rollback_evidence(cmp.p_worse, c.errors)
    info["overwhelming"] = overwhelming
    if diff_pp > margin_pp and (cmp.ci_low * 100 > margin_pp or c.requests >= need or overwhelming):
        status = GateStatus.RED
    elif diff_pp <= margin_pp and upper_pp <= margin_pp and c.requests >= need:
        status = GateStatus.GREEN
    else:
        status = GateStatus.INSUFFICIENT
        text += f"; needs {need} ({_eta(tts)})"
    return Gate("error_rate", status, _r(diff_pp), margin_pp, text), info


def _latency_gate(stage: dict[str, Sample], promote: dict[str, float], rate: float | None) -> tuple[Gate, dict]:
    c, p = stage["canary"], stage["production"]
    limit = promote["latency_p99_ratio"]
    need = st.p99_sample_size()
    p99_c, p99_p = _p99(c), _p99(p)
    tts = st.time_to_sufficiency(c.requests, need, rate)
    info: dict[str, Any] = {"sample_size": {"canary": c.requests, "production": p.requests}, "required": need,
                            "time_to_sufficiency_s": _r(tts), "canary_p99_s": _r(p99_c), "production_p99_s": _r(p99_p)}
    if p99_c is None or not p99_p:
        return Gate("latency_p99", GateStatus.INSUFFICIENT, None, limit, "no latency data yet"), info
    ratio = p99_c / p99_p
    rank = _rank(c.latency_buckets, p.latency_buckets)
    info["test"] = "Mann-Whitney U on latency buckets (canary slower)" if rank else "none: no buckets"
    info["rank_test"] = rank.to_dict() if rank else None
    shifted = rank is not None and rank.p_greater < st.ALPHA and rank.a >= st.MATERIAL_A
    info["ci"] = _ratio_ci_note(rank)
    text = f"p99 ×{ratio:.3f} ({p99_c * 1000:.0f} ms vs {p99_p * 1000:.0f} ms) over {int(c.requests)} requests"
    # Overwhelming evidence of harm is red before the sample-size target: the p99 past the limit
    # with the tail test at the rollback level, or a material shift at that level.
    tail_ok, tail = _tail_evidence(c, p, p99_p) if c.latency_buckets and p.latency_buckets else (False, "")
    overwhelming = (ratio > limit and tail_ok) or (
        rank is not None and rank.p_greater < st.ROLLBACK_ALPHA and rank.a >= st.MATERIAL_A)
    info["overwhelming"] = overwhelming
    if (ratio > limit or shifted) and c.requests >= need or overwhelming:
        status = GateStatus.RED
        if shifted or overwhelming and rank is not None and rank.a >= st.MATERIAL_A:
            text += f"; latency distribution shifted (A={rank.a:.2f}, p={rank.p_greater:.1e})"  # type: ignore[union-attr]
        if c.requests < need:
            text += f"; evidence already overwhelming ({tail or 'rank test'})"
    elif ratio <= limit and c.requests >= need:
        status = GateStatus.GREEN
    else:
        status = GateStatus.INSUFFICIENT
        text += f"; needs {need} ({_eta(tts)})"
    return Gate("latency_p99", status, _r(ratio), limit, text), info


def _quality_gate(stage: dict[str, Sample], promote: dict[str, float], rate: float | None) -> tuple[Gate, dict]:
    c, p = stage["canary"], stage["production"]
    limit = promote["quality_ratio"]
    qc, qp = c.quality_mean, p.quality_mean
    info: dict[str, Any] = {"sample_size": {"canary": c.quality_count, "production": p.quality_count}}
    if qc is None or not qp:
        return Gate("quality", GateStatus.INSUFFICIENT, None, limit, "no scored requests yet"), info
    ratio = qc / qp
    # The canary's spread cannot stand for itself on few scores (three scores in one bucket have
    # none): the larger of its own and production's is used, and the count has a floor.
    var_p = _quality_var(p)
    var_c = max(_quality_var(c), var_p)
    delta = max((1 - limit) * qp, 1e-6)
    ratio_np = p.quality_count / c.quality_count if c.quality_count else 1.0
    need = max(st.mean_sample_size(var_c, var_p, delta, ratio=ratio_np), st.QUALITY_MIN_SCORED)
    # The scored share of canary requests sets how fast the quality sample grows.
    scored_rate = rate * (c.quality_count / c.requests) if rate and c.requests else None
    tts = st.time_to_sufficiency(c.quality_count, need, scored_rate)
    se = math.sqrt(var_c / max(c.quality_count, 1) + var_p / max(p.quality_count, 1)) / qp
    z = st.z_quantile(1 - st.ALPHA)
    low = ratio - z * se
    rank = _rank(c.quality_buckets, p.quality_buckets)
    shifted = rank is not None and rank.p_less < st.ALPHA and (1 - rank.a) >= st.MATERIAL_A
    info.update({"test": "Mann-Whitney U on quality buckets (canary lower)" if rank else "z on means",
                 "rank_test": rank.to_dict() if rank else None, "ci": [_r(low), _r(ratio + z * se)],
                 "confidence": 1 - st.ALPHA, "required": need, "time_to_sufficiency_s": _r(tts)})
    text = f"quality ×{ratio:.3f} ({qc:.3f} vs {qp:.3f}; lower bound ×{low:.3f}) over {int(c.quality_count)} scored"
    # Overwhelming evidence of harm is red before the sample-size target (the rollback's level).
    p_lower = _quality_p_lower(c, p)
    overwhelming = ratio < limit and st.rollback_evidence(p_lower, c.quality_count)
    info["overwhelming"] = overwhelming
    if (ratio < limit or shifted) and c.quality_count >= need or overwhelming:
        status = GateStatus.RED
        if c.quality_count < need:
            text += f"; evidence already overwhelming (p={p_lower:.1e})"
    elif ratio >= limit and low >= limit and c.quality_count >= need:
        status = GateStatus.GREEN
    else:
        status = GateStatus.INSUFFICIENT
        text += f"; needs {need} ({_eta(tts)})"
    return Gate("quality", status, _r(ratio), limit, text), info


def _safety_gate(stage: dict[str, Sample], promote: dict[str, float], rate: float | None) -> tuple[Gate, dict]:
    c = stage["canary"]
    limit = promote.get("safety_violations", 0)
    need = st.SAFETY_MIN_REQUESTS
    tts = st.time_to_sufficiency(c.requests, need, rate)
    upper = 3 / c.requests if c.requests else None
    info = {"test": "count; rule-of-three upper bound on the violation rate", "upper_bound_rate": _r(upper),
            "sample_size": {"canary": c.requests}, "required": need, "time_to_sufficiency_s": _r(tts)}
    if c.safety_violations > limit:
        return Gate("safety_violations", GateStatus.RED, c.safety_violations, limit,
                    f"{int(c.safety_violations)} violation(s) this stage"), info
    if c.requests < need:
        return Gate("safety_violations", GateStatus.INSUFFICIENT, c.safety_violations, limit,
                    f"0 violations in {int(c.requests)} requests; needs {need} ({_eta(tts)})"), info
    return Gate("safety_violations", GateStatus.GREEN, c.safety_violations, limit,
                f"0 violations in {int(c.requests)} requests (rate < {upper:.2%} at 95%)"), info


def _anomaly_gate(stage: dict[str, Sample], promote: dict[str, float], rate: float | None) -> tuple[Gate, dict]:
    c = stage["canary"]
    limit = promote.get("anomaly_alerts", 0)
    # The stage sample counts every alert seen firing since the stage began (one that fired and
    # cleared between two looks included), not only those firing now.
    if c.anomaly_alerts > limit:
        return Gate("anomaly_alerts", GateStatus.RED, c.anomaly_alerts, limit,
                    f"{int(c.anomaly_alerts)} anomaly alert(s) fired on the canary during this stage"), {
                        "fired_this_stage": c.anomaly_alerts}
    return Gate("anomaly_alerts", GateStatus.GREEN, c.anomaly_alerts, limit, "no anomaly alert during this stage"), {
        "fired_this_stage": c.anomaly_alerts}


def _router_gate(window: dict[str, Sample], percent: float, random_split: bool) -> tuple[Gate, dict]:
    c, p = window["canary"], window["production"]
    total = c.requests + p.requests
    expected = percent / 100
    info: dict[str, Any] = {"configured_share": expected, "requests": total}
    if not random_split:
        return Gate("router_share", GateStatus.GREEN, None, percent,
                    "not checked: segmentation is not a random share"), info
    if total < ROUTER_MIN_REQUESTS or expected <= 0 or expected >= 1:
        return Gate("router_share", GateStatus.GREEN, None, percent, "too little traffic to check the split"), info
    observed = c.requests / total
    z = (observed - expected) / math.sqrt(expected * (1 - expected) / total)
    info.update({"observed_share": _r(observed), "z": _r(z)})
    far = abs(observed / expected - 1) > ROUTER_RELATIVE_TOLERANCE and abs(z) > ROUTER_Z
    text = f"canary served {observed:.2%} of requests, configured {percent:g}%"
    if far:
        return Gate("router_share", GateStatus.RED, _r(observed * 100), percent,
                    text + ": router misconfiguration suspected, stage held"), info
    return Gate("router_share", GateStatus.GREEN, _r(observed * 100), percent, text), info


# --- helpers --------------------------------------------------------------------------------------


def _all(status: GateStatus, detail: str) -> list[Gate]:
    return [Gate(name, status, None, None, detail) for name in PROMOTION_GATES]


def _age(window: dict[str, Sample], now: datetime) -> float | None:
    seen = [s.last_seen for s in window.values()]
    if any(s is None for s in seen):
        return None
    return max((now - s).total_seconds() for s in seen if s is not None)


def _p99(s: Sample) -> float | None:
    if s.latency_buckets:
        return st.histogram_quantile(0.99, s.latency_buckets)
    return s.latency_p99_s


def _tail_evidence(c: Sample, p: Sample, p99_p: float, *, alpha: float = st.ROLLBACK_ALPHA) -> tuple[bool, str]:
    """Canary requests beyond production's p99 bucket, tested against production's share there."""
    if not c.latency_buckets or not p.latency_buckets:
        # Without buckets (pushed p99 only) the floor is the only guard against noise.
        ok = c.requests >= st.p99_sample_size() / 10
        return ok, f"no buckets; {int(c.requests)} requests"
    above_c, above_p = st.count_above(c.latency_buckets, p99_p), st.count_above(p.latency_buckets, p99_p)
    pval = st.poisson_rate_test(int(above_c), int(c.requests), int(above_p), int(p.requests))
    ok = st.rollback_evidence(pval, above_c, alpha=alpha)
    return ok, f"{int(above_c)} of {int(c.requests)} canary requests beyond production's p99, p={pval:.1e}"


def _quality_var(s: Sample) -> float:
    if s.quality_buckets:
        mv = st.histogram_mean_var(s.quality_buckets)
        if mv:
            return max(mv[1], 1e-6)
    m = s.quality_mean or 0.5
    return max(m * (1 - m), 1e-6)  # Bhatia–Davis bound for scores in [0, 1]


def _quality_p_lower(c: Sample, p: Sample) -> float | None:
    rank = _rank(c.quality_buckets, p.quality_buckets)
    if rank is not None:
        return rank.p_less
    if not c.quality_count or not p.quality_count or c.quality_mean is None or p.quality_mean is None:
        return None
    se = math.sqrt(_quality_var(c) / c.quality_count + _quality_var(p) / p.quality_count)
    return st.normal_sf((p.quality_mean - c.quality_mean) / se) if se > 0 else None


def _rank(a: list[tuple[float, float]] | None, b: list[tuple[float, float]] | None) -> st.RankTest | None:
    if not a or not b:
        return None
    bounds = sorted({le for le, _ in a} | {le for le, _ in b})
    return st.mann_whitney_buckets(st.bucket_counts(_align(a, bounds)), st.bucket_counts(_align(b, bounds)))


def _align(buckets: list[tuple[float, float]], bounds: list[float]) -> list[tuple[float, float]]:
    have = dict(buckets)
    out, last = [], 0.0
    for le in bounds:
        last = have.get(le, last)
        out.append((le, last))
    return out


def _ratio_ci_note(rank: st.RankTest | None) -> dict[str, Any] | None:
    if rank is None:
        return None
    # The rank test's effect size, with its normal-approximation interval, stands in for a
    # ratio interval: a histogram does not give a sampling distribution for its p99.
    se = math.sqrt((rank.n_c + rank.n_p + 1) / (12 * rank.n_c * rank.n_p))
    z = st.z_quantile(1 - st.ALPHA)
    return {"probability_of_superiority": _r(rank.a), "interval": [_r(rank.a - z * se), _r(rank.a + z * se)]}


def _brief(s: Sample) -> dict[str, Any]:
    """A segment's numbers in its record: what its gates and triggers read."""
    return {"requests": s.requests, "errors": s.errors, "p99_s": _r(_p99(s)), "quality_mean": _r(s.quality_mean),
            "quality_count": s.quality_count}


def _summary(s: Sample) -> dict[str, Any]:
    quantiles = {f"p{round(q * 100)}_s": _r(st.histogram_quantile(q, s.latency_buckets)) if s.latency_buckets
                 else None for q in (0.5, 0.95)}
    return {"requests": s.requests, "errors": s.errors, **quantiles, "p99_s": _r(_p99(s)),
            "quality_mean": _r(s.quality_mean),
            "quality_count": s.quality_count, "safety_violations": s.safety_violations,
            "anomaly_alerts": s.anomaly_alerts, "tokens_in": s.tokens_in, "tokens_out": s.tokens_out,
            "cost_usd": _r(s.cost_usd), "guardrail_blocks": s.guardrail_blocks,
            "schema_failures": s.schema_failures, "unavailable": s.unavailable,
            "availability": _r(1 - s.unavailable / s.requests) if s.requests else None,
            **{f"response_tokens_p{round(q * 100)}": _r(st.histogram_quantile(q, s.response_tokens_buckets))
               if s.response_tokens_buckets else None for q in (0.5, 0.95)},
            "last_seen": s.last_seen.isoformat() if s.last_seen else None}


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "no canary traffic to get there"
    if seconds <= 0:
        return "reached"
    if seconds < 120:
        return f"about {seconds:.0f} s at current traffic"
    if seconds < 7200:
        return f"about {seconds / 60:.0f} min at current traffic"
    return f"about {seconds / 3600:.1f} h at current traffic"


def _r(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    return value
