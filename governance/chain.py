"""Keeping the chain honest: the scheduled verification of the whole audit chain, a P1 incident
when it fails, and the head written to a write-once location outside the database, so a
database owner who rewrites history (and the head row with it) is caught against that copy."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from governance.audit import audit_verify
from governance.incidents import incident_open
from governance.models import ChainHeadExport, Incident


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
    """An exported head the chain no longer contains: compare against the newest earlier file
    that is not ahead of the current chain."""
    from governance.models import AuditEvent

    if not directory.exists():
        return ""
    for path in sorted(directory.glob("audit-head-*.json"), reverse=True)[:1]:
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            return f"{path.name} is unreadable"
        if old.get("seq", 0) > length:
            return f"{path.name} recorded event #{old['seq']}; the chain now has only {length}"
        if old.get("seq") and not AuditEvent.objects.filter(seq=old["seq"], hash=old.get("hash")).exists():
            return f"event #{old['seq']} no longer has the hash recorded in {path.name}"
    return ""


def chain_check(*, now: datetime | None = None) -> ChainHeadExport:
    now = now or timezone.now()
    directory = Path(settings.AUDIT_HEAD_EXPORT_DIR)
    result = audit_verify()
    ok, reason, first_bad = result.ok, result.reason, result.first_bad_seq
    if ok:
        mismatch = _earlier_exports_disagree(directory, length=result.length, head_hash=result.head_hash)
        if mismatch:
            ok, reason = False, f"the chain disagrees with an exported head: {mismatch}"
    name = f"audit-head-{now:%Y%m%dT%H%M%S%fZ}-{result.length:012d}.json"
    content = json.dumps({"seq": result.length, "hash": result.head_hash, "verified_at": now.isoformat(),
                          "ok": ok, "reason": reason}, sort_keys=True).encode("utf-8")
    path = _write_once(directory, name, content)
    with transaction.atomic():
        incident = None
        if not ok:
            incident = incident_open(
                severity=Incident.Severity.P1, kind=Incident.Kind.AUDIT_CHAIN,
                summary=f"Audit chain failed verification: {reason}",
                details={"first_bad_seq": first_bad, "length": result.length, "head_hash": result.head_hash},
                now=now,
            )
        return ChainHeadExport.objects.create(
            verified_at=now, ok=ok, length=result.length, head_seq=result.length, head_hash=result.head_hash,
            first_bad_seq=first_bad, reason=reason, path=str(path), incident=incident,
        )
