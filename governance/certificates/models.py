"""Completion certificates: AI Governance's decision on a completed canary."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Certificate(models.Model):
    """AI Governance's decision on a completed canary: issued (a completion certificate) or
    returned with reasons. The id is a UUID because the verification page is open to anyone who
    holds the certificate: it must not be enumerable.

    `body` is what the certificate states; `sealed` maps each record it depends on
    (`canary:7`, `evaluation:12`, `approval:3`…) to the SHA-256 of that record's fields at
    issue; `content_hash` is the SHA-256 of body + sealed (and the signing key's id), appended
    to the audit chain; `signature` is the server's signature of the id and content_hash."""

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
    # The server's Ed25519 signature of the certificate's id and content_hash (canaryhub.keyring):
    # {"algorithm", "key_id", "fingerprint", "signature"}; empty on certificates issued before
    # certificates were signed.
    signature = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-decided_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["canary"], condition=models.Q(status="issued"), name="one_certificate_per_canary"
            ),
        ]

    def __str__(self) -> str:
        return f"certificate {self.pk} ({self.status}) of canary #{self.canary_id}"
