"""Real parts: on PostgreSQL, a full canary ends in a certificate that verifies; rows altered
behind the audit trigger's back are named. (Forged bundles: test_signed_bundles.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.db import connection

from governance.access.permissions import Role
from governance.certificates.services import certificate_decide, certificate_verify
from governance.evidence.services import chain_check
from governance.incidents.models import Incident
from monitoring.models import Evaluation
from releases.canaries.models import Approval
from tests.governance.helpers import make_model, run_to_completion


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
