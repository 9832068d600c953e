"""Reads of certificates: the canaries waiting for AI Governance's decision."""

from __future__ import annotations

from typing import Any

from releases.canaries.models import Canary


def certificate_review_queue() -> Any:
    return (
        Canary.objects.filter(state=Canary.State.COMPLETED)
        .select_related("model", "version")
        .prefetch_related("certificates")
        .order_by("ended_at", "id")
    )
