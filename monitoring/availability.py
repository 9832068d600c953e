"""Availability: the share of requests a version served, not failed as unavailable (pure
functions of monitoring.samples values; monitoring.evaluator calls them).

A request is unavailable when the model server could not serve it at all (a 5xx, a timeout, an
overload): `model_requests_total{outcome="unavailable"}`, or `unavailable` of a pushed window.
An unavailable request is a failed request too: it counts in the errors (the error rate does not
improve when failures move from `error` to `unavailable`). The metric convention's outcome was
success or error only; a server that keeps to those two reports no unavailability, and its
availability is not judged (its failures are the error-rate gate's).

The `availability` promotion gate appears when either version reported an unavailable request
over the stage: the canary's availability must not fall below production's by more than the
tolerance (default 0.1 pp, the error rate's; a version may tighten it), judged as the error-rate
gate is on the unavailable share (monitoring.llm.proportion_gate).
"""

from __future__ import annotations

from typing import Any

from monitoring.evaluations import Gate
from monitoring.llm import proportion_gate
from monitoring.samples import Sample

AVAILABILITY_PP = 0.1  # availability at most 0.1 pp below production's


def availability(s: Sample) -> float | None:
    return 1 - s.unavailable / s.requests if s.requests > 0 else None


def availability_gate(stage: dict[str, Sample], promote: dict[str, Any],
                      rate: float | None) -> tuple[Gate, dict[str, Any]] | None:
    """The gate, or None when neither version reported an unavailable request over the stage."""
    c, p = stage["canary"], stage["production"]
    if c.unavailable <= 0 and p.unavailable <= 0:
        return None
    margin_pp = float(promote.get("availability_pp", AVAILABILITY_PP))
    gate, info = proportion_gate("availability", "unavailable requests", c.unavailable, c.requests, p.unavailable,
                                 p.requests, margin_pp, rate)
    a_c, a_p = availability(c), availability(p)
    if a_c is None or a_p is None:
        return gate, info
    info["availability"] = {"canary": round(a_c, 6), "production": round(a_p, 6)}
    rest = gate.detail.split(": ", 1)[1] if ": " in gate.detail else gate.detail
    rest = rest.replace("(upper bound", "below production's (upper bound", 1)
    detail = f"availability {a_c:.3%} vs production {a_p:.3%}: {rest}"
    return Gate("availability", gate.status, gate.value, gate.limit, detail), info
