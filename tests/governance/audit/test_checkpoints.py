"""Signed checkpoints of the audit chain: the nightly full verification writes one; the
certificate pages verify from it, reading only the events after it; a checkpoint whose signature
does not hold is refused and verification starts from the first event, saying so."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.audit.checkpoints import head_signature_valid, head_statement
from governance.audit.models import AuditCheckpoint, AuditEvent
from governance.audit.services import audit_append, audit_verify, protection_remove_sql, protection_run
from governance.evidence.services import chain_check


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.SIGNING_KEY_DIR = str(tmp_path / "keys")
    settings.AUDIT_HEAD_EXPORT_DIR = str(tmp_path / "heads")


def _append(n: int) -> None:
    for i in range(n):
        audit_append(actor=None, action="test.event", object_type="thing", object_id=i, payload={"i": i})


def _rows_read(**kwargs) -> tuple[object, list[str]]:
    """The verification, and the SQL it sent to the event table."""
    with CaptureQueriesContext(connection) as queries:
        result = audit_verify(**kwargs)
    reads = [q["sql"] for q in queries.captured_queries if "governance_auditevent" in q["sql"]]
    return result, reads


def _unprotected(sql: str, params: list) -> None:
    protection_run(protection_remove_sql(connection.vendor))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
def test_the_nightly_verification_signs_a_checkpoint_and_later_checks_start_there():
    _append(30)
    export = chain_check()
    assert export.ok
    checkpoint = AuditCheckpoint.objects.get()
    assert (checkpoint.seq, checkpoint.hash) == (30, AuditEvent.objects.get(seq=30).hash)
    assert head_signature_valid(seq=30, digest=checkpoint.hash, signature=checkpoint.signature)
    _append(5)
    result, reads = _rows_read(from_checkpoint=True)
    assert result.ok and result.length == 35 and result.start == "from signed checkpoint #30"
    # Only the events after the checkpoint were streamed (the anchor event is looked up by seq).
    streamed = [sql for sql in reads if '"payload"' in sql]  # the rows recomputed
    assert streamed and all('"seq" >= 31' in sql for sql in streamed), reads
    full = audit_verify()
    assert full.ok and full.length == 35 and full.start == "verified from the first event"


@pytest.mark.django_db
def test_an_event_after_the_checkpoint_changed_is_caught_and_a_rewritten_history_breaks_the_anchor():
    _append(10)
    chain_check()
    _append(3)
    _unprotected("UPDATE governance_auditevent SET actor_name = 'mallory' WHERE seq = 12", [])
    result = audit_verify(from_checkpoint=True)
    assert not result.ok and result.first_bad_seq == 12
    # History before the checkpoint rewritten with the hashes recomputed: the event at the
    # checkpoint no longer has the hash the server signed.
    _unprotected("UPDATE governance_auditevent SET hash = %s WHERE seq = 10", ["e" * 64])
    anchored = audit_verify(from_checkpoint=True)
    assert not anchored.ok and anchored.first_bad_seq == 10 and "signed checkpoint" in anchored.reason


@pytest.mark.django_db
def test_a_tampered_checkpoint_is_refused_and_verification_starts_from_the_first_event(client):
    _append(10)
    chain_check()
    # Someone with the database moves the checkpoint past an event they then edit in place.
    _unprotected("UPDATE governance_auditevent SET payload = %s WHERE seq = 4", ['{"i": 99}'])
    forged = base64.b64encode(Ed25519PrivateKey.generate().sign(head_statement(seq=10, digest="0" * 64))).decode()
    for signature in ({}, {**AuditCheckpoint.objects.get().signature, "signature": forged}):
        AuditCheckpoint.objects.update(signature=signature)
        result = audit_verify(from_checkpoint=True)
        assert result.start.startswith("checkpoint #10 refused")
        assert not result.ok and result.first_bad_seq == 4  # the full verification finds the edit
    # A checkpoint with a good signature over another hash is refused the same way.
    good = AuditCheckpoint.objects.get()
    AuditCheckpoint.objects.update(hash="a" * 64)
    assert audit_verify(from_checkpoint=True).start.startswith("checkpoint #10 refused")
    assert good.seq == 10


@pytest.mark.django_db
def test_the_public_verify_page_says_where_verification_started(client, role_user):
    from governance.access.permissions import Role  # noqa: PLC0415
    from governance.certificates.services import certificate_decide  # noqa: PLC0415
    from tests.governance.helpers import make_model, run_to_completion  # noqa: PLC0415

    owner = role_user(Role.MODEL_OWNER, username="owner")
    make_model(role_user(Role.PLATFORM, username="platform"))
    canary = run_to_completion(owner=owner, mrm=role_user(Role.MRM, username="mrm"))
    cert = certificate_decide(actor=role_user(Role.AI_GOVERNANCE, username="gov"), canary_id=canary.pk, issue=True)
    checkpoint_seq = chain_check().length
    page = client.get(f"/governance/verify/{cert.pk}/").content.decode()
    assert "Genuine and unaltered" in page and f"from signed checkpoint #{checkpoint_seq}" in page
    AuditCheckpoint.objects.update(signature={})
    page = client.get(f"/governance/verify/{cert.pk}/").content.decode()
    assert "Genuine and unaltered" in page  # verified in full instead
    assert f"checkpoint #{checkpoint_seq} refused" in page
