"""HTML forms of the Model Register.

Forms only parse what a browser sends into the keyword arguments of a service; every rule
about what is allowed (slugs, semver order, threshold bounds, who may own a model) lives in the
services and is reported back through `add_service_errors`.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from canaryhub.api import DESCRIPTION_MAX
from canaryhub.forms import ServiceErrorsMixin
from governance.access.permissions import Role
from monitoring.thresholds import DEFAULT_THRESHOLDS, METRIC_NAMES, PROVIDERS, QUERY_PLACEHOLDERS
from releases.register.models import Consumer, ModelVersion, RiskTier

User = get_user_model()

# How each threshold reads to a person. The wording follows the pattern's gates (§4.2) and
# rollback triggers (§4.3); `{v}` is the number. Anomaly alerts have no rollback trigger.
THRESHOLD_TEXT: dict[str, dict[str, str]] = {
    "error_rate_pp": {
        "label": "Error rate",
        "promote": "canary ≤ production + {v} pp",
        "rollback": "canary > production + {v} pp",
    },
    "latency_p99_ratio": {
        "label": "Latency p99",
        "promote": "canary ≤ production × {v}",
        "rollback": "canary > production × {v}",
    },
    "quality_ratio": {
        "label": "Quality score",
        "promote": "canary ≥ production × {v}",
        "rollback": "canary < production × {v}",
    },
    "safety_violations": {
        "label": "Content-safety violations",
        "promote": "at most {v} during the stage",
        "rollback": "more than {v} in a window",
    },
    "anomaly_alerts": {
        "label": "Anomaly alerts firing",
        "promote": "at most {v} during the stage",
        "rollback": "",
    },
}

METRIC_LABELS: dict[str, str] = {
    "requests": "Requests",
    "errors": "Errors",
    "latency_p99": "Latency p99",
    "quality": "Quality",
    "safety_violations": "Safety violations",
    "anomaly_alerts": "Anomaly alerts",
}

_CONSUMER_KEY = re.compile(r"^consumers\[(\d+)\](?:\.(\w+))?$")
_BARE_WORD = re.compile(r"^[A-Za-z_-]+$")


class ModelFilterForm(forms.Form):
    """The search box and tier filter of the register list; bad values just mean no filter."""

    q = forms.CharField(required=False, max_length=100, label="Search")
    risk_tier = forms.ChoiceField(required=False, choices=[("", "All risk tiers"), *RiskTier.choices])

    def filters(self) -> dict[str, str]:
        if not self.is_valid():
            return {"q": "", "risk_tier": ""}
        return {"q": self.cleaned_data["q"].strip(), "risk_tier": self.cleaned_data["risk_tier"]}


class OwnerChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        full_name = obj.get_full_name()
        return f"{obj.get_username()} ({full_name})" if full_name else obj.get_username()


class ModelRegisterForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(
        max_length=64,
        help_text="Lower-case letters, digits and hyphens, e.g. fraud-scorer. Used in URLs and the API.",
    )
    display_name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, max_length=DESCRIPTION_MAX, widget=forms.Textarea(attrs={"rows": 3}))
    risk_tier = forms.ChoiceField(
        choices=RiskTier.choices,
        initial=RiskTier.MEDIUM,
        help_text="Decides the approval chain and the minimum time a canary stays at each stage.",
    )
    owner = OwnerChoiceField(
        queryset=User.objects.none(),
        to_field_name="username",
        help_text="A member of the model owner group; signs every stage promotion.",
    )
    on_call = forms.CharField(
        max_length=200, label="On-call", help_text="Who is paged for this model: e-mail, rota or handle."
    )
    consumers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "billing-api, billing@example.com, email"}),
        help_text=(
            "Downstream systems told about every canary, one per line: name, contact, channel. "
            "The channel is one of email, slack, webhook or pagerduty; leave it out for e-mail. "
            "The contact may contain commas (URLs); blank lines and lines starting with # are ignored."
        ),
    )

    def __init__(self, *args: Any, actor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owners = User.objects.filter(groups__name=Role.MODEL_OWNER.value, is_active=True).order_by("username")
        self.fields["owner"].queryset = owners
        # A model owner registers models they own; preselect them. Whether they may pick
        # someone else is the service's decision, not the form's.
        if owners.filter(pk=actor.pk).exists():
            self.fields["owner"].initial = actor.get_username()
        self._consumer_lines: list[int] = []

    def clean_consumers(self) -> list[dict[str, str]]:
        consumers: list[dict[str, str]] = []
        problems: list[str] = []
        self._consumer_lines = []
        for number, raw in enumerate(self.cleaned_data["consumers"].splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parsed = _parse_consumer_line(line)
            if isinstance(parsed, str):
                problems.append(f"line {number}: {parsed}")
                continue
            consumers.append(parsed)
            self._consumer_lines.append(number)
        if problems:
            raise forms.ValidationError(problems)
        return consumers

    def service_error_field(self, key: str) -> tuple[str | None, str]:
        match = _CONSUMER_KEY.match(key)
        if match:
            index, attribute = int(match.group(1)), match.group(2)
            number = self._consumer_lines[index] if index < len(self._consumer_lines) else index + 1
            return "consumers", f"line {number}{', ' + attribute if attribute else ''}: "
        return super().service_error_field(key)

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"].strip(),
            "display_name": data["display_name"].strip(),
            "description": data["description"].strip(),
            "risk_tier": data["risk_tier"],
            "owner": data["owner"].get_username(),
            "on_call": data["on_call"].strip(),
            "consumers": data["consumers"],
        }


def _parse_consumer_line(line: str) -> dict[str, str] | str:
    """`name, contact[, channel]` into a consumer, or a message saying what is wrong.

    Only the first comma ends the name, and the text after the last comma is the channel only
    when it is a bare word: a webhook URL with commas in its query string stays whole."""
    name, comma, rest = line.partition(",")
    contact, channel = rest.strip(), Consumer.Channel.EMAIL.value
    head, comma_before_last, last = rest.rpartition(",")
    if comma_before_last and _BARE_WORD.match(last.strip()):
        word = last.strip().lower()
        if word not in Consumer.Channel.values:
            return f"unknown channel {last.strip()!r}; use one of {', '.join(Consumer.Channel.values)}"
        contact, channel = head.strip(), word
    if not comma or not name.strip() or not contact:
        return "expected 'name, contact' or 'name, contact, channel'"
    return {"name": name.strip(), "contact": contact, "channel": channel}


def threshold_field_name(section: str, key: str) -> str:
    return f"{section}_{key}"


def query_field_name(metric: str) -> str:
    return f"query_{metric}"


class VersionRegisterForm(ServiceErrorsMixin, forms.Form):
    version = forms.CharField(max_length=40, help_text="Semantic version MAJOR.MINOR.PATCH, e.g. 2.1.0.")
    artifact_uri = forms.CharField(
        max_length=500, label="Artifact URI", help_text="Where the model server loads it from, e.g. s3://…"
    )
    status = forms.ChoiceField(choices=[], initial=ModelVersion.Status.REGISTERED)
    provider = forms.ChoiceField(
        required=False,
        label="Metric provider",
        choices=[("", "Installation default"), *((p, p) for p in PROVIDERS)],
        help_text="prometheus reads PromQL; push reads observations posted to the API.",
    )

    def __init__(self, *args: Any, first_version: bool, configure_metrics: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The metric source is a platform engineer's choice; anyone else registers with the default.
        self.configure_metrics = configure_metrics
        statuses = [(ModelVersion.Status.REGISTERED.value, "registered: a candidate for a canary")]
        if first_version:
            # Only a model's first version may be declared the incumbent production version.
            statuses.append((ModelVersion.Status.PRODUCTION.value, "production: the incumbent, now serving"))
        self.fields["status"].choices = statuses
        for section, defaults in DEFAULT_THRESHOLDS.items():
            for key, default in defaults.items():
                field_class = forms.IntegerField if isinstance(default, int) else forms.FloatField
                widget = forms.NumberInput(attrs={"step": "1" if isinstance(default, int) else "any"})
                self.fields[threshold_field_name(section, key)] = field_class(
                    required=False, initial=default, widget=widget, label=THRESHOLD_TEXT[key]["label"]
                )
        if not configure_metrics:
            del self.fields["provider"]
            return
        placeholders = ", ".join(f"${p}" for p in sorted(QUERY_PLACEHOLDERS))
        for metric in METRIC_NAMES:
            self.fields[query_field_name(metric)] = forms.CharField(
                required=False,
                label=METRIC_LABELS.get(metric, metric),
                widget=forms.Textarea(attrs={"rows": 2, "placeholder": "default PromQL template"}),
                help_text=f"Placeholders: {placeholders}.",
            )

    def threshold_rows(self) -> list[dict[str, Any]]:
        """One row per threshold key for the template: the inputs side by side."""
        rows = []
        for key, text in THRESHOLD_TEXT.items():
            row: dict[str, Any] = {"key": key, "label": text["label"]}
            for section in ("promote", "rollback"):
                name = threshold_field_name(section, key)
                default = DEFAULT_THRESHOLDS[section].get(key)
                row[section] = self[name] if name in self.fields else None
                row[f"{section}_default"] = text[section].format(v=f"{default:g}") if default is not None else ""
            rows.append(row)
        return rows

    def query_fields(self) -> list[forms.BoundField]:
        if not self.configure_metrics:
            return []
        return [self[query_field_name(metric)] for metric in METRIC_NAMES]

    def queries_open(self) -> bool:
        """Whether the folded query overrides should start unfolded: something is in them."""
        return any(field.value() or field.errors for field in self.query_fields())

    def service_error_field(self, key: str) -> tuple[str | None, str]:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "thresholds":
            name = threshold_field_name(parts[1], parts[2])
            if name in self.fields:
                return name, ""
        if key == "metrics.provider":
            return "provider", ""
        if len(parts) == 3 and parts[:2] == ["metrics", "queries"] and parts[2] in METRIC_NAMES:
            return query_field_name(parts[2]), ""
        return super().service_error_field(key)

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        # Blank inputs are left out, so the service fills in the pattern's defaults.
        thresholds: dict[str, dict[str, float | int]] = {}
        for section, defaults in DEFAULT_THRESHOLDS.items():
            given = {
                key: data[threshold_field_name(section, key)]
                for key in defaults
                if data.get(threshold_field_name(section, key)) is not None
            }
            if given:
                thresholds[section] = given
        kwargs = {
            "version": data["version"].strip(),
            "artifact_uri": data["artifact_uri"].strip(),
            "status": data["status"],
            "thresholds": thresholds,
        }
        if not self.configure_metrics:
            return kwargs
        metrics: dict[str, Any] = {}
        if data["provider"]:
            metrics["provider"] = data["provider"]
        queries = {m: data[query_field_name(m)].strip() for m in METRIC_NAMES}
        queries = {metric: query for metric, query in queries.items() if query}
        if queries:
            metrics["queries"] = queries
        return {**kwargs, "metrics": metrics or None}
