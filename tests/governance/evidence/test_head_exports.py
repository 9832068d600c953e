"""The nightly check compares the chain with EVERY head it exported before, and an export it
cannot read, or that names no head, is itself a finding (a P1 like any chain failure) — not a
reason to stop comparing. The attack: rewrite history with recomputed hashes (the chain then
verifies on its own) and drop a newer file without `seq` in the export folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection

from governance.audit.models import AuditChainHead, AuditEvent
from governance.audit.services import (
    audit_append,
    audit_verify,
    event_digest,
    protection_remove_sql,
    protection_run,
)
from governance.evidence.services import chain_check
from governance.incidents.models import Incident

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)


@pytest.fixture
def exports(settings, tmp_path) -> Path:
    settings.AUDIT_HEAD_EXPORT_DIR = str(tmp_path / "heads")
    for i in range(4):
        audit_append(actor=None, action="test.event", object_type="thing", object_id=i, payload={"n": i})
    return Path(settings.AUDIT_HEAD_EXPORT_DIR)


def _rewrite_history_from(seq: int) -> None:
    """What someone with the database's keys would do: change an event and recompute every hash
    after it, so that the chain verifies on its own."""
    protection_run(protection_remove_sql(connection.vendor))
    prev = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else "0" * 64
    for event in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
        if event.seq == seq:
            event.payload = {"n": "rewritten"}
        event.prev_hash = prev
        event.hash = event_digest(seq=event.seq, created_at=event.created_at, actor_id=event.actor_id,
                                  actor_name=event.actor_name, action=event.action, object_type=event.object_type,
                                  object_id=event.object_id, payload=event.payload, prev_hash=prev)
        AuditEvent.objects.filter(pk=event.pk).update(payload=event.payload, prev_hash=prev, hash=event.hash)
        prev = event.hash
    AuditChainHead.objects.filter(id=1).update(hash=prev)


def test_rewritten_history_is_found_through_an_older_export_even_behind_a_newer_file_without_seq(exports):
    assert chain_check(now=T0).ok  # exports the head at #4
    audit_append(actor=None, action="test.event", object_type="thing", object_id=5, payload={})
    _rewrite_history_from(2)
    assert audit_verify().ok, "the rewritten chain verifies on its own: only the exports can tell"
    (exports / "audit-head-29991231T000000000000Z-000000000099.json").write_text("{}")
    result = chain_check(now=T0 + timedelta(days=1))
    assert not result.ok
    assert "event #4 no longer has the hash recorded in audit-head-20260301T" in result.reason
    assert "audit-head-29991231T000000000000Z-000000000099.json does not record a head" in result.reason
    incident = Incident.objects.get(kind="audit_chain")
    assert incident.severity == "P1"


@pytest.mark.parametrize("content", ["not json at all", '{"hash": "ab"}', '{"seq": "4", "hash": "ab"}', "[4]",
                                     '{"seq": true, "hash": "ab"}'])
def test_an_export_that_cannot_be_compared_is_a_finding_even_when_it_is_not_the_newest(exports, content):
    (exports).mkdir(parents=True, exist_ok=True)
    (exports / "audit-head-20000101T000000000000Z-000000000001.json").write_text(content)
    assert chain_check(now=T0).ok is False
    assert Incident.objects.filter(kind="audit_chain", severity="P1").count() == 1


def test_every_agreeing_export_passes_and_each_night_adds_one(exports):
    for night in range(3):
        audit_append(actor=None, action="test.event", object_type="thing", object_id=10 + night, payload={})
        result = chain_check(now=T0 + timedelta(days=night))
        assert result.ok, result.reason
    files = sorted(exports.glob("audit-head-*.json"))
    assert len(files) == 3
    assert [json.loads(f.read_text())["seq"] for f in files] == sorted(json.loads(f.read_text())["seq"] for f in files)
    assert not Incident.objects.exists()
