"""The hash-chained audit trail: append and verify.

Every state change in CanaryHub calls `audit_append` inside the same transaction as the change,
so the event and the change commit or roll back together. The digest of an event is SHA-256
over a canonical JSON serialisation of all its fields and the previous event's hash; changing
any field of any event, or removing one, breaks every hash after it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from prometheus_client import Gauge

from canaryhub.canonical import canonical_json
from canaryhub.metrics import REGISTRY
from governance.audit.checkpoints import checkpoint_trusted
from governance.audit.models import AuditChainHead, AuditEvent, RefusalTally

GENESIS_HASH = "0" * 64


def event_digest(
    *,
    seq: int,
    created_at: datetime,
    actor_id: int | None,
    actor_name: str,
    action: str,
    object_type: str,
    object_id: str,
    payload: Any,
    prev_hash: str,
) -> str:
    """The one definition of an event's hash. The evidence bundle's stand-alone verifier
    repeats it with the standard library only, so keep it to plain JSON and SHA-256."""
    body = canonical_json(
        {
            "seq": seq,
            "created_at": created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor_id": actor_id,
            "actor_name": actor_name,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "payload": payload,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _normalise(payload: Any) -> Any:
    # Store exactly what was hashed: a JSON round trip turns tuples into lists, Decimals and
    # datetimes into strings, so verification later sees the same value. NUL characters (which
    # PostgreSQL's jsonb cannot hold) become U+FFFD so that recording a refusal never fails.
    return _without_nul(json.loads(canonical_json(payload)))


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def audit_append(
    *,
    actor: Any,
    action: str,
    object_type: str,
    object_id: Any,
    payload: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain. `actor` is a user, or None for the system itself."""
    with transaction.atomic():
        # Conditional increment first: it takes the head's row lock (PostgreSQL) or the
        # database write lock (SQLite) before we read the previous hash.
        AuditChainHead.objects.get_or_create(id=1)
        AuditChainHead.objects.filter(id=1).update(seq=F("seq") + 1)
        head = AuditChainHead.objects.get(id=1)
        actor_id = actor.pk if actor is not None and getattr(actor, "is_authenticated", False) else None
        actor_name = actor.get_username() if actor_id is not None else "system"
        created_at = timezone.now()
        body = _normalise(payload or {})
        digest = event_digest(
            seq=head.seq,
            created_at=created_at,
            actor_id=actor_id,
            actor_name=actor_name,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            payload=body,
            prev_hash=head.hash,
        )
        event = AuditEvent.objects.create(
            seq=head.seq,
            created_at=created_at,
            actor_id=actor_id,
            actor_name=actor_name,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            payload=body,
            prev_hash=head.hash,
            hash=digest,
        )
        AuditChainHead.objects.filter(id=1).update(hash=digest)
        return event


def auditlog_entry_seal(entry: Any) -> AuditEvent:
    """Seal one django-auditlog entry (field-level change history) into the chain."""
    return audit_append(
        actor=entry.actor,
        action=f"field_changes.{entry.get_action_display().lower()}",
        object_type=entry.content_type.model_class()._meta.label_lower if entry.content_type else "unknown",
        object_id=entry.object_pk,
        payload={"auditlog_entry": entry.pk, "object_repr": entry.object_repr, "changes": entry.changes},
    )


AUDIT_CHAIN_LENGTH = Gauge("canaryhub_audit_chain_length", "Events in the audit chain", registry=REGISTRY)


def metrics_refresh() -> None:
    head = AuditChainHead.objects.filter(id=1).first()
    AUDIT_CHAIN_LENGTH.set(head.seq if head else 0)


@dataclass(frozen=True)
class ChainVerification:
    ok: bool
    length: int
    head_hash: str
    first_bad_seq: int | None
    reason: str = ""
    # Where verification started: "from signed checkpoint #N", or why it started at the first event.
    start: str = "verified from the first event"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "length": self.length,
            "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
        }


def audit_verify(*, chunk_size: int = 2000, from_checkpoint: bool = False) -> ChainVerification:
    """Recompute the chain, streaming it in seq order, and name the first bad link. With
    `from_checkpoint`, start after the newest signed checkpoint whose signature holds (after
    checking that its event still has the signed hash); otherwise, or without one, from the first
    event (governance.audit.checkpoints)."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    length = 0
    start = "verified from the first event"
    if from_checkpoint:
        checkpoint, start = checkpoint_trusted()
        if checkpoint is not None:
            anchor = AuditEvent.objects.filter(seq=checkpoint.seq).values_list("hash", flat=True).first()
            if anchor != checkpoint.hash:
                return ChainVerification(False, checkpoint.seq - 1, GENESIS_HASH, checkpoint.seq,
                                         f"event {checkpoint.seq} no longer has the hash its signed checkpoint "
                                         "states", start)
            expected_prev, expected_seq, length = checkpoint.hash, checkpoint.seq + 1, checkpoint.seq
    events = AuditEvent.objects.order_by("seq")
    if expected_seq > 1:  # a full verification reads every row, whatever its seq
        events = events.filter(seq__gte=expected_seq)
    rows = events.values_list(
        "seq", "created_at", "actor_id", "actor_name", "action", "object_type", "object_id",
        "payload", "prev_hash", "hash",
    )
    for seq, created_at, actor_id, actor_name, action, otype, oid, payload, prev_hash, digest in rows.iterator(
        chunk_size=chunk_size
    ):
        if seq != expected_seq:
            return ChainVerification(False, length, expected_prev, expected_seq, f"event {expected_seq} is missing",
                                     start)
        if prev_hash != expected_prev:
            return ChainVerification(False, length, expected_prev, seq, "previous-hash link is broken", start)
        recomputed = event_digest(
            seq=seq, created_at=created_at, actor_id=actor_id, actor_name=actor_name, action=action,
            object_type=otype, object_id=oid, payload=payload, prev_hash=prev_hash,
        )
        if recomputed != digest:
            return ChainVerification(False, length, expected_prev, seq, "content does not match its hash", start)
        expected_prev = digest
        expected_seq += 1
        length += 1
    head = AuditChainHead.objects.filter(id=1).first()
    if head is not None and (head.seq != length or head.hash != expected_prev):
        # Events were removed from the end (or the head was rewound): the head remembers.
        return ChainVerification(False, length, expected_prev, length + 1, "chain is shorter than its head", start)
    return ChainVerification(True, length, expected_prev, None, "", start)


# --- database protection -------------------------------------------------------------------------
# The same SQL is used by the migration and by the test harness, which must lift the protection
# to flush the database between transactional tests.

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION canaryhub_audit_append_only() RETURNS trigger AS $$
BEGIN
    -- No percent-sign placeholders: the DB-API driver would try to fill them in.
    RAISE EXCEPTION USING
        MESSAGE = 'governance_auditevent is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
_PG_TRIGGERS = [
    "CREATE OR REPLACE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON governance_auditevent "
    "FOR EACH ROW EXECUTE FUNCTION canaryhub_audit_append_only();",
    "CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON governance_auditevent "
    "FOR EACH STATEMENT EXECUTE FUNCTION canaryhub_audit_append_only();",
]
_SQLITE_TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON governance_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'governance_auditevent is append-only: UPDATE refused'); END;",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON governance_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'governance_auditevent is append-only: DELETE refused'); END;",
]


def protection_install_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [_PG_FUNCTION, *_PG_TRIGGERS]
    if vendor == "sqlite":
        return list(_SQLITE_TRIGGERS)
    raise NotImplementedError(f"no audit protection for database vendor {vendor!r}")


def protection_remove_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [
            "DROP TRIGGER IF EXISTS audit_no_update_delete ON governance_auditevent;",
            "DROP TRIGGER IF EXISTS audit_no_truncate ON governance_auditevent;",
        ]
    if vendor == "sqlite":
        return ["DROP TRIGGER IF EXISTS audit_no_update;", "DROP TRIGGER IF EXISTS audit_no_delete;"]
    raise NotImplementedError(f"no audit protection for database vendor {vendor!r}")


def protection_run(statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


# --- accounts: who may act is decided by group membership and passwords; both go in the chain ---

ACCOUNT_FLAGS = ("is_active", "is_staff", "is_superuser")


def account_changes(*, before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """Pure: what changed in an account that decides what its holder may do — the password (never
    its hash: only that it changed) and the active, staff and superuser flags."""
    if before is None:
        return {}
    changes: dict[str, Any] = {}
    if before.get("password") != after.get("password"):
        changes["password"] = "changed" if after.get("password") else "removed"
    for flag in ACCOUNT_FLAGS:
        if before.get(flag) != after.get(flag):
            changes[flag] = [before.get(flag), after.get(flag)]
    return changes


def account_audit_changes(*, user: Any, actor: Any, changes: dict[str, Any]) -> AuditEvent | None:
    """Record a change of an account's password or flags (`account_changes`), by `actor` (None:
    a command or the system). A password set by someone else is a reset."""
    if not changes:
        return None
    action = "user.password_changed" if set(changes) == {"password"} else "user.account_changed"
    by_self = actor is not None and getattr(actor, "pk", None) == user.pk
    return audit_append(
        actor=actor, action=action, object_type="user", object_id=user.pk,
        payload={"username": user.get_username(), "changes": changes,
                 "by": "self" if by_self else ("system" if actor is None else "another user")},
    )


def account_audit_groups(*, user: Any, actor: Any, added: list[str], removed: list[str]) -> AuditEvent | None:
    """Record a change of an account's groups — its CanaryHub roles."""
    if not added and not removed:
        return None
    return audit_append(
        actor=actor, action="user.groups_changed", object_type="user", object_id=user.pk,
        payload={"username": user.get_username(), "added": sorted(added), "removed": sorted(removed),
                 "groups_now": sorted(user.groups.values_list("name", flat=True))},
    )


def account_audit_login(*, user: Any | None, username: str, address: str, ok: bool, reason: str = "") -> AuditEvent:
    """Record a login, or a failed one (the name tried, never the password)."""
    return audit_append(
        actor=user if ok else None, action="user.logged_in" if ok else "user.login_failed",
        object_type="user", object_id=user.pk if user is not None else username[:150],
        payload={"username": username[:150], "address": address[:64], **({"reason": reason} if reason else {})},
    )


# --- refusals of unknown callers -------------------------------------------------------------------
# A refusal of a known caller (a signed-in user, a valid token) is one event, naming who tried what.
# A refusal of an unknown one (no credential, a bad or revoked token) is only counted, per minute,
# source address and status, in a row of its own outside the chain lock: a flood of bad tokens
# neither grows the chain by one event each nor queues every audited write (rollbacks included)
# behind it. `refusals_flush` (every minute, governance.audit.tasks) appends one event per finished
# (minute, address) with its count, so every refusal stays in the chain, counted.

REFUSALS_UNKNOWN_ACTION = "access.refused_unknown"


def _minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def refusal_count_unknown(*, address: str, status: int, what: str, now: datetime | None = None) -> None:
    """Count one refusal of an unknown caller from `address` (a short UPDATE of its minute's row;
    the first refusal of the minute inserts it)."""
    minute = _minute_of(now or timezone.now())
    address = (address or "unknown")[:64]
    key = {"minute": minute, "address": address, "status": int(status)}
    with transaction.atomic():
        if RefusalTally.objects.filter(**key).update(count=F("count") + 1):
            return
        try:
            with transaction.atomic():
                RefusalTally.objects.create(**key, count=1, first_path=what[:120])
        except IntegrityError:  # a concurrent first refusal of the minute inserted it
            RefusalTally.objects.filter(**key).update(count=F("count") + 1)


def refusals_flush(*, now: datetime | None = None, include_current: bool = False) -> int:
    """Append one `access.refused_unknown` event per (minute, address) of the finished minutes
    (and the current one with `include_current`), with the count by status, and delete the
    counted rows in the same transaction. Returns how many events were appended."""
    cutoff = _minute_of(now or timezone.now())
    rows = RefusalTally.objects.filter(**({} if include_current else {"minute__lt": cutoff}))
    appended = 0
    with transaction.atomic():
        tallies = list(rows.select_for_update().order_by("minute", "address", "status"))
        groups: dict[tuple[datetime, str], list[Any]] = {}
        for tally in tallies:
            groups.setdefault((tally.minute, tally.address), []).append(tally)
        for (minute, address), group in groups.items():
            audit_append(
                actor=None, action=REFUSALS_UNKNOWN_ACTION, object_type="address", object_id=address,
                payload={"minute": minute.astimezone(UTC).isoformat(), "count": sum(t.count for t in group),
                         "by_status": {str(t.status): t.count for t in group},
                         "first": group[0].first_path},
            )
            appended += 1
        RefusalTally.objects.filter(pk__in=[t.pk for t in tallies]).delete()
    return appended
