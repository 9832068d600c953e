"""Completion certificates: the checklist the system fills, AI Governance's decision (issue or
return with reasons), the sealed PDF, and verification of a certificate against the records
it depends on and the audit chain."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from canaryhub import keyring
from canaryhub.canonical import canonical_json
from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance.access.permissions import Action, as_principal, require
from governance.audit.models import AuditChainHead, AuditEvent
from governance.audit.services import audit_append, audit_verify
from governance.certificates.models import Certificate
from governance.incidents.models import Incident
from governance.reports.pdf import render_pdf
from governance.reports.records import digest, seal, ts
from governance.reports.selectors import stage_summaries
from monitoring.selectors import slo_figures
from releases.canaries import approvals as rules
from releases.canaries import states
from releases.canaries.models import Canary
from releases.canaries.selectors import canary_stages
from releases.canaries.services import canary_mark_certified


@dataclass(frozen=True)
class CheckItem:
    key: str
    label: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "ok": self.ok, "detail": self.detail}


def certificate_checklist(canary: Any, *, chain_ok: bool | None = None) -> list[CheckItem]:
    """What AI Governance reviews, filled by the system from the stored facts."""
    stages = canary_stages(canary)
    approvals = list(canary.approvals.select_related("evaluation").filter(voided_at__isnull=True))
    by_step: dict[str, dict[str, Any]] = {}
    for approval in approvals:
        by_step.setdefault(approval.step, {})[approval.role] = approval

    problems_green: list[str] = []
    problems_sign: list[str] = []
    steps = [rules.Step.start()] + [rules.promotion_step(stages, from_index=i) for i in range(len(stages) - 1)]
    for step in steps:
        required = {r.value for r in rules.required_signatures(step=step, risk_tier=canary.risk_tier)}
        signed = by_step.get(step.key, {})
        missing = sorted(required - set(signed))
        if missing:
            problems_sign.append(f"{step.key}: missing {', '.join(missing)}")
        for role, approval in signed.items():
            if step.kind is rules.StepKind.PROMOTE:
                ev = approval.evaluation
                if ev is None:
                    problems_green.append(f"{step.key}: {role} signature points at no evaluation")
                    continue
                if ev.verdict != "green":
                    problems_green.append(f"{step.key}: evaluation #{ev.pk} is {ev.verdict}")
                if ev.computed_hash() != ev.content_hash or approval.evaluation_hash != ev.content_hash:
                    problems_sign.append(f"{step.key}: {role} signature does not match evaluation #{ev.pk}")
    open_incidents = [f"#{i.pk} {i.kind}" for i in canary.incidents.exclude(status=Incident.Status.RESOLVED)]
    if chain_ok is None:
        chain_ok = audit_verify(from_checkpoint=True).ok
    promotions = len(stages) - 1
    return [
        CheckItem("completed", "Canary reached 100% and completed", canary.state in states.COMPLETE,
                  f"state {canary.state}, {canary.traffic_percent}% of traffic"),
        CheckItem("stages_green", "Every stage green with sufficient evidence", not problems_green,
                  "; ".join(problems_green) or f"{promotions} promotions, each on a green evaluation"),
        CheckItem("signatures", "Every signature present and valid", not problems_sign,
                  "; ".join(problems_sign) or f"{len(approvals)} signatures, each matching what the signer saw"),
        CheckItem("no_open_incident", "No open incident", not open_incidents,
                  ", ".join(open_incidents) or "none open"),
        CheckItem("audit_chain", "Audit chain verifies", chain_ok, "verified" if chain_ok else "verification failed"),
    ]


CERTIFICATE_STATEMENT = "canaryhub.certificate"


def _content_hash(cert: Certificate) -> str:
    content = {
        "id": str(cert.pk), "canary": cert.canary_id, "status": cert.status, "checklist": cert.checklist,
        "reasons": cert.reasons, "reviewer": cert.reviewer_name, "decided_at": ts(cert.decided_at),
        "body": cert.body, "sealed": cert.sealed, "evidence_hash": cert.evidence_hash,
        "chain_head": {"seq": cert.chain_head_seq, "hash": cert.chain_head_hash}, "pdf_sha256": cert.pdf_sha256,
    }
    if cert.signature:  # certificates issued before signing hash as they always did
        content["signing_key"] = {"key_id": cert.signature.get("key_id"),
                                  "fingerprint": cert.signature.get("fingerprint")}
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def certificate_statement(cert: Certificate) -> bytes:
    """The exact bytes the server signs for a certificate: its id and content hash."""
    return canonical_json({"statement": CERTIFICATE_STATEMENT, "id": str(cert.pk),
                           "content_hash": cert.content_hash}).encode("utf-8")


def certificate_signature_check(cert: Certificate) -> tuple[bool, str]:
    """Is the certificate signed by a key of the ring (active or retired)?"""
    if not cert.signature.get("signature"):
        return False, "unsigned: issued before certificates were signed, or its signature was removed"
    key = keyring.verify(certificate_statement(cert), cert.signature)
    if key is None:
        return False, ("the signature does not verify with any published key "
                       f"(it names key {cert.signature.get('key_id')})")
    return True, (f"Ed25519 signature by key {key.key_id} (fingerprint {key.fingerprint}"
                  f"{', retired ' + key.retired_at if key.retired_at else ''})")


def _body(canary: Any, *, reviewer_name: str, now: datetime, checklist: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "canary_id": canary.pk, "model": canary.model.name, "display_name": canary.model.display_name,
        "risk_tier": canary.risk_tier, "version": canary.version.version, "baseline": canary.baseline.version,
        "schedule": canary.schedule, "initiated_at": ts(canary.initiated_at), "completed_at": ts(canary.ended_at),
        "stages": stage_summaries(canary),
        "signatures": [
            {"step": a.step, "role": a.role, "printed_name": a.printed_name, "signed_at": ts(a.signed_at),
             "meaning": a.meaning, "evaluation_hash": a.evaluation_hash}
            for a in canary.approvals.filter(voided_at__isnull=True).order_by("signed_at", "id")
        ],
        "checklist": checklist, "issued_by": reviewer_name, "issued_at": ts(now),
        # The SLOs measured on this canary's own rollbacks and promotions (monitoring.selectors).
        "slo": [f.as_dict() for f in slo_figures(canary_ids=[canary.pk])],
    }




def reviewer_conflict(canary: Any, user: Any) -> str | None:
    """Why this person may not review the canary's certificate (segregation of duties), or None.
    The review is independent of the canary: not its owner (frozen at initiation), its initiator,
    nor anyone who signed one of its steps — whatever other roles they also hold."""
    if user.pk == canary.owner_id:
        return "you own this canary's model: its certificate must be reviewed by someone independent of it"
    if user.pk == canary.initiated_by_id:
        return "you initiated this canary: its certificate must be reviewed by someone independent of it"
    if canary.approvals.filter(signer=user).exists():
        return "you signed steps of this canary: its certificate must be reviewed by someone independent of it"
    return None


def certificate_decide(
    *, actor: Any, canary_id: int, issue: bool, reasons: str = "", now: datetime | None = None
) -> Certificate:
    """AI Governance issues the certificate of a completed canary (every check must pass) or
    returns it with reasons. Issuing seals the records' digests, the PDF's hash and the
    certificate's own hash into the audit chain, and moves the canary to CERTIFIED."""

    now = now or timezone.now()
    principal = as_principal(actor)
    reasons = reasons.strip() if isinstance(reasons, str) else ""
    with transaction.atomic():
        canary = Canary.objects.select_for_update().filter(pk=canary_id).first()
        if canary is None:
            raise NotFound(f"no canary #{canary_id}")
        require(principal, Action.ISSUE_CERTIFICATE, model=canary.model)
        conflict = reviewer_conflict(canary, principal.user)
        if conflict:
            raise PermissionRefused(conflict)
        if not issue and len(reasons) < 10:
            raise ValidationFailed.field("reasons", "say why the certificate is returned (at least 10 characters)")
        if canary.state != Canary.State.COMPLETED:
            raise Conflict(f"canary #{canary.pk} is {canary.state}; only a completed canary is certified")
        checklist = [item.as_dict() for item in certificate_checklist(canary)]
        failed = [c["label"] for c in checklist if not c["ok"]]
        if issue and failed:
            raise Conflict(f"canary #{canary.pk} cannot be certified: {'; '.join(failed)}")
        user = principal.user
        name = user.get_full_name() or user.get_username()
        head = AuditChainHead.objects.get_or_create(id=1)[0]
        cert = Certificate(
            id=uuid.uuid4(), canary=canary, status=Certificate.Status.ISSUED if issue else Certificate.Status.RETURNED,
            checklist=checklist, reasons=reasons, reviewer=user, reviewer_name=name, decided_at=now,
        )
        if issue:
            cert.body = _body(canary, reviewer_name=name, now=now, checklist=checklist)
            cert.sealed = seal(canary)
            cert.evidence_hash = digest(cert.sealed)
            cert.chain_head_seq, cert.chain_head_hash = head.seq, head.hash
            key = keyring.active_key()
            # Named on the PDF, so known before it is rendered; the signature itself comes last.
            cert.signature = {"algorithm": key.algorithm, "key_id": key.key_id, "fingerprint": key.fingerprint}
            cert.pdf_sha256 = hashlib.sha256(render_pdf(cert)).hexdigest()
        cert.content_hash = _content_hash(cert)
        if issue:
            signed = keyring.sign(certificate_statement(cert))
            if signed["key_id"] != cert.signature["key_id"]:
                raise Conflict("the signing key was rotated while the certificate was issued: try again")
            cert.signature = signed
        event = audit_append(
            actor=user, action="certificate.issued" if issue else "certificate.returned",
            object_type="certificate", object_id=cert.pk,
            payload={"canary": canary.pk, "content_hash": cert.content_hash, "evidence_hash": cert.evidence_hash,
                     "pdf_sha256": cert.pdf_sha256, "chain_head": {"seq": head.seq, "hash": head.hash},
                     "checklist": {c["key"]: c["ok"] for c in checklist}, "reasons": reasons,
                     **({"signature": cert.signature} if issue else {})},
        )
        cert.audit_seq = event.seq
        cert.save(force_insert=True)
        if issue:
            canary_mark_certified(canary=canary, actor=user, payload={"certificate": str(cert.pk)})
    return cert


@dataclass
class CertificateVerification:
    ok: bool
    certificate_id: str
    status: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "certificate": self.certificate_id, "status": self.status, "checks": self.checks,
                "changed": self.changed}


def certificate_verify(*, certificate_id: Any) -> CertificateVerification:
    """Is the certificate genuine and unaltered? Recomputes its own hash, every sealed record's
    digest (naming each one that changed or disappeared), checks the server's signature of it
    against the published keys, finds its sealing event in the audit chain and verifies the
    chain."""
    cert = Certificate.objects.filter(pk=certificate_id).first()
    if cert is None:
        raise NotFound(f"no certificate {certificate_id}")
    checks: list[dict[str, Any]] = []
    changed: list[str] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": ok, "detail": detail})

    own = _content_hash(cert) == cert.content_hash
    check("certificate", own,
          "the certificate record matches its hash" if own else "the certificate record was altered")
    if not own:
        changed.append(f"certificate:{cert.pk}")
    event = AuditEvent.objects.filter(seq=cert.audit_seq).first() if cert.audit_seq else None
    sealed_ok = (
        event is not None and event.object_type == "certificate" and event.object_id == str(cert.pk)
        and event.payload.get("content_hash") == cert.content_hash
    )
    check("audit_seal", sealed_ok, f"sealed by audit event #{cert.audit_seq}" if sealed_ok
          else "no audit event seals this certificate's hash")
    if cert.status == Certificate.Status.ISSUED:
        canary = Canary.objects.get(pk=cert.canary_id)
        current = seal(canary)
        for key, value in cert.sealed.items():
            if key not in current:
                changed.append(f"{key} (removed)")
            elif current[key] != value:
                changed.append(key)
        records_ok = not changed or changed == [f"certificate:{cert.pk}"]
        check("records", records_ok, f"{len(cert.sealed)} records unchanged since issue" if records_ok
              else "changed since issue: " + ", ".join(c for c in changed if not c.startswith("certificate:")))
        pdf_ok = hashlib.sha256(render_pdf(cert)).hexdigest() == cert.pdf_sha256
        check("pdf", pdf_ok, f"PDF SHA-256 {cert.pdf_sha256}" if pdf_ok else "the PDF no longer renders to its hash")
        signed, detail = certificate_signature_check(cert)
        check("signature", signed, detail)
    else:
        check("status", False, "this certificate was returned, not issued")
    chain = audit_verify(from_checkpoint=True)
    check("audit_chain", chain.ok, f"{chain.length} events verify ({chain.start})" if chain.ok
          else f"chain broken at event #{chain.first_bad_seq}: {chain.reason} ({chain.start})")
    return CertificateVerification(all(c["ok"] for c in checks), str(cert.pk), cert.status, checks, changed)

