"""API credentials: bearer tokens and the Idempotency-Key records of their POSTs."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A bearer token. Only a SHA-256 of the secret is stored; the secret is shown once.

    A token of a service account is scoped to `scope` (the models it may act on) and has one
    `purpose`: `ci` (versions and canaries) or `observations` (pushing metric windows only); a
    personal token acts with its user's own rights. Tokens are revoked, never deleted, so the
    audit trail can name them.
    """

    class Purpose(models.TextChoices):
        CI = "ci", "CI: register versions, start and abort canaries"
        OBSERVATIONS = "observations", "Observations: push metric windows"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scope = models.ManyToManyField("releases.AIModel", blank=True, related_name="+")
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.CI)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class IdempotencyRecord(models.Model):
    """The first response to a POST carrying an `Idempotency-Key`, replayed for retries."""

    key = models.CharField(max_length=255)
    principal = models.CharField(max_length=180)  # the credential: token:<prefix>, or user:<id> for a session
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
