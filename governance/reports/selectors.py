"""Post-canary analysis (seed 003 "Post-Canary Analysis"): the time at each stage, traffic split
over time, metric comparison per stage, anomalies and the decision, computed from stored facts.
The stage summaries are the certificate's; the report's data is the report page's."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from governance.reports.records import ts
from releases.canaries import dashboard

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


def report_data(canary: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """The post-canary report's data for the evidence bundle's PDF: the same data the report page
    and `GET /api/v1/canaries/{id}/report/` show (releases.canaries.dashboard.canary_report), with
    the decision's headline and the canary's incidents."""
    data = dashboard.canary_report(canary, now=now or timezone.now()).data()
    data["headline"] = DECISIONS.get(canary.state, f"In progress ({canary.state})")
    data["incidents"] = [{"id": i.pk, "severity": i.severity, "kind": i.kind, "status": i.status, "summary": i.summary}
                         for i in canary.incidents.order_by("opened_at")]
    return data
