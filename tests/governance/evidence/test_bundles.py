"""Real parts: on PostgreSQL, a full canary ends in a certificate that verifies; rows altered
behind the audit trigger's back are named; the bundle's own script (run by the system Python)
accepts the untouched bundle and rejects one with a single byte changed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from django.db import connection
from pypdf import PdfReader

from governance.access.permissions import Role
from governance.certificates.services import certificate_decide, certificate_verify
from governance.evidence.bundles import bundle_stream, canaries_for
from governance.evidence.services import chain_check
from governance.incidents.models import Incident
from monitoring.models import Evaluation
from releases.canaries.models import Approval
from tests.governance.helpers import make_model, run_to_completion

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def certified(role_user):
    owner = role_user(Role.MODEL_OWNER, username="owner", first_name="Olivia", last_name="Owner")
    platform = role_user(Role.PLATFORM, username="platform")
    mrm = role_user(Role.MRM, username="mrm")
    gov = role_user(Role.AI_GOVERNANCE, username="gov")
    make_model(platform)
    canary = run_to_completion(owner=owner, mrm=mrm)
    return canary, certificate_decide(actor=gov, canary_id=canary.pk, issue=True)


def _immediate() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_certificate_verifies_then_names_rows_altered_behind_the_triggers_back(certified):
    canary, cert = certified
    assert certificate_verify(certificate_id=cert.pk).ok
    approval = Approval.objects.filter(canary=canary).first()
    evaluation = Evaluation.objects.filter(canary=canary).first()
    _immediate()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE governance_approval DISABLE TRIGGER ALL")
        cursor.execute("UPDATE governance_approval SET printed_name = 'Mallory' WHERE id = %s", [approval.pk])
        cursor.execute("ALTER TABLE governance_approval ENABLE TRIGGER ALL")
        cursor.execute("UPDATE monitoring_evaluation SET inputs = '{\"source\": \"forged\"}' WHERE id = %s",
                       [evaluation.pk])
    result = certificate_verify(certificate_id=cert.pk)
    assert not result.ok
    assert f"approval:{approval.pk}" in result.changed and f"evaluation:{evaluation.pk}" in result.changed


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_audit_event_rewritten_with_the_trigger_disabled_fails_verification(certified):
    _, cert = certified
    _immediate()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE governance_auditevent DISABLE TRIGGER audit_no_update_delete")
        cursor.execute("UPDATE governance_auditevent SET actor_name = 'mallory' WHERE seq = 3")
        cursor.execute("ALTER TABLE governance_auditevent ENABLE TRIGGER audit_no_update_delete")
    result = certificate_verify(certificate_id=cert.pk)
    assert not result.ok
    assert any(c["name"] == "audit_chain" and not c["ok"] and "#3" in c["detail"] for c in result.checks)


@pytest.mark.django_db
def test_bundle_script_accepts_untouched_and_rejects_a_single_changed_byte(certified, tmp_path):
    canary, cert = certified
    data = b"".join(bundle_stream(canaries_for(canary_id=canary.pk), scope={"kind": "canary"}))
    folder = tmp_path / "bundle"
    zipfile.ZipFile(io.BytesIO(data)).extractall(folder)
    script = folder / "verify_bundle.py"
    python = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else "python3"
    run = lambda target: subprocess.run([python, "-I", str(script), str(target)], capture_output=True, text=True)  # noqa: E731
    zipped = tmp_path / "bundle.zip"
    zipped.write_bytes(data)
    assert run(zipped).returncode == 0
    assert run(folder).returncode == 0, run(folder).stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"audit/events.jsonl", f"canaries/{canary.pk}-scorer-1.1.0/certificate.pdf"}
    target = folder / f"canaries/{canary.pk}-scorer-1.1.0/approvals.json"
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))
    broken = run(folder)
    assert broken.returncode == 1 and "approvals.json" in broken.stdout
    # A forged audit event, re-hashed in the manifest too, is still caught by the chain check.
    target.write_bytes(bytes(raw[: len(raw) // 2]) + bytes([raw[len(raw) // 2] ^ 0x01]) + bytes(raw[len(raw) // 2 + 1:]))
    events = folder / "audit/events.jsonl"
    lines = events.read_text().splitlines()
    first = json.loads(lines[0])
    first["actor_name"] = "mallory"
    lines[0] = json.dumps(first)
    events.write_text("\n".join(lines) + "\n")
    import hashlib

    manifest["files"]["audit/events.jsonl"]["sha256"] = hashlib.sha256(events.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    forged = run(folder)
    assert forged.returncode == 1 and "content does not match its hash" in forged.stdout
    cert_pdf = PdfReader(str(folder / f"canaries/{canary.pk}-scorer-1.1.0/certificate.pdf"))
    assert str(cert.pk) in "".join(p.extract_text() for p in cert_pdf.pages)


@pytest.mark.django_db
def test_chain_check_exports_the_head_write_once_and_opens_p1_on_failure(settings, tmp_path, certified):
    settings.AUDIT_HEAD_EXPORT_DIR = str(tmp_path / "heads")
    first = chain_check()
    assert first.ok and Path(first.path).exists()
    assert json.loads(Path(first.path).read_text())["hash"] == first.head_hash
    from governance.audit.models import AuditEvent
    from governance.audit.services import protection_remove_sql, protection_run

    protection_run(protection_remove_sql(connection.vendor))
    AuditEvent.objects.filter(seq=2).update(action="forged")
    second = chain_check()
    assert not second.ok and second.first_bad_seq == 2
    assert Incident.objects.filter(kind="audit_chain", severity="P1").exists()
    assert len(list(Path(settings.AUDIT_HEAD_EXPORT_DIR).iterdir())) == 2
