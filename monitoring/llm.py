"""The LLM serving promotion gates and the output-schema rollback rule (pure functions of
monitoring.samples values; monitoring.evaluator calls them).

An LLM model is one that reports tokens (either version, over the stage). For it, beside the
pattern's five gates, over the stage so far:
- `tokens_per_request` and `cost_per_request`: the canary's mean against production's, as a
  ratio at most the promotion tolerance (default ×1.2, a version may tighten it). Sums carry no
  per-request spread, so there is no test: green on at least RATIO_MIN_REQUESTS canary requests
  with the ratio within the tolerance, red past it on as many, and red before that only with a
  ratio past OVERWHELMING_RATIO (the tokens rollback rule's ratio) on the rollback rule's floor;
- `guardrail_block_rate` and `schema_failure_rate`: the share of canary requests a guardrail
  blocked, or whose output failed its output schema, against production's, judged as the
  error-rate gate is (a two-proportion comparison: green when the
  upper bound of the difference is within the tolerance on the sample the test needs, red when
  the lower bound is past it, or the point is past it with the rollback rule's evidence,
  insufficient otherwise).
A cost gate appears only when either version reports a cost.

The output-schema rollback rule (`schema_rollback`) is the error rate's fixed-level rule on the
last window (monitoring.statistics.error_rollback): the canary's failure rate past production's
by more than the rollback tolerance, worse than production at 10⁻⁶, on at least five failures.
"""

from __future__ import annotations

import math
from typing import Any

from monitoring import statistics as st
from monitoring.evaluations import Gate, GateStatus
from monitoring.samples import Sample

# Promotion tolerances when a version's frozen thresholds leave them out (thresholds only tighten).
TOKENS_RATIO = 1.2  # tokens per request at most ×1.2 production's (as the p99 latency gate)
COST_RATIO = 1.2  # cost per request at most ×1.2 production's
GUARDRAIL_RATE_PP = 0.5  # guardrail block rate at most 0.5 pp above production's
SCHEMA_RATE_PP = 0.1  # output-schema failure rate at most 0.1 pp above production's (as errors)
SCHEMA_ROLLBACK_PP = 0.5  # rolls back past 0.5 pp above production's (as errors)
RATIO_MIN_REQUESTS = 500  # canary requests behind a per-request mean before it can be green or red
OVERWHELMING_RATIO = 1.5  # a ratio this far past production's is red on RATIO_EARLY_REQUESTS
RATIO_EARLY_REQUESTS = 50  # the tokens rollback rule's floor

LLM_GATES = ("tokens_per_request", "cost_per_request", "guardrail_block_rate", "schema_failure_rate")


def is_llm(stage: dict[str, Sample]) -> bool:
    """Whether the model reports tokens (either version, over the span)."""
    return any(s.tokens_in + s.tokens_out > 0 for s in stage.values())


def llm_gates(stage: dict[str, Sample], promote: dict[str, Any], rollback: dict[str, Any],
              rate: float | None) -> list[tuple[Gate, dict[str, Any]]]:
    """The LLM gates of one stage (none for a model that reports no tokens), each with what it
    read, for the record. `rate`: canary requests a second (for the time to sufficiency)."""
    if not is_llm(stage):
        return []
    c, p = stage["canary"], stage["production"]
    out = [ratio_gate("tokens_per_request", "tokens per request", c.tokens_in + c.tokens_out, c.requests,
                      p.tokens_in + p.tokens_out, p.requests,
                      float(promote.get("tokens_per_request_ratio", TOKENS_RATIO)),
                      max(float(rollback.get("tokens_per_request_ratio", OVERWHELMING_RATIO)),
                          float(promote.get("tokens_per_request_ratio", TOKENS_RATIO))), rate, digits=0)]
    if c.cost_usd > 0 or p.cost_usd > 0:
        out.append(ratio_gate("cost_per_request", "cost per request", c.cost_usd, c.requests, p.cost_usd, p.requests,
                              float(promote.get("cost_per_request_ratio", COST_RATIO)), OVERWHELMING_RATIO, rate,
                              digits=6, unit="$"))
    out.append(proportion_gate("guardrail_block_rate", "guardrail blocks", c.guardrail_blocks, c.requests,
                               p.guardrail_blocks, p.requests,
                               float(promote.get("guardrail_block_rate_pp", GUARDRAIL_RATE_PP)), rate))
    out.append(proportion_gate("schema_failure_rate", "output-schema failures", c.schema_failures, c.requests,
                               p.schema_failures, p.requests,
                               float(promote.get("schema_failure_rate_pp", SCHEMA_RATE_PP)), rate))
    return out


def schema_rollback(c: Sample, p: Sample, rollback: dict[str, Any], *,
                    alpha: float = st.ROLLBACK_ALPHA) -> tuple[str | None, float, float, dict[str, Any]]:
    """The output-schema rule on one window: (the reason it rolls back or None, the difference in
    pp, the tolerance in pp, what it read). Judged only when the canary has failures and both
    versions served requests."""
    margin_pp = float(rollback.get("schema_failure_rate_pp", SCHEMA_ROLLBACK_PP))
    if c.schema_failures <= 0 or c.requests <= 0 or p.requests <= 0:
        return None, 0.0, margin_pp, {}
    cmp = st.compare_proportions(int(c.schema_failures), int(c.requests), int(p.schema_failures), int(p.requests))
    detail = {**cmp.to_dict(), "canary": [int(c.schema_failures), int(c.requests)],
              "production": [int(p.schema_failures), int(p.requests)], "limit_pp": margin_pp}
    if not st.error_rollback(cmp.difference, cmp.p_worse, c.schema_failures, margin_pp / 100, alpha=alpha):
        return None, cmp.difference * 100, margin_pp, detail
    reason = (f"output-schema failures {cmp.canary_rate:.2%} vs production {cmp.production_rate:.2%} "
              f"(+{cmp.difference * 100:.2f} pp > {margin_pp:g} pp; p={cmp.p_worse:.1e}, "
              f"{int(c.schema_failures)} failures in {int(c.requests)} requests)")
    return reason, cmp.difference * 100, margin_pp, detail


def ratio_gate(name: str, words: str, total_c: float, n_c: float, total_p: float, n_p: float, limit: float,
               overwhelming_ratio: float, rate: float | None, *, digits: int, unit: str = "") -> tuple[Gate, dict]:
    """A per-request mean of the canary against production's, as a ratio at most `limit`."""
    need = RATIO_MIN_REQUESTS
    tts = st.time_to_sufficiency(n_c, need, rate)
    info: dict[str, Any] = {"test": "none: a magnitude on a sample floor (sums carry no per-request spread)",
                            "sample_size": {"canary": n_c, "production": n_p}, "required": need,
                            "time_to_sufficiency_s": _r(tts)}
    if n_c <= 0 or n_p <= 0 or total_p <= 0:
        return Gate(name, GateStatus.INSUFFICIENT, None, limit, f"no {words} to compare yet"), info
    if total_c <= 0:
        # A canary that reports none while production does is not cheaper: it is not measured.
        info["unmeasured"] = True
        return Gate(name, GateStatus.INSUFFICIENT, None, limit,
                    f"the canary reports no {words.split(' per ')[0]} over {int(n_c)} requests"), info
    mean_c, mean_p = total_c / n_c, total_p / n_p
    ratio = mean_c / mean_p
    overwhelming = ratio > max(overwhelming_ratio, limit) and n_c >= RATIO_EARLY_REQUESTS
    info.update({"canary": _r(mean_c), "production": _r(mean_p), "ratio": _r(ratio),
                 "overwhelming_ratio": overwhelming_ratio, "overwhelming": overwhelming})
    text = (f"{words} {unit}{mean_c:.{digits}f} vs production {unit}{mean_p:.{digits}f} (×{ratio:.3f}) "
            f"over {int(n_c)} requests")
    if ratio > limit and (n_c >= need or overwhelming):
        status = GateStatus.RED
        if n_c < need:
            text += f"; already past ×{overwhelming_ratio:g}"
    elif ratio <= limit and n_c >= need:
        status = GateStatus.GREEN
    else:
        status = GateStatus.INSUFFICIENT
        text += f"; needs {need} requests"
    return Gate(name, status, _r(ratio), limit, text), info


def proportion_gate(name: str, words: str, x_c: float, n_c: float, x_p: float, n_p: float, margin_pp: float,
                    rate: float | None) -> tuple[Gate, dict]:
    """The share of canary requests with an event (`x_c` of `n_c`) at most `margin_pp`
    percentage points above production's, judged as the error-rate gate is."""
    if n_c <= 0 or n_p <= 0:
        need = st.proportion_sample_size(0.0, margin_pp / 100, ratio=1.0) if margin_pp > 0 else None
        return Gate(name, GateStatus.INSUFFICIENT, None, margin_pp, "no requests yet"), {
            "sample_size": {"canary": n_c, "production": n_p}, "required": need, "time_to_sufficiency_s": None}
    cmp = st.compare_proportions(int(x_c), int(n_c), int(x_p), int(n_p))
    margin = max(margin_pp, 1e-6) / 100  # a zero tolerance: no rise at all
    need = st.proportion_sample_size(cmp.production_rate, margin, ratio=n_p / n_c)
    tts = st.time_to_sufficiency(n_c, need, rate)
    diff_pp, upper_pp, lower_pp = cmp.difference * 100, cmp.ci_high * 100, cmp.ci_low * 100
    overwhelming = diff_pp > margin_pp and st.rollback_evidence(cmp.p_worse, x_c)
    info = {"test": "two-proportion, one-sided Agresti-Caffo bounds", **cmp.to_dict(),
            "ci_pp": [_r(lower_pp), _r(upper_pp)], "confidence": 1 - st.ALPHA,
            "sample_size": {"canary": n_c, "production": n_p}, "required": need,
            "time_to_sufficiency_s": _r(tts), "overwhelming": overwhelming}
    text = (f"{words} {cmp.canary_rate:.2%} vs production {cmp.production_rate:.2%}: {diff_pp:+.3f} pp "
            f"(upper bound {upper_pp:+.3f} pp) over {int(n_c)} requests")
    if diff_pp > margin_pp and (lower_pp > margin_pp or n_c >= need or overwhelming):
        status = GateStatus.RED
    elif diff_pp <= margin_pp and upper_pp <= margin_pp and n_c >= need:
        status = GateStatus.GREEN
    else:
        status = GateStatus.INSUFFICIENT
        text += f"; needs {need} requests"
    return Gate(name, status, _r(diff_pp), margin_pp, text), info


def _r(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    return value
