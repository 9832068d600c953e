"""The MRM register (pattern §9.2): every stage completed with green gates is a model
validation event; every rollback is a validation failure, with its root cause once filed.
Derived from the approvals and incidents on each read, so it can never disagree with them."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from canaryhub import keyring
from governance.incidents.models import Incident, RootCauseReport
from releases.canaries.models import Approval

VERIFY_SCRIPT = Path(__file__).with_name("verify_bundle.py")


@dataclass(frozen=True)
class RegisterEntry:
    at: datetime
    model: str
    version: str
    risk_tier: str
    canary_id: int
    outcome: str  # "passed" | "failed"
    stage: str
    evidence: str
    root_cause: str
    incident_id: int | None = None  # a failure's incident, linked on the page

    def row(self) -> list[Any]:
        return [self.at.isoformat(), self.model, self.version, self.risk_tier, self.canary_id, self.outcome,
                self.stage, self.evidence, self.root_cause]


CSV_HEADER = ["at", "model", "version", "risk_tier", "canary", "outcome", "stage", "evidence", "root_cause"]


def register_entries(*, model: str = "", risk_tier: str = "", outcome: str = "", since: datetime | None = None,
                     until: datetime | None = None, models: dict[str, Any] | None = None) -> list[RegisterEntry]:
    """The register's events; `models`: a filter of the models they must belong to (None: all)."""
    entries: list[RegisterEntry] = []
    only = {f"canary__model__{name}": value for name, value in (models or {}).items()}
    if outcome in ("", "passed"):
        # The signature that took a promotion step closes the stage it left: one event per step.
        approvals = Approval.objects.filter(step__startswith="promote:", evaluation__verdict="green").select_related(
            "canary__model", "canary__version", "evaluation")
        approvals = approvals.filter(**only)
        if model:
            approvals = approvals.filter(canary__model__name=model)
        if risk_tier:
            approvals = approvals.filter(canary__risk_tier=risk_tier)
        last: dict[tuple[int, str], Approval] = {}
        for approval in approvals.order_by("signed_at", "id"):
            last[(approval.canary_id, approval.step)] = approval
        for approval in last.values():
            canary = approval.canary
            left = canary.stages[approval.stage_index - 1]["percent"]
            entries.append(RegisterEntry(
                approval.signed_at, canary.model.name, canary.version.version, canary.risk_tier, canary.pk,
                # Stages are numbered from 1 for people: the step into index i leaves stage i.
                "passed", f"stage {approval.stage_index} ({left}%) completed green",
                f"evaluation #{approval.evaluation_id} {approval.evaluation_hash[:12]}", "",
            ))
    if outcome in ("", "failed"):
        incidents = Incident.objects.filter(kind=Incident.Kind.ROLLBACK).select_related(
            "canary__model", "canary__version").prefetch_related("root_cause_reports")
        incidents = incidents.filter(**only)
        if model:
            incidents = incidents.filter(canary__model__name=model)
        if risk_tier:
            incidents = incidents.filter(canary__risk_tier=risk_tier)
        for incident in incidents:
            canary = incident.canary
            reports = sorted(incident.root_cause_reports.all(), key=lambda r: r.filed_at)
            accepted = [r for r in reports if r.status == RootCauseReport.Status.ACCEPTED]
            report = (accepted or reports or [None])[-1]
            cause = f"{report.cause} ({report.get_status_display()})" if report else "root cause not yet filed"
            stage = incident.details.get("stage_index")
            at_stage = f"rolled back at stage {stage + 1}" if isinstance(stage, int) else "rolled back"
            entries.append(RegisterEntry(
                incident.opened_at, canary.model.name, canary.version.version, canary.risk_tier, canary.pk,
                "failed", at_stage, f"incident #{incident.pk}", cause, incident_id=incident.pk,
            ))
    if since is not None:
        entries = [e for e in entries if e.at >= since]
    if until is not None:
        entries = [e for e in entries if e.at < until]
    return sorted(entries, key=lambda e: e.at, reverse=True)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: free text starting like a formula (=, +, -, @, tab,
    carriage return) gets a leading apostrophe, so opening the export never runs it."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def register_csv(entries: list[RegisterEntry]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    for entry in entries:
        writer.writerow([csv_cell(value) for value in entry.row()])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


# --- the server's signing keys and the verifier, as published ------------------------------------


def signing_keys_published() -> list[dict[str, Any]]:
    """Every public key of the ring, the active one first (canaryhub.keyring)."""
    return [{**k.as_dict(), "public_key_pem": k.public_key_pem, "active": k.active} for k in keyring.public_keys()]


def verifier_script() -> tuple[bytes, str]:
    """The stand-alone bundle verifier as distributed, and its SHA-256."""
    data = VERIFY_SCRIPT.read_bytes()
    return data, hashlib.sha256(data).hexdigest()
