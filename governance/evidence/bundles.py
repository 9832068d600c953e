"""The MRM evidence bundle: a zip of everything a canary's evidence record holds, with a
manifest of SHA-256 hashes signed by the server's Ed25519 key.

The signed manifest lists every file's hash, the chain head the bundle was made at and every
audit event of its canaries (seq and hash); audit/chain.jsonl holds the chain's skeleton (seq,
prev_hash, hash) from the first of those events to the head. Changing a byte, dropping an event
or rewriting the head therefore needs a new signature, which only the server's key can make. The
verifier is not in the bundle: an auditor runs their own copy (governance/evidence/verify_bundle.py,
the `canaryhub-verify-bundle` command, or the download page) with the public key they pinned.

The zip is produced as a stream of byte chunks: records are read with `.iterator()` and written
file by file through zipfile's streaming writer into a small sink that is drained after every
chunk, so neither the API response nor the background export ever holds the bundle in memory."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from canaryhub import keyring
from governance.audit.checkpoints import head_sign
from governance.audit.models import AuditChainHead, AuditEvent
from governance.audit.services import GENESIS_HASH
from governance.certificates.models import Certificate
from governance.incidents.models import Incident
from governance.reports.pdf import render_pdf, report_pdf
from governance.reports.records import (
    approval_record,
    canary_record,
    evaluation_record,
    incident_record,
    push_record,
    threshold_change_record,
    ts,
)
from governance.reports.selectors import report_data, stage_summaries
from monitoring.evaluations import PROMOTION_GATES
from monitoring.llm import LLM_GATES
from monitoring.selectors import slo_figures, slo_measurements
from releases.canaries.models import Canary

BUNDLE_FORMAT = 2
FILES_PER_CANARY = 12  # for the progress estimate of a background export
BUNDLE_README = """CanaryHub evidence bundle

manifest.json           SHA-256 and size of every other file, the audit chain head and the seq
                        and hash of every audit event of these canaries
manifest.sig            CanaryHub's Ed25519 signature of manifest.json's exact bytes, with the
                        signing key's id, fingerprint and public key
audit/events.jsonl      the audit events concerning these canaries, with their hashes
audit/chain.jsonl       seq, prev_hash and hash of every event from the first one above to the head
audit/head.json         the chain head when the bundle was made, with its own signature
canaries/<id>-.../      initiation record, stages, evaluations (JSON and CSV), approvals with their
                        signature manifestations, incidents and root causes, threshold changes,
                        router push history, the SLOs measured (slo.json: each timed rollback
                        and promotion, and the figures against their targets), the post-canary
                        report (PDF) and, when issued, the completion certificate (JSON and PDF)

To verify it, use a verifier you obtained yourself, not anything found in a bundle:
    canaryhub-verify-bundle <this zip or its folder> --fingerprint <the key's SHA-256 you trust>
(the script and its SHA-256 are on CanaryHub's signing-keys page; the public keys too). It needs
Python 3 and its standard library only.
"""
EVALUATION_CSV_FIELDS = ["id", "stage_index", "window_start", "window_end", "verdict", "content_hash"]
# A column group (status, value, limit) for each of the pattern's gates and each built-in gate
# that joins them when reported (LLM serving, availability); a gate an evaluation did not judge
# leaves its cells empty.
EVALUATION_CSV_GATES = (*PROMOTION_GATES, *LLM_GATES, "availability")
# The response length the window recorded for each version (output tokens per response; recorded,
# not judged), empty when it recorded none.
RESPONSE_LENGTH = ("response_tokens_p50", "response_tokens_p95")


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream: zipfile then writes data descriptors instead of seeking
    back, and we hand out what it wrote so far."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def canaries_for(*, canary_id: int | None = None, model_name: str = "", since: datetime | None = None,
                 until: datetime | None = None, models: dict[str, Any] | None = None) -> QuerySet[Any]:
    """The canaries a bundle holds; `models`: a filter of the register's models they must belong to
    (governance.access.permissions.models_where), None for all."""
    qs = Canary.objects.select_related("model", "version", "baseline", "initiated_by").order_by("initiated_at", "id")
    if models is not None:
        qs = qs.filter(**{f"model__{name}": value for name, value in models.items()})
    if canary_id is not None:
        qs = qs.filter(pk=canary_id)
    if model_name:
        qs = qs.filter(model__name=model_name)
    if since is not None:
        qs = qs.filter(initiated_at__gte=since)
    if until is not None:
        qs = qs.filter(initiated_at__lt=until)
    return qs


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _json_array(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    yield b"[\n"
    first = True
    for record in records:
        yield (b"" if first else b",\n") + json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8")
        first = False
    yield b"\n]\n"


def _evaluations_csv(canary: Any) -> Iterator[bytes]:
    header = EVALUATION_CSV_FIELDS + [f"{g}_{p}" for g in EVALUATION_CSV_GATES for p in ("status", "value", "limit")]
    header += [f"{role}_{q}" for role in ("canary", "production") for q in RESPONSE_LENGTH]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for evaluation in canary.evaluations.order_by("window_end", "id").iterator(chunk_size=500):
        gates = {g["name"]: g for g in evaluation.gates}
        row = [evaluation.pk, evaluation.stage_index, ts(evaluation.window_start), ts(evaluation.window_end),
               evaluation.verdict, evaluation.content_hash]
        for name in EVALUATION_CSV_GATES:
            gate = gates.get(name, {})
            row += [gate.get("status", ""), gate.get("value", ""), gate.get("limit", "")]
        window = (evaluation.inputs or {}).get("window") or {}
        for role in ("canary", "production"):
            side = window.get(role) or {}
            row += ["" if side.get(q) is None else side[q] for q in RESPONSE_LENGTH]
        writer.writerow(row)
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _audit_filter(canaries: list[Any]) -> Q:
    canary_ids = [str(c.pk) for c in canaries]
    incident_ids = [str(i) for i in Incident.objects.filter(canary__in=canaries).values_list("pk", flat=True)]
    cert_ids = [str(i) for i in Certificate.objects.filter(canary__in=canaries).values_list("pk", flat=True)]
    versions = sorted({str(c.version) for c in canaries})
    return (
        Q(object_type="canary", object_id__in=canary_ids)
        | Q(object_type="incident", object_id__in=incident_ids)
        | Q(object_type="certificate", object_id__in=cert_ids)
        | Q(object_type="model_version", object_id__in=versions)
    )


def _event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq, "created_at": ts(event.created_at), "actor_id": event.actor_id,
        "actor_name": event.actor_name, "action": event.action, "object_type": event.object_type,
        "object_id": event.object_id, "payload": event.payload, "prev_hash": event.prev_hash, "hash": event.hash,
    }


def _lines(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for record in records:
        yield json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"


def _canary_files(canary: Any) -> Iterator[tuple[str, Callable[[], Iterable[bytes]]]]:
    """(file name, producer of its bytes) for one canary; producers run lazily, one at a time."""
    folder = f"canaries/{canary.pk}-{canary.model.name}-{canary.version.version}"
    yield f"{folder}/initiation.json", lambda: [_json_bytes(canary_record(canary))]
    yield f"{folder}/stages.json", lambda: [_json_bytes(stage_summaries(canary))]
    yield f"{folder}/evaluations.json", lambda: _json_array(
        evaluation_record(e) for e in canary.evaluations.order_by("window_end", "id").iterator(chunk_size=500)
    )
    yield f"{folder}/evaluations.csv", lambda: _evaluations_csv(canary)
    yield f"{folder}/approvals.json", lambda: _json_array(
        approval_record(a) for a in canary.approvals.select_related("signer").order_by("signed_at", "id")
    )
    yield f"{folder}/incidents.json", lambda: _json_array(
        incident_record(i) for i in canary.incidents.order_by("opened_at", "id")
    )
    yield f"{folder}/threshold_changes.json", lambda: _json_array(
        threshold_change_record(c) for c in canary.threshold_changes.order_by("requested_at", "id")
    )
    yield f"{folder}/router_pushes.json", lambda: _json_array(
        push_record(p) for p in canary.pushes.order_by("queued_at", "id").iterator(chunk_size=500)
    )
    yield f"{folder}/slo.json", lambda: [_json_bytes({
        "figures": [f.as_dict() for f in slo_figures(canary_ids=[canary.pk])],
        "measurements": slo_measurements(canary_id=canary.pk),
    })]
    yield f"{folder}/post_canary_report.pdf", lambda: [report_pdf(report_data(canary))]
    cert = canary.certificates.filter(status=Certificate.Status.ISSUED).first()
    if cert is not None:
        yield f"{folder}/certificate.json", lambda: [_json_bytes({
            "id": str(cert.pk), "status": cert.status, "body": cert.body, "sealed": cert.sealed,
            "evidence_hash": cert.evidence_hash, "content_hash": cert.content_hash, "pdf_sha256": cert.pdf_sha256,
            "chain_head": {"seq": cert.chain_head_seq, "hash": cert.chain_head_hash}, "audit_seq": cert.audit_seq,
            "signature": cert.signature,
        })]
        yield f"{folder}/certificate.pdf", lambda: [render_pdf(cert)]


def bundle_stream(
    canaries: Iterable[Any], *, scope: dict[str, Any], on_file: Callable[[str], None] | None = None
) -> Iterator[bytes]:
    """The bundle as a stream of zip bytes. `on_file` is told after each file (progress)."""
    canaries = list(canaries)
    sink = _Sink()
    manifest: dict[str, dict[str, Any]] = {}
    # Captured first: everything in the bundle is as of this head.
    head = AuditChainHead.objects.filter(id=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:

        def write(name: str, chunks: Iterable[bytes], *, listed: bool = True) -> Iterator[bytes]:
            sha, size = hashlib.sha256(), 0
            with archive.open(name, mode="w", force_zip64=True) as handle:
                for chunk in chunks:
                    sha.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
                    out = sink.drain()
                    if out:
                        yield out
            if listed:
                manifest[name] = {"sha256": sha.hexdigest(), "size": size}
            if on_file is not None:
                on_file(name)
            yield sink.drain()

        yield from write("README.txt", [BUNDLE_README.encode("utf-8")])
        for canary in canaries:
            for name, produce in _canary_files(canary):
                yield from write(name, produce())
        events = AuditEvent.objects.filter(_audit_filter(canaries), seq__lte=head_seq).order_by("seq")
        first_seq = events.values_list("seq", flat=True).first() or head_seq
        listed_events: list[tuple[int, str]] = []

        def event_lines() -> Iterator[bytes]:
            for event in events.iterator(chunk_size=1000):
                listed_events.append((event.seq, event.hash))
                yield from _lines([_event_json(event)])

        yield from write("audit/events.jsonl", event_lines())
        chain = (
            AuditEvent.objects.filter(seq__gte=first_seq, seq__lte=head_seq).order_by("seq")
            .values("seq", "prev_hash", "hash").iterator(chunk_size=5000)
        )
        yield from write("audit/chain.jsonl", _lines(chain))
        yield from write("audit/head.json", [_json_bytes({
            "seq": head_seq, "hash": head_hash, "signature": head_sign(seq=head_seq, digest=head_hash),
        })])
        key = keyring.active_key()
        manifest_bytes = _json_bytes({
            "format": BUNDLE_FORMAT, "generator": "CanaryHub", "created_at": ts(timezone.now()), "scope": scope,
            "canaries": [c.pk for c in canaries], "clock_speed": settings.CLOCK_SPEED,
            "audit_head": {"seq": head_seq, "hash": head_hash},
            "audit_events": [[seq, digest] for seq, digest in listed_events],
            "signing_key": {"key_id": key.key_id, "fingerprint": key.fingerprint, "algorithm": key.algorithm},
            "files": manifest,
        })
        signature = keyring.sign(manifest_bytes)
        yield from write("manifest.json", [manifest_bytes], listed=False)
        yield from write("manifest.sig", [_json_bytes({**signature, "public_key": key.public_key_b64})],
                         listed=False)
    yield sink.drain()


def bundle_file_count(canaries: Iterable[Any]) -> int:
    return FILES_PER_CANARY * len(list(canaries)) + 6
