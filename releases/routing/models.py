"""Routing records: every push of a split to a router, and the routers platform engineers register."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from canaryhub.fields import SLUG_RE


class RouterPush(models.Model):
    """One attempt-series to carry a split to a router: what was asked, what the router says it
    applied, how long it took. The evidence that traffic really moved (or did not).

    A push of a transition is recorded when it is queued, in the transaction that changed the
    split, so a push whose message is lost still has its row: `queued` until a worker takes it
    (`pushing`), then `applied`, `failed` or `superseded` (a newer split owns the router). A
    queued push no worker took within ROUTER_PUSH_LOST_AFTER_S, or one whose worker died mid-push,
    is marked `lost` by the sweeper (releases.canaries.loop.pushes_sweep), which queues the push
    of the split in force again."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        PUSHING = "pushing", "pushing"
        APPLIED = "applied", "applied"
        FAILED = "failed", "failed"
        SUPERSEDED = "superseded", "superseded"
        LOST = "lost", "lost"

    canary = models.ForeignKey("releases.Canary", on_delete=models.PROTECT, related_name="pushes")
    router = models.CharField(max_length=40)
    generation = models.PositiveBigIntegerField()
    requested = models.JSONField()  # the Split as sent
    applied = models.JSONField(null=True, blank=True)  # the split the router read back
    reason = models.CharField(max_length=40, default="transition")  # transition | reconcile | retry
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PUSHING)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)  # when a worker took it
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            models.Index(fields=["canary", "-queued_at"]),
            models.Index(fields=["status", "queued_at"], name="routerpush_status_queued"),
        ]

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


class StickySweep(models.Model):
    """One sweep of the sticky assignment store for entries that disagree with the split in force
    (releases.canaries.services.sticky_sweep): how many were looked at and cleared, by reason
    and by canary. Counts only: the store's keys are keyed hashes of user ids and none is kept
    here. `actor` is the platform engineer of an on-demand sweep (null: the periodic one).
    Consecutive periodic sweeps that cleared nothing share one row, whose `at` is the latest."""

    at = models.DateTimeField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+")
    reason = models.TextField(blank=True)
    scanned = models.PositiveIntegerField(default=0)
    cleared_not_serving = models.PositiveIntegerField(default=0)
    cleared_unsigned = models.PositiveIntegerField(default=0)
    cleared_share_drift = models.PositiveIntegerField(default=0)
    by_canary = models.JSONField(default=dict, blank=True)  # {canary id: {reason: count}}
    drift = models.JSONField(default=dict, blank=True)  # {canary id: {sticky, population, percent}}

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"sticky sweep at {self.at:%Y-%m-%d %H:%M:%S}: {self.cleared} cleared of {self.scanned}"

    @property
    def cleared(self) -> int:
        return self.cleared_not_serving + self.cleared_unsigned + self.cleared_share_drift
