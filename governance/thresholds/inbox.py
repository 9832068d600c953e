"""Threshold changes and metric configuration changes in the Inbox: a pending change whose AI
Governance or MRM review is still this person's to give (governance.access.reviews.review_side).
Registered as a work source of the Inbox (releases.canaries.presenters.work_source_register) by governance.apps."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from governance.access.permissions import Action, decide, roles_of
from governance.access.reviews import review_side as shared_review_side
from governance.thresholds.presenters import stage_of
from governance.thresholds.services import review_side
from releases.canaries.models import ThresholdChangeRequest
from releases.canaries.presenters import WorkItem, WorkSource
from releases.register.models import MetricConfigChange

SIDE_WORDS = {"governance": "as AI Governance", "mrm": "as MRM"}


def may_review(user: Any) -> bool:
    return decide(user, Action.REVIEW_THRESHOLD_CHANGE).allowed


def threshold_reviews(user: Any) -> list[WorkItem]:
    roles = roles_of(user)
    items = []
    pending = ThresholdChangeRequest.objects.filter(status=ThresholdChangeRequest.Status.PENDING).select_related(
        "canary__model", "canary__version").order_by("requested_at", "id")
    for change in pending:
        side = review_side(change, user_id=user.pk, roles=roles)
        if side is None:
            continue
        canary = change.canary
        items.append(WorkItem(
            f"Threshold change to review {SIDE_WORDS[side]}",
            f"Change #{change.pk} · canary #{canary.pk} · {canary.model.name} {canary.version.version}, "
            f"asked at {stage_of(change.requested_at_stage, canary.stages)}",
            f"{reverse('evidence:threshold-changes')}#threshold-change-{change.pk}",
            "Approve or reject it",
        ))
    metric_pending = MetricConfigChange.objects.filter(status=MetricConfigChange.Status.PENDING).select_related(
        "version__model").order_by("requested_at", "id")
    for metric_change in metric_pending:
        side = shared_review_side(metric_change, user_id=user.pk, roles=roles, pending=True)
        if side is None:
            continue
        items.append(WorkItem(
            f"Metric configuration change to review {SIDE_WORDS[side]}",
            f"Change #{metric_change.pk} · {metric_change.version.model.name} {metric_change.version.version}, "
            "for its next canary",
            f"{reverse('evidence:threshold-changes')}#metric-change-{metric_change.pk}",
            "Approve or reject it",
        ))
    return items


SOURCE = WorkSource("threshold_reviews", may_have=may_review, items=threshold_reviews)
