"""Evidence kept outside the canary's own records: the verified audit chain heads written to
write-once storage, and the evidence exports built in the background."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from governance.incidents.models import Incident


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
