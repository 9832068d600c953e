"""HTML forms of the canary pages.

As in releases.register.forms, a form only turns what a browser sends into a service's keyword
arguments. Whether a schedule is allowed for a tier, whether a segmentation needs a rationale,
whether a password is right or a step is ready: releases.canaries.services and releases.canaries.schedules
decide, and their errors come back through `add_service_errors`.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms

from canaryhub.forms import ServiceErrorsMixin
from releases.canaries.models import Canary
from releases.canaries.schedules import ScheduleKind, SegmentationStrategy, schedule_refusal
from releases.register.models import AIModel, ModelVersion

# "segmentation.values[2]": one value of the comma-separated list is wrong.
_VALUE_KEY = re.compile(r"^segmentation\.values\[(\d+)\]$")

STRATEGY_LABELS: dict[str, str] = {
    SegmentationStrategy.RANDOM: "Random by user-id hash (sticky)",
    SegmentationStrategy.COHORT: "Cohort (named user groups)",
    SegmentationStrategy.REGION: "Region",
    SegmentationStrategy.ACCOUNT_TIER: "Account tier",
}


def split_values(text: str) -> list[str]:
    """`"eu-west, eu-north"` as `["eu-west", "eu-north"]`; empty items (a trailing comma) are dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


class ScheduleSelect(forms.Select):
    """The schedule choice, with the schedules the model's tier refuses shown disabled and the
    reason in their text (`refusals`: value -> reason)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusals: dict[str, str] = {}

    def create_option(self, name: str, value: Any, label: Any, selected: Any, index: int,
                      subindex: int | None = None, attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        reason = self.refusals.get(str(value))
        if reason:
            label = f"{label} — not for this model: {reason}"
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if reason:
            option["attrs"]["disabled"] = True
        return option


class CanaryStartForm(ServiceErrorsMixin, forms.Form):
    schedule = forms.ChoiceField(
        choices=Canary.Schedule.choices,
        widget=ScheduleSelect,
        help_text="Accelerated is for low-risk models only; cohort-first needs cohort segmentation.",
    )
    segmentation_strategy = forms.ChoiceField(
        label="Segmentation",
        choices=list(STRATEGY_LABELS.items()),
        initial=SegmentationStrategy.RANDOM.value,
        help_text="Who is eligible for the canary. Anything but random needs a rationale (fairness review).",
    )
    segmentation_values = forms.CharField(
        required=False,
        max_length=5000,
        label="Segmentation values",
        widget=forms.TextInput(attrs={"placeholder": "e.g. internal, beta"}),
        help_text="Comma-separated: cohorts in ramp order, regions or account tiers. Empty for random.",
    )
    rationale = forms.CharField(
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this schedule and segmentation. Required for accelerated and for non-random segmentation.",
    )
    shadow_evidence_ref = forms.CharField(
        required=False,
        max_length=500,
        label="Shadow-evidence reference",
        help_text="Where the shadow-deployment evidence is (ticket, report URL). Required for accelerated.",
    )
    rollback_contact = forms.CharField(
        max_length=200,
        help_text="Who is told when the canary rolls back: e-mail, rota or handle.",
    )

    def __init__(self, *args: Any, model: AIModel, change_type: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rollback_contact"].initial = model.on_call
        # The pattern's natural choice for high risk or a first MAJOR version is conservative;
        # preselecting it saves the owner a warning. Anyone may still pick another schedule.
        recommended = model.risk_tier == "high" or change_type == ModelVersion.ChangeType.MAJOR
        self.fields["schedule"].initial = (
            ScheduleKind.CONSERVATIVE.value if recommended else ScheduleKind.STANDARD.value
        )
        self.refusals = {kind.value: reason for kind in ScheduleKind
                         if (reason := schedule_refusal(kind.value, risk_tier=model.risk_tier))}
        self.fields["schedule"].widget.refusals = self.refusals

    def _raw(self, name: str) -> str:
        if self.is_bound:
            return str(self.data.get(self.add_prefix(name), "") or "")
        return str(self.get_initial_for_field(self.fields[name], name) or "")

    def preview_inputs(self) -> dict[str, Any]:
        """What the preview is computed from, read leniently from the current input: the preview
        is shown while the form is being filled in, so unknown values fall back to the defaults
        instead of raising."""
        schedule = self._raw("schedule")
        if schedule not in {kind.value for kind in ScheduleKind}:
            schedule = str(self.fields["schedule"].initial)
        strategy = self._raw("segmentation_strategy")
        if strategy not in {kind.value for kind in SegmentationStrategy}:
            strategy = SegmentationStrategy.RANDOM.value
        return {"schedule": schedule, "strategy": strategy, "values": split_values(self._raw("segmentation_values"))}

    def service_error_field(self, key: str) -> tuple[str | None, str]:
        if key in ("segmentation", "segmentation.strategy"):
            return "segmentation_strategy", ""
        if key == "segmentation.values":
            return "segmentation_values", ""
        match = _VALUE_KEY.match(key)
        if match:
            return "segmentation_values", f"value {int(match.group(1)) + 1}: "
        return super().service_error_field(key)

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "schedule": data["schedule"],
            "segmentation": {
                "strategy": data["segmentation_strategy"],
                "values": split_values(data["segmentation_values"]),
            },
            "rationale": data["rationale"].strip(),
            "shadow_evidence_ref": data["shadow_evidence_ref"].strip(),
            "rollback_contact": data["rollback_contact"].strip(),
        }


class CanarySignForm(ServiceErrorsMixin, forms.Form):
    """An e-signature: what the signer states, their password again, and the hash of the
    evaluation they were shown (so the service can refuse a signature on data that changed)."""

    statement = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="In your own words: what you reviewed and what you approve (at least 10 characters).",
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        label="Your password",
        help_text="Re-authentication: a signature is made by you, now.",
    )
    evaluation_hash = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def service_error_field(self, key: str) -> tuple[str | None, str]:
        if key == "evaluation_hash":
            return None, ""  # a hidden field: its error must be visible
        return super().service_error_field(key)


class CanaryStopForm(ServiceErrorsMixin, forms.Form):
    """The reason for a rollback, a revert or an abort: recorded in the audit trail and told to
    consumers. A service's refusal of the reason (e.g. too short for a break-glass act) shows on it."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="Recorded in the audit trail and sent with the rollback notice to the owner, on-call, "
                  "the rollback contact and the model's consumers.",
    )


class UrgentPatchForm(ServiceErrorsMixin, forms.Form):
    """A platform engineer's urgent PATCH: why it cannot wait for the schedule (the service
    decides whether the reason is long enough and the version a PATCH)."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
        help_text="Why this fix cannot wait for the schedule, in full (20 characters at least). Recorded in the "
                  "audit trail and the incident; MRM reviews it in retrospect within 48 hours.",
    )
    rollback_contact = forms.CharField(required=False, max_length=200,
                                       help_text="Who to call about a rollback; the model's on-call if left blank.")

    def service_kwargs(self) -> dict[str, Any]:
        return {"reason": self.cleaned_data["reason"], "rollback_contact": self.cleaned_data["rollback_contact"]}


class StickySweepForm(ServiceErrorsMixin, forms.Form):
    """Why the sticky store is swept now (the service decides whether the reason says enough)."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), max_length=2000,
        help_text="Recorded in the audit trail with the counts of what was cleared (10 characters at least).",
    )


class CanaryFilterForm(forms.Form):
    """The list's filters; bad values just mean no filter, as on the register list."""

    ACTIVE = "active"

    state = forms.ChoiceField(
        required=False,
        choices=[("", "All states"), (ACTIVE, "Active (any)"), *Canary.State.choices],
    )
    model = forms.ChoiceField(required=False, choices=[("", "All models")])

    def __init__(self, *args: Any, model_names: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [("", "All models"), *((name, name) for name in model_names)]

    def filters(self) -> dict[str, str]:
        if not self.is_valid():
            return {"state": "", "model": ""}
        return {"state": self.cleaned_data["state"], "model": self.cleaned_data["model"]}
