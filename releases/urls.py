from django.urls import path

from releases import views

app_name = "releases"

urlpatterns = [
    path("", views.model_list, name="model-list"),
]
