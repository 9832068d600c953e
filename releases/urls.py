from django.urls import path

from releases import canary_views, router_views, views

app_name = "releases"

# "models/new/" comes before "models/<slug:name>/": "new" is a valid slug.
urlpatterns = [
    path("", views.model_list, name="model-list"),
    path("models/new/", views.model_create, name="model-create"),
    path("models/<slug:name>/", views.model_detail, name="model-detail"),
    path("models/<slug:name>/versions/new/", views.version_create, name="version-create"),
    path("models/<slug:name>/versions/<str:version>/", views.version_detail, name="version-detail"),
    path("models/<slug:name>/versions/<str:version>/canary/new/", canary_views.canary_create, name="canary-create"),
    path("canaries/", canary_views.canary_list, name="canary-list"),
    path("canaries/<int:pk>/", canary_views.canary_detail, name="canary-detail"),
    path("canaries/<int:pk>/sign/<str:role>/", canary_views.canary_sign, name="canary-sign"),
    path("canaries/<int:pk>/rollback/", canary_views.canary_rollback, name="canary-rollback"),
    path("canaries/<int:pk>/abort/", canary_views.canary_abort, name="canary-abort"),
    path("inbox/", canary_views.inbox, name="inbox"),
    path("canaries/<int:pk>/pushes/", router_views.canary_pushes, name="canary-pushes"),
    path("routers/", router_views.router_list, name="router-list"),
    path("routers/<slug:name>/", router_views.router_edit, name="router-edit"),
    path("routers/<slug:name>/disable/", router_views.router_disable, name="router-disable"),
]
