from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from monitoring.evaluations import Gate, GateStatus, as_gates, evaluation_hash


class Evaluation(models.Model):
    """One evaluated metric window of one canary stage: the evidence a promotion, a hold or a
    rollback was decided on, and what a signer's approval points at (by `content_hash`).

    Written once by the evaluator and never changed. `gates` is a list of
    `{name, status, value, limit, detail}`; `inputs` holds what the verdict was computed from
    (queries, raw window values, sample sizes, statistical test results) so the decision can be
    reproduced. Kept at least 90 days after its canary ends (DESIGN.md, Retention)."""

    class Verdict(models.TextChoices):
        GREEN = GateStatus.GREEN.value, "Green"
        RED = GateStatus.RED.value, "Red"
        INSUFFICIENT = GateStatus.INSUFFICIENT.value, "Insufficient data"
        STALE = GateStatus.STALE.value, "Stale"

    canary = models.ForeignKey("releases.Canary", on_delete=models.PROTECT, related_name="evaluations")
    stage_index = models.PositiveSmallIntegerField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    gates = models.JSONField()
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    inputs = models.JSONField()
    content_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-window_end", "-id"]
        constraints = [
            # A window is judged once: a retried evaluation task finds the row instead of adding a
            # second verdict for the same data.
            models.UniqueConstraint(
                fields=["canary", "stage_index", "window_start", "window_end"],
                name="evaluation_once_per_window",
            ),
            models.CheckConstraint(
                condition=models.Q(window_end__gt=models.F("window_start")),
                name="evaluation_window_not_empty",
            ),
            models.CheckConstraint(
                condition=models.Q(verdict__in=[v.value for v in GateStatus]), name="evaluation_verdict_known"
            ),
        ]
        indexes = [
            # "The latest evaluation of this canary" (readiness, the dashboard) and the newest-first list.
            models.Index(fields=["canary", "-window_end"], name="evaluation_canary_latest"),
        ]

    def __str__(self) -> str:
        # Stages are counted from 1 for people, as the pages do.
        return f"canary #{self.canary_id} stage {self.stage_index + 1} to {self.window_end:%Y-%m-%d %H:%M}"

    def gate_list(self) -> list[Gate]:
        return as_gates(self.gates)

    def computed_hash(self) -> str:
        """The hash recomputed from the stored fields; equal to `content_hash` unless the row was altered."""
        return evaluation_hash(
            canary_id=self.canary_id,
            stage_index=self.stage_index,
            window_start=self.window_start,
            window_end=self.window_end,
            gates=self.gates,
            verdict=self.verdict,
            inputs=self.inputs,
        )

    def as_evidence(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "canary_id": self.canary_id,
            "stage_index": self.stage_index,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "gates": self.gates,
            "verdict": self.verdict,
            "inputs": self.inputs,
            "content_hash": self.content_hash,
        }


class NotificationEvent(models.Model):
    """The outbox of things people must be told, and their history: every canary transition and
    threshold change move (releases.canaries.services), every act on an incident's follow-up
    (governance.rootcause), control-plane incidents (monitoring.services.incident_raise), early
    warnings (the control loop), committee escalations, root-cause reminders and the on-call
    summary each add a row in the same transaction as the fact it reports, together with one
    NotificationDelivery per recipient and channel (who: monitoring.notifications.recipients).
    `audience` names the roles that must hear of it; `once_key`, when set, makes a repeated
    recording of the same fact (a reminder, a summary slot) a no-op."""

    kind = models.CharField(max_length=60)
    canary = models.ForeignKey(
        "releases.Canary", null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    audience = models.JSONField(default=list)  # e.g. ["owner", "on_call", "consumers"]
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)  # when its last delivery was accepted
    error = models.TextField(blank=True)
    once_key = models.CharField(max_length=120, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["sent_at", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} ({'sent' if self.sent_at else 'pending'})"


class NotificationDelivery(models.Model):
    """One message of an outbox row to one recipient on one channel, and its delivery record.

    The in-app feed's deliveries are delivered when written; the others are claimed by the
    sender (monitoring.notifications.services.deliveries_send_due), which stamps attempts, the
    last error and `sent_at`, retries with backoff until `deadline_at`, then dead-letters.
    `idempotency_key` (event, channel, address) is unique: one event never makes two messages
    to one recipient, and receivers get it to discard a resend."""

    class Channel(models.TextChoices):
        FEED = "feed", "In-app feed"
        EMAIL = "email", "E-mail"
        SLACK = "slack", "Slack"
        PAGERDUTY = "pagerduty", "PagerDuty"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Claimed by a sender"
        SENT = "sent", "Delivered"
        DEAD = "dead", "Dead-lettered"

    event = models.ForeignKey(NotificationEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=12, choices=Channel.choices)
    address = models.CharField(max_length=500)  # e-mail address, URL, routing key, or "user:<id>"
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="notification_deliveries",
    )
    roles = models.JSONField(default=list)  # why this recipient hears of it
    page = models.BooleanField(default=False)  # a page: ignores quiet hours
    idempotency_key = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    deadline_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    latency_s = models.FloatField(null=True, blank=True)  # event committed -> accepted by the channel
    read_at = models.DateTimeField(null=True, blank=True)  # feed only

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["user", "channel", "-id"], name="delivery_feed"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.address} ({self.status})"


class NotificationPreference(models.Model):
    """A person's choice of channels beyond the in-app feed, and quiet hours (in the deployment's
    notification time zone) during which messages that are not pages wait."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    email = models.BooleanField(default=True)
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"preferences of {self.user_id}"


class Observation(models.Model):
    """One metric window of one model version pushed to `POST /api/v1/observations/` (the push
    provider's store). Counts are for the window only; the evaluator sums the windows it needs."""

    model = models.CharField(max_length=64)
    version = models.CharField(max_length=40)
    segment = models.CharField(max_length=100, blank=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    requests = models.PositiveBigIntegerField()
    errors = models.PositiveBigIntegerField(default=0)
    latency_p99_ms = models.FloatField(null=True, blank=True)
    latency_buckets = models.JSONField(null=True, blank=True)  # [[le_seconds|"+Inf", cumulative count], ...]
    quality_sum = models.FloatField(default=0.0)
    quality_count = models.PositiveBigIntegerField(default=0)
    quality_buckets = models.JSONField(null=True, blank=True)
    safety_violations = models.PositiveBigIntegerField(default=0)
    anomaly_alerts = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    guardrail_blocks = models.PositiveBigIntegerField(default=0)  # requests a guardrail blocked
    schema_failures = models.PositiveBigIntegerField(default=0)  # outputs that failed their output schema
    # The window's values of the version's custom metrics (monitoring.custom), by name.
    custom = models.JSONField(default=dict, blank=True)
    unavailable = models.PositiveBigIntegerField(default=0)  # requests not served at all (within errors)
    response_tokens_buckets = models.JSONField(null=True, blank=True)  # output tokens per response, cumulative
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-window_end", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(window_end__gt=models.F("window_start")), name="observation_window_not_empty"
            ),
            models.CheckConstraint(
                condition=models.Q(errors__lte=models.F("requests")), name="observation_errors_le_requests"
            ),
        ]
        indexes = [
            # The provider reads "every window of these versions ending after T" once per tick.
            models.Index(fields=["model", "version", "window_end"], name="observation_version_window"),
            models.Index(fields=["window_end"], name="observation_window_end"),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.version} [{self.segment or '-'}] to {self.window_end:%H:%M:%S}"


class CanaryWatch(models.Model):
    """The evaluator's own memory of one canary (kept off the Canary row, which the lifecycle
    owns): consecutive metric-source errors for failing closed, the counter readings at stage
    entry that turn Prometheus' cumulative counters into stage-so-far numbers, the error-rate
    test's memory, the anomaly alerts seen during the stage, and which early warnings were sent,
    so a warning is not repeated every minute."""

    canary = models.OneToOneField("releases.Canary", on_delete=models.CASCADE, related_name="watch")
    consecutive_errors = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    stage_index = models.PositiveSmallIntegerField(null=True, blank=True)
    # {"canary": totals, "production": totals, "segments": {segment: {"canary": ..., "production": ...}}}
    stage_baseline = models.JSONField(default=dict)
    warned = models.JSONField(default=dict)  # {metric: iso time of the last warning}
    # The most anomaly alerts seen firing on the canary at once during a stage:
    # {"stage_index": i, "alerts": n, "first_seen": iso time}; an alert that fired and cleared
    # still blocks the stage's promotion.
    stage_alerts = models.JSONField(default=dict)
    # The error-rate rollback test's memory over the stage (monitoring.sequential), as of the last
    # evaluation: {"stage_index": i, "canary": state, "segments": {segment: state}}. Each evaluation
    # records it too; the rollback watch reads it between evaluations and never writes it.
    sequential = models.JSONField(default=dict)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"watch of canary #{self.canary_id}"


class Heartbeat(models.Model):
    """The evaluator's heartbeat (one row, id 1) and the dead-man's switch's state. Written at the
    end of every tick; read by an independent periodic check and exported on /metrics."""

    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_tick_ms = models.FloatField(default=0.0)
    last_tick_canaries = models.PositiveIntegerField(default=0)
    last_tick_queries = models.PositiveIntegerField(default=0)
    ticks = models.PositiveBigIntegerField(default=0)
    tripped_at = models.DateTimeField(null=True, blank=True)  # dead-man's switch engaged since
    incident = models.ForeignKey(
        "governance.Incident", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"heartbeat {self.last_tick_at or 'never'}"


class RollbackDecision(models.Model):
    """A rollback the evaluator decided, written in the same transaction as the evaluation that
    decided it: the durable record of the decision, whatever happens to the message that
    prompts a worker to carry it out. Whoever sees it first executes it (the queued task on the
    "rollbacks" queue, or the sweeper every worker and web process runs, which re-drives a
    decision still pending after CANARYHUB_ROLLBACK_SWEEP_AFTER_S); `done_at` closes it in the
    rollback's own transaction, so a canary is rolled back once however many run it. A decision
    still pending after the rollback SLO raises a P1 (`alarmed_at`)."""

    canary = models.ForeignKey("releases.Canary", on_delete=models.PROTECT, related_name="rollback_decisions")
    evaluation = models.ForeignKey(
        "monitoring.Evaluation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField()
    decided_at = models.DateTimeField()
    done_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=300, blank=True)  # "rolled back", or why nothing was left to do
    executed_by = models.CharField(max_length=20, blank=True)  # "task" or "sweeper"
    alarmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["decided_at", "id"]
        constraints = [
            # However many evaluations decide it while it waits, one pending rollback per canary.
            models.UniqueConstraint(
                fields=["canary"], condition=models.Q(done_at__isnull=True), name="one_pending_rollback_per_canary"
            ),
        ]
        indexes = [models.Index(fields=["done_at", "decided_at"], name="rollback_decision_pending")]

    def __str__(self) -> str:
        return f"rollback of canary #{self.canary_id} decided {self.decided_at:%Y-%m-%d %H:%M:%S}"


class SloMeasurement(models.Model):
    """One measured event of an SLO (pattern §10.1): a rollback (the first window past the
    threshold, or the decision by hand, → the router confirmed at 0 %, target 2 min) or a
    promotion (the last signature → the router confirmed at the new percent, target 30 min).
    Written once per canary and split generation; exported on /metrics as histograms and shown on
    the SLO page. A breach is also an audited event and an outbox notification."""

    class Slo(models.TextChoices):
        ROLLBACK = "rollback", "Rollback: breach to router at 0%"
        PROMOTION = "promotion", "Promotion: last signature to router at the new percent"

    slo = models.CharField(max_length=20, choices=Slo.choices)
    canary = models.ForeignKey("releases.Canary", on_delete=models.PROTECT, related_name="slo_measurements")
    generation = models.PositiveBigIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    seconds = models.FloatField()
    target_s = models.FloatField()
    breached = models.BooleanField(default=False)
    detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["-finished_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["slo", "canary", "generation"], name="slo_once_per_push")]

    def __str__(self) -> str:
        return f"{self.slo} of canary #{self.canary_id}: {self.seconds:.1f} s"


class SloHistogram(models.Model):
    """An SLO measured too often for a row per event: metric staleness, the age of the data at
    every evaluation (target 5 min). Cumulative bucket counts, added to once per evaluation round."""

    slo = models.CharField(max_length=20, unique=True)
    buckets = models.JSONField(default=dict)  # {"<le seconds>": count of observations <= le}
    count = models.PositiveBigIntegerField(default=0)
    total = models.FloatField(default=0.0)
    over_target = models.PositiveBigIntegerField(default=0)
    target_s = models.FloatField()

    def __str__(self) -> str:
        return f"{self.slo}: {self.count} observations"
