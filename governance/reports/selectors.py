"""Post-canary analysis (seed 003 "Post-Canary Analysis"): the time at each stage, traffic split
over time, metric comparison per stage, anomalies and the decision, computed from stored facts.
Shared by the certificate and the evidence bundle's report."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from governance.reports.records import ts
from monitoring.evaluations import PROMOTION_GATES
from releases.canaries import states

DECISIONS = {
    "completed": "Promoted to 100% (awaiting AI Governance certificate)",
    "certified": "Promoted to 100% and certified",
    "rolled_back": "Rolled back",
    "aborted": "Aborted",
}


def human_duration(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days} d {hours} h {minutes} min" if days else f"{hours} h {minutes} min"


def stage_entries(canary: Any) -> dict[int, datetime]:
    """When the canary entered each stage it reached: the last signature of the step into it
    (the signature that took the step), or the initiation for a canary that started unsigned."""
    entries: dict[int, datetime] = {}
    for approval in canary.approvals.order_by("signed_at", "id"):
        entries[approval.stage_index] = approval.signed_at
    if 0 not in entries and canary.state != "pending_approval":
        entries[0] = canary.initiated_at
    reached = canary.stage_index
    return {i: at for i, at in entries.items() if i <= reached}


def stage_summaries(canary: Any) -> list[dict[str, Any]]:
    entries = stage_entries(canary)
    evaluations = list(canary.evaluations.order_by("window_end", "id"))
    summaries = []
    for stage in canary.stages:
        index = stage["index"]
        entered = entries.get(index)
        following = entries.get(index + 1) or (canary.ended_at if index == canary.stage_index else None)
        mine = [e for e in evaluations if e.stage_index == index]
        last = mine[-1] if mine else None
        summaries.append({
            "index": index, "percent": stage["percent"], "entered_at": ts(entered),
            "duration": human_duration(following - entered) if entered and following else (
                "in progress" if entered else "not reached"),
            "evaluations": len(mine), "verdict": last.verdict if last else "-",
            "gates": ", ".join(f"{g['name']} {g['status']}" for g in last.gates) if last else "-",
        })
    return summaries


def report_data(canary: Any) -> dict[str, Any]:
    entries = stage_entries(canary)
    start = canary.initiated_at
    hours = lambda at: round((at - start).total_seconds() / 3600, 3)  # noqa: E731
    points: list[tuple[float, float]] = []
    for index in sorted(entries):
        percent = canary.stages[index]["percent"]
        if points:
            points.append((hours(entries[index]), points[-1][1]))
        points.append((hours(entries[index]), percent))
    if canary.ended_at is not None and points:
        points.append((hours(canary.ended_at), points[-1][1]))
        if canary.state in states.STOPPED:
            points.append((hours(canary.ended_at), 0))
    last_per_stage: dict[int, Any] = {}
    anomalies = []
    for evaluation in canary.evaluations.order_by("window_end", "id"):
        last_per_stage[evaluation.stage_index] = evaluation
        for gate in evaluation.gates:
            if gate["status"] != "green":
                anomalies.append({"window_end": ts(evaluation.window_end), "stage": evaluation.stage_index,
                                  "gate": gate["name"], "status": gate["status"], "detail": gate.get("detail", "")})
    metrics = []
    for name in PROMOTION_GATES:
        labels, values, limits = [], [], []
        for index, evaluation in sorted(last_per_stage.items()):
            gate = next((g for g in evaluation.gates if g["name"] == name), None)
            if gate is None:
                continue
            labels.append(f"{canary.stages[index]['percent']}%")
            values.append(float(gate["value"] or 0))
            limits.append(float(gate["limit"] or 0))
        metrics.append({"name": name, "labels": labels, "values": values, "limits": limits})
    return {
        "canary_id": canary.pk, "model": canary.model.name, "version": canary.version.version,
        "baseline": canary.baseline.version, "schedule": canary.schedule, "risk_tier": canary.risk_tier,
        "decision": DECISIONS.get(canary.state, f"In progress ({canary.state})"),
        "decision_detail": canary.end_reason or f"Reached stage {canary.stage_index} at {canary.traffic_percent}%.",
        "traffic_points": points, "metrics": metrics, "stages": stage_summaries(canary),
        "anomalies": anomalies[:200],
        "incidents": [{"id": i.pk, "severity": i.severity, "kind": i.kind, "status": i.status, "summary": i.summary}
                      for i in canary.incidents.order_by("opened_at")],
    }
