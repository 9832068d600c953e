"""Background evidence exports for the export page: one canary, one model or a date range,
built to a file in chunks with progress recorded as each file of the bundle is written."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from canaryhub.errors import NotFound, ValidationFailed
from governance.audit import audit_append
from governance.evidence import bundle_file_count, bundle_stream, canaries_for
from governance.models import EvidenceExport
from governance.permissions import Action, as_principal, require


def evidence_export_request(
    *, actor: Any, scope: str, canary_id: int | None = None, model_name: str = "",
    since: datetime | None = None, until: datetime | None = None,
) -> EvidenceExport:
    from releases.models import AIModel, Canary

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
        # A range spans models: only a role that may export any model's evidence may ask.
        require(principal, Action.VERIFY_AUDIT)
        require(principal, Action.EXPORT_EVIDENCE, model=None)
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
        from governance.tasks import build_evidence_export

        export_id = export.pk
        transaction.on_commit(lambda: build_evidence_export.delay(export_id))
    return export


def evidence_export_build(*, export_id: int) -> EvidenceExport:
    # Claim: only a queued export is built, so a task delivered twice builds once.
    if not EvidenceExport.objects.filter(pk=export_id, status=EvidenceExport.Status.QUEUED).update(
        status=EvidenceExport.Status.RUNNING
    ):
        export = EvidenceExport.objects.filter(pk=export_id).first()
        if export is None:
            raise NotFound(f"no evidence export #{export_id}")
        return export
    export = EvidenceExport.objects.get(pk=export_id)
    canaries = list(canaries_for(
        canary_id=export.canary_id, model_name=export.model.name if export.model else "",
        since=export.since, until=export.until,
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
        EvidenceExport.objects.filter(pk=export_id).update(
            status=EvidenceExport.Status.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        raise
    with transaction.atomic():
        EvidenceExport.objects.filter(pk=export_id).update(
            status=EvidenceExport.Status.DONE, path=str(path), size=size, sha256=sha.hexdigest(),
            finished_at=timezone.now(), total=F("done"),
        )
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
        expired.filter(pk__in=ids).update(status=EvidenceExport.Status.EXPIRED, path="")
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
