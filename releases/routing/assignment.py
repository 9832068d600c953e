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
  users are not stored: they are re-evaluated as the percent grows. A stored entry's value is a
  keyed MAC of its key (`store_value`): an entry written by anyone without the deployment's key
  (sticky-session poisoning) is not honoured and is cleared by the sweep. Each eligible user
  asked is also added to a HyperLogLog of the canary's population (in the same round trip), so
  the sweep can compare the canary's share of sticky assignments with the percent in force
  (`sticky_clearance`, `share_drifted`; releases.canaries.services.sticky_sweep). When Redis does not answer,
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
    def check(self, key: str, remember_ttl_s: int | None, *, population: str | None = None) -> bool:
        """Whether `key` is remembered with a genuine value (`store_value`); with
        `remember_ttl_s`, also remember it (if it was not) for that long; with `population`,
        count the key's user in that population (a HyperLogLog). One round trip."""
        ...

    def entries(self) -> list[tuple[str, bytes | None]]:
        """Every sticky entry: (key, value)."""
        ...

    def delete(self, keys: list[str]) -> int:
        ...

    def population(self, key: str) -> int:
        """The estimated number of distinct users counted in a population."""
        ...


KEY_PREFIX = "canaryhub:assign:"
POPULATION_PREFIX = "canaryhub:assign-pop:"


def store_key(split: Split, user: str) -> str:
    """The sticky store's key of a user: a keyed hash (HMAC-SHA256 with the deployment's
    CANARYHUB_ASSIGNMENT_HASH_KEY) of the user id, never the id itself: the store holds no
    personal data, and without the key its keys cannot be tested against guessed ids."""
    digest = hmac.new(settings.ASSIGNMENT_HASH_KEY.encode(), user.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return f"{KEY_PREFIX}{split.model}:{split.canary_id}:{digest.hexdigest()[:40]}"


def population_key(model: str, canary_id: int) -> str:
    """The HyperLogLog of the users eligible for a canary who asked for an assignment."""
    return f"{POPULATION_PREFIX}{model}:{canary_id}"


def store_value(key: str) -> bytes:
    """What a genuine entry holds: a MAC of its key with the deployment's key. An entry someone
    wrote straight into the store, without the key, does not verify."""
    return hmac.new(settings.ASSIGNMENT_HASH_KEY.encode(), f"sticky|{key}".encode(), hashlib.sha256).hexdigest()[
        :32].encode()


@dataclass(frozen=True)
class StickyKey:
    model: str
    canary_id: int
    member: str  # the keyed hash of the user id (never the id)


def parse_key(key: str) -> StickyKey | None:
    """A sticky entry's model, canary and user hash; None for a key not of that form."""
    if not key.startswith(KEY_PREFIX):
        return None
    model, _, rest = key[len(KEY_PREFIX):].partition(":")
    canary, _, member = rest.partition(":")
    if not model or not canary.isdigit() or not member:
        return None
    return StickyKey(model=model, canary_id=int(canary), member=member)


# --- sticky-session poisoning: pure rules ---------------------------------------------------------

NOT_SERVING = "not_serving"
UNSIGNED = "unsigned"
SHARE_DRIFT = "share_drift"
CLEAR_REASONS = (NOT_SERVING, UNSIGNED, SHARE_DRIFT)


def sticky_clearance(*, key: str, value: bytes | None, in_force: Split | None) -> str | None:
    """Why a sticky entry disagrees with the split in force (None: it agrees).

    `unsigned`: its value is not the MAC of its key (written by anyone but CanaryHub, or
    malformed); `not_serving`: its canary is not the model's split in force, or that split sends
    nobody to the canary (rolled back, aborted, reverted, completed and superseded, at 0 %)."""
    parsed = parse_key(key)
    if parsed is None or value is None or not hmac.compare_digest(value, store_value(key)):
        return UNSIGNED
    if in_force is None or in_force.canary_id != parsed.canary_id or in_force.percent <= 0:
        return NOT_SERVING
    return None


def share_drifted(*, sticky: int, population: int, percent: int, tolerance_pp: float, min_sample: int) -> bool:
    """Whether the canary's share of the users it could serve (sticky entries over the eligible
    population asked) is further from the percent in force than the tolerance plus three
    standard errors of a sample that size. Below `min_sample` users nothing is concluded."""
    if population < min_sample or percent <= 0 or percent >= 100:
        return False
    p = percent / 100
    share = sticky / population
    noise = 3 * (p * (1 - p) / population) ** 0.5
    return abs(share - p) > tolerance_pp / 100 + noise


class MemoryStore:
    """The embedded default (no REDIS_URL): per-process, bounded. Sticky within one process only."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self._data: dict[str, tuple[float, bytes]] = {}
        self._populations: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._max = max_keys

    def check(self, key: str, remember_ttl_s: int | None, *, population: str | None = None) -> bool:
        hit = self._data.get(key)
        seen = hit is not None and hit[0] > time.monotonic()
        if population is not None:
            with self._lock:
                members = self._populations.setdefault(population, set())
                if len(members) < self._max:
                    members.add(key.rpartition(":")[2])
        if remember_ttl_s is not None:
            if not seen:
                self._remember(key, remember_ttl_s)
            return seen
        return seen and hit is not None and hmac.compare_digest(hit[1], store_value(key))

    def _remember(self, key: str, ttl_s: int) -> None:
        with self._lock:
            if len(self._data) >= self._max:
                now = time.monotonic()
                self._data = {k: v for k, v in self._data.items() if v[0] > now}
                if len(self._data) >= self._max:
                    self._data.clear()  # a bounded cache beats an unbounded one; hashing still decides
            self._data[key] = (time.monotonic() + ttl_s, store_value(key))

    def put(self, key: str, value: bytes, ttl_s: int = 3600) -> None:
        """Write an entry as is (what a process with access to the store could do)."""
        with self._lock:
            self._data[key] = (time.monotonic() + ttl_s, value)

    def entries(self) -> list[tuple[str, bytes | None]]:
        now = time.monotonic()
        return [(k, v) for k, (expires, v) in list(self._data.items()) if expires > now]

    def delete(self, keys: list[str]) -> int:
        with self._lock:
            return sum(self._data.pop(k, None) is not None for k in keys)

    def population(self, key: str) -> int:
        return len(self._populations.get(key, ()))


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

    def check(self, key: str, remember_ttl_s: int | None, *, population: str | None = None) -> bool:
        self._guard()
        try:
            # One round trip: the lookup (or the remembering) and the population count are
            # pipelined, not sent one after the other.
            pipe = self._client.pipeline(transaction=False)
            if remember_ttl_s is None:
                pipe.get(key)
            else:
                # SET NX answers None when the key was already there: a remembered canary user.
                # (SET … NX GET would say the same but needs Redis 7; this works from 2.6.12.)
                pipe.execute_command("SET", key, store_value(key), "EX", max(int(remember_ttl_s), 1), "NX")
            if population is not None:
                pipe.pfadd(population, key.rpartition(":")[2])
                pipe.expire(population, max(int(remember_ttl_s or MIN_POPULATION_TTL_S), MIN_POPULATION_TTL_S))
            answer = pipe.execute()[0]
        except Exception as exc:  # redis raises ConnectionError, TimeoutError, ResponseError…
            raise self._failed(exc) from exc
        if remember_ttl_s is not None:
            return answer is None
        # Only a genuine entry keeps a user on the canary; a forged one is ignored (and swept).
        return answer is not None and hmac.compare_digest(answer, store_value(key))

    def entries(self) -> list[tuple[str, bytes | None]]:
        found: list[tuple[str, bytes | None]] = []
        batch: list[bytes] = []
        for key in self._client.scan_iter(match=f"{KEY_PREFIX}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                found += self._values(batch)
                batch = []
        if batch:
            found += self._values(batch)
        return found

    def _values(self, keys: list[bytes]) -> list[tuple[str, bytes | None]]:
        return [(k.decode(), v) for k, v in zip(keys, self._client.mget(keys), strict=True)]

    def delete(self, keys: list[str]) -> int:
        return sum(self._client.delete(*keys[i:i + 1000]) for i in range(0, len(keys), 1000))

    def population(self, key: str) -> int:
        return int(self._client.pfcount(key))


MIN_POPULATION_TTL_S = 3600

_shared: AssignmentStore | None = None
_shared_url: str | None = None


def shared_store() -> AssignmentStore:
    """This process's client of the deployment's store: Redis at REDIS_URL, or the embedded
    per-process memory store without one."""
    global _shared, _shared_url
    if _shared is None or _shared_url != settings.REDIS_URL:
        _shared_url = settings.REDIS_URL
        _shared = RedisStore(settings.REDIS_URL, timeout_s=0.25) if settings.REDIS_URL else MemoryStore()
    return _shared


def reset_store() -> None:
    global _shared, _shared_url
    _shared, _shared_url = None, None


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
    population = population_key(split.model, split.canary_id) if eligible(split, attributes) else None
    try:
        # One round trip: a user hashed onto the canary is remembered in the same command that
        # tells whether they already were; others are only looked up. An eligible user is also
        # counted in the canary's population.
        if store.check(key, ttl_s if variant == CANARY else None, population=population):
            return Assignment(CANARY, split.canary_version, sticky=True, fallback=False)
    except StoreUnavailable as exc:
        return Assignment(
            variant, version(variant), sticky=False, fallback=True,
            detail=f"assignment store unavailable, stateless hashing (a user may switch version): {exc}",
        )
    return Assignment(variant, version(variant), sticky=False, fallback=False)
