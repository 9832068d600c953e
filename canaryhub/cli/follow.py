"""What a person following a canary needs to see, from the canary as the API returns it.

`Follower.update(canary)` takes each fresh `GET /api/v1/canaries/{id}/` answer and returns the
changes since the previous one as events: the stage and its traffic, the state, the gates of
the latest evaluation (values and limits), new signatures, what the canary waits for (whose
signature, data, the minimum residence, the monitor) and, at the end, the outcome. Every fact
comes from the API's fields (`state`, `stage`, `readiness`, `gates`, `required_approvals`,
`approvals`, `hold_reason`, `end_reason`); nothing here re-derives a rule of the canary.

Pure: no I/O, no clock. Each event renders as text lines for a CI log or as one JSON object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Exit status of `canary start --wait` / `canary wait` per outcome.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_ROLLED_BACK = 2
EXIT_ABORTED = 3
EXIT_TIMED_OUT = 4
OUTCOME_EXIT = {"completed": EXIT_OK, "certified": EXIT_OK, "rolled_back": EXIT_ROLLED_BACK, "aborted": EXIT_ABORTED}

ROLE_WORDS = {"owner": "the model's owner", "mrm": "a member of model risk management"}


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def as_json(self, canary_id: int | None) -> dict[str, Any]:
        return {"event": self.kind, "canary": canary_id, **self.data}


def when(value: str | None) -> str:
    """An API timestamp as a person reads it in a log: `2025-05-01 12:00:05Z`."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _shape(text: str) -> str:
    """A reason with its numbers blanked: "stale: ended 645 s ago" and "… 705 s ago" are the same
    wait, and a countdown is not a change a person needs to be told about again."""
    return re.sub(r"\d+(?:\.\d+)?", "#", text or "")


def outcome_exit(state: str) -> int | None:
    return OUTCOME_EXIT.get(state)


class Follower:
    """The changes between successive answers for one canary. `owner` is the model owner's
    username (from GET /models/{name}/), to say whose signature an owner step waits for."""

    def __init__(self, *, owner: str | None = None) -> None:
        self.owner = owner
        self.previous: dict[str, Any] | None = None
        self._approvals: set[Any] = set()
        self._gates_key: Any = None
        self._waiting_key: Any = None

    def update(self, canary: dict[str, Any]) -> list[Event]:
        before, self.previous = self.previous, canary
        events: list[Event] = []
        if before is None:
            events.append(self._header(canary))
        events.extend(self._signatures(canary))
        stage, prior_stage = canary.get("stage") or {}, (before or {}).get("stage") or {}
        if before is None or stage.get("index") != prior_stage.get("index"):
            events.append(self._stage(canary))
        gates = self._gates(canary)
        if gates is not None:
            events.append(gates)
        if before is None or canary.get("state") != before.get("state"):
            events.append(self._state(canary))
        waiting = self._waiting(canary)
        if waiting is not None:
            events.append(waiting)
        exit_code = outcome_exit(canary.get("state", ""))
        if exit_code is not None:
            events.append(self._outcome(canary, exit_code))
        return events

    # --- the events -------------------------------------------------------------------------------

    def _header(self, c: dict[str, Any]) -> Event:
        stages = c.get("stages") or []
        ladder = " → ".join(
            f"{s['cohort']} {s['percent']}%" if s.get("cohort") else f"{s['percent']}%" for s in stages
        )
        segmentation = c.get("segmentation") or {}
        seg_text = segmentation.get("strategy", "random")
        if segmentation.get("values"):
            seg_text += " (" + ", ".join(segmentation["values"]) + ")"
        lines = [
            f"canary #{c['id']}: {c['model']} {c['version']} against production {c.get('baseline')}, "
            f"{c.get('schedule')} schedule: {ladder}",
            f"  segmentation {seg_text}; initiated by {c.get('initiated_by')} at {when(c.get('initiated_at'))}"
            + (f"; clock speed {number(c['clock_speed'])}" if c.get("clock_speed") not in (None, 1, 1.0) else ""),
        ]
        data = {k: c.get(k) for k in ("model", "version", "baseline", "schedule", "initiated_by", "initiated_at")}
        data["stages"] = [s.get("percent") for s in stages]
        return Event("canary", data, lines)

    def _stage(self, c: dict[str, Any]) -> Event:
        stage = c.get("stage") or {}
        total = len(c.get("stages") or [])
        where = f"cohort {stage['cohort']} at {stage.get('percent')}%" if stage.get("cohort") else (
            f"{stage.get('percent')}% of traffic")
        text = f"stage {int(stage.get('index', 0)) + 1} of {total}: {where}"
        if stage.get("entered_at"):
            text += f" since {when(stage['entered_at'])}"
            if stage.get("min_residence_until") and stage["min_residence_until"] != stage["entered_at"]:
                text += f", minimum residence until {when(stage['min_residence_until'])}"
        else:
            text += " (not entered yet)"
        data = {"index": stage.get("index"), "of": total, "percent": stage.get("percent"),
                "cohort": stage.get("cohort"), "entered_at": stage.get("entered_at"),
                "min_residence_until": stage.get("min_residence_until"), "traffic_percent": c.get("traffic_percent")}
        return Event("stage", data, [text])

    def _state(self, c: dict[str, Any]) -> Event:
        state = c.get("state", "")
        text = f"state: {state}"
        reason = c.get("hold_reason") or ""
        # The API keeps a hold reason only while one applies (held, suspended); an ended canary's
        # story is its end reason, told by the outcome.
        if reason and outcome_exit(state) is None:
            text += f" ({reason})"
        return Event("state", {"state": state, "hold_reason": reason}, [text])

    def _signatures(self, c: dict[str, Any]) -> list[Event]:
        events = []
        for approval in c.get("approvals") or []:
            key = approval.get("id")
            if key in self._approvals:
                continue
            self._approvals.add(key)
            who = approval.get("printed_name") or approval.get("signer")
            text = (f"signed by {who} ({approval.get('signer')}) as {approval.get('role')} at "
                    f"{when(approval.get('signed_at'))}: {approval.get('meaning')}")
            data = {k: approval.get(k) for k in ("id", "step", "role", "signer", "printed_name", "meaning",
                                                 "signed_at", "evaluation_hash")}
            events.append(Event("signed", data, [text]))
        return events

    def _gates(self, c: dict[str, Any]) -> Event | None:
        gates = c.get("gates") or []
        evaluation = c.get("latest_evaluation") or None
        if not gates or evaluation is None:
            return None
        stage_index = (c.get("stage") or {}).get("index")
        key = (stage_index, evaluation.get("verdict"), tuple((g.get("name"), g.get("status")) for g in gates))
        if key == self._gates_key:
            return None  # a new window with the same verdicts: nothing a person needs to hear again
        self._gates_key = key
        width = max(len(str(g.get("name"))) for g in gates)
        lines = [f"gates at evaluation #{evaluation.get('id')} (window {when(evaluation.get('window_start'))} to "
                 f"{when(evaluation.get('window_end'))}): {evaluation.get('verdict')}"]
        for gate in gates:
            line = (f"  {str(gate.get('name')).ljust(width)}  {str(gate.get('status')).ljust(12)}"
                    f"value {number(gate.get('value'))}, limit {number(gate.get('limit'))}")
            if gate.get("detail"):
                line += f" ({gate['detail']})"
            lines.append(line)
        data = {"evaluation": evaluation.get("id"), "verdict": evaluation.get("verdict"),
                "window_end": evaluation.get("window_end"), "stage_index": stage_index,
                "gates": [{k: g.get(k) for k in ("name", "status", "value", "limit", "detail")} for g in gates]}
        return Event("gates", data, lines)

    def _whose(self, role: str) -> str:
        if role == "owner" and self.owner:
            return f"owner ({self.owner}, the model's owner)"
        return f"{role} ({ROLE_WORDS.get(role, role)})"

    def _waiting(self, c: dict[str, Any]) -> Event | None:
        found = self._what_it_waits_for(c)
        if found is None:
            self._waiting_key = None
            return None
        kind, text, data, key = found
        if key == self._waiting_key:
            return None
        self._waiting_key = key
        return Event("waiting", {"for": kind, **data}, [f"waiting for {text}"])

    def _what_it_waits_for(self, c: dict[str, Any]) -> tuple[str, str, dict[str, Any], Any] | None:
        state = c.get("state", "")
        if outcome_exit(state) is not None:
            return None
        required = c.get("required_approvals") or {}
        outstanding = list(required.get("outstanding") or [])
        readiness = c.get("readiness") or {}
        stage = c.get("stage") or {}
        reason = c.get("hold_reason") or readiness.get("reason") or ""
        if state == "suspended":
            return ("monitor", f"the monitor: {reason}", {"reason": reason}, ("monitor", _shape(reason)))
        if required.get("step") is None:
            return None
        if readiness.get("ready") and outstanding:
            whose = ", ".join(self._whose(r) for r in outstanding)
            step = required.get("step")
            return ("signature", f"signature{'s' if len(outstanding) > 1 else ''} on step {step}: {whose}",
                    {"step": step, "roles": outstanding, "owner": self.owner}, ("signature", step, tuple(outstanding)))
        if state == "running" and stage.get("min_residence_until"):
            until = stage["min_residence_until"]
            ordinal = int(stage.get("index", 0)) + 1
            return ("residence", f"the minimum residence of stage {ordinal}: until {when(until)}",
                    {"until": until, "reason": readiness.get("reason", "")}, ("residence", until))
        red = [g.get("name") for g in c.get("gates") or [] if g.get("status") == "red"]
        if red:
            return ("gates", f"red gates to turn green: {reason or ', '.join(red)}",
                    {"red": red, "reason": reason}, ("gates", tuple(red), _shape(reason)))
        return ("data", f"data: {reason or 'no evaluation yet'}", {"reason": reason}, ("data", _shape(reason)))

    def _outcome(self, c: dict[str, Any], exit_code: int) -> Event:
        state = c.get("state", "")
        ended = when(c.get("ended_at"))
        reason = c.get("end_reason") or ""
        if state in ("completed", "certified"):
            text = f"{state} at {ended}: {c.get('model')} {c.get('version')} is in production"
        elif state == "rolled_back":
            text = f"rolled back at {ended}: {reason or 'no reason given'}; every user is on {c.get('baseline')}"
        else:
            text = f"aborted at {ended}: {reason or 'no reason given'}"
        return Event("outcome", {"state": state, "exit_code": exit_code, "ended_at": c.get("ended_at"),
                                 "end_reason": reason}, [f"{text} (exit {exit_code})"])
