"""HMAC signatures on outgoing HTTP requests, so a receiver can tell CanaryHub from anyone else on
the network. One scheme for every signed request CanaryHub makes (the webhook router's pushes and
the notification webhooks):

    X-CanaryHub-Timestamp: <unix seconds>
    X-CanaryHub-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

A receiver refuses a timestamp more than MAX_SKEW_S off, which makes a captured request useless
later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-CanaryHub-Signature"
TIMESTAMP_HEADER = "X-CanaryHub-Timestamp"
MAX_SKEW_S = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The two headers that sign `body` now."""
    timestamp = str(int(now if now is not None else time.time()))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(secret: str, *, timestamp: str, body: bytes, signature: str, now: float | None = None) -> bool:
    """The receiver's check (used by tests and by Python receivers): signature and freshness."""
    try:
        skew = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return skew <= MAX_SKEW_S and hmac.compare_digest(sign(secret, timestamp, body), signature)
