"""What every HTML form shares: a service's refusal shown next to the inputs it concerns."""

from __future__ import annotations

from django import forms

from canaryhub.errors import DomainError


class ServiceErrorsMixin:
    """Puts a service's `ValidationFailed.errors` (keys may be dotted paths such as
    `thresholds.promote.error_rate_pp`) next to the inputs they concern."""

    fields: dict[str, forms.Field]

    def service_error_field(self, key: str) -> tuple[str | None, str]:
        """The form field a service error key belongs to, and a prefix for the message."""
        if key in self.fields:
            return key, ""
        return None, f"{key}: "

    def add_service_errors(self, exc: DomainError) -> None:
        if not exc.errors:
            self.add_error(None, exc.detail)  # type: ignore[attr-defined]
            return
        for key, messages in exc.errors.items():
            field, prefix = self.service_error_field(key)
            for message in messages:
                self.add_error(field, f"{prefix}{message}")  # type: ignore[attr-defined]
