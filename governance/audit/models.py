"""The audit trail's records: the hash-chained events and the head that serialises appends."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One link of the append-only, hash-chained audit trail.

    `hash` is SHA-256 over the canonical serialisation of every other field including
    `prev_hash` (see `governance.audit.services.event_digest`). The database refuses UPDATE, DELETE and
    TRUNCATE on this table (triggers installed by migration 0002); appends are serialised by
    the single `AuditChainHead` row so two writers never fork the chain.
    """

    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The name as it was at the time: a renamed or deleted user does not rewrite history.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=80)
    object_type = models.CharField(max_length=80)
    object_id = models.CharField(max_length=120)
    payload = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "seq"]),
            models.Index(fields=["action", "seq"]),
            models.Index(fields=["actor_name", "seq"]),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"


class AuditChainHead(models.Model):
    """The single row that serialises appends: a writer increments `seq` with a conditional
    UPDATE (taking the row lock on PostgreSQL, the write lock on SQLite) before reading the
    previous hash, so concurrent writers queue here instead of forking the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head #{self.seq} {self.hash[:12]}"


class AuditCheckpoint(models.Model):
    """A signed statement that the whole chain up to `seq` verified, ending at `hash`: written by
    the nightly full verification; later verifications start from the newest one whose
    signature holds (governance.audit.checkpoints) instead of from the first event."""

    seq = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    # The server's Ed25519 signature of the head statement (canaryhub.keyring):
    # {"algorithm", "key_id", "fingerprint", "signature"}.
    signature = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"audit checkpoint #{self.seq} {self.hash[:12]}"


class RefusalTally(models.Model):
    """Refusals of unknown callers (no or a bad credential) counted per minute and source address,
    outside the chain lock; `governance.audit.services.refusals_flush` turns each finished minute's
    count into one audit event and deletes the row."""

    minute = models.DateTimeField()
    address = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    count = models.PositiveIntegerField(default=0)
    first_path = models.CharField(max_length=120, blank=True)  # "METHOD /path" of the minute's first refusal

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "address", "status"],
                                               name="one_tally_per_minute_address_status")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.address} {self.status}: {self.count}"
