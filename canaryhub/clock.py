"""The pattern's clock. `CANARYHUB_CLOCK_SPEED` makes its long durations (stage residence,
root-cause due time, summary interval, hot standby) that many times shorter for demonstrations;
the evaluation window, cadence, staleness and dead-man's limits are plain seconds and are not
scaled. Production refuses a speed other than 1 (canaryhub.settings)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings


def speed() -> float:
    return float(settings.CLOCK_SPEED)


def scaled(duration: timedelta) -> timedelta:
    """A duration of the pattern as this deployment's clock runs it."""
    return duration / speed()
