"""The router config form: parses what the browser sends into router_config_save's keyword
arguments. The secret field never renders a value back, not even after a refused submission."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from canaryhub.forms import ServiceErrorsMixin
from releases.routing.models import RouterConfig


class RouterConfigForm(ServiceErrorsMixin, forms.Form):
    name = forms.SlugField(max_length=64, help_text="lower-case letters, digits and hyphens")
    kind = forms.ChoiceField(choices=RouterConfig.Kind.choices)
    target = forms.CharField(
        max_length=500,
        help_text="file: the folder, nginx: the include folder (both inside the deployment's router folders); "
        "webhook: the http(s) URL",
    )
    options = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        help_text='a JSON object of the options the kind allows: webhook timeout_s; nginx upstreams, user_header, '
        "segment_headers and timeouts (its programs, files and URLs are the deployment's settings)",
    )
    secret = forms.CharField(
        required=False, max_length=500, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="the webhook's signing key; leave blank to keep the stored one",
    )
    enabled = forms.BooleanField(required=False, initial=True, help_text="used for every canary of this kind")

    def __init__(self, *args: Any, editing: RouterConfig | None = None, **kwargs: Any) -> None:
        if editing is not None and not kwargs.get("initial"):
            kwargs["initial"] = {
                "name": editing.name, "kind": editing.kind, "target": editing.target,
                "options": json.dumps(editing.options) if editing.options else "", "enabled": editing.enabled,
            }
        super().__init__(*args, **kwargs)
        if editing is not None:
            # The name is the config's identity: editing it would register another one.
            self.fields["name"].disabled = True

    def clean_options(self) -> Any:
        text = self.cleaned_data["options"].strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from exc

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"], "kind": data["kind"], "target": data["target"], "options": data["options"],
            "secret": data["secret"] or None, "enabled": data["enabled"],
        }
