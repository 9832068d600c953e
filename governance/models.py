from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One link of the append-only, hash-chained audit trail.

    `hash` is SHA-256 over the canonical serialisation of every other field including
    `prev_hash` (see `governance.audit.event_digest`). The database refuses UPDATE, DELETE and
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


class ApiToken(models.Model):
    """A bearer token. Only a SHA-256 of the secret is stored; the secret is shown once.

    A token of a service account is scoped to `scope` (the models it may act on); a personal token acts with its user's
    own rights. Tokens are revoked, never deleted, so the audit trail can name them.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scope = models.ManyToManyField("releases.AIModel", blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class IdempotencyRecord(models.Model):
    """The first response to a POST carrying an `Idempotency-Key`, replayed for retries."""

    key = models.CharField(max_length=255)
    principal = models.CharField(max_length=180)  # user id, plus token prefix for machines
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["principal", "key"], name="idempotency_key_per_principal")]

    def __str__(self) -> str:
        return f"{self.principal} {self.key}"


class Approval(models.Model):
    """An electronic signature on one step of a canary (its start, or a promotion).

    The record carries what 21 CFR Part 11-style signature manifestations need: the signer's
    printed name, the time, the meaning of the signature (role and statement), and the hash of
    the Evaluation the signer was shown, so that what was approved can be proven later. The
    signer re-entered their password to make it. One signature per role per step."""

    class SignatureRole(models.TextChoices):
        OWNER = "owner", "Model owner"
        MRM = "mrm", "Model risk (MRM)"

    canary = models.ForeignKey("releases.Canary", on_delete=models.PROTECT, related_name="approvals")
    step = models.CharField(max_length=40)  # "start" or "promote:<from>-><to>"
    stage_index = models.PositiveSmallIntegerField()  # the stage the step enters
    role = models.CharField(max_length=10, choices=SignatureRole.choices)
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(max_length=200)
    meaning = models.CharField(max_length=300)
    statement = models.TextField()
    evaluation = models.ForeignKey(
        "monitoring.Evaluation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    evaluation_hash = models.CharField(max_length=64, blank=True)
    signed_at = models.DateTimeField()

    class Meta:
        ordering = ["signed_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["canary", "step", "role"], name="one_signature_per_role_per_step"),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()} signature by {self.printed_name} on canary #{self.canary_id} {self.step}"


class Incident(models.Model):
    """An incident about a canary: a rollback (P2, contained degradation) or a failure of the
    control plane itself (P1: the monitor went silent, a rollback could not be confirmed, the
    audit chain failed verification). The on-call engineer files the root cause within 48 h."""

    class Severity(models.TextChoices):
        P1 = "P1", "P1 — control plane failure"
        P2 = "P2", "P2 — degradation detected, contained"

    class Kind(models.TextChoices):
        ROLLBACK = "rollback", "Canary rolled back"
        MONITOR_SILENT = "monitor_silent", "Evaluator heartbeat missing"
        ROLLBACK_UNCONFIRMED = "rollback_unconfirmed", "Rollback not confirmed at 0%"
        AUDIT_CHAIN = "audit_chain", "Audit chain failed verification"
        ROUTER = "router", "Traffic router failure"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ROOT_CAUSE_FILED = "root_cause_filed", "Root cause filed"
        RESOLVED = "resolved", "Resolved"

    severity = models.CharField(max_length=2, choices=Severity.choices)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    canary = models.ForeignKey(
        "releases.Canary", null=True, blank=True, on_delete=models.PROTECT, related_name="incidents"
    )
    evaluation = models.ForeignKey(
        "monitoring.Evaluation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    summary = models.TextField()
    details = models.JSONField(default=dict)
    opened_at = models.DateTimeField()
    root_cause_due_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["status", "severity"])]

    def __str__(self) -> str:
        return f"{self.severity} {self.get_kind_display()} #{self.pk}"
