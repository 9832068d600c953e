from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"
    verbose_name = "Releases: model register, routing and canaries"

    def ready(self) -> None:
        # Local: Django imports apps.py before the models and task modules can be loaded.
        from auditlog.registry import auditlog

        from canaryhub import events, metrics, watch
        from monitoring.notifications import services as notifications
        from releases.canaries import loop, tasks
        from releases.canaries import selectors as canary_selectors
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
        # What every worker and web process checks beside its work (canaryhub.watch).
        watch.register(loop.rollbacks_sweep)
        watch.register(loop.deadman_check)
        watch.register(loop.routers_recover)
        watch.register(loop.pushes_sweep)
        # The people of a canary, for the notification outbox (monitoring cannot import releases).
        notifications.provide(canary_selectors.notification_contacts)
        metrics.on_scrape(register_selectors.metrics_refresh)
        metrics.on_scrape(canary_selectors.metrics_refresh)
