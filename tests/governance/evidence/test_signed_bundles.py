"""Forging an evidence bundle, as someone without the server's key would: every forgery fails
with the auditor's pinned key; the untouched bundle passes when the published verifier runs
under the system Python; a rotated key leaves older bundles verifiable."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

from canaryhub import keyring
from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.certificates.services import certificate_decide, certificate_verify
from governance.evidence import verify_bundle as verifier
from governance.evidence.bundles import bundle_stream, canaries_for
from governance.evidence.selectors import VERIFY_SCRIPT
from tests.governance.helpers import make_model, run_to_completion

SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"


@pytest.fixture
def keys(settings, tmp_path):
    settings.SIGNING_KEY_DIR = str(tmp_path / "keys")
    return keyring


@pytest.fixture
def certified(role_user, keys):
    owner = role_user(Role.MODEL_OWNER, username="owner")
    platform = role_user(Role.PLATFORM, username="platform")
    mrm = role_user(Role.MRM, username="mrm")
    gov = role_user(Role.AI_GOVERNANCE, username="gov")
    make_model(platform)
    canary = run_to_completion(owner=owner, mrm=mrm)
    return canary, certificate_decide(actor=gov, canary_id=canary.pk, issue=True)


def _bundle(canary) -> bytes:
    return b"".join(bundle_stream(canaries_for(canary_id=canary.pk), scope={"kind": "canary", "canary": canary.pk}))


def _extract(data: bytes, folder: Path) -> Path:
    zipfile.ZipFile(io.BytesIO(data)).extractall(folder)
    return folder


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _write_lines(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _forge(folder: Path, *, events: list[dict], head_hash: str | None = None, signer=None) -> None:
    """Make the bundle consistent again around `events`, as a forger would: rehash the events,
    rebuild the chain skeleton, the head and the manifest, then sign with `signer` (a key of the
    forger's) or keep the server's old signature."""
    chain = _lines(folder / "audit/chain.jsonl")
    by_seq = {e["seq"]: e for e in events}
    previous = chain[0]["prev_hash"]
    for link in chain:
        event = by_seq.get(link["seq"])
        if event is not None:
            event["prev_hash"] = previous
            event["hash"] = verifier.event_digest(event)
            link["hash"] = event["hash"]
        elif link["prev_hash"] != previous:
            link["hash"] = hashlib.sha256(f"{link['seq']}{previous}".encode()).hexdigest()
        link["prev_hash"] = previous
        previous = link["hash"]
    if head_hash is not None:
        chain[-1]["hash"] = head_hash
    head = {"seq": chain[-1]["seq"], "hash": chain[-1]["hash"]}
    _write_lines(folder / "audit/events.jsonl", events)
    _write_lines(folder / "audit/chain.jsonl", chain)
    stated = {**json.loads((folder / "audit/head.json").read_text()), **head}
    if signer is not None:
        public = signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        stated["signature"] = {
            "algorithm": "Ed25519", "key_id": verifier.fingerprint(public)[:16], "fingerprint": verifier.fingerprint(public),
            "signature": base64.b64encode(signer.sign(verifier.head_statement(head["seq"], head["hash"]))).decode(),
        }
    (folder / "audit/head.json").write_text(json.dumps(stated))
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest["audit_head"] = head
    manifest["audit_events"] = [[e["seq"], e["hash"]] for e in events]
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (folder / "manifest.json").write_bytes(manifest_bytes)
    if signer is not None:
        public = signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        (folder / "manifest.sig").write_text(json.dumps({
            "algorithm": "Ed25519", "key_id": verifier.fingerprint(public)[:16],
            "fingerprint": verifier.fingerprint(public), "public_key": base64.b64encode(public).decode(),
            "signature": base64.b64encode(signer.sign(manifest_bytes)).decode(),
        }))


def _problems(folder: Path, fingerprint: str) -> list[str]:
    return verifier.verify(str(folder), (), {fingerprint})[0]


@pytest.mark.django_db
def test_every_forgery_fails_with_the_pinned_key_and_the_untouched_bundle_passes(certified, keys, tmp_path):
    canary, _ = certified
    data = _bundle(canary)
    pinned = keys.active_key().fingerprint
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    # The signed manifest lists every audit event of the canary, none left out.
    of_canary = AuditEvent.objects.filter(object_type="canary", object_id=str(canary.pk)).values_list("seq", "hash")
    assert {tuple(x) for x in of_canary} <= {tuple(x) for x in manifest["audit_events"]}
    assert manifest["signing_key"]["fingerprint"] == pinned

    def fresh(name: str) -> Path:
        return _extract(data, tmp_path / name)

    assert _problems(fresh("untouched"), pinned) == []
    forger = Ed25519PrivateKey.generate()

    # 1. One event's content changed, its hash, the chain, the head and the manifest recomputed.
    for signer in (None, forger):
        folder = fresh(f"content-{signer is not None}")
        events = _lines(folder / "audit/events.jsonl")
        events[0]["actor_name"] = "mallory"
        _forge(folder, events=events, signer=signer)
        problems = _problems(folder, pinned)
        assert problems and "not signed by a key you pinned" in problems[0], problems
        if signer is not None:  # consistent in itself: only the key gives it away
            forger_fp = verifier.fingerprint(forger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
            assert _problems(folder, forger_fp) == []

    # 2. The head rewritten (everything else recomputed to agree with it).
    folder = fresh("head")
    _forge(folder, events=_lines(folder / "audit/events.jsonl"), head_hash="f" * 64)
    assert "not signed by a key you pinned" in _problems(folder, pinned)[0]

    # 3. One event of the canary dropped: with the manifest left signed, and with it rewritten.
    folder = fresh("dropped-kept")
    events = _lines(folder / "audit/events.jsonl")
    dropped = events[len(events) // 2]
    _write_lines(folder / "audit/events.jsonl", [e for e in events if e is not dropped])
    problems = _problems(folder, pinned)
    assert f"audit event {dropped['seq']}: listed in the signed manifest but missing from the bundle" in problems
    folder = fresh("dropped-rewritten")
    _forge(folder, events=[e for e in _lines(folder / "audit/events.jsonl") if e["seq"] != dropped["seq"]])
    assert "not signed by a key you pinned" in _problems(folder, pinned)[0]

    # 4. A verifier planted in the bundle (one that always says OK) is not what the auditor runs,
    #    and the one they run refuses the extra file.
    folder = fresh("planted")
    (folder / "verify_bundle.py").write_text("print('OK: everything verifies')\n")
    assert "verify_bundle.py: not listed in the manifest" in _problems(folder, pinned)

    # 5. A key the auditor did not pin: refused even though the bundle is genuine.
    assert "not signed by a key you pinned" in _problems(fresh("other-pin"), "0" * 64)[0]


@pytest.mark.django_db
def test_the_published_verifier_under_the_system_python(certified, keys, tmp_path):
    canary, _ = certified
    data = _bundle(canary)
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(data)
    key_file = tmp_path / "canaryhub.pem"
    key_file.write_text(keys.active_key().public_key_pem)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([SYSTEM_PYTHON, "-I", str(VERIFY_SCRIPT), *args], capture_output=True, text=True,
                              timeout=120)

    by_key = run(str(bundle), "--key", str(key_file))
    assert by_key.returncode == 0, by_key.stdout + by_key.stderr
    assert "signed by the pinned key" in by_key.stdout
    assert run(str(bundle), "--fingerprint", keys.active_key().fingerprint).returncode == 0
    listed = tmp_path / "signing-keys.json"  # the API's whole answer, saved by the auditor
    listed.write_text(json.dumps([{"public_key": k.public_key_b64} for k in keys.public_keys()]))
    assert run(str(bundle), "--key", str(listed)).returncode == 0
    assert run(str(bundle)).returncode == 2  # no pinned key: refused as wrong usage
    folder = _extract(data, tmp_path / "forged")
    events = _lines(folder / "audit/events.jsonl")
    events[-1]["payload"] = {"forged": True}
    _forge(folder, events=events, signer=Ed25519PrivateKey.generate())
    forged = run(str(folder), "--key", str(key_file))
    assert forged.returncode == 1 and "not signed by a key you pinned" in forged.stdout


@pytest.mark.django_db
def test_rotation_keeps_older_bundles_and_certificates_verifiable(certified, keys, tmp_path):
    canary, cert = certified
    old = keys.active_key()
    before = _extract(_bundle(canary), tmp_path / "before")
    call_command("signing_keys", "rotate", stdout=io.StringIO())
    new = keys.active_key()
    assert new.key_id != old.key_id
    after = _extract(_bundle(canary), tmp_path / "after")
    assert _problems(before, old.fingerprint) == []
    assert _problems(after, new.fingerprint) == []
    assert "not signed by a key you pinned" in _problems(after, old.fingerprint)[0]
    assert verifier.verify(str(before), (), {old.fingerprint, new.fingerprint})[0] == []
    # The certificate signed by the retired key still verifies, and says by which key.
    result = certificate_verify(certificate_id=cert.pk)
    signature = next(c for c in result.checks if c["name"] == "signature")
    assert result.ok and old.key_id in signature["detail"] and "retired" in signature["detail"]
    # The API output names the key too.
    client = APIClient()
    client.force_authenticate(User.objects.get(username="gov"))
    assert client.get(f"/api/v1/certificates/{cert.pk}/").json()["signature"]["key_id"] == old.key_id
    published = {k.key_id: k for k in keys.public_keys()}
    assert published[old.key_id].retired_at and published[new.key_id].active
    rotated = AuditEvent.objects.filter(action="signing_key.rotated").get()
    assert rotated.payload["retired"]["key_id"] == old.key_id and rotated.object_id == new.key_id
