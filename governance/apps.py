from django.apps import AppConfig
from django.db.models.signals import post_save


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance: roles, audit trail, evidence"

    def ready(self) -> None:
        from auditlog.models import LogEntry

        post_save.connect(_seal_auditlog_entry, sender=LogEntry, dispatch_uid="seal-auditlog-entry")


def _seal_auditlog_entry(sender, instance, created: bool, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """django-auditlog's rows are ordinary mutable rows; sealing each one into the hash chain,
    in the same transaction, makes them part of the record of truth."""
    if not created:
        return
    from governance.audit import audit_append

    audit_append(
        actor=instance.actor,
        action=f"field_changes.{instance.get_action_display().lower()}",
        object_type=instance.content_type.model_class()._meta.label_lower if instance.content_type else "unknown",
        object_id=instance.object_pk,
        payload={
            "auditlog_entry": instance.pk,
            "object_repr": instance.object_repr,
            "changes": instance.changes,
        },
    )
