"""HTML views of the router registry (a canary's push history is a canary page:
releases.canaries.views.canary_pushes).

Thin, as releases.register.views: parse, ask governance.access.permissions, call
releases.routing.services, render. Everyone who may view CanaryHub reads the registry; only those
allowed to manage routers (platform engineers) see the form, and anyone else's write is refused."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from canaryhub.errors import NotFound, PermissionRefused, ValidationFailed
from governance.access.permissions import Action, decide, require_page
from releases.routing import selectors as router_selectors
from releases.routing import services as router_services
from releases.routing.forms import RouterConfigForm
from releases.routing.models import RouterConfig


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
    configs = list(router_selectors.router_config_list(actor=request.user))
    for config in configs:
        # A row stored before the option allow-list (or edited in the database) is refused at use.
        config.problem = router_services.router_config_problem(config)
    context = {
        "configs": configs,
        "in_force": router_selectors.routers_in_force(actor=request.user),
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
