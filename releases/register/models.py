"""The Model Register's records: models, their downstream consumers and their versions."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from canaryhub.fields import SLUG_RE
from releases.register.states import VersionStatus

SEMVER_RE = r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$"


class RiskTier(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class AIModel(models.Model):
    """A model in the register: the thing whose versions are canaried."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(SLUG_RE, "lower-case letters, digits and hyphens, 1–64 characters")],
    )
    display_name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    risk_tier = models.CharField(max_length=10, choices=RiskTier.choices)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_models")
    on_call = models.CharField(max_length=200, help_text="who is paged for this model: e-mail, rota or handle")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.name


class Consumer(models.Model):
    """A downstream system or team told about every canary of the model."""

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        SLACK = "slack", "Slack webhook"
        WEBHOOK = "webhook", "Webhook"
        PAGERDUTY = "pagerduty", "PagerDuty"

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="consumers")
    name = models.CharField(max_length=120)
    contact = models.CharField(max_length=300)
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.EMAIL)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="consumer_unique_per_model")]

    def __str__(self) -> str:
        return f"{self.name} <{self.contact}>"


class ModelVersion(models.Model):
    Status = VersionStatus  # the statuses and their moves: releases.register.states

    class ChangeType(models.TextChoices):
        INITIAL = "INITIAL", "Initial"
        MAJOR = "MAJOR", "Major"
        MINOR = "MINOR", "Minor"
        PATCH = "PATCH", "Patch"

    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=32, validators=[RegexValidator(SEMVER_RE, "semver MAJOR.MINOR.PATCH")])
    # Split out so that ordering is numeric: 1.10.0 sorts after 1.9.0.
    major = models.PositiveIntegerField()
    minor = models.PositiveIntegerField()
    patch = models.PositiveIntegerField()
    artifact_uri = models.CharField(max_length=500)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REGISTERED)
    change_type = models.CharField(max_length=10, choices=ChangeType.choices)
    # The production version this one was compared with when registered (None: the first).
    baseline = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    thresholds = models.JSONField()
    metrics = models.JSONField()
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    registered_at = models.DateTimeField(auto_now_add=True)
    # Set when three consecutive rollbacks sent the version to the model risk committee
    # (governance.CommitteeEscalation holds the record).
    committee_escalated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["model", "-major", "-minor", "-patch"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="version_unique_per_model"),
            # At most one production version per model: the incumbent canaries compare against.
            models.UniqueConstraint(
                fields=["model"], condition=models.Q(status="production"), name="one_production_version_per_model"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.version}"

    @property
    def semver(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def config_frozen(self) -> bool:
        """Thresholds and metric configuration are frozen once a canary of the version has
        started, even if it was aborted since: changing them is then a governance act."""
        return self.status != self.Status.REGISTERED or self.canaries.exists()


class MetricConfigChange(models.Model):
    """A platform engineer's change of a version's metric configuration (provider, PromQL
    overrides), waiting for AI Governance's and MRM's approval (two different people, neither the
    requester). Once approved it is written on the version and governs the version's next canary;
    a canary already started keeps the configuration frozen on it at initiation."""

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting review"
        APPLIED = "applied", "Approved and applied to the version"
        REJECTED = "rejected", "Rejected"

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="metric_changes")
    current = models.JSONField()
    proposed = models.JSONField()
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
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

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"metric change #{self.pk} of version #{self.version_id} ({self.status})"
