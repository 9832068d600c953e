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
    # Text, not jsonb: a response may echo input that jsonb cannot hold (an escaped NUL).
    response_body = models.TextField(default="")
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


class RootCauseReport(models.Model):
    """The on-call engineer's root-cause analysis of a rollback incident (pattern §10.3).

    A report is filed, then accepted or returned by MRM. A returned report stays as history and
    a new one is filed; only an accepted report (with a signed re-initiation approval) lifts the
    block on canarying the same version again."""

    class Status(models.TextChoices):
        FILED = "filed", "Filed, awaiting MRM review"
        ACCEPTED = "accepted", "Accepted by MRM"
        RETURNED = "returned", "Returned by MRM"

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="root_cause_reports")
    cause = models.TextField()
    contributing_factors = models.TextField(blank=True)
    fix = models.TextField()
    version_change_ref = models.CharField(
        max_length=500, blank=True, help_text="link to the version change that fixes it"
    )
    filed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    filed_at = models.DateTimeField()
    filed_late = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.FILED)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-filed_at", "-id"]

    def __str__(self) -> str:
        return f"root cause #{self.pk} of incident #{self.incident_id} ({self.status})"


class ReinitiationApproval(models.Model):
    """A human e-signature (password re-entered) allowing a rolled-back version to be canaried
    again, after MRM accepted the root cause. Used up by the next canary of the version."""

    version = models.ForeignKey("releases.ModelVersion", on_delete=models.PROTECT, related_name="reinitiations")
    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="+")
    root_cause = models.ForeignKey(RootCauseReport, on_delete=models.PROTECT, related_name="+")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(max_length=200)
    meaning = models.CharField(max_length=300)
    statement = models.TextField()
    signed_at = models.DateTimeField()
    used_by = models.OneToOneField(
        "releases.Canary", null=True, blank=True, on_delete=models.PROTECT, related_name="reinitiation"
    )

    class Meta:
        ordering = ["-signed_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["incident"], name="one_reinitiation_per_incident")]

    def __str__(self) -> str:
        return f"re-initiation of {self.version_id} signed by {self.printed_name}"


class CommitteeEscalation(models.Model):
    """Three consecutive rollbacks of one version: the model risk committee must look at it."""

    version = models.ForeignKey("releases.ModelVersion", on_delete=models.PROTECT, related_name="escalations")
    canary_ids = models.JSONField()  # the rolled-back canaries, oldest first
    reason = models.TextField()
    created_at = models.DateTimeField()
    # Resolution closes the escalation; the version's committee_escalated_at stays as history.
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"committee escalation #{self.pk} of version {self.version_id}"


class Certificate(models.Model):
    """AI Governance's decision on a completed canary: issued (a completion certificate) or
    returned with reasons. The id is a UUID because the verification page is open to anyone who
    holds the certificate: it must not be enumerable.

    `body` is what the certificate states; `sealed` maps each record it depends on
    (`canary:7`, `evaluation:12`, `approval:3`…) to the SHA-256 of that record's fields at
    issue; `content_hash` is the SHA-256 of body + sealed, appended to the audit chain."""

    class Status(models.TextChoices):
        ISSUED = "issued", "Issued"
        RETURNED = "returned", "Returned with reasons"

    id = models.UUIDField(primary_key=True)
    canary = models.ForeignKey("releases.Canary", on_delete=models.PROTECT, related_name="certificates")
    status = models.CharField(max_length=10, choices=Status.choices)
    checklist = models.JSONField()
    reasons = models.TextField(blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reviewer_name = models.CharField(max_length=200)
    decided_at = models.DateTimeField()
    body = models.JSONField(default=dict)
    sealed = models.JSONField(default=dict)
    evidence_hash = models.CharField(max_length=64, blank=True)
    chain_head_seq = models.BigIntegerField(null=True, blank=True)
    chain_head_hash = models.CharField(max_length=64, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    audit_seq = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-decided_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["canary"], condition=models.Q(status="issued"), name="one_certificate_per_canary"
            ),
        ]

    def __str__(self) -> str:
        return f"certificate {self.pk} ({self.status}) of canary #{self.canary_id}"


class ThresholdChangeRequest(models.Model):
    """A governance request to change a running canary's thresholds. Needs AI Governance and
    MRM approval (two different people); takes effect when the canary next enters a stage."""

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting review"
        APPROVED = "approved", "Approved, applies at the next stage"
        REJECTED = "rejected", "Rejected"
        APPLIED = "applied", "Applied"
        LAPSED = "lapsed", "Lapsed (canary ended first)"

    canary = models.ForeignKey("releases.Canary", on_delete=models.PROTECT, related_name="threshold_changes")
    current = models.JSONField()
    proposed = models.JSONField()
    reason = models.TextField()
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    requested_at_stage = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    governance_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    governance_at = models.DateTimeField(null=True, blank=True)
    mrm_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    mrm_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_stage_index = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"threshold change #{self.pk} of canary #{self.canary_id} ({self.status})"


class ChainHeadExport(models.Model):
    """One scheduled verification of the whole chain and the head written outside the database."""

    verified_at = models.DateTimeField()
    ok = models.BooleanField()
    length = models.BigIntegerField()
    head_seq = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    first_bad_seq = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    path = models.CharField(max_length=500, blank=True)
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["-verified_at", "-id"]

    def __str__(self) -> str:
        return f"chain check {self.verified_at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'FAILED'}"


class EvidenceExport(models.Model):
    """A bundle built in the background for the export page: its scope, progress and file."""

    class Scope(models.TextChoices):
        CANARY = "canary", "One canary"
        MODEL = "model", "One model"
        RANGE = "range", "Date range"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Building"
        DONE = "done", "Ready"
        FAILED = "failed", "Failed"
        # The zip was removed after EVIDENCE_EXPORT_RETENTION_DAYS; the row stays, as the record
        # of who asked for what, and the same export can be built again.
        EXPIRED = "expired", "Expired"

    scope = models.CharField(max_length=10, choices=Scope.choices)
    canary = models.ForeignKey("releases.Canary", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    model = models.ForeignKey("releases.AIModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"evidence export #{self.pk} ({self.scope}, {self.status})"

    @property
    def percent(self) -> int:
        return 100 if self.status == self.Status.DONE else int(100 * self.done / self.total) if self.total else 0
