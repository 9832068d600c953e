"""Signed statements of the audit chain's head.

A head statement says "event #seq of CanaryHub's audit chain has hash H", signed with the
server's Ed25519 key (canaryhub.keyring). Evidence bundles carry one for the head they were made
at; the stand-alone verifier (governance/evidence/verify_bundle.py) rebuilds the same bytes."""

from __future__ import annotations

from typing import Any

from canaryhub import keyring
from canaryhub.canonical import canonical_json

HEAD_STATEMENT = "canaryhub.audit.head"


def head_statement(*, seq: int, digest: str) -> bytes:
    """The exact bytes signed for a chain head."""
    return canonical_json({"statement": HEAD_STATEMENT, "seq": seq, "hash": digest}).encode("utf-8")


def head_sign(*, seq: int, digest: str) -> dict[str, str]:
    return keyring.sign(head_statement(seq=seq, digest=digest))


def head_signature_valid(*, seq: int, digest: str, signature: dict[str, Any]) -> bool:
    """Signed by a key of the ring (active or retired)."""
    return keyring.verify(head_statement(seq=seq, digest=digest), signature) is not None
