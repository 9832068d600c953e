"""Routing records: every push of a split to a router, and the routers platform engineers register."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from canaryhub.fields import SLUG_RE


class RouterPush(models.Model):
    """One attempt-series to carry a split to a router: what was asked, what the router says it
    applied, how long it took. The evidence that traffic really moved (or did not)."""

    canary = models.ForeignKey("releases.Canary", on_delete=models.PROTECT, related_name="pushes")
    router = models.CharField(max_length=40)
    generation = models.PositiveBigIntegerField()
    requested = models.JSONField()  # the Split as sent
    applied = models.JSONField(null=True, blank=True)  # the split the router read back
    reason = models.CharField(max_length=40, default="transition")  # transition | reconcile | retry
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["canary", "-started_at"])]

    def __str__(self) -> str:
        return f"push gen {self.generation} of canary #{self.canary_id} to {self.router}"


class RouterConfig(models.Model):
    """A router registered by a platform engineer: which data plane a router kind talks to.

    A canary names a router *kind* (`Canary.router`); the enabled config of that kind, when
    there is one, overrides settings.CANARYHUB_ROUTERS for it. `secret` (the webhook's signing
    key) is write-only: forms, pages, logs and audit payloads only ever say whether it is set.
    `options` holds only what releases.routing.options allows for the kind (upstreams, headers,
    timeouts); programs, paths and local URLs come from the deployment's settings."""

    class Kind(models.TextChoices):
        FILE = "file", "File (embedded default)"
        NGINX = "nginx", "nginx (split_clients include)"
        WEBHOOK = "webhook", "HTTP webhook"

    name = models.CharField(max_length=64, unique=True, validators=[RegexValidator(SLUG_RE)])
    kind = models.CharField(max_length=20, choices=Kind.choices)
    target = models.CharField(max_length=500)  # file: folder; nginx: include folder; webhook: URL
    options = models.JSONField(default=dict, blank=True)  # the kind's allow-listed options
    secret = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            # router_for(kind) must find at most one: a canary names only the kind.
            models.UniqueConstraint(
                fields=["kind"], condition=models.Q(enabled=True), name="one_enabled_router_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def __repr__(self) -> str:
        return f"<RouterConfig {self.name} kind={self.kind}>"  # never the secret
