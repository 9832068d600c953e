"""Celery tasks of the evidence: thin, taking ids; the periodic ones are in CELERY_BEAT_SCHEDULE."""

from celery import shared_task

from governance.evidence import services


@shared_task(soft_time_limit=1800, time_limit=1900)
def verify_audit_chain() -> bool:
    """Nightly: verify the whole chain, export its head, sign a checkpoint there (the certificate
    pages verify from it), open a P1 incident on failure."""
    return services.chain_check().ok


@shared_task(soft_time_limit=3000, time_limit=3100)
def build_evidence_export(export_id: int) -> None:
    services.evidence_export_build(export_id=export_id)


@shared_task(soft_time_limit=600, time_limit=660)
def prune_evidence_exports() -> int:
    """Daily: delete evidence-export zips older than EVIDENCE_EXPORT_RETENTION_DAYS."""
    return services.evidence_export_prune()


def enqueue_build(*, export_id: int) -> None:
    """Subscriber of "evidence.export_requested" (governance.apps)."""
    build_evidence_export.delay(export_id)
