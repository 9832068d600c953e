"""The evidence's writes: background exports for the export page (one canary, one model or a date
range, built to a file in chunks with progress recorded as each file of the bundle is written),
and keeping the chain honest — the scheduled verification of the whole audit chain, a P1 incident
when it fails, the head written to a write-once location outside the database, so a database
owner who rewrites history (and the head row with it) is caught against that copy, and a signed
checkpoint from which the certificate pages verify the chain incrementally."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from canaryhub import events, keyring
from canaryhub.errors import Conflict, NotFound, ValidationFailed
from governance.access.permissions import Action, as_principal, models_where, require, require_some
from governance.audit.checkpoints import checkpoint_record
from governance.audit.models import AuditEvent
from governance.audit.services import audit_append, audit_verify
from governance.evidence.bundles import bundle_file_count, bundle_stream, canaries_for
from governance.evidence.models import ChainHeadExport, EvidenceExport
from governance.incidents.models import Incident
from monitoring.services import incident_raise
from releases.canaries.models import Canary
from releases.register.models import AIModel


def evidence_export_request(
    *, actor: Any, scope: str, canary_id: int | None = None, model_name: str = "",
    since: datetime | None = None, until: datetime | None = None,
) -> EvidenceExport:
    principal = as_principal(actor)
    canary = model = None
    if scope == EvidenceExport.Scope.CANARY:
        canary = Canary.objects.select_related("model").filter(pk=canary_id).first() if canary_id else None
        if canary is None:
            raise ValidationFailed.field("canary", "choose an existing canary")
        require(principal, Action.EXPORT_EVIDENCE, model=canary.model)
    elif scope == EvidenceExport.Scope.MODEL:
        model = AIModel.objects.filter(name=model_name).first()
        if model is None:
            raise ValidationFailed.field("model", "choose an existing model")
        require(principal, Action.EXPORT_EVIDENCE, model=model)
    elif scope == EvidenceExport.Scope.RANGE:
        if since is None or until is None or since >= until:
            raise ValidationFailed.field("until", "give a date range whose end is after its start")
        # A range spans models: it holds only the models whose evidence the requester may export
        # (filtered when it is built, by the requester's rights then).
        require(principal, Action.VERIFY_AUDIT)
        require_some(principal, Action.EXPORT_EVIDENCE)
    else:
        raise ValidationFailed.field("scope", "must be canary, model or range")
    with transaction.atomic():
        export = EvidenceExport.objects.create(
            scope=scope, canary=canary, model=model, since=since, until=until, requested_by=principal.user,
            created_at=timezone.now(),
        )
        audit_append(
            actor=principal.user, action="evidence.export_requested", object_type="evidence_export",
            object_id=export.pk, payload={"scope": scope, "canary": canary_id if canary else None,
                                          "model": model_name or None,
                                          "since": since.isoformat() if since else None,
                                          "until": until.isoformat() if until else None},
        )
        events.announce("evidence.export_requested", export_id=export.pk)
    return export


# An export's moves: queued -> running (the build's claim) -> done or failed; done -> expired when
# its zip is swept. Each is a conditional UPDATE on the status it leaves.
_EXPORT_MOVES: dict[str, frozenset[str]] = {
    EvidenceExport.Status.QUEUED: frozenset({EvidenceExport.Status.RUNNING}),
    EvidenceExport.Status.RUNNING: frozenset({EvidenceExport.Status.DONE, EvidenceExport.Status.FAILED}),
    EvidenceExport.Status.DONE: frozenset({EvidenceExport.Status.EXPIRED}),
}


def export_transition(export_ids: list[int], *, leaving: str, to: str, **fields: Any) -> int:
    """Move the exports among `export_ids` that are still `leaving` to `to`; how many moved."""
    if to not in _EXPORT_MOVES.get(leaving, ()):
        raise ValueError(f"an evidence export does not go from {leaving} to {to}")
    return EvidenceExport.objects.filter(pk__in=export_ids, status=leaving).update(status=to, **fields)


def evidence_export_build(*, export_id: int) -> EvidenceExport:
    # Claim: only a queued export is built, so a task delivered twice builds once.
    if not export_transition([export_id], leaving=EvidenceExport.Status.QUEUED, to=EvidenceExport.Status.RUNNING):
        export = EvidenceExport.objects.filter(pk=export_id).first()
        if export is None:
            raise NotFound(f"no evidence export #{export_id}")
        return export
    export = EvidenceExport.objects.get(pk=export_id)
    canaries = list(canaries_for(
        canary_id=export.canary_id, model_name=export.model.name if export.model else "",
        since=export.since, until=export.until, models=models_where(export.requested_by, Action.EXPORT_EVIDENCE),
    ))
    EvidenceExport.objects.filter(pk=export_id).update(total=bundle_file_count(canaries))
    directory = Path(settings.EVIDENCE_EXPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"evidence-{export_id}.zip"
    sha, size = hashlib.sha256(), 0

    def progress(_name: str) -> None:
        EvidenceExport.objects.filter(pk=export_id).update(done=F("done") + 1)

    try:
        with open(path, "wb") as handle:
            for chunk in bundle_stream(canaries, scope=_scope(export), on_file=progress):
                sha.update(chunk)
                size += len(chunk)
                handle.write(chunk)
    except Exception as exc:
        export_transition([export_id], leaving=EvidenceExport.Status.RUNNING, to=EvidenceExport.Status.FAILED,
                          error=str(exc)[:2000], finished_at=timezone.now())
        raise
    with transaction.atomic():
        export_transition([export_id], leaving=EvidenceExport.Status.RUNNING, to=EvidenceExport.Status.DONE,
                          path=str(path), size=size, sha256=sha.hexdigest(), finished_at=timezone.now(),
                          total=F("done"))
        audit_append(
            actor=None, action="evidence.export_built", object_type="evidence_export", object_id=export_id,
            payload={"sha256": sha.hexdigest(), "size": size, "canaries": [c.pk for c in canaries]},
        )
    return EvidenceExport.objects.get(pk=export_id)


# Only files this module writes match; nothing else in the folder (or a misconfigured folder
# shared with the audit heads) is ever deleted.
_EXPORT_FILE = re.compile(r"^evidence-\d+\.zip$")


def evidence_export_prune(*, now: datetime | None = None) -> int:
    """Delete export zips older than EVIDENCE_EXPORT_RETENTION_DAYS and mark their rows expired.

    Only the zip files go: the export rows, audit events and certificates stay. A file left by a
    build that failed or was lost is swept by its age too. Returns how many files were deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.EVIDENCE_EXPORT_RETENTION_DAYS)
    directory = Path(settings.EVIDENCE_EXPORT_DIR)
    if not directory.is_dir():
        return 0
    # A running build is writing its file: never pull it from under the worker.
    running = {f"evidence-{pk}.zip" for pk in EvidenceExport.objects.filter(
        status__in=[EvidenceExport.Status.QUEUED, EvidenceExport.Status.RUNNING]).values_list("pk", flat=True)}
    recent = {f"evidence-{pk}.zip" for pk in EvidenceExport.objects.filter(
        status__in=[EvidenceExport.Status.DONE, EvidenceExport.Status.FAILED], finished_at__gte=cutoff,
    ).values_list("pk", flat=True)}
    deleted: list[int] = []
    for file in directory.iterdir():
        if not _EXPORT_FILE.match(file.name) or not file.is_file() or file.name in running | recent:
            continue
        if datetime.fromtimestamp(file.stat().st_mtime, tz=now.tzinfo) >= cutoff:
            continue
        file.unlink(missing_ok=True)
        deleted.append(int(file.name.removeprefix("evidence-").removesuffix(".zip")))
    # A failed export keeps its status and error: only a ready one becomes "expired".
    expired = EvidenceExport.objects.filter(status=EvidenceExport.Status.DONE, finished_at__lt=cutoff)
    with transaction.atomic():
        ids = list(expired.values_list("pk", flat=True))
        export_transition(ids, leaving=EvidenceExport.Status.DONE, to=EvidenceExport.Status.EXPIRED, path="")
        if deleted or ids:
            audit_append(
                actor=None, action="evidence.exports_expired", object_type="evidence_export", object_id="*",
                payload={"files_deleted": sorted(deleted), "exports_expired": sorted(ids),
                         "retention_days": settings.EVIDENCE_EXPORT_RETENTION_DAYS},
            )
    return len(deleted)


def _scope(export: EvidenceExport) -> dict[str, Any]:
    return {"kind": export.scope, "canary": export.canary_id, "model": export.model.name if export.model else None,
            "since": export.since.isoformat() if export.since else None,
            "until": export.until.isoformat() if export.until else None}


# --- the chain's head, outside the database ----------------------------------------------------

def _write_once(directory: Path, name: str, content: bytes) -> Path:
    """O_EXCL: the file is created or the call fails; an existing export is never overwritten."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _earlier_exports_disagree(directory: Path, *, length: int, head_hash: str) -> str:
    """What the chain contradicts among ALL earlier exported heads: a head the chain no longer
    contains (a later seq than the chain has, or an event whose hash changed), and any export
    that is unreadable or does not name its head (`seq` and `hash`) — a file that cannot be
    compared is a finding, never a reason to stop comparing. Empty when every export agrees."""
    if not directory.exists():
        return ""
    findings: list[str] = []
    recorded: dict[int, list[tuple[str, str]]] = {}
    for path in sorted(directory.glob("audit-head-*.json")):
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            findings.append(f"{path.name} is unreadable")
            continue
        seq = old.get("seq") if isinstance(old, dict) else None
        digest = old.get("hash") if isinstance(old, dict) else None
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or not isinstance(digest, str):
            findings.append(f"{path.name} does not record a head (an integer seq and a hash)")
            continue
        if seq > length:
            findings.append(f"{path.name} recorded event #{seq}; the chain now has only {length}")
        elif seq:
            recorded.setdefault(seq, []).append((path.name, digest))
    stored = dict(AuditEvent.objects.filter(seq__in=list(recorded)).values_list("seq", "hash"))
    for seq, files in sorted(recorded.items()):
        findings += [f"event #{seq} no longer has the hash recorded in {name}"
                     for name, digest in files if stored.get(seq) != digest]
    if len(findings) > 5:
        findings = [*findings[:5], f"and {len(findings) - 5} more"]
    return "; ".join(findings)


def chain_check(*, now: datetime | None = None) -> ChainHeadExport:
    now = now or timezone.now()
    directory = Path(settings.AUDIT_HEAD_EXPORT_DIR)
    result = audit_verify()
    ok, reason, first_bad = result.ok, result.reason, result.first_bad_seq
    if ok:
        mismatch = _earlier_exports_disagree(directory, length=result.length, head_hash=result.head_hash)
        if mismatch:
            ok, reason = False, f"the chain disagrees with an exported head: {mismatch}"
    checkpoint = None
    if ok and result.length:
        # The whole chain verified up to here: later verifications may start from this point.
        checkpoint = checkpoint_record(seq=result.length, digest=result.head_hash, now=now)
    name = f"audit-head-{now:%Y%m%dT%H%M%S%fZ}-{result.length:012d}.json"
    content = json.dumps({"seq": result.length, "hash": result.head_hash, "verified_at": now.isoformat(),
                          "ok": ok, "reason": reason,
                          **({"signature": checkpoint.signature} if checkpoint else {})},
                         sort_keys=True).encode("utf-8")
    path = _write_once(directory, name, content)
    with transaction.atomic():
        incident = None
        if not ok:
            incident = incident_raise(
                severity=Incident.Severity.P1, kind=Incident.Kind.AUDIT_CHAIN,
                summary=f"Audit chain failed verification: {reason}",
                details={"first_bad_seq": first_bad, "length": result.length, "head_hash": result.head_hash},
                now=now,
            )
        return ChainHeadExport.objects.create(
            verified_at=now, ok=ok, length=result.length, head_seq=result.length, head_hash=result.head_hash,
            first_bad_seq=first_bad, reason=reason, path=str(path), incident=incident,
        )


# --- the server's signing keys ---------------------------------------------------------------------


def signing_key_generate(*, rotate: bool) -> tuple[keyring.PublicKey, keyring.PublicKey | None]:
    """Create the first signing key (`rotate=False`; refused when one exists) or rotate to a new
    one, and put the change in the audit chain. Only the deployment's operator acts here
    (`manage.py signing_keys`): the keys are files of the deployment, never set through a form."""
    try:
        new, retired = keyring.generate(rotate=rotate)
    except FileExistsError as exc:
        raise Conflict(str(exc)) from exc
    audit_append(
        actor=None, action="signing_key.rotated" if retired else "signing_key.generated",
        object_type="signing_key", object_id=new.key_id,
        payload={"key_id": new.key_id, "fingerprint": new.fingerprint, "algorithm": new.algorithm,
                 "created_at": new.created_at,
                 **({"retired": {"key_id": retired.key_id, "fingerprint": retired.fingerprint,
                                 "retired_at": retired.retired_at}} if retired else {})},
    )
    return new, retired
