"""Resolving a committee escalation, and the daily sweep of old evidence-export zips."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from canaryhub.errors import Conflict, PermissionRefused, ValidationFailed
from governance import rootcause
from governance.exports import evidence_export_prune
from governance.models import AuditEvent, CommitteeEscalation, EvidenceExport
from governance.permissions import Principal, Role
from governance.tasks import prune_evidence_exports
from releases.models import ModelVersion
from tests.governance.helpers import make_model
from tests.governance.test_rootcause import clear, rolled_back


@pytest.fixture
def people(role_user):
    return {r: role_user(role, username=r) for r, role in [
        ("owner", Role.MODEL_OWNER), ("platform", Role.PLATFORM), ("oncall", Role.ON_CALL), ("mrm", Role.MRM),
        ("gov", Role.AI_GOVERNANCE), ("risk", Role.RISK_OFFICER), ("bot", Role.SERVICE_ACCOUNT)]}


@pytest.fixture
def escalation(people):
    make_model(people["platform"])
    for n in range(3):
        _, incident = rolled_back(people)
        if n < 2:
            clear(people, incident)
    return CommitteeEscalation.objects.get()


def test_governance_resolves_an_escalation_with_a_note_and_the_flag_stays(people, escalation):
    with pytest.raises(ValidationFailed):
        rootcause.escalation_resolve(actor=people["gov"], escalation_id=escalation.pk, note="ok")
    for refused in ("owner", "risk", "oncall"):
        with pytest.raises(PermissionRefused):
            rootcause.escalation_resolve(actor=people[refused], escalation_id=escalation.pk,
                                         note="The committee accepts the fix plan.")
    with pytest.raises(PermissionRefused):
        rootcause.escalation_resolve(actor=Principal(user=people["bot"], scope=frozenset()),
                                     escalation_id=escalation.pk, note="The committee accepts the fix plan.")
    resolved = rootcause.escalation_resolve(actor=people["gov"], escalation_id=escalation.pk,
                                            note="The committee accepts the fix plan.")
    assert resolved.resolved_at is not None and resolved.resolved_by == people["gov"]
    assert ModelVersion.objects.get(version="1.1.0").committee_escalated_at is not None
    event = AuditEvent.objects.get(action="version.escalation_resolved")
    assert event.payload["note"] == "The committee accepts the fix plan." and event.actor == people["gov"]
    with pytest.raises(Conflict):
        rootcause.escalation_resolve(actor=people["mrm"], escalation_id=escalation.pk,
                                     note="The committee accepts the fix plan.")


def test_incident_page_resolves_the_escalation(people, escalation, client):
    from governance.models import Incident

    incident = Incident.objects.order_by("-opened_at", "-id").first()
    client.force_login(people["mrm"])
    page = client.get(f"/governance/incidents/{incident.pk}/")
    assert b"Resolve escalation" in page.content
    response = client.post(f"/governance/incidents/{incident.pk}/", {
        "verb": "resolve-escalation", "escalation": escalation.pk, "note": "Committee met; retrain approved."})
    assert response.status_code == 302
    page = client.get(f"/governance/incidents/{incident.pk}/")
    assert b"Resolve escalation" not in page.content and b"Committee met; retrain approved." in page.content
    escalation.refresh_from_db()
    assert escalation.resolved_by == people["mrm"]


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
    assert tasks.count("governance.tasks.prune_evidence_exports") == 1


def test_default_retention_is_seven_days():
    assert settings.EVIDENCE_EXPORT_RETENTION_DAYS == 7
