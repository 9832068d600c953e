"""The evidence records of a canary as plain JSON, and their digests.

One definition serves the evidence bundle (which writes these records into its files) and the
completion certificate (which seals their digests at issue, so a record altered later, even
behind the audit trigger's back, is named by verification). Only facts that never change after
the canary ends are included: a certificate turning the canary CERTIFIED must not "alter" it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from canaryhub.canonical import canonical_json


def ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value is not None else None


def digest(record: Any) -> str:
    return hashlib.sha256(canonical_json(record).encode("utf-8")).hexdigest()


def canary_record(canary: Any) -> dict[str, Any]:
    return {
        "id": canary.pk, "model": canary.model.name, "risk_tier": canary.risk_tier,
        "version": canary.version.version, "baseline": canary.baseline.version, "schedule": canary.schedule,
        "stages": canary.stages, "segmentation": canary.segmentation, "rationale": canary.rationale,
        "shadow_evidence_ref": canary.shadow_evidence_ref, "thresholds": canary.thresholds,
        "metrics": canary.metrics,
        "expected_timeline": canary.expected_timeline, "rollback_contact": canary.rollback_contact,
        "router": canary.router, "clock_speed": canary.clock_speed,
        "initiated_by": canary.initiated_by.get_username(), "initiated_at": ts(canary.initiated_at),
        "ended_at": ts(canary.ended_at), "end_reason": canary.end_reason,
    }


def version_record(version: Any) -> dict[str, Any]:
    return {
        "id": version.pk, "model": version.model.name, "version": version.version,
        "artifact_uri": version.artifact_uri, "change_type": version.change_type,
        "thresholds": version.thresholds, "metrics": version.metrics,
        "registered_by": version.registered_by.get_username(), "registered_at": ts(version.registered_at),
    }


def evaluation_record(evaluation: Any) -> dict[str, Any]:
    record = evaluation.as_evidence()
    record["created_at"] = ts(evaluation.created_at)
    record["window_start"], record["window_end"] = ts(evaluation.window_start), ts(evaluation.window_end)
    return record


def approval_record(approval: Any) -> dict[str, Any]:
    record = {
        "id": approval.pk, "canary_id": approval.canary_id, "step": approval.step,
        "stage_index": approval.stage_index, "role": approval.role, "signer": approval.signer.get_username(),
        "printed_name": approval.printed_name, "meaning": approval.meaning, "statement": approval.statement,
        "evaluation_id": approval.evaluation_id, "evaluation_hash": approval.evaluation_hash,
        "signed_at": ts(approval.signed_at),
    }
    if approval.voided_at is not None:
        # Only a voided signature carries these keys: a standing one's record is unchanged.
        record.update(voided_at=ts(approval.voided_at), void_reason=approval.void_reason)
    return record


def incident_record(incident: Any) -> dict[str, Any]:
    return {
        "id": incident.pk, "severity": incident.severity, "kind": incident.kind, "status": incident.status,
        "canary_id": incident.canary_id, "evaluation_id": incident.evaluation_id, "summary": incident.summary,
        "details": incident.details, "opened_at": ts(incident.opened_at),
        "root_cause_due_at": ts(incident.root_cause_due_at), "resolved_at": ts(incident.resolved_at),
        "root_causes": [
            {
                "id": r.pk, "status": r.status, "cause": r.cause, "contributing_factors": r.contributing_factors,
                "fix": r.fix, "version_change_ref": r.version_change_ref, "filed_by": r.filed_by.get_username(),
                "filed_at": ts(r.filed_at), "filed_late": r.filed_late,
                "reviewed_by": r.reviewed_by.get_username() if r.reviewed_by else None,
                "reviewed_at": ts(r.reviewed_at), "review_note": r.review_note,
            }
            for r in incident.root_cause_reports.order_by("filed_at", "id")
        ],
    }


def push_record(push: Any) -> dict[str, Any]:
    return {
        "id": push.pk, "canary_id": push.canary_id, "router": push.router, "generation": push.generation,
        "requested": push.requested, "applied": push.applied, "reason": push.reason,
        "status": push.status, "queued_at": ts(push.queued_at), "started_at": ts(push.started_at),
        "finished_at": ts(push.finished_at), "duration_ms": push.duration_ms,
        "attempts": push.attempts, "ok": push.ok, "error": push.error,
    }


def threshold_change_record(change: Any) -> dict[str, Any]:
    return {
        "id": change.pk, "canary_id": change.canary_id, "current": change.current, "proposed": change.proposed,
        "reason": change.reason, "requested_by": change.requested_by.get_username(),
        "requested_at": ts(change.requested_at), "status": change.status,
        "governance_by": change.governance_by.get_username() if change.governance_by else None,
        "mrm_by": change.mrm_by.get_username() if change.mrm_by else None,
        "applied_stage_index": change.applied_stage_index, "applied_at": ts(change.applied_at),
    }


def sealable_records(canary: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, record) of everything a completion certificate depends on, in a stable order."""
    yield f"canary:{canary.pk}", canary_record(canary)
    yield f"model_version:{canary.version_id}", version_record(canary.version)
    yield f"model_version:{canary.baseline_id}", version_record(canary.baseline)
    for evaluation in canary.evaluations.order_by("window_end", "id"):
        yield f"evaluation:{evaluation.pk}", evaluation_record(evaluation)
    for approval in canary.approvals.select_related("signer").order_by("signed_at", "id"):
        yield f"approval:{approval.pk}", approval_record(approval)
    for incident in canary.incidents.order_by("opened_at", "id"):
        yield f"incident:{incident.pk}", incident_record(incident)


def seal(canary: Any) -> dict[str, str]:
    return {key: digest(record) for key, record in sealable_records(canary)}
