"""Incidents and what must follow them: root-cause reports, MRM's review, the signed
re-initiation of a rolled-back version and committee escalations."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from governance.incidents.states import IncidentStatus


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
        URGENT_PATCH = "urgent_patch", "Urgent PATCH faster than the schedule"

    Status = IncidentStatus  # the statuses and their moves: governance.incidents.states

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
