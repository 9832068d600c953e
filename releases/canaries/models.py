"""A canary's records: the canary itself (its initiation record and current position), the
signatures on its steps, and the reviewed changes of its thresholds.

`Approval` and `ThresholdChangeRequest` keep the app label "governance" (their tables are
`governance_approval` and `governance_thresholdchangerequest`): they are governance records
about a canary, defined here because the canary's services write and read them in the same
transactions as the canary itself.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from releases.canaries.states import ACTIVE, CanaryState, Standby
from releases.register.models import AIModel, ModelVersion, RiskTier


class Canary(models.Model):
    """One staged release of a ModelVersion: the initiation record and its current position.

    The stages, segmentation, thresholds, risk tier and owner are frozen copies taken at
    initiation: a canary is judged, and signed, by the rules it was started with. State changes
    only through the transition functions in releases.canaries.services (one locked, audited function per verb)."""

    State = CanaryState  # the states, their groups and moves: releases.canaries.states

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
    # Frozen copy of the version's metric configuration (provider, PromQL overrides): what judges
    # the canary, set by a platform engineer, shown on the canary page and in the evidence.
    metrics = models.JSONField(default=dict)
    expected_timeline = models.JSONField(default=list)
    rollback_contact = models.CharField(max_length=200)
    # Where a pipeline that started the canary is told of every state change (a signed webhook).
    callback_url = models.CharField(max_length=500, blank=True, default="")
    # Set for a platform engineer's urgent PATCH (releases.canaries.services.canary_urgent_patch):
    # why it could not wait for the schedule. Its stages hold the shorter urgent residence.
    urgent_reason = models.TextField(blank=True, default="")
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

    # Who must sign is decided by the model's risk tier and owner as they were at initiation:
    # frozen here, so that lowering the tier or handing the model to someone else mid-canary
    # changes nothing about the signatures the canary needs or who may give them.
    risk_tier = models.CharField(max_length=10, choices=RiskTier.choices)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    initiated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    initiated_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    next_eval_at = models.DateTimeField(null=True, blank=True, db_index=True)

    # After 100 %: the post-promotion watch (releases.canaries.states, "Standby"). Until
    # `watch_until` the loop judges the new production version against `watch_baseline` (the
    # previous version's numbers over the canary's last stages, a monitoring Sample as a dict)
    # and the previous version is kept on hot standby for a revert.
    standby = models.CharField(max_length=10, choices=Standby.choices, default=Standby.NONE, blank=True)
    watch_until = models.DateTimeField(null=True, blank=True)
    watch_baseline = models.JSONField(default=dict, blank=True)
    reverted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-initiated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(state__in=[s.value for s in CanaryState if s in ACTIVE]),
                name="one_active_canary_per_model",
            ),
        ]
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"canary #{self.pk} of {self.version}"


class Approval(models.Model):
    """An electronic signature on one step of a canary (its start, or a promotion).

    The record carries what 21 CFR Part 11-style signature manifestations need: the signer's
    printed name, the time, the meaning of the signature (role and statement), and the hash of
    the Evaluation the signer was shown, so that what was approved can be proven later. The
    signer re-entered their password to make it. One standing (not voided) signature per role per
    step."""

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
    # A signature stops counting when a red or stale evaluation of its stage follows the one it
    # was given on (releases.canaries.approvals.void_reason): it stays on record, marked void.
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        app_label = "governance"  # table governance_approval
        ordering = ["signed_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["canary", "step", "role"], condition=models.Q(voided_at__isnull=True),
                                    name="one_signature_per_role_per_step"),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()} signature by {self.printed_name} on canary #{self.canary_id} {self.step}"


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
        app_label = "governance"  # table governance_thresholdchangerequest
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"threshold change #{self.pk} of canary #{self.canary_id} ({self.status})"
