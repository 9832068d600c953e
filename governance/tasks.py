from celery import shared_task

from governance.idempotency import idempotency_prune


@shared_task(soft_time_limit=60, time_limit=90)
def prune_idempotency_keys() -> int:
    return idempotency_prune()


@shared_task(soft_time_limit=1800, time_limit=1900)
def verify_audit_chain() -> bool:
    """Nightly: verify the whole chain, export its head, open a P1 incident on failure."""
    from governance.chain import chain_check

    return chain_check().ok


@shared_task(soft_time_limit=3000, time_limit=3100)
def build_evidence_export(export_id: int) -> None:
    from governance.exports import evidence_export_build

    evidence_export_build(export_id=export_id)


@shared_task(soft_time_limit=600, time_limit=660)
def prune_evidence_exports() -> int:
    """Daily: delete evidence-export zips older than EVIDENCE_EXPORT_RETENTION_DAYS."""
    from governance.exports import evidence_export_prune

    return evidence_export_prune()
