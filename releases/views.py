from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from releases import selectors


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    models = selectors.model_list(actor=request.user, q=request.GET.get("q", ""))
    return render(request, "releases/model_list.html", {"models": models})
