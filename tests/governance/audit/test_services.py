from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, close_old_connections, connection, transaction

from governance.audit.models import AuditEvent
from governance.audit.services import audit_append, audit_verify, protection_remove_sql, protection_run
from releases.register import services
from tests.factories import UserFactory


def _append(n: int, **payload):
    return [
        audit_append(actor=None, action="test.event", object_type="thing", object_id=i, payload={"i": i, **payload})
        for i in range(n)
    ]


@pytest.mark.django_db
def test_chain_links_each_event_to_the_previous():
    events = _append(3)
    assert events[0].prev_hash == "0" * 64
    assert events[1].prev_hash == events[0].hash
    assert [e.seq for e in events] == [1, 2, 3]
    result = audit_verify()
    assert result.ok and result.length == 3 and result.head_hash == events[-1].hash


@pytest.mark.django_db
def test_actor_name_is_kept_as_it_was(db):
    user = UserFactory(username="alice")
    event = audit_append(actor=user, action="x", object_type="t", object_id="1")
    assert (event.actor_id, event.actor_name) == (user.pk, "alice")
    assert audit_append(actor=None, action="x", object_type="t", object_id="1").actor_name == "system"


@pytest.mark.django_db
def test_payload_is_stored_exactly_as_hashed():
    from datetime import date
    from decimal import Decimal

    audit_append(actor=None, action="x", object_type="t", object_id=1, payload={"d": Decimal("0.1"), "when": date(2026, 1, 2), "t": (1, 2)})
    assert audit_verify().ok


@pytest.mark.django_db
def test_update_is_refused_by_the_database():
    (event,) = _append(1)
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="rewritten")


@pytest.mark.django_db
def test_delete_is_refused_by_the_database():
    (event,) = _append(1)
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()


@pytest.mark.django_db
def test_bulk_update_through_the_orm_is_refused_too():
    _append(3)
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        AuditEvent.objects.all().update(payload={})


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["action", "payload", "actor_name", "object_id"])
def test_alteration_behind_the_triggers_back_is_named_by_verification(field):
    _append(5)
    protection_run(protection_remove_sql(connection.vendor))
    value = {"i": 99} if field == "payload" else "forged"
    AuditEvent.objects.filter(seq=3).update(**{field: value})
    result = audit_verify()
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.length == 2


@pytest.mark.django_db
def test_removed_event_in_the_middle_is_found():
    _append(5)
    protection_run(protection_remove_sql(connection.vendor))
    AuditEvent.objects.filter(seq=2).delete()
    result = audit_verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


@pytest.mark.django_db
def test_truncated_tail_is_found_against_the_chain_head():
    _append(5)
    protection_run(protection_remove_sql(connection.vendor))
    AuditEvent.objects.filter(seq__gte=4).delete()
    result = audit_verify()
    assert (result.ok, result.first_bad_seq) == (False, 4)


@pytest.mark.django_db
def test_rewritten_and_rehashed_event_breaks_the_next_link():
    """A forger who recomputes the altered event's own hash still breaks the chain after it."""
    from governance.audit.services import event_digest

    _append(4)
    protection_run(protection_remove_sql(connection.vendor))
    e = AuditEvent.objects.get(seq=2)
    forged_payload = {"i": 42}
    new_hash = event_digest(
        seq=e.seq, created_at=e.created_at, actor_id=e.actor_id, actor_name=e.actor_name, action=e.action,
        object_type=e.object_type, object_id=e.object_id, payload=forged_payload, prev_hash=e.prev_hash,
    )
    AuditEvent.objects.filter(seq=2).update(payload=forged_payload, hash=new_hash)
    assert audit_verify().first_bad_seq == 3


@pytest.mark.django_db
def test_verify_audit_command_exit_codes(capsys):
    _append(2)
    call_command("verify_audit")
    assert "OK: 2 events" in capsys.readouterr().out
    protection_run(protection_remove_sql(connection.vendor))
    AuditEvent.objects.filter(seq=1).update(action="forged")
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit")
    assert excinfo.value.returncode == 1
    assert "sequence 1" in str(excinfo.value)


@pytest.mark.django_db
def test_register_change_and_its_event_commit_together(platform, role_user):
    role_user("model_owner", username="olga")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.model_register(
            actor=platform, name="m1", display_name="M1", risk_tier="low", owner="olga", on_call="x",
        )
        raise RuntimeError("fail after the service, inside the same transaction")
    assert not AuditEvent.objects.filter(action="model.registered").exists()


@pytest.mark.django_db
def test_auditlog_field_changes_are_sealed_into_the_chain(platform, role_user):
    role_user("model_owner", username="olga")
    services.model_register(actor=platform, name="m1", display_name="M1", risk_tier="low", owner="olga", on_call="x")
    services.model_update(actor=platform, name="m1", changes={"risk_tier": "high"})
    sealed = AuditEvent.objects.filter(action="field_changes.update", object_type="releases.aimodel")
    assert sealed.count() == 1
    assert sealed.get().payload["changes"]["risk_tier"] == ["low", "high"]
    assert audit_verify().ok


# --- real PostgreSQL ------------------------------------------------------------------------------


def _fire_deferred_constraints() -> None:
    # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED; PostgreSQL refuses TRUNCATE and
    # ALTER TABLE on a table with checks still pending in the (test's) open transaction.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_refuses_truncate():
    _append(1)
    _fire_deferred_constraints()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE governance_auditevent CASCADE")


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_superuser_disabling_the_trigger_is_caught_by_verification():
    _append(4)
    _fire_deferred_constraints()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE governance_auditevent SET action = 'forged' WHERE seq = 2")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE governance_auditevent DISABLE TRIGGER audit_no_update_delete")
        cursor.execute("UPDATE governance_auditevent SET action = 'forged' WHERE seq = 2")
        cursor.execute("ALTER TABLE governance_auditevent ENABLE TRIGGER audit_no_update_delete")
    result = audit_verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_concurrent_appends_never_fork_the_chain():
    writers, per_writer = 6, 15
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                audit_append(actor=None, action="race", object_type="writer", object_id=n, payload={"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = audit_verify()
    assert result.ok and result.length == writers * per_writer


@pytest.mark.django_db
def test_nul_characters_in_a_payload_are_stored_and_verify():
    event = audit_append(actor=None, action="x", object_type="t", object_id=1, payload={"reason": "bad\x00input"})
    assert event.payload == {"reason": "bad\ufffdinput"}
    assert audit_verify().ok
