"""The URL root. Each app's pages and each sub-domain's API are included by name: the kernel
imports no app."""

from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

api_v1 = [
    path("", include("releases.register.api")),
    path("", include("releases.canaries.assign")),
    path("", include("releases.canaries.api")),
    path("", include("governance.audit.api")),
    path("", include("governance.rootcause.api")),
    path("", include("governance.thresholds.api")),
    path("", include("governance.certificates.api")),
    path("", include("governance.evidence.api")),
    path("", include("monitoring.notifications.api")),
    path("", include("governance.tokens.api")),
]

urlpatterns = [
    path("", include("monitoring.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script from this URL (?script=) rather than
    # inline, so the page passes the Content-Security-Policy.
    path(
        "api/docs/",
        csp_update({"img-src": ["data:"]})(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api_docs.html")
        ),
        name="api-docs",
    ),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("monitoring.notifications.urls")),
    path("", include("governance.urls")),
    path("", include("releases.urls")),
]
