"""Evaluation verdicts, their content hash and the readiness rule (pure functions).

An evaluation judges one metric window of one canary stage: one `Gate` per promotion gate (and
per rollback trigger, if the evaluator records them), and an overall verdict. It is evidence: its
content hash lets a signer's approval name exactly the evaluation they saw, and lets anyone
recompute it from the stored record.

Decisions:
- The overall verdict is the worst gate: red, then stale, then insufficient, then green. An
  evaluation with no gates at all is `insufficient`: nothing was checked, so nothing is green.
- Readiness is measured on the data, not on the bookkeeping: an evaluation is fresh while
  `now - window_end` is within the staleness limit (an evaluation written a second ago over a
  window that ended ten minutes ago is stale data).
- Ready means fresh, verdict green, every gate green and every promotion gate present. A gate
  that is missing counts as not green: the stage holds rather than advancing on what was not
  measured.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from canaryhub.canonical import canonical_json, normalise_json


class GateStatus(StrEnum):
    GREEN = "green"
    RED = "red"
    INSUFFICIENT = "insufficient"  # too few samples to judge
    STALE = "stale"  # metrics older than the staleness limit


# The pattern's five promotion gates (§4.2), named after the metrics they read.
PROMOTION_GATES = ("error_rate", "latency_p99", "quality", "safety_violations", "anomaly_alerts")
# Every segment against production's same segment (monitoring.evaluator.judge_segments).
SEGMENTS_GATE = "segments"

# Worst first: the overall verdict is the first status any gate has.
_SEVERITY = (GateStatus.RED, GateStatus.STALE, GateStatus.INSUFFICIENT, GateStatus.GREEN)


@dataclass(frozen=True)
class Gate:
    """One gate's judgement: `value` observed against `limit` (None when there is no number,
    e.g. insufficient data)."""

    name: str
    status: GateStatus
    value: float | int | None = None
    limit: float | int | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", GateStatus(self.status))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a gate needs a name")
        for attr in ("value", "limit"):
            number = getattr(self, attr)
            if number is None:
                continue
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                # NaN and infinities are not JSON, and NaN compares false against every limit.
                raise ValueError(f"gate {self.name!r}: {attr} must be a finite number or None")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "value": self.value,
            "limit": self.limit,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Gate:
        return cls(
            name=value["name"],
            status=value["status"],
            value=value.get("value"),
            limit=value.get("limit"),
            detail=value.get("detail", ""),
        )


def as_gates(gates: Iterable[Gate | Mapping[str, Any]]) -> list[Gate]:
    """Gates from objects or from their stored JSON form."""
    return [g if isinstance(g, Gate) else Gate.from_dict(g) for g in gates]


def overall_verdict(gates: Iterable[Gate | Mapping[str, Any]]) -> GateStatus:
    statuses = {gate.status for gate in as_gates(gates)}
    if not statuses:
        return GateStatus.INSUFFICIENT
    return next(status for status in _SEVERITY if status in statuses)



def evaluation_hash(
    *,
    canary_id: int,
    stage_index: int,
    window_start: datetime,
    window_end: datetime,
    gates: Sequence[Gate | Mapping[str, Any]],
    verdict: str,
    inputs: Any,
    normalised: bool = False,
) -> str:
    """SHA-256 (hex) over the canonical JSON of what the evaluation decided and from what.
    `normalised`: `inputs` is normalise_json's output already (normalising it again is a no-op)."""
    body = {
        "canary_id": canary_id,
        "stage_index": stage_index,
        "window_start": _utc(window_start),
        "window_end": _utc(window_end),
        "gates": [gate.to_dict() for gate in as_gates(gates)],
        "verdict": GateStatus(verdict).value,
        "inputs": inputs if normalised else normalise_json(inputs),
    }
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


class EvaluationLike(Protocol):
    """What readiness needs of an evaluation: the stored model satisfies it."""

    window_end: datetime
    verdict: str

    @property
    def gates(self) -> Sequence[Gate | Mapping[str, Any]]: ...


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ready


def readiness(
    latest_evaluation: EvaluationLike | None,
    *,
    now: datetime,
    staleness_limit_s: float,
    required_gates: Iterable[str] = PROMOTION_GATES,
) -> Readiness:
    """Whether the metrics allow promotion now, with the reason when they do not (a hold reason)."""
    if not staleness_limit_s > 0:
        raise ValueError("staleness_limit_s must be positive")
    _check_aware(now, "now")
    if latest_evaluation is None:
        return Readiness(False, "no evaluation yet")
    _check_aware(latest_evaluation.window_end, "window_end")
    age_s = (now - latest_evaluation.window_end).total_seconds()
    if age_s > staleness_limit_s:
        return Readiness(
            False,
            f"latest evaluation is stale: its window ended {age_s:.0f} s ago (limit {staleness_limit_s:g} s)",
        )
    gates = as_gates(latest_evaluation.gates)
    missing = [name for name in required_gates if name not in {gate.name for gate in gates}]
    if missing:
        return Readiness(False, f"promotion gate(s) not evaluated: {', '.join(missing)}")
    # The segments gate says which segment holds the stage.
    not_green = [f"{g.name} is {g.status.value}" + (f" ({g.detail})" if g.name == SEGMENTS_GATE else "")
                 for g in gates if g.status is not GateStatus.GREEN]
    if not_green:
        return Readiness(False, "; ".join(not_green))
    if latest_evaluation.verdict != GateStatus.GREEN:
        # Gates all green but the stored verdict is not: the record contradicts itself, so hold.
        return Readiness(False, f"verdict is {latest_evaluation.verdict} although every gate is green")
    return Readiness(True, "every promotion gate is green")


def is_ready(
    latest_evaluation: EvaluationLike | None,
    *,
    now: datetime,
    staleness_limit_s: float,
    required_gates: Iterable[str] = PROMOTION_GATES,
) -> bool:
    return readiness(
        latest_evaluation, now=now, staleness_limit_s=staleness_limit_s, required_gates=required_gates
    ).ready


def _utc(value: datetime) -> str:
    _check_aware(value, "window bound")
    # The same spelling a database round trip gives back, so a stored record rehashes identically.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _check_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")

