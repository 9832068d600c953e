"""The server's signing keys: Ed25519, kept by the deployment, never by a form.

CanaryHub signs what it hands to someone who must be able to trust it without trusting the
database: the manifest of an evidence bundle, the audit chain heads it states (in bundles and in
the chain's checkpoints) and every completion certificate. Anyone holding the public key checks
those signatures; nobody without the private key can make one.

The ring lives in one directory, `settings.SIGNING_KEY_DIR` (CANARYHUB_SIGNING_KEY_DIR):

    active.pem            the private key in use (PKCS#8 PEM, mode 0600)
    public/<key id>.json  every key's public half, active and retired:
                          {"key_id", "fingerprint", "algorithm", "public_key", "created_at", "retired_at"}

A key's fingerprint is the SHA-256 (hex) of its 32 raw public-key bytes; its id is the first 16
hex digits of the fingerprint. Rotating (`manage.py signing_keys rotate`) writes a new active key,
marks the old one retired and destroys its private half; the retired public half stays published,
so what it signed still verifies. In development and tests a key is generated once, on first use;
production never generates one by itself (the settings refuse to start without the directory,
and signing refuses without a key in it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ALGORITHM = "Ed25519"
ACTIVE_FILE = "active.pem"
PUBLIC_DIR = "public"


def fingerprint_of(public_raw: bytes) -> str:
    """SHA-256 (hex) of the 32 raw bytes of an Ed25519 public key."""
    return hashlib.sha256(public_raw).hexdigest()


def key_id_of(public_raw: bytes) -> str:
    return fingerprint_of(public_raw)[:16]


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    fingerprint: str
    algorithm: str
    public_key: bytes
    created_at: str
    retired_at: str | None

    @property
    def active(self) -> bool:
        return self.retired_at is None

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode("ascii")

    @property
    def public_key_pem(self) -> str:
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def as_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "fingerprint": self.fingerprint, "algorithm": self.algorithm,
                "public_key": self.public_key_b64, "created_at": self.created_at, "retired_at": self.retired_at}

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def _directory() -> Path:
    return Path(settings.SIGNING_KEY_DIR)


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _raw_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _record(public_raw: bytes, *, created_at: str, retired_at: str | None = None) -> PublicKey:
    return PublicKey(key_id_of(public_raw), fingerprint_of(public_raw), ALGORITHM, public_raw, created_at, retired_at)


def _publish(directory: Path, key: PublicKey) -> None:
    (directory / PUBLIC_DIR).mkdir(parents=True, exist_ok=True)
    data = json.dumps(key.as_dict(), indent=2, sort_keys=True).encode("utf-8") + b"\n"
    _write_atomically(directory / PUBLIC_DIR / f"{key.key_id}.json", data, mode=0o644)


def _load_public(path: Path) -> PublicKey | None:
    try:
        data = json.loads(path.read_text())
        raw = base64.b64decode(data["public_key"], validate=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(raw) != 32 or data.get("algorithm") != ALGORITHM:
        return None
    return _record(raw, created_at=str(data.get("created_at") or ""), retired_at=data.get("retired_at") or None)


def _load_private(directory: Path) -> Ed25519PrivateKey | None:
    path = directory / ACTIVE_FILE
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"{path} is not an Ed25519 private key")
    return key


def _pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def _create_active(directory: Path) -> None:
    """Write a new active key if there is none (two processes starting at once: one wins)."""
    directory.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".new-key.")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, _pem(private))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, directory / ACTIVE_FILE)  # fails if another process made one first
        _publish(directory, _record(_raw_public(private), created_at=_now_text()))
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def public_keys() -> list[PublicKey]:
    """Every published key, the active one first, then the retired ones newest first."""
    directory = _directory()
    _active()  # the active key is published with it (and made in development)
    keys = [k for k in (_load_public(p) for p in sorted((directory / PUBLIC_DIR).glob("*.json"))) if k is not None]
    keys.sort(key=lambda k: (k.active, k.retired_at or "", k.created_at), reverse=True)
    return keys


def public_key(key_id: str) -> PublicKey | None:
    return next((k for k in public_keys() if k.key_id == key_id), None)


def _active() -> tuple[Ed25519PrivateKey, PublicKey]:
    directory = _directory()
    private = _load_private(directory)
    if private is None:
        if settings.PRODUCTION:
            raise ImproperlyConfigured(
                f"no active signing key in {directory}: create one with 'manage.py signing_keys generate'"
            )
        _create_active(directory)
        private = _load_private(directory)
        assert private is not None
    raw = _raw_public(private)
    published = _load_public(directory / PUBLIC_DIR / f"{key_id_of(raw)}.json")
    if published is None or not published.active:
        # A key copied in by hand: publish it (a retired key cannot become active again).
        if published is not None:
            raise ImproperlyConfigured(f"the active signing key {published.key_id} is marked retired")
        published = _record(raw, created_at=_now_text())
        _publish(directory, published)
    return private, published


def has_active_key() -> bool:
    return (_directory() / ACTIVE_FILE).exists()


def active_key() -> PublicKey:
    return _active()[1]


def sign(message: bytes) -> dict[str, str]:
    """Sign `message` with the active key: {"algorithm", "key_id", "fingerprint", "signature"}."""
    private, key = _active()
    return {"algorithm": ALGORITHM, "key_id": key.key_id, "fingerprint": key.fingerprint,
            "signature": base64.b64encode(private.sign(message)).decode("ascii")}


def verify(message: bytes, signature: dict[str, Any]) -> PublicKey | None:
    """The published key (active or retired) whose signature this is, or None when it is not a
    valid signature of `message` by any key of the ring."""
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        return None
    key = public_key(str(signature.get("key_id", "")))
    if key is None or key.fingerprint != signature.get("fingerprint"):
        return None
    try:
        raw = base64.b64decode(str(signature.get("signature", "")), validate=True)
    except ValueError:
        return None
    return key if key.verify(message, raw) else None


def generate(*, rotate: bool) -> tuple[PublicKey, PublicKey | None]:
    """Create the active key (`rotate=False`: only when there is none) or replace it (`rotate=True`):
    the old key is marked retired, its public half stays published and its private half is
    destroyed. Returns (the active key, the key retired or None)."""
    directory = _directory()
    directory.mkdir(parents=True, exist_ok=True)
    current = _load_private(directory)
    if current is not None and not rotate:
        raise FileExistsError(f"{directory / ACTIVE_FILE} exists: rotate to replace it")
    private = Ed25519PrivateKey.generate()
    new = _record(_raw_public(private), created_at=_now_text())
    _publish(directory, new)
    retired = None
    if current is not None:
        raw = _raw_public(current)
        old = _load_public(directory / PUBLIC_DIR / f"{key_id_of(raw)}.json")
        retired = _record(raw, created_at=old.created_at if old else "", retired_at=_now_text())
        _publish(directory, retired)
    _write_atomically(directory / ACTIVE_FILE, _pem(private), mode=0o600)
    return new, retired
