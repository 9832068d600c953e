"""Sticky assignment of users to the canary or the production version.

Two layers:

- **Pure hashing** (`murmur2`, `in_canary_bucket`, `eligible`, `decide`): the very arithmetic
  nginx's `split_clients` performs, so an application that asks `/api/v1/assign` and a request
  that goes through the nginx router put the same user on the same side. nginx hashes the key
  string with MurmurHash2 into 32 bits and serves the first part whose cumulative boundary is
  above the hash; the canary part comes first, so the canary is always the bottom
  `percent` of the hash space and a user in it at 5 % is still in it at 10 % (pattern §4.4).
  The key is `c<canary_id>:<user>`: each canary draws a fresh sample of users, and a user's
  bucket never changes during one canary.
- **The store** (`AssignmentStore`): Redis, keyed by model, canary and user, with TTL = the
  canary period, remembering who was put on the canary. A remembered canary user stays on it
  while the canary serves anybody (percent > 0), even if their region, tier or cohort changes
  since; a rollback (0 %) sends everybody to production whatever was remembered. Production
  users are not stored: they are re-evaluated as the percent grows. When Redis does not answer,
  assignment falls back to stateless hashing (users whose segment data changed may switch
  version), says so in the answer and raises an alert (§7.2) — never an error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from django.conf import settings

from releases.routing.routers.base import Split

logger = logging.getLogger(__name__)

CANARY = "canary"
PRODUCTION = "production"
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF

# The request attribute that decides eligibility for each segmentation strategy.
STRATEGY_ATTRIBUTE = {"cohort": "cohort", "region": "region", "account_tier": "tier"}


def murmur2(data: bytes) -> int:
    """nginx's ngx_murmur_hash2 (MurmurHash2, seed 0 xor length), bit for bit."""
    length = len(data)
    h = length & _MASK
    i = 0
    while length - i >= 4:
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
        i += 4
    rest = length - i
    if rest == 3:
        h ^= data[i + 2] << 16
    if rest >= 2:
        h ^= data[i + 1] << 8
    if rest >= 1:
        h ^= data[i]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def hash_key(canary_id: int, user: str) -> str:
    """The string nginx hashes (the nginx router renders `"c<id>:${http_x_user_id}"`)."""
    return f"c{canary_id}:{user}"


def canary_boundary(percent: int) -> int:
    """split_clients' boundary for a first part of `percent` %: hundredths of a percent scaled
    to 0xffffffff, as ngx_http_split_clients_module computes it."""
    return (percent * 100) * 0xFFFFFFFF // 10000


def in_canary_bucket(*, canary_id: int, user: str, percent: int) -> bool:
    if percent <= 0 or not user:
        return False
    if percent >= 100:
        return True
    return murmur2(hash_key(canary_id, user).encode("utf-8")) < canary_boundary(percent)


def eligible(split: Split, attributes: Mapping[str, str | None]) -> bool:
    """Whether the user's segment is in the split's segmentation. Values compare
    case-insensitively, as nginx's `map` does."""
    if split.strategy == "random":
        return True
    value = attributes.get(STRATEGY_ATTRIBUTE[split.strategy]) or ""
    return value.lower() in {v.lower() for v in split.values}


def decide(split: Split, *, user: str, attributes: Mapping[str, str | None]) -> str:
    """The variant a user gets from the split, statelessly: `canary` or `production`."""
    if user and eligible(split, attributes) and in_canary_bucket(
        canary_id=split.canary_id, user=user, percent=split.percent
    ):
        return CANARY
    return PRODUCTION


# --- the store ------------------------------------------------------------------------------------


class StoreUnavailable(Exception):
    """The assignment store did not answer."""


class AssignmentStore(Protocol):
    def check(self, key: str, remember_ttl_s: int | None) -> bool:
        """Whether `key` was remembered; with `remember_ttl_s`, also remember it (if it was not)
        for that long. One round trip."""
        ...


def store_key(split: Split, user: str) -> str:
    """The sticky store's key of a user: a keyed hash (HMAC-SHA256 with the deployment's
    CANARYHUB_ASSIGNMENT_HASH_KEY) of the user id, never the id itself: the store holds no
    personal data, and without the key its keys cannot be tested against guessed ids."""
    digest = hmac.new(settings.ASSIGNMENT_HASH_KEY.encode(), user.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return f"canaryhub:assign:{split.model}:{split.canary_id}:{digest.hexdigest()[:40]}"


class MemoryStore:
    """The embedded default (no REDIS_URL): per-process, bounded. Sticky within one process only."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self._data: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max = max_keys

    def check(self, key: str, remember_ttl_s: int | None) -> bool:
        expires = self._data.get(key)
        seen = expires is not None and expires > time.monotonic()
        if remember_ttl_s is not None and not seen:
            self._remember(key, remember_ttl_s)
        return seen

    def _remember(self, key: str, ttl_s: int) -> None:
        with self._lock:
            if len(self._data) >= self._max:
                now = time.monotonic()
                self._data = {k: v for k, v in self._data.items() if v > now}
                if len(self._data) >= self._max:
                    self._data.clear()  # a bounded cache beats an unbounded one; hashing still decides
            self._data[key] = time.monotonic() + ttl_s


class RedisStore:
    """Redis with short socket timeouts: a dead Redis costs one timeout, then a pause during
    which we do not try (so a down store does not add a connect timeout to every request)."""

    def __init__(self, url: str, *, timeout_s: float = 0.05, retry_after_s: float = 2.0) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self._retry_after_s = retry_after_s
        self._down_until = 0.0

    def _guard(self) -> None:
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("assignment store marked down; retrying shortly")

    def _failed(self, exc: Exception) -> StoreUnavailable:
        self._down_until = time.monotonic() + self._retry_after_s
        return StoreUnavailable(f"redis: {exc}")

    def check(self, key: str, remember_ttl_s: int | None) -> bool:
        self._guard()
        try:
            if remember_ttl_s is None:
                return self._client.execute_command("EXISTS", key) == 1
            # SET NX answers None when the key was already there: a remembered canary user.
            # (SET … NX GET would say the same but needs Redis 7; this works from 2.6.12.)
            return self._client.execute_command("SET", key, b"1", "EX", max(int(remember_ttl_s), 1), "NX") is None
        except Exception as exc:  # redis raises ConnectionError, TimeoutError, ResponseError…
            raise self._failed(exc) from exc


@dataclass(frozen=True)
class Assignment:
    variant: str
    version: str
    sticky: bool  # answered from the store (a remembered canary user)
    fallback: bool  # the store was down: stateless hashing only
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "version": self.version, "sticky": self.sticky,
            "fallback": self.fallback, "detail": self.detail,
        }


def assign(
    split: Split, *, user: str, attributes: Mapping[str, str | None], store: AssignmentStore | None, ttl_s: int,
) -> Assignment:
    """The sticky assignment: a remembered canary user stays on the canary while it serves;
    otherwise the stateless decision, remembered when it is the canary."""
    def version(variant: str) -> str:
        return split.canary_version if variant == CANARY else split.production_version

    if split.percent <= 0 or not user:
        return Assignment(PRODUCTION, split.production_version, sticky=False, fallback=False)
    variant = decide(split, user=user, attributes=attributes)
    if store is None:
        return Assignment(variant, version(variant), sticky=False, fallback=False)
    key = store_key(split, user)
    try:
        # One round trip: a user hashed onto the canary is remembered in the same command that
        # tells whether they already were; others are only looked up.
        if store.check(key, ttl_s if variant == CANARY else None):
            return Assignment(CANARY, split.canary_version, sticky=True, fallback=False)
    except StoreUnavailable as exc:
        return Assignment(
            variant, version(variant), sticky=False, fallback=True,
            detail=f"assignment store unavailable, stateless hashing (a user may switch version): {exc}",
        )
    return Assignment(variant, version(variant), sticky=False, fallback=False)
