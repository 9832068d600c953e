from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"
    verbose_name = "Releases: model register, routing and canaries"

    def ready(self) -> None:
        # Local: Django imports apps.py before the models and task modules can be loaded.
        from auditlog.registry import auditlog

        from canaryhub import events, metrics
        from releases.canaries import selectors as canary_selectors
        from releases.canaries import tasks
        from releases.register import selectors as register_selectors
        from releases.register.models import AIModel, Consumer, ModelVersion

        # Field-level change history; each entry is also sealed into our hash chain
        # (governance.apps), so one verification covers both.
        auditlog.register(AIModel)
        auditlog.register(Consumer)
        auditlog.register(ModelVersion)
        # What acts on the facts the canary services and the control loop announce.
        events.subscribe("canary.split_changed", tasks.enqueue_push)
        events.subscribe("canary.rollback_decided", tasks.enqueue_rollback)
        metrics.on_scrape(register_selectors.metrics_refresh)
        metrics.on_scrape(canary_selectors.metrics_refresh)
