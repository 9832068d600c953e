from typing import Any

from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_save, pre_save


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance: roles, audit trail, incidents, evidence"

    def ready(self) -> None:
        # Local: Django imports apps.py before the models and task modules can be loaded.
        from auditlog.models import LogEntry
        from axes.signals import user_locked_out
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from canaryhub import events, metrics
        from governance.audit import signals as account_signals
        from governance.audit.services import auditlog_entry_seal, metrics_refresh
        from governance.evidence import tasks as evidence_tasks

        def seal(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
            # django-auditlog's rows are ordinary mutable rows: each new one is sealed into the
            # hash chain in the same transaction.
            if created:
                auditlog_entry_seal(instance)

        post_save.connect(seal, sender=LogEntry, dispatch_uid="seal-auditlog-entry", weak=False)
        # Accounts: roles (groups), passwords and logins reach the chain however they change.
        user_model = get_user_model()
        pre_save.connect(account_signals.user_pre_save, sender=user_model, dispatch_uid="audit-user-pre")
        post_save.connect(account_signals.user_post_save, sender=user_model, dispatch_uid="audit-user-post")
        m2m_changed.connect(account_signals.groups_changed, sender=user_model.groups.through,
                            dispatch_uid="audit-user-groups")
        user_logged_in.connect(account_signals.logged_in, dispatch_uid="audit-login")
        user_login_failed.connect(account_signals.login_failed, dispatch_uid="audit-login-failed")
        user_locked_out.connect(account_signals.locked_out, dispatch_uid="audit-locked-out")
        events.subscribe("evidence.export_requested", evidence_tasks.enqueue_build)
        metrics.on_scrape(metrics_refresh)
        # The Inbox lists the acts of the layers above the canaries through work sources.
        from governance.thresholds import inbox as threshold_inbox
        from releases.canaries.presenters import work_source_register

        work_source_register(threshold_inbox.SOURCE)
