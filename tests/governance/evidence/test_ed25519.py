"""The stand-alone verifier's own Ed25519 (RFC 8032 §5.1.7, pure Python): the RFC's test vectors,
signatures made by the `cryptography` package, and what it must refuse."""

from __future__ import annotations

import base64
import json
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from governance.evidence.verify_bundle import _L, ed25519_verify, load_public_key

# RFC 8032 §7.1, TEST 1 to 3: (secret key, public key, message, signature), hex.
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors_verify_and_match_the_cryptography_package(secret, public, message, signature):
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    assert _raw(key).hex() == public and key.sign(bytes.fromhex(message)).hex() == signature
    assert ed25519_verify(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))
    assert not ed25519_verify(bytes.fromhex(public), bytes.fromhex(message) + b"x", bytes.fromhex(signature))


def test_signatures_made_by_the_cryptography_package_verify_and_every_alteration_fails():
    rng = random.Random(8032)
    for _ in range(12):
        key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        message = rng.randbytes(rng.randrange(0, 300))
        signature = key.sign(message)
        assert ed25519_verify(_raw(key), message, signature)
        assert not ed25519_verify(_raw(other), message, signature)  # another key
        flipped = bytearray(signature)
        flipped[rng.randrange(64)] ^= 1 << rng.randrange(8)
        assert not ed25519_verify(_raw(key), message, bytes(flipped))
        changed = bytearray(message or b"\0")
        changed[rng.randrange(len(changed))] ^= 1
        assert not ed25519_verify(_raw(key), bytes(changed), signature)


def test_malformed_keys_and_signatures_are_refused_not_raised():
    key = Ed25519PrivateKey.generate()
    signature = key.sign(b"m")
    s = int.from_bytes(signature[32:], "little")
    # The same S plus the group order: the same point arithmetic, but not the canonical encoding.
    assert not ed25519_verify(_raw(key), b"m", signature[:32] + (s + _L).to_bytes(32, "little"))
    assert not ed25519_verify(_raw(key)[:31], b"m", signature)
    assert not ed25519_verify(_raw(key), b"m", signature[:63])
    assert not ed25519_verify(b"\xff" * 32, b"m", signature)  # y >= p: no point


def test_public_keys_load_from_pem_json_or_base64():
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    b64 = base64.b64encode(_raw(key)).decode()
    assert load_public_key(pem) == load_public_key(b64) == load_public_key(json.dumps({"public_key": b64})) == _raw(key)
    with pytest.raises(ValueError):
        load_public_key(base64.b64encode(b"short").decode())
