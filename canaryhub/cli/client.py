"""CanaryHub's Python client: what CI pipelines and applications call, on the standard library only.

    from canaryhub.client import CanaryHubClient
    hub = CanaryHubClient("https://canaryhub.example", token="chk_…", ttl_s=5)
    version = hub.assign("support-bot", user_id, region="eu-west", default="1.4.0").version
    canary, replayed = hub.start_canary({"model": "support-bot", "version": "1.5.0"}, idempotency_key="…")

Authentication, retries and errors are canaryhub.cli.http's (one place for all of them):
refusals raise `ApiError` with the problem document, transient failures are retried and then
raise `Unreachable`.

`assign` is the application's hot path and keeps its own rules: a short timeout (`timeout_s`,
0.5 s), one immediate retry of a transient failure and no waiting on Retry-After, a local cache
that keeps each answer for `ttl_s` seconds (a promotion or rollback reaches the application
within that time plus the server's own few-second cache; keep it short), and, when CanaryHub
cannot answer, `AssignmentUnavailable` unless a `default` version is given, which it then
answers with `variant="production"` and `fallback=True`: an application should always be able
to serve.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .http import (
    DEFAULT_RETRY,
    ApiError,
    CanaryHubError,
    Http,
    RetryPolicy,
    Unreachable,
)

__all__ = [
    "ApiError",
    "AssignmentUnavailable",
    "CanaryHubClient",
    "CanaryHubError",
    "ClientAssignment",
    "Unreachable",
]

API = "/api/v1"
# The assignment hot path: a second try at once (a keep-alive connection the server closed, a
# worker restarting), then the application's default. It never sleeps.
ASSIGN_RETRY = RetryPolicy(attempts=2, base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)


class AssignmentUnavailable(CanaryHubError):
    """CanaryHub gave no assignment (unreachable, or it refused) and no default was given."""


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
    canary_id: int | None = None
    percent: int | None = None


def _quote(segment: str) -> str:
    return urllib.parse.quote(str(segment), safe="")


class CanaryHubClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        ttl_s: float = 5.0,
        timeout_s: float = 0.5,
        max_entries: int = 100_000,
        request_timeout_s: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        http: Http | None = None,
    ) -> None:
        """`timeout_s` is the assignment's (the hot path); `request_timeout_s` and `retry` are
        every other call's. `http` replaces the transport of those other calls (tests)."""
        self._assign_http = Http(base_url, token=token, timeout_s=timeout_s, retry=ASSIGN_RETRY)
        self.http = http or Http(base_url, token=token, timeout_s=request_timeout_s, retry=retry)
        self.base_url = self.http.base_url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._max = max_entries
        self._cache: dict[tuple[str, ...], tuple[float, ClientAssignment]] = {}

    # --- assignment (the application's hot path) ------------------------------------------------

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
            body = self._assign_http.json("GET", f"{API}/assign", query=params)
        except CanaryHubError as exc:
            if default is None:
                raise AssignmentUnavailable(f"no assignment from CanaryHub: {exc}") from exc
            return ClientAssignment(model, user, "production", default, sticky=False, fallback=True,
                                    detail="CanaryHub gave no answer: the application's default version")
        answer = ClientAssignment(
            model=model, user=user, variant=body["variant"], version=body["version"], sticky=body["sticky"],
            fallback=body["fallback"], detail=body.get("detail", ""), canary_id=body.get("canary_id"),
            percent=body.get("percent"),
        )
        if self.ttl_s > 0:
            if len(self._cache) >= self._max:
                self._cache.clear()  # crude but bounded; the next calls refill it
            # Stored with cached=True so later hits say where they came from.
            self._cache[key] = (now + self.ttl_s, replace(answer, cached=True))
        return answer

    # --- the register and canaries (CI pipelines) -----------------------------------------------

    def model(self, name: str) -> dict[str, Any]:
        return self.http.json("GET", f"{API}/models/{_quote(name)}/")

    def register_version(
        self, model: str, *, version: str, artifact_uri: str, thresholds: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None, idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The registered version, and whether CanaryHub replayed an earlier answer to this key."""
        body: dict[str, Any] = {"version": version, "artifact_uri": artifact_uri}
        if thresholds is not None:
            body["thresholds"] = thresholds
        if metrics is not None:
            body["metrics"] = metrics
        response = self.http.request("POST", f"{API}/models/{_quote(model)}/versions/", body=body,
                                     headers=_idempotent(idempotency_key))
        return response.json(), response.replayed

    def start_canary(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> tuple[dict[str, Any], bool]:
        """`body` as POST /canaries/ takes it (model, version, schedule, segmentation, rationale…).
        Returns the canary, and whether CanaryHub replayed the answer to an earlier request with
        this key (the canary was started before, by an earlier try of the same run)."""
        response = self.http.request("POST", f"{API}/canaries/", body=body, headers=_idempotent(idempotency_key))
        return response.json(), response.replayed

    def canary(self, canary_id: int) -> dict[str, Any]:
        return self.http.json("GET", f"{API}/canaries/{int(canary_id)}/")

    def signing_keys(self) -> list[dict[str, Any]]:
        """The public keys CanaryHub signs evidence with (GET /signing-keys/, open to anyone)."""
        return self.http.json("GET", f"{API}/signing-keys/")

    def download_evidence(self, canary_id: int, *, output: str | os.PathLike[str] | None = None) -> Path:
        """Stream the canary's evidence bundle (zip) to `output` (default: the name CanaryHub
        gives it, in the current folder). Written to a temporary file first and renamed, so a
        broken download never leaves a partial bundle under the final name."""
        response, chunks = self.http.stream(f"{API}/canaries/{int(canary_id)}/evidence/",
                                            accept="application/zip, application/json;q=0.5")
        target = Path(output) if output is not None else Path(
            _attachment_name(response.headers.get("content-disposition", ""))
            or f"canaryhub-evidence-canary-{int(canary_id)}.zip"
        )
        folder = target.parent if str(target.parent) else Path(".")
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return target

    def close(self) -> None:
        self.http.close()
        self._assign_http.close()


def _idempotent(key: str | None) -> dict[str, str]:
    # Every POST carries a key, so that the transport may retry it after a transient failure
    # without acting twice; callers pass one derived from the CI run to cover restarts too.
    return {"Idempotency-Key": key or f"canaryhub-client:{uuid.uuid4()}"}


def _attachment_name(disposition: str) -> str:
    """The file name of a Content-Disposition header, reduced to a plain name in this folder."""
    match = re.search(r'filename="?([^";]+)"?', disposition)
    if not match:
        return ""
    name = os.path.basename(match.group(1).replace("\\", "/")).strip()
    return name if re.fullmatch(r"[A-Za-z0-9._+\-]{1,200}", name) and not name.startswith(".") else ""
