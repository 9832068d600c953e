from django.urls import path

from governance import views

app_name = "governance"

urlpatterns = [
    path("", views.audit_list, name="audit-list"),
    path("verify/", views.audit_verify_view, name="audit-verify"),
]
