from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_save


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance: roles, audit trail, incidents, evidence"

    def ready(self) -> None:
        # Local: Django imports apps.py before the models and task modules can be loaded.
        from auditlog.models import LogEntry

        from canaryhub import events, metrics
        from governance.audit.services import auditlog_entry_seal, metrics_refresh
        from governance.evidence import tasks as evidence_tasks

        def seal(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
            # django-auditlog's rows are ordinary mutable rows: each new one is sealed into the
            # hash chain in the same transaction.
            if created:
                auditlog_entry_seal(instance)

        post_save.connect(seal, sender=LogEntry, dispatch_uid="seal-auditlog-entry", weak=False)
        events.subscribe("evidence.export_requested", evidence_tasks.enqueue_build)
        metrics.on_scrape(metrics_refresh)
