#!/usr/bin/env python3
"""Verify a CanaryHub evidence bundle offline, with nothing but Python's standard library.

    canaryhub-verify-bundle BUNDLE --key PUBLIC_KEY_FILE      (or: python3 verify_bundle.py ...)
    canaryhub-verify-bundle BUNDLE --fingerprint SHA256_HEX

BUNDLE is the zip or the folder it was extracted to. The key is the one YOU trust: CanaryHub's
public signing key as published on its signing-keys page and API (a PEM file, a JSON record or
the whole JSON list of the API, or the base64 key), or its SHA-256 fingerprint. Repeat --key / --fingerprint to accept
several keys (a rotated one and its successor). A bundle signed by any other key is refused.

Checks, in order: manifest.sig is an Ed25519 signature, by a pinned key, of manifest.json's exact
bytes; every file listed in the manifest has the SHA-256 recorded there and no file was added;
the audit segment is intact: each event in audit/events.jsonl rehashes to its recorded hash, the
links in audit/chain.jsonl run without a gap from the first event to the head, every event sits
in that chain at its sequence number, the events present are exactly the ones the signed
manifest lists (none dropped, none added), and audit/head.json states the signed head, with its
own signature by the same key. Exit status 0 when everything verifies, 1 otherwise (each
problem is printed), 2 on wrong usage.

Run this copy of the script, obtained from CanaryHub's download page (check its SHA-256 there),
never a script that came inside a bundle: a forger controls what a bundle holds.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import zipfile

HEAD_STATEMENT = "canaryhub.audit.head"
SIGNED_FILES = ("manifest.json", "manifest.sig")

# --- Ed25519 signature verification (RFC 8032, section 5.1.7), pure Python -------------------------
# Points of the twisted Edwards curve -x^2 + y^2 = 1 + d x^2 y^2 over GF(2^255 - 19) in extended
# coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z. Verification uses public data only,
# so running time that depends on it leaks nothing.

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_IDENTITY = (0, 1, 1, 0)


def _inverse(value):
    return pow(value, _P - 2, _P)


def _x_from_y(y, negative):
    """The x with x^2 = (y^2 - 1) / (d y^2 + 1) whose low bit is `negative`, or None."""
    if y >= _P:
        return None
    square = (y * y - 1) * _inverse(_D * y * y + 1) % _P
    if square == 0:
        return None if negative else 0
    x = pow(square, (_P + 3) // 8, _P)
    if (x * x - square) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - square) % _P:
        return None
    if x & 1 != negative:
        x = _P - x
    return x


def _decode_point(encoded):
    if len(encoded) != 32:
        return None
    number = int.from_bytes(encoded, "little")
    y = number & ((1 << 255) - 1)
    x = _x_from_y(y, number >> 255)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def _add(a, b):
    ax, ay, az, at = a
    bx, by, bz, bt = b
    e1 = (ay - ax) * (by - bx) % _P
    e2 = (ay + ax) * (by + bx) % _P
    e3 = 2 * _D * at * bt % _P
    e4 = 2 * az * bz % _P
    f, g = e4 - e3, e4 + e3
    h, k = e2 - e1, e2 + e1
    return (h * f % _P, g * k % _P, f * g % _P, h * k % _P)


def _multiply(scalar, point):
    result = _IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _same(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


_BASE_Y = 4 * _inverse(5) % _P
_BASE = (_x_from_y(_BASE_Y, 0), _BASE_Y, 1, _x_from_y(_BASE_Y, 0) * _BASE_Y % _P)


def ed25519_verify(public_key, message, signature):
    """True when `signature` (64 bytes) is a valid Ed25519 signature of `message` by `public_key`
    (32 bytes): [S]B == R + [SHA-512(R || A || M) mod L]A."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decode_point(public_key)
    r = _decode_point(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % _L
    return _same(_multiply(s, _BASE), _add(r, _multiply(k, a)))


# --- pinned keys ----------------------------------------------------------------------------------

_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # DER SubjectPublicKeyInfo of an Ed25519 key


def fingerprint(public_key):
    return hashlib.sha256(public_key).hexdigest()


def load_public_key(text):
    """A 32-byte Ed25519 public key from a PEM block, the JSON record CanaryHub publishes, or base64."""
    text = text.strip()
    if text.startswith("{"):
        return load_public_key(json.loads(text)["public_key"])
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
        der = base64.b64decode(body, validate=True)
        if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
            raise ValueError("not an Ed25519 public key")
        return der[len(_SPKI_PREFIX):]
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return raw


# --- the bundle -----------------------------------------------------------------------------------


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def head_statement(seq, digest):
    """The bytes CanaryHub signs to state a chain head (governance.audit.checkpoints)."""
    return canonical_json({"statement": HEAD_STATEMENT, "seq": seq, "hash": digest}).encode("utf-8")


def event_digest(event):
    # The same definition as CanaryHub's governance.audit.services.event_digest.
    body = canonical_json({
        "seq": event["seq"], "created_at": event["created_at"], "actor_id": event["actor_id"],
        "actor_name": event["actor_name"], "action": event["action"], "object_type": event["object_type"],
        "object_id": event["object_id"], "payload": event["payload"], "prev_hash": event["prev_hash"],
    })
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class Bundle:
    def __init__(self, path):
        self.zip = zipfile.ZipFile(path) if os.path.isfile(path) else None
        self.root = path

    def names(self):
        if self.zip is not None:
            return [n for n in self.zip.namelist() if not n.endswith("/")]
        found = []
        for folder, _, files in os.walk(self.root):
            for name in files:
                found.append(os.path.relpath(os.path.join(folder, name), self.root).replace(os.sep, "/"))
        return found

    def read(self, name):
        if self.zip is not None:
            return self.zip.read(name)
        with open(os.path.join(self.root, *name.split("/")), "rb") as handle:
            return handle.read()


def _signature_by_pinned(statement, signature_record, pinned):
    """The pinned key that made this signature of `statement`, or None."""
    try:
        signature = base64.b64decode(signature_record["signature"], validate=True)
    except (KeyError, TypeError, ValueError):
        return None
    if signature_record.get("algorithm") != "Ed25519":
        return None
    for key in pinned:
        if fingerprint(key) == signature_record.get("fingerprint") and ed25519_verify(key, statement, signature):
            return key
    return None


def _json_lines(data):
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]


def verify(path, pinned_keys=(), pinned_fingerprints=()):
    """(problems, files checked, events checked). Nothing is trusted before the manifest's
    signature has been checked against a pinned key."""
    bundle = Bundle(path)
    manifest_bytes = bundle.read("manifest.json")
    record = json.loads(bundle.read("manifest.sig"))
    pinned = list(pinned_keys)
    carried = record.get("public_key")
    if pinned_fingerprints and isinstance(carried, str):
        # A fingerprint pins the key the bundle carries only when the two agree.
        key = base64.b64decode(carried, validate=True)
        if len(key) == 32 and fingerprint(key) in pinned_fingerprints:
            pinned.append(key)
    signer = _signature_by_pinned(manifest_bytes, record, pinned)
    if signer is None:
        return [
            f"manifest.json: not signed by a key you pinned (the bundle names key {record.get('key_id')!s}, "
            f"fingerprint {record.get('fingerprint')!s}); nothing in it can be trusted"
        ], 0, 0
    problems = []
    manifest = json.loads(manifest_bytes)
    listed = manifest["files"]
    for name, entry in sorted(listed.items()):
        try:
            data = bundle.read(name)
        except (KeyError, OSError):
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problems.append(f"{name}: SHA-256 does not match the manifest")
    for name in bundle.names():
        if name not in SIGNED_FILES and name not in listed:
            problems.append(f"{name}: not listed in the manifest")

    head = manifest["audit_head"]
    chain = _json_lines(bundle.read("audit/chain.jsonl"))
    by_seq = {}
    previous = None
    for link in chain:
        if previous is not None:
            if link["seq"] != previous["seq"] + 1:
                problems.append(f"audit chain: gap after event {previous['seq']}")
            if link["prev_hash"] != previous["hash"]:
                problems.append(f"audit chain: event {link['seq']} does not link to event {previous['seq']}")
        by_seq[link["seq"]] = link
        previous = link
    if chain and (chain[-1]["seq"] != head["seq"] or chain[-1]["hash"] != head["hash"]):
        problems.append("audit chain: does not end at the signed head")
    stated = json.loads(bundle.read("audit/head.json"))
    if stated.get("seq") != head["seq"] or stated.get("hash") != head["hash"]:
        problems.append("audit/head.json: not the head the manifest states")
    elif _signature_by_pinned(head_statement(head["seq"], head["hash"]), stated.get("signature") or {},
                              [signer]) is None:
        problems.append("audit/head.json: the head's signature does not verify with the manifest's key")

    expected = {int(seq): digest for seq, digest in manifest["audit_events"]}
    present = {}
    for event in _json_lines(bundle.read("audit/events.jsonl")):
        present[event["seq"]] = event["hash"]
        if event_digest(event) != event["hash"]:
            problems.append(f"audit event {event['seq']}: content does not match its hash")
        link = by_seq.get(event["seq"])
        if link is None or link["hash"] != event["hash"] or link["prev_hash"] != event["prev_hash"]:
            problems.append(f"audit event {event['seq']}: not in the chain at its place")
    for seq in sorted(set(expected) - set(present)):
        problems.append(f"audit event {seq}: listed in the signed manifest but missing from the bundle")
    for seq in sorted(set(present) - set(expected)):
        problems.append(f"audit event {seq}: present but not listed in the signed manifest")
    for seq in sorted(set(expected) & set(present)):
        if expected[seq] != present[seq]:
            problems.append(f"audit event {seq}: its hash differs from the signed manifest's")
    return problems, len(listed), len(present)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="canaryhub-verify-bundle",
        description="Verify a CanaryHub evidence bundle against the signing key you trust.",
    )
    parser.add_argument("bundle", help="the bundle's zip, or the folder it was extracted to")
    parser.add_argument("--key", action="append", default=[], metavar="FILE",
                        help="a public key file you trust (PEM, CanaryHub's JSON record or list, or base64)")
    parser.add_argument("--fingerprint", action="append", default=[], metavar="SHA256",
                        help="the SHA-256 fingerprint (64 hex digits) of a key you trust")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.key and not args.fingerprint:
        parser.error("pin the key you trust: --key FILE or --fingerprint SHA256")
    try:
        keys = []
        for name in args.key:
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
            if text.lstrip().startswith("["):  # the whole list the API publishes: every key in it
                keys.extend(load_public_key(record["public_key"]) for record in json.loads(text))
            else:
                keys.append(load_public_key(text))
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"cannot read the pinned key: {exc}")
    fingerprints = {f.strip().lower() for f in args.fingerprint}
    if any(len(f) != 64 or set(f) - set("0123456789abcdef") for f in fingerprints):
        parser.error("a fingerprint is the 64 hex digits of the key's SHA-256")
    try:
        problems, files, events = verify(args.bundle, keys, fingerprints)
    except Exception as exc:  # a damaged archive or manifest is a failed verification
        print(f"FAILED: the bundle cannot be read: {exc}")
        return 1
    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        return 1
    print(f"OK: signed by the pinned key; {files} files match the manifest; "
          f"{events} audit events verify against the chain and the signed list")
    return 0


if __name__ == "__main__":
    sys.exit(main())
