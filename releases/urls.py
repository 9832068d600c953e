"""The releases pages, one views module per sub-domain (namespace "releases")."""

from django.urls import path

from releases.canaries import views as canaries
from releases.register import views as register
from releases.routing import views as routing

app_name = "releases"

# "models/new/" comes before "models/<slug:name>/": "new" is a valid slug.
urlpatterns = [
    path("", canaries.root, name="root"),
    path("models/", register.model_list, name="model-list"),
    path("models/new/", register.model_create, name="model-create"),
    path("models/<slug:name>/", register.model_detail, name="model-detail"),
    path("models/<slug:name>/versions/new/", register.version_create, name="version-create"),
    path("models/<slug:name>/versions/<str:version>/", register.version_detail, name="version-detail"),
    path("models/<slug:name>/versions/<str:version>/canary/new/", canaries.canary_create, name="canary-create"),
    path("models/<slug:name>/versions/<str:version>/canary/urgent/", canaries.canary_urgent_patch,
         name="canary-urgent-patch"),
    path("canaries/", canaries.canary_list, name="canary-list"),
    path("fleet/", canaries.fleet, name="fleet"),
    path("canaries/<int:pk>/", canaries.canary_detail, name="canary-detail"),
    path("canaries/<int:pk>/report/", canaries.canary_report, name="canary-report"),
    path("canaries/<int:pk>/charts/", canaries.canary_charts, name="canary-charts"),
    path("canaries/<int:pk>/charts/<slug:key>.csv", canaries.canary_chart_csv, name="canary-chart-csv"),
    path("canaries/<int:pk>/sign/<str:role>/", canaries.canary_sign, name="canary-sign"),
    path("canaries/<int:pk>/rollback/", canaries.canary_rollback, name="canary-rollback"),
    path("canaries/<int:pk>/revert/", canaries.canary_revert, name="canary-revert"),
    path("canaries/<int:pk>/abort/", canaries.canary_abort, name="canary-abort"),
    path("inbox/", canaries.inbox, name="inbox"),
    path("home/", canaries.home, name="home"),
    path("canaries/<int:pk>/pushes/", canaries.canary_pushes, name="canary-pushes"),
    path("routers/", routing.router_list, name="router-list"),
    path("assignments/sticky/", canaries.sticky_assignments, name="sticky-assignments"),
    path("routers/<slug:name>/", routing.router_edit, name="router-edit"),
    path("routers/<slug:name>/disable/", routing.router_disable, name="router-disable"),
]
