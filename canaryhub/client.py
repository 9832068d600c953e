"""A small Python client for CanaryHub's assignment API, with a local TTL cache.

    from canaryhub.client import CanaryHubClient
    hub = CanaryHubClient("https://canaryhub.example", token="chk_…", ttl_s=5)
    version = hub.assign("support-bot", user_id, region="eu-west").version

Standard library only, so an application can vendor this one file. The cache keeps each answer
for `ttl_s` seconds (a promotion or rollback reaches the application within that time plus
the server's own few-second cache); keep it short. When CanaryHub cannot be reached the client
raises `AssignmentUnavailable` unless a `default` version is given, which it then answers with
`variant="production"` and `fallback=True`: an application should always be able to serve.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

__all__ = ["AssignmentUnavailable", "CanaryHubClient", "ClientAssignment"]


class AssignmentUnavailable(Exception):
    pass


@dataclass(frozen=True)
class ClientAssignment:
    model: str
    user: str
    variant: str
    version: str | None
    sticky: bool
    fallback: bool
    detail: str = ""
    cached: bool = False


class CanaryHubClient:
    def __init__(
        self, base_url: str, *, token: str, ttl_s: float = 5.0, timeout_s: float = 0.5, max_entries: int = 100_000
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("base_url must be an http(s) URL")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self._token = token
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._max = max_entries
        self._cache: dict[tuple[str, ...], tuple[float, ClientAssignment]] = {}
        self._local = threading.local()  # one keep-alive connection per thread

    def assign(
        self, model: str, user: str, *, region: str | None = None, tier: str | None = None,
        cohort: str | None = None, default: str | None = None,
    ) -> ClientAssignment:
        key = (model, user, region or "", tier or "", cohort or "")
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        params = {"model": model, "user": user}
        params.update({k: v for k, v in (("region", region), ("tier", tier), ("cohort", cohort)) if v})
        try:
            body = self._get("/api/v1/assign?" + urllib.parse.urlencode(params))
        except AssignmentUnavailable:
            if default is None:
                raise
            return ClientAssignment(model, user, "production", default, sticky=False, fallback=True,
                                    detail="CanaryHub unreachable: the application's default version")
        answer = ClientAssignment(
            model=model, user=user, variant=body["variant"], version=body["version"], sticky=body["sticky"],
            fallback=body["fallback"], detail=body.get("detail", ""),
        )
        if len(self._cache) >= self._max:
            self._cache.clear()  # crude but bounded; the next calls refill it
        # Stored with cached=True so later hits say where they came from.
        self._cache[key] = (now + self.ttl_s, ClientAssignment(**{**answer.__dict__, "cached": True}))
        return answer

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def _get(self, path: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        for attempt in range(2):  # a keep-alive connection the server closed is retried once
            conn = self._connection()
            try:
                conn.request("GET", self._prefix + path, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 1:
                    raise AssignmentUnavailable(f"CanaryHub unreachable: {exc}") from exc
                continue
            if response.status != 200:
                raise AssignmentUnavailable(f"CanaryHub answered {response.status}: {data[:300]!r}")
            return json.loads(data)
        raise AssignmentUnavailable("unreachable")  # pragma: no cover - the loop returns or raises
