"""What a notification says: a title, plain-text lines, the numbers, and a link to the page that
shows the evidence (pure: built from the outbox row's kind and payload)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

TITLES: dict[str, str] = {
    "canary.initiated": "Canary initiated",
    "canary.signatures_requested": "Signatures needed to start the canary",
    "canary.started": "Canary started",
    "canary.promoted": "Canary promoted",
    "canary.completed": "Canary completed: version in production",
    "canary.certified": "Canary certified",
    "canary.awaiting_approval": "Ready for your signature",
    "canary.signature_voided": "Your signature no longer counts: sign again",
    "canary.held": "Canary held",
    "canary.suspended": "Canary suspended (dead-man's switch)",
    "canary.resumed": "Canary resumed",
    "canary.rolled_back": "Canary ROLLED BACK",
    "canary.aborted": "Canary aborted",
    "canary.reverted": "Canary REVERTED to the previous version after 100%",
    "slo.breached": "SLO breached: a measured rollback or promotion took longer than its target",
    "canary.break_glass": "BREAK-GLASS: on-call acted on a canary; MRM retrospective review due",
    "canary.standby_released": "Post-promotion watch over: hot standby released",
    "early_warning": "Early warning: a metric is near its rollback threshold",
    "metric_gap": "Metric gap: quality scores lag behind the canary's traffic; the stage extends",
    "incident.monitor_silent": "P1: evaluator heartbeat missing (dead-man's switch)",
    "incident.rollback_unconfirmed": "P1: rollback not confirmed at 0%",
    "incident.rollback_confirmed": "Rollback now confirmed at 0%: the manual override is no longer needed",
    "incident.audit_chain": "P1: audit chain failed verification",
    "incident.router": "P1: traffic router failure",
    "assignment_store_down": "Sticky assignment store unavailable",
    "incident.root_cause_filed": "Root cause filed",
    "incident.root_cause_due": "Root cause due within 12 h",
    "incident.root_cause_overdue": "Root cause OVERDUE",
    "incident.root_cause_returned": "Root cause returned by MRM",
    "incident.root_cause_accepted": "Root cause accepted",
    "version.reinitiation_approved": "Re-initiation approved",
    "committee.escalation": "Escalation to the model risk committee",
    "version.escalation_resolved": "Committee escalation resolved",
    "oncall.summary": "On-call summary of active canaries",
    "alert.firing": "Prometheus alert firing",
    "alert.resolved": "Prometheus alert resolved",
}

# Payload fields worth a line, in this order (the rest stays in the webhook's JSON).
_FIELDS = (
    "alertname", "model", "version", "reason", "summary", "metric", "value", "rollback_threshold", "confidence",
    "detail", "traffic_percent", "from_percent", "stage", "from", "to", "automatic", "severity",
    "rollback_contact",
    "thresholds", "expected_timeline", "signatures_required", "gates", "due_at", "note", "effect", "manual_override",
    "canaries",
)


@dataclass(frozen=True)
class Message:
    kind: str
    title: str
    subject: str
    lines: list[tuple[str, str]]
    link: str
    canary_id: int | None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        body = "\n".join(f"{name}: {value}" for name, value in self.lines)
        return f"{self.title}\n\n{body}\n\nEvidence: {self.link}\n"

    @property
    def html(self) -> str:
        rows = "".join(f"<tr><th align=left>{html.escape(n)}</th><td>{html.escape(v)}</td></tr>" for n, v in self.lines)
        return (f"<h2>{html.escape(self.title)}</h2><table>{rows}</table>"
                f'<p><a href="{html.escape(self.link)}">See the evidence</a></p>')


def stage_words(index: Any, count: Any = None) -> str | None:
    """A stage as people count it: "2 of 6" for the stage at index 1 of six (or "2" when the
    payload does not say how many there are); None when there is no stage index."""
    if not isinstance(index, int) or isinstance(index, bool):
        return None
    if isinstance(count, int) and not isinstance(count, bool) and count > index:
        return f"{index + 1} of {count}"
    return str(index + 1)


def _people(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's fields as people read them: the 0-based `stage_index` (kept as is in the
    webhook's JSON) becomes "stage": "N of M", in an on-call summary's rows too."""
    shown = {k: v for k, v in payload.items() if k not in ("stage_index", "stage_count")}
    stage = stage_words(payload.get("stage_index"), payload.get("stage_count"))
    if stage is not None and "stage" not in payload:
        shown["stage"] = stage
    if isinstance(payload.get("canaries"), list):
        shown["canaries"] = [_people(row) if isinstance(row, dict) else row for row in payload["canaries"]]
    return shown


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_show(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    return str(value)


def link_for(*, base_url: str, canary_id: int | None, payload: dict[str, Any]) -> str:
    base = base_url.rstrip("/")
    if payload.get("incident"):
        return f"{base}/governance/incidents/{payload['incident']}/"
    if canary_id:
        return f"{base}/canaries/{canary_id}/"
    return f"{base}/notifications/"


def render(*, kind: str, canary_id: int | None, payload: dict[str, Any], base_url: str) -> Message:
    title = TITLES.get(kind, kind.replace("_", " ").replace(".", ": "))
    shown = _people(payload)
    lines = [(name, _show(shown[name])[:2000]) for name in _FIELDS if shown.get(name) not in (None, "", [], {})]
    what = " ".join(str(payload[k]) for k in ("model", "version") if payload.get(k))
    subject = f"[CanaryHub] {title}" + (f" — {what}" if what else "") + (f" (canary #{canary_id})" if canary_id else "")
    return Message(kind=kind, title=title, subject=subject, lines=lines,
                   link=link_for(base_url=base_url, canary_id=canary_id, payload=payload),
                   canary_id=canary_id, payload=payload)
