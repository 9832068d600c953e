"""The daily sweep of old evidence-export zips: only the zips go, their rows become expired."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.evidence.models import EvidenceExport
from governance.evidence.services import evidence_export_prune
from governance.evidence.tasks import prune_evidence_exports


@pytest.fixture
def people(role_user):
    return {"risk": role_user(Role.RISK_OFFICER, username="risk")}


def _export(people, *, age_days: float, status: str, directory) -> EvidenceExport:
    finished = timezone.now() - timedelta(days=age_days)
    export = EvidenceExport.objects.create(scope="range", requested_by=people["risk"], created_at=finished,
                                           status=status, finished_at=finished if status != "running" else None)
    path = directory / f"evidence-{export.pk}.zip"
    path.write_bytes(b"PK")
    os.utime(path, (finished.timestamp(), finished.timestamp()))
    EvidenceExport.objects.filter(pk=export.pk).update(path=str(path))
    return export


def test_daily_sweep_deletes_old_export_zips_only(people, tmp_path, settings):
    settings.EVIDENCE_EXPORT_DIR = str(tmp_path)
    old = _export(people, age_days=8, status="done", directory=tmp_path)
    fresh = _export(people, age_days=1, status="done", directory=tmp_path)
    running = _export(people, age_days=30, status="running", directory=tmp_path)
    orphan = tmp_path / "evidence-9999.zip"
    orphan.write_bytes(b"PK")
    stale = (timezone.now() - timedelta(days=10)).timestamp()
    os.utime(orphan, (stale, stale))
    head = tmp_path / "head-000001.json"  # not an export: never touched, however old
    head.write_text("{}")
    os.utime(head, (stale, stale))
    events_before = AuditEvent.objects.count()

    assert prune_evidence_exports.delay().get() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"evidence-{fresh.pk}.zip", f"evidence-{running.pk}.zip", "head-000001.json"])
    old.refresh_from_db()
    assert (old.status, old.path) == ("expired", "")
    assert EvidenceExport.objects.get(pk=fresh.pk).status == "done"
    assert AuditEvent.objects.count() == events_before + 1  # nothing deleted, one event appended
    assert AuditEvent.objects.latest("seq").payload["files_deleted"] == sorted([old.pk, 9999])
    assert evidence_export_prune() == 0


def test_retention_is_a_setting_and_scheduled_once(people, tmp_path, settings):
    settings.EVIDENCE_EXPORT_DIR = str(tmp_path)
    settings.EVIDENCE_EXPORT_RETENTION_DAYS = 30
    _export(people, age_days=8, status="done", directory=tmp_path)
    assert evidence_export_prune() == 0
    tasks = [e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()]
    assert tasks.count("governance.evidence.tasks.prune_evidence_exports") == 1


def test_default_retention_is_seven_days():
    assert settings.EVIDENCE_EXPORT_RETENTION_DAYS == 7
