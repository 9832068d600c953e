"""The server's key ring: kept in the deployment's directory, generated once in development,
never by production itself; rotated by a command, audited; published to anyone by the API and a
page, with the stand-alone verifier and its SHA-256."""

from __future__ import annotations

import hashlib
import io
import os
import stat

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from canaryhub import keyring
from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.evidence.selectors import VERIFY_SCRIPT


@pytest.fixture
def key_dir(settings, tmp_path):
    settings.SIGNING_KEY_DIR = str(tmp_path / "keys")
    return tmp_path / "keys"


def test_development_generates_one_key_once_private_half_readable_by_its_owner_only(key_dir):
    first = keyring.active_key()
    assert keyring.active_key() == first
    assert first.key_id == first.fingerprint[:16] == hashlib.sha256(first.public_key).hexdigest()[:16]
    assert stat.S_IMODE(os.stat(key_dir / "active.pem").st_mode) == 0o600
    signed = keyring.sign(b"statement")
    assert keyring.verify(b"statement", signed) == first
    assert keyring.verify(b"another statement", signed) is None
    assert keyring.verify(b"statement", {**signed, "key_id": "0" * 16}) is None


def test_production_never_generates_a_key_by_itself(key_dir, settings):
    settings.PRODUCTION = True
    with pytest.raises(ImproperlyConfigured, match="signing_keys generate"):
        keyring.sign(b"statement")
    assert not (key_dir / "active.pem").exists()


@pytest.mark.django_db
def test_generate_is_refused_over_an_existing_key_and_rotate_retires_it_audited(key_dir):
    out = io.StringIO()
    call_command("signing_keys", "generate", stdout=out)
    first = keyring.active_key()
    assert first.key_id in out.getvalue()
    with pytest.raises(CommandError, match="rotate"):
        call_command("signing_keys", "generate", stdout=io.StringIO())
    call_command("signing_keys", "ensure", stdout=io.StringIO())  # a no-op when there is a key
    old_signature = keyring.sign(b"signed before the rotation")
    call_command("signing_keys", "rotate", stdout=io.StringIO())
    second = keyring.active_key()
    assert second.key_id != first.key_id
    # The old signature still verifies with the retired, still-published key; its private half is gone.
    assert keyring.verify(b"signed before the rotation", old_signature).key_id == first.key_id
    assert [k.key_id for k in keyring.public_keys()] == [second.key_id, first.key_id]
    assert list(key_dir.glob("*.pem")) == [key_dir / "active.pem"]
    actions = list(AuditEvent.objects.filter(object_type="signing_key").values_list("action", flat=True))
    assert actions == ["signing_key.generated", "signing_key.rotated"]


@pytest.mark.django_db
def test_anyone_reads_the_keys_from_the_api_even_without_credentials(key_dir, role_user):
    keyring.generate(rotate=False)
    old = keyring.active_key()
    keyring.generate(rotate=True)
    answer = APIClient().get("/api/v1/signing-keys/")
    assert answer.status_code == 200
    keys = answer.json()
    assert [k["key_id"] for k in keys] == [keyring.active_key().key_id, old.key_id]
    assert keys[0]["active"] and keys[0]["retired_at"] is None and keys[0]["algorithm"] == "Ed25519"
    assert keys[1]["retired_at"] and keys[1]["fingerprint"] == old.fingerprint
    assert keys[1]["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    # It is read-only for everyone, whatever their role.
    client = APIClient()
    client.force_authenticate(role_user(Role.PLATFORM, username="platform"))
    assert client.post("/api/v1/signing-keys/", {"public_key": "mine"}, format="json").status_code == 405
    assert client.delete("/api/v1/signing-keys/").status_code == 405
    # A bad credential is refused as everywhere, not let through as anonymous.
    assert APIClient(HTTP_AUTHORIZATION="Bearer chk_not-a-token").get("/api/v1/signing-keys/").status_code == 401


@pytest.mark.django_db
def test_the_page_shows_the_keys_and_the_verifier_download_matches_its_shown_sha256(key_dir, client):
    key = keyring.active_key()
    page = client.get("/governance/signing-keys/")
    assert page.status_code == 200
    body = page.content.decode()
    script = VERIFY_SCRIPT.read_bytes()
    assert key.key_id in body and key.fingerprint in body and hashlib.sha256(script).hexdigest() in body
    download = client.get("/governance/signing-keys/verify_bundle.py")
    assert download.status_code == 200 and download.content == script
    assert "<script" not in body.split("<main", 1)[-1].split("</main>", 1)[0]
