from django.urls import path

from releases import views

app_name = "releases"

# "models/new/" comes before "models/<slug:name>/": "new" is a valid slug.
urlpatterns = [
    path("", views.model_list, name="model-list"),
    path("models/new/", views.model_create, name="model-create"),
    path("models/<slug:name>/", views.model_detail, name="model-detail"),
    path("models/<slug:name>/versions/new/", views.version_create, name="version-create"),
    path("models/<slug:name>/versions/<str:version>/", views.version_detail, name="version-detail"),
]
