"""Signed statements of the audit chain's head, and the checkpoints built on them.

A head statement says "event #seq of CanaryHub's audit chain has hash H", signed with the
server's Ed25519 key (canaryhub.keyring). Evidence bundles carry one for the head they were made
at; the stand-alone verifier (governance/evidence/verify_bundle.py) rebuilds the same bytes.

A checkpoint is such a statement kept after the nightly full verification of the chain ended
there. Verifying "from the checkpoint" (governance.audit.services.audit_verify) checks that the
event at the checkpoint still has the signed hash, then only the events after it: the certificate
pages answer in the time the new events take, not the whole chain's. An event before the
checkpoint edited in place behind the database's append-only triggers (without recomputing the
hashes after it) is therefore caught by the next full verification, not by these pages; one
edited with its successors' hashes recomputed changes the hash at the checkpoint and is caught
at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from canaryhub import keyring
from canaryhub.canonical import canonical_json
from governance.audit.models import AuditCheckpoint

HEAD_STATEMENT = "canaryhub.audit.head"


def head_statement(*, seq: int, digest: str) -> bytes:
    """The exact bytes signed for a chain head."""
    return canonical_json({"statement": HEAD_STATEMENT, "seq": seq, "hash": digest}).encode("utf-8")


def head_sign(*, seq: int, digest: str) -> dict[str, str]:
    return keyring.sign(head_statement(seq=seq, digest=digest))


def head_signature_valid(*, seq: int, digest: str, signature: dict[str, Any]) -> bool:
    """Signed by a key of the ring (active or retired)."""
    return keyring.verify(head_statement(seq=seq, digest=digest), signature) is not None


# --- checkpoints: where verification starts again --------------------------------------------------
# Decision: a checkpoint whose signature does not verify with any published key is refused, and
# verification then starts from the first event (a full verification), saying so. Older
# checkpoints are not tried: a row someone could forge once they could forge again, and the full
# verification is the answer that does not depend on the table at all.


def checkpoint_record(*, seq: int, digest: str, now: datetime) -> AuditCheckpoint:
    """Sign and keep (seq, digest) — to be called only after a full verification ended there."""
    checkpoint, _ = AuditCheckpoint.objects.get_or_create(
        seq=seq, defaults={"hash": digest, "signature": head_sign(seq=seq, digest=digest), "created_at": now},
    )
    return checkpoint


def checkpoint_trusted() -> tuple[AuditCheckpoint | None, str]:
    """The newest checkpoint, if its signature holds; and a note saying what was done."""
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    if checkpoint is None:
        return None, "no signed checkpoint yet: verified from the first event"
    if not head_signature_valid(seq=checkpoint.seq, digest=checkpoint.hash, signature=checkpoint.signature):
        return None, (f"checkpoint #{checkpoint.seq} refused: its signature does not verify with any published "
                      "key; verified from the first event")
    return checkpoint, f"from signed checkpoint #{checkpoint.seq}"
