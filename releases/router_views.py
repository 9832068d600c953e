"""HTML views of the router registry and of a canary's push history.

Thin, as releases.views: parse, ask governance.permissions, call releases.router_services,
render. Everyone who may view CanaryHub reads the registry and the pushes; only those allowed
to manage routers (platform engineers) see the form, and anyone else's write is refused."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from canaryhub.errors import NotFound, PermissionRefused, ValidationFailed
from canaryhub.web import require_page
from governance.permissions import Action, decide
from releases import canary_selectors, router_selectors, router_services
from releases.models import RouterConfig
from releases.router_forms import RouterConfigForm


def _save(request: HttpRequest, form: RouterConfigForm) -> tuple[RouterConfig | None, int]:
    """Call the service with the form's input; on refusal the errors go onto the form."""
    if not form.is_valid():
        return None, 400
    try:
        return router_services.router_config_save(actor=request.user, **form.service_kwargs()), 200
    except ValidationFailed as exc:
        form.add_service_errors(exc)
        return None, 400
    except PermissionRefused as exc:
        raise PermissionDenied(exc.detail) from exc


@login_required
@require_http_methods(["GET", "POST"])
def router_list(request: HttpRequest) -> HttpResponse:
    """The registry, and (for platform engineers) the form that adds a config."""
    require_page(request.user, Action.VIEW)
    can_manage = decide(request.user, Action.MANAGE_ROUTERS).allowed
    form = None
    status = 200
    if request.method == "POST":
        require_page(request.user, Action.MANAGE_ROUTERS)
        form = RouterConfigForm(request.POST)
        config, status = _save(request, form)
        if config is not None:
            messages.success(request, f"Router {config.name} saved.")
            return redirect("releases:router-list")
    elif can_manage:
        form = RouterConfigForm()
    context = {
        "configs": list(router_selectors.router_config_list(actor=request.user)),
        "form": form,
        "can_manage": can_manage,
    }
    return render(request, "releases/router_list.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def router_edit(request: HttpRequest, name: str) -> HttpResponse:
    require_page(request.user, Action.VIEW)
    require_page(request.user, Action.MANAGE_ROUTERS)
    try:
        config = router_selectors.router_config_get(actor=request.user, name=name)
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    form = RouterConfigForm(request.POST or None, editing=config)
    status = 200
    if request.method == "POST":
        saved, status = _save(request, form)
        if saved is not None:
            messages.success(request, f"Router {saved.name} saved.")
            return redirect("releases:router-list")
    return render(request, "releases/router_form.html", {"form": form, "config": config}, status=status)


@login_required
@require_POST
def router_disable(request: HttpRequest, name: str) -> HttpResponse:
    require_page(request.user, Action.MANAGE_ROUTERS)
    try:
        config = router_services.router_config_disable(actor=request.user, name=name)
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    except PermissionRefused as exc:
        raise PermissionDenied(exc.detail) from exc
    messages.success(request, f"Router {config.name} disabled; its kind uses the server settings again.")
    return redirect("releases:router-list")


@login_required
@require_GET
def canary_pushes(request: HttpRequest, pk: int) -> HttpResponse:
    """The canary's router pushes: a page, or (htmx, from the canary page) only the table."""
    require_page(request.user, Action.VIEW)
    try:
        canary = canary_selectors.canary_get(actor=request.user, canary_id=pk)
        pushes = list(router_selectors.canary_pushes(actor=request.user, canary_id=pk))
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    context = {"canary": canary, "pushes": pushes, "limit": router_selectors.PUSH_LIMIT}
    htmx = request.htmx  # type: ignore[attr-defined]
    fragment = bool(htmx) and not htmx.history_restore_request
    template = "releases/partials/_router_pushes.html" if fragment else "releases/router_pushes.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response
