"""HTML views of threshold change reviews: the page where a running canary's owner (or a platform
engineer) requests a change of its frozen thresholds — the form starts from them — and where AI
Governance and MRM each approve or reject it; it applies at the canary's next stage. The same
page lists the metric configuration changes of versions (requested through the version API) for
the same two reviews; an approved one governs the version's next canary. One view
per act; a refused act shows the page again with the refusal."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from canaryhub.errors import DomainError
from canaryhub.web import render_page
from governance.access.permissions import Action, decide, require_page
from governance.thresholds import presenters, services
from monitoring.thresholds import DEFAULT_THRESHOLDS
from releases.canaries import states
from releases.canaries.models import Canary, ThresholdChangeRequest
from releases.register import services as register
from releases.register.models import MetricConfigChange


def _threshold_rows(current: dict[str, Any], proposed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows = [
        {"name": f"{section}.{key}", "label": presenters.threshold_label(f"{section}.{key}"),
         "current": current.get(section, {}).get(key),
         "proposed": (proposed or {}).get(section, {}).get(key),
         "integer": isinstance(default, int)}
        for section, keys in DEFAULT_THRESHOLDS.items() for key, default in keys.items()
    ]
    for row in rows:
        row["value"] = row["current"] if row["proposed"] is None else row["proposed"]
    return rows


def _proposed_from(post: Any) -> tuple[dict[str, dict[str, float | int]], dict[str, list[str]]]:
    proposed: dict[str, dict[str, float | int]] = {}
    errors: dict[str, list[str]] = {}
    for section, keys in DEFAULT_THRESHOLDS.items():
        for key, default in keys.items():
            name, raw = f"{section}.{key}", post.get(f"{section}.{key}", "").strip()
            try:
                proposed.setdefault(section, {})[key] = int(raw) if isinstance(default, int) else float(raw)
            except ValueError:
                errors[presenters.threshold_label(name)] = ["a number is needed"]
    return proposed, errors


def _changed(change: ThresholdChangeRequest) -> list[dict[str, Any]]:
    return [row for row in _threshold_rows(change.current, change.proposed) if row["current"] != row["proposed"]]


def _requestable(user: Any) -> list[Canary]:
    """The active canaries whose thresholds this user may ask to change."""
    return [c for c in Canary.objects.filter(state__in=states.ACTIVE).select_related("model", "version")
            .order_by("-initiated_at")[:200]
            if decide(user, Action.REQUEST_THRESHOLD_CHANGE, model=c.model).allowed]


def _page(request: HttpRequest, *, raw_canary: str, errors: dict[str, list[str]] | None = None,
          posted: dict[str, Any] | None = None, reason: str = "") -> HttpResponse:
    active = _requestable(request.user)
    selected = next((c for c in active if str(c.pk) == raw_canary), None)
    can_review = decide(request.user, Action.REVIEW_THRESHOLD_CHANGE).allowed
    changes = ThresholdChangeRequest.objects.select_related(
        "canary__model", "canary__version", "requested_by", "governance_by", "mrm_by")[:100]
    rows = [{"change": c, "changed": _changed(c),
             "requested_stage": presenters.stage_of(c.requested_at_stage, c.canary.stages),
             "applied_stage": presenters.stage_of(c.applied_stage_index, c.canary.stages)
             if c.applied_stage_index is not None else "",
             "can_review": can_review and c.status == ThresholdChangeRequest.Status.PENDING
             and request.user.pk not in (c.requested_by_id, c.governance_by_id, c.mrm_by_id)}
            for c in changes]
    metric_rows = [{"change": c, "can_review": can_review and c.status == MetricConfigChange.Status.PENDING
                    and request.user.pk not in (c.requested_by_id, c.governance_by_id, c.mrm_by_id)}
                   for c in MetricConfigChange.objects.select_related(
                       "version__model", "requested_by", "governance_by", "mrm_by")[:100]]
    context = {
        "rows": rows, "metric_rows": metric_rows, "active": active, "selected": selected, "errors": errors or {},
        "reason": reason,
        "fields": _threshold_rows(selected.thresholds, posted) if selected else [],
        "selected_stage": presenters.stage_of(selected.stage_index, selected.stages) if selected else "",
    }
    return render_page(request, "governance/threshold_changes.html", "governance/partials/_threshold_form.html",
                       context)


@login_required
@require_GET
def threshold_changes(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    return _page(request, raw_canary=request.GET.get("canary", ""))


@login_required
@require_POST
def threshold_change_request(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    require_page(request.user, Action.REQUEST_THRESHOLD_CHANGE)  # before the form is read
    raw_canary = request.POST.get("canary", "")
    reason = request.POST.get("reason", "")
    posted, errors = _proposed_from(request.POST)
    selected = next((c for c in _requestable(request.user) if str(c.pk) == raw_canary), None)
    if selected is None:
        errors["canary"] = ["choose a running canary of a model you own"]
    if not errors:
        try:
            services.threshold_change_request(actor=request.user, canary_id=selected.pk, proposed=posted,
                                              reason=reason)
        except DomainError as exc:
            errors = exc.errors or {"__all__": [exc.detail]}
        else:
            messages.success(request, f"Threshold change requested for canary #{selected.pk}.")
            return redirect("evidence:threshold-changes")
    return _page(request, raw_canary=raw_canary, errors=errors, posted=posted, reason=reason)


@login_required
@require_POST
def threshold_change_review(request: HttpRequest, change_id: int) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    require_page(request.user, Action.REVIEW_THRESHOLD_CHANGE)  # before the form is read
    approve = request.POST.get("verb") == "approve"
    try:
        services.threshold_change_review(actor=request.user, request_id=change_id, approve=approve,
                                         note=request.POST.get("note", ""))
    except DomainError as exc:
        return _page(request, raw_canary="", errors=exc.errors or {"__all__": [exc.detail]})
    messages.success(request, "Threshold change approved." if approve else "Threshold change rejected.")
    return redirect("evidence:threshold-changes")


@login_required
@require_POST
def metric_change_review(request: HttpRequest, change_id: int) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    require_page(request.user, Action.REVIEW_THRESHOLD_CHANGE)  # before the form is read
    approve = request.POST.get("verb") == "approve"
    try:
        register.metric_change_review(actor=request.user, change_id=change_id, approve=approve,
                                      note=request.POST.get("note", ""))
    except DomainError as exc:
        return _page(request, raw_canary="", errors=exc.errors or {"__all__": [exc.detail]})
    messages.success(request, "Metric configuration change approved." if approve
                     else "Metric configuration change rejected.")
    return redirect("evidence:threshold-changes")
