"""A model's past canaries for calibration: each one's outcome (promoted, rolled back, aborted;
"extended" when a stage was held past its residence), the time it spent in each stage, and the
metric that decided it. Three queries whatever the number of canaries: the canaries (given), their
audited moves, and the evaluations their automatic rollbacks name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models.fields.json import KT

from governance.audit.models import AuditEvent
from monitoring.models import Evaluation
from releases.canaries import presenters, selectors, states
from releases.canaries.models import Canary

State = states.State
_OUTCOMES = {State.COMPLETED: "promoted", State.CERTIFIED: "promoted", State.ROLLED_BACK: "rolled back",
             State.ABORTED: "aborted", State.REVERTED: "promoted, then reverted"}
_ENTERS = ("canary.started", "canary.promoted", "canary.completed")
_METRICS = {"error_rate": "error rate", "latency_p99": "latency p99", "quality": "quality",
            "safety_violations": "content safety", "anomaly_alerts": "anomaly alerts"}


@dataclass
class HistoryRow:
    canary: Canary
    outcome: str
    extended: bool
    # {index, label, entered_at, left_at, duration, decision}: one per stage the canary entered
    stage_times: list[dict[str, Any]] = field(default_factory=list)
    decided_by: str = ""


def canary_history(canaries: list[Canary], *, now: datetime) -> list[HistoryRow]:
    if not canaries:
        return []
    by_id = {str(c.pk): c for c in canaries}
    moves: dict[str, list[tuple[datetime, str, dict]]] = {}
    for object_id, at, action, payload in (
        AuditEvent.objects.filter(object_type="canary", object_id__in=list(by_id),
                                  action__in=[*_ENTERS, "canary.held", "canary.rolled_back", "canary.aborted"])
        .order_by("seq").values_list("object_id", "created_at", "action", "payload")
    ):
        moves.setdefault(object_id, []).append((at, action, payload or {}))
    rollback_evaluations = [p.get("evaluation") for ms in moves.values() for _, a, p in ms
                            if a == "canary.rolled_back" and isinstance(p.get("evaluation"), int)]
    triggers = dict(
        Evaluation.objects.filter(id__in=rollback_evaluations)
        .values_list("id", KT("inputs__rollback_triggers__0__metric"))
    ) if rollback_evaluations else {}
    return [_row(canary, moves.get(key, []), triggers, now=now) for key, canary in by_id.items()]


def _row(canary: Canary, moves: list[tuple[datetime, str, dict]], triggers: dict, *, now: datetime) -> HistoryRow:
    stages = selectors.canary_stages(canary)
    entered = [(at, p.get("stage_index")) for at, action, p in moves
               if action in _ENTERS and isinstance(p.get("stage_index"), int)]
    if canary.stage_entered_at is not None and not any(action == "canary.started" for _, action, _ in moves):
        # Started at initiation (no start signatures needed): stage 1 began with the canary.
        entered.insert(0, (canary.initiated_at, 0))
    end = canary.ended_at or now
    times = []
    for i, (at, index) in enumerate(entered):
        following = entered[i + 1] if i + 1 < len(entered) else None
        until = following[0] if following else end
        if index < len(stages) and stages[index].is_final and canary.state in states.COMPLETE:
            continue  # reaching 100 % ends the canary: no time is spent "in" the final stage
        label = presenters.stage_label(stages[index]) if index < len(stages) else f"stage {index + 1}"
        times.append({"index": index, "label": label, "entered_at": at,
                      "left_at": until if following or canary.ended_at else None,
                      "duration": max(until - at, timedelta(0)),
                      "decision": _stage_decision(canary, stages, following[1] if following else None)})
    extended = any(action == "canary.held" for _, action, _ in moves)
    outcome = _OUTCOMES.get(canary.state, "in progress")
    return HistoryRow(canary, outcome, extended, times, _decided_by(canary, moves, triggers))


def _stage_decision(canary: Canary, stages: list, next_index: int | None) -> str:
    """How a stage ended: the step to the next stage, the canary's end, or that it still runs."""
    if next_index is not None:
        label = presenters.stage_label(stages[next_index]) if next_index < len(stages) else ""
        return f"promoted to stage {next_index + 1} ({label})" if label else f"promoted to stage {next_index + 1}"
    if canary.state in states.STOPPED:
        word = "rolled back" if canary.state == State.ROLLED_BACK else "aborted"
        return f"{word}: {canary.end_reason[:120]}" if canary.end_reason else word
    if canary.state == State.HELD:
        return f"held: {canary.hold_reason[:120]}" if canary.hold_reason else "held"
    if canary.state == State.REVERTED:
        return f"reverted: {canary.end_reason[:120]}" if canary.end_reason else "reverted"
    return "in progress"


def _decided_by(canary: Canary, moves: list[tuple[datetime, str, dict]], triggers: dict) -> str:
    for _, action, payload in reversed(moves):
        if action == "canary.rolled_back":
            metric = triggers.get(payload.get("evaluation"))
            if metric:
                return f"{_METRICS.get(metric, metric)} (automatic rollback)"
            if payload.get("automatic"):  # decided between evaluations (the rollback watch)
                return f"automatic rollback: {canary.end_reason[:120]}" if canary.end_reason else "automatic rollback"
            return f"manual rollback: {canary.end_reason[:120]}" if canary.end_reason else "manual rollback"
        if action == "canary.aborted":
            return f"aborted: {canary.end_reason[:120]}" if canary.end_reason else "aborted"
    if canary.state in states.COMPLETE:
        return "every promotion gate green at each signed step"
    if canary.state == State.HELD and canary.hold_reason:
        return f"held: {canary.hold_reason[:120]}"
    return ""
