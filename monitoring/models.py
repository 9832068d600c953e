from __future__ import annotations

from typing import Any

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
        return f"canary #{self.canary_id} stage {self.stage_index} to {self.window_end:%Y-%m-%d %H:%M}"

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
    """The outbox of things people must be told (rollback, early warning, promotion, escalation).

    Writers add a row in the same transaction as the fact it reports; a sender delivers and
    stamps `sent_at` (the embedded default "sends" to the log and the database)."""

    kind = models.CharField(max_length=60)
    canary = models.ForeignKey(
        "releases.Canary", null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    audience = models.JSONField(default=list)  # e.g. ["owner", "on_call", "consumers"]
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["sent_at", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} ({'sent' if self.sent_at else 'pending'})"
