from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

SEMVER_RE = r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$"
SLUG_RE = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


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
    class Status(models.TextChoices):
        REGISTERED = "registered", "Registered"
        CANARY = "canary", "In canary"
        PRODUCTION = "production", "Production"
        DEPRECATED = "deprecated", "Deprecated"
        ROLLED_BACK = "rolled_back", "Rolled back"

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


class Canary(models.Model):
    """One staged release of a ModelVersion: the initiation record and its current position.

    The stages, segmentation and thresholds are frozen copies taken at initiation: a canary is
    judged by the rules it was started with. State changes only through the transition
    functions in releases.lifecycle (one locked, audited function per verb)."""

    class State(models.TextChoices):
        PENDING_APPROVAL = "pending_approval", "Pending approval"
        RUNNING = "running", "Running"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        HELD = "held", "Held"
        SUSPENDED = "suspended", "Suspended"
        COMPLETED = "completed", "Completed"
        CERTIFIED = "certified", "Certified"
        ROLLED_BACK = "rolled_back", "Rolled back"
        ABORTED = "aborted", "Aborted"

    # Serving (or about to serve) users: rollback triggers apply, and a model has at most one.
    ACTIVE_STATES = (
        State.PENDING_APPROVAL, State.RUNNING, State.AWAITING_APPROVAL, State.HELD, State.SUSPENDED,
    )

    class Schedule(models.TextChoices):
        STANDARD = "standard", "Standard 1→5→10→25→50→100"
        ACCELERATED = "accelerated", "Accelerated 1→10→25→100"
        CONSERVATIVE = "conservative", "Conservative 1→5→10→25→50→75→100"
        COHORT_FIRST = "cohort_first", "Cohort-first internal→beta→all"

    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, related_name="canaries")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="canaries")
    baseline = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    schedule = models.CharField(max_length=20, choices=Schedule.choices)
    stages = models.JSONField()  # [{index, percent, cohort, min_residence_s}], frozen
    segmentation = models.JSONField()  # {strategy, values}
    rationale = models.TextField(blank=True)
    shadow_evidence_ref = models.CharField(max_length=500, blank=True)
    thresholds = models.JSONField()  # frozen copy of the version's thresholds
    expected_timeline = models.JSONField(default=list)
    rollback_contact = models.CharField(max_length=200)
    router = models.CharField(max_length=40, default="file")
    clock_speed = models.FloatField(default=1.0)

    state = models.CharField(max_length=20, choices=State.choices)
    stage_index = models.PositiveSmallIntegerField(default=0)
    stage_entered_at = models.DateTimeField(null=True, blank=True)
    # Percent the router was last told; 0 after rollback/abort. Monotonic generation lets a
    # router refuse a stale push.
    traffic_percent = models.PositiveSmallIntegerField(default=0)
    split_generation = models.PositiveBigIntegerField(default=0)
    hold_reason = models.CharField(max_length=300, blank=True)
    end_reason = models.TextField(blank=True)

    initiated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    initiated_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    next_eval_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-initiated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(
                    state__in=["pending_approval", "running", "awaiting_approval", "held", "suspended"]
                ),
                name="one_active_canary_per_model",
            ),
        ]
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"canary #{self.pk} of {self.version}"


class RouterPush(models.Model):
    """One attempt-series to carry a split to a router: what was asked, what the router says it
    applied, how long it took. The evidence that traffic really moved (or did not)."""

    canary = models.ForeignKey(Canary, on_delete=models.PROTECT, related_name="pushes")
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
    key) is write-only: forms, pages, logs and audit payloads only ever say whether it is set."""

    class Kind(models.TextChoices):
        FILE = "file", "File (embedded default)"
        NGINX = "nginx", "nginx (split_clients include)"
        WEBHOOK = "webhook", "HTTP webhook"

    name = models.CharField(max_length=64, unique=True, validators=[RegexValidator(SLUG_RE)])
    kind = models.CharField(max_length=20, choices=Kind.choices)
    target = models.CharField(max_length=500)  # file: folder; nginx: include folder; webhook: URL
    options = models.JSONField(default=dict, blank=True)  # kind-specific keyword arguments
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

    def router_kwargs(self) -> dict[str, object]:
        """Keyword arguments for the router class of `kind`."""
        options = dict(self.options or {})
        if self.kind == self.Kind.FILE:
            return {"path_dir": self.target}
        if self.kind == self.Kind.NGINX:
            return {"conf_dir": self.target, **options}
        return {"url": self.target, "secret": self.secret, **options}
