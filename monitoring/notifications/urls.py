from django.urls import path

from monitoring.notifications import views

app_name = "notifications"

urlpatterns = [
    path("notifications/", views.notification_page, name="page"),
    path("notifications/read/", views.notification_mark_read, name="mark-read"),
    path("notifications/preferences/", views.notification_preferences, name="preferences"),
    path("notifications/outbox/<int:delivery_id>/retry/", views.notification_retry, name="retry"),
]
