"""The Celery app. Periodic tasks are scheduled in one place: CELERY_BEAT_SCHEDULE in settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canaryhub.settings")

app = Celery("canaryhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Task modules live in the apps' sub-packages (one per sub-domain), not in <app>.tasks.
app.autodiscover_tasks([
    "releases.canaries", "governance.audit", "governance.tokens", "governance.evidence", "governance.rootcause",
    "monitoring", "monitoring.notifications",
])


@app.on_after_configure.connect
def _ensure_filesystem_broker_dirs(sender: Celery, **_: object) -> None:
    # kombu's filesystem transport expects its folders to exist.
    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)
