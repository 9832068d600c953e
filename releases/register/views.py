"""HTML views of the Model Register. Each parses its input, asks governance.access.permissions
whether the user may, reads through releases.register.selectors, writes only through releases.register.services,
and renders; domain errors become form errors or messages."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from canaryhub.errors import DomainError, NotFound
from canaryhub.web import form_refusal, render_page
from governance.access.permissions import Action, decide, require_page
from monitoring.thresholds import DEFAULT_THRESHOLDS, METRIC_NAMES
from releases.register import selectors, services
from releases.register.forms import (
    METRIC_LABELS,
    THRESHOLD_TEXT,
    ModelFilterForm,
    ModelRegisterForm,
    VersionRegisterForm,
)
from releases.register.models import AIModel, ModelVersion


def _model_or_404(user: Any, name: str) -> AIModel:
    try:
        return selectors.model_get(actor=user, name=name)
    except NotFound as exc:
        raise Http404(exc.detail) from exc


def _register_rows(models: QuerySet[AIModel]) -> list[dict[str, Any]]:
    # One extra query for every model's versions instead of two per row; versions arrive
    # newest first, so the first one is the latest.
    newest_first = ModelVersion.objects.order_by("-major", "-minor", "-patch")
    rows = []
    for model in models.prefetch_related(Prefetch("versions", queryset=newest_first, to_attr="newest_first")):
        versions = model.newest_first
        production = next((v for v in versions if v.status == ModelVersion.Status.PRODUCTION), None)
        rows.append({"model": model, "production": production, "latest": versions[0] if versions else None})
    return rows


@login_required
@require_GET
def model_list(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    filter_form = ModelFilterForm(request.GET)
    filters = filter_form.filters()
    context = {
        "filter_form": filter_form,
        "filters": filters,
        "rows": _register_rows(selectors.model_list(actor=request.user, **filters)),
        "can_register_model": decide(request.user, Action.REGISTER_MODEL).allowed,
    }
    return render_page(request, "releases/model_list.html", "releases/partials/_model_table.html", context)


@login_required
@require_GET
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    model = _model_or_404(request.user, name)
    versions = selectors.version_list(actor=request.user, model_name=model.name)
    return render(
        request,
        "releases/model_detail.html",
        {
            "model": model,
            "consumers": model.consumers.all(),
            "versions": versions,
            "production": selectors.production_version(model=model),
            "can_register_version": decide(request.user, Action.REGISTER_VERSION, model=model).allowed,
        },
    )


def _threshold_rows(version: ModelVersion) -> list[dict[str, Any]]:
    rows = []
    for key, text in THRESHOLD_TEXT.items():
        row: dict[str, Any] = {"label": text["label"]}
        for section in ("promote", "rollback"):
            if key not in DEFAULT_THRESHOLDS[section]:
                row[section] = None
                continue
            value = version.thresholds.get(section, {}).get(key)
            default = DEFAULT_THRESHOLDS[section][key]
            row[section] = {
                "text": text[section].format(v=f"{value:g}" if value is not None else "?"),
                "default": text[section].format(v=f"{default:g}"),
                "tightened": value is not None and value != default,
            }
        rows.append(row)
    return rows


@login_required
@require_GET
def version_detail(request: HttpRequest, name: str, version: str) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    try:
        obj = selectors.version_get(actor=request.user, model_name=name, version=version)
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    queries = obj.metrics.get("queries", {})
    return render(
        request,
        "releases/version_detail.html",
        {
            "model": obj.model,
            "version": obj,
            "threshold_rows": _threshold_rows(obj),
            "provider": obj.metrics.get("provider", ""),
            "custom_metrics": obj.metrics.get("custom") or {},
            "query_rows": [
                {"label": METRIC_LABELS.get(metric, metric), "query": queries.get(metric, "")}
                for metric in METRIC_NAMES
            ],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def model_create(request: HttpRequest) -> HttpResponse:
    require_page(request.user, Action.REGISTER_MODEL)
    form = ModelRegisterForm(request.POST or None, actor=request.user)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                model = services.model_register(actor=request.user, **form.service_kwargs())
            except DomainError as exc:
                status = form_refusal(form, exc)
            else:
                messages.success(request, f"Model {model.name} registered.")
                return redirect("releases:model-detail", name=model.name)
    return render(request, "releases/model_form.html", {"form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def version_create(request: HttpRequest, name: str) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    model = _model_or_404(request.user, name)
    require_page(request.user, Action.REGISTER_VERSION, model=model)
    first_version = not selectors.version_list(actor=request.user, model_name=model.name).exists()
    form = VersionRegisterForm(
        request.POST or None, first_version=first_version,
        configure_metrics=decide(request.user, Action.CONFIGURE_METRICS).allowed,
    )
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                version = services.version_register(
                    actor=request.user, model_name=model.name, **form.service_kwargs()
                )
            except DomainError as exc:
                status = form_refusal(form, exc)
            else:
                messages.success(request, f"Version {version.version} of {model.name} registered.")
                return redirect("releases:version-detail", name=model.name, version=version.version)
    return render(
        request,
        "releases/version_form.html",
        {"model": model, "form": form, "first_version": first_version},
        status=status,
    )
