"""The webhook router: for custom routers, service meshes and cloud load balancers.

`apply` POSTs the split as JSON to the configured URL; `read_back` GETs `<url>?model=<model>`.
Both are signed so the receiver can tell CanaryHub from anyone else on the network:

    X-CanaryHub-Timestamp: <unix seconds>
    X-CanaryHub-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

(the GET signs an empty body; the scheme is canaryhub.signing's, shared with the notification
webhooks). The receiver should refuse a timestamp more than five minutes
off, which makes a captured request useless later. It answers 2xx with the split it now applies
(the echo), 409 for a split older than the one it applies, 404 on a GET when it was never told.

Errors: no answer, a timeout or a 5xx is transient; a 4xx (a wrong signature: 401/403) or an
echo that is not the split sent is permanent. The secret never appears in an error message, and
neither does the answer's body: errors keep the status and a fixed reason. The URL may not be a
private, loopback or link-local address unless the deployment allows it
(CANARYHUB_ROUTER_ALLOWED_NETWORKS, see destinations.py), and redirects are not followed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, ClassVar

from canaryhub.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from releases.routing.routers import destinations
from releases.routing.routers.base import (
    AppliedSplit,
    PermanentRouterError,
    Router,
    RouterError,
    Split,
    StaleSplitError,
    TransientRouterError,
)

MAX_ANSWER_BYTES = 64 * 1024  # a split echo is a few hundred bytes

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookRouter", "sign", "verify"]


class WebhookRouter(Router):
    kind: ClassVar[str] = "webhook"

    def __init__(self, *, url: str, secret: str, timeout_s: float = 5.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PermanentRouterError("the webhook router needs an http(s) URL")
        destinations.check_url(url, resolve=False)
        if not secret:
            raise PermanentRouterError("the webhook router needs a signing secret")
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # never the secret, even in a traceback's locals
        return f"WebhookRouter(url={self.url!r})"

    def apply(self, split: Split) -> AppliedSplit:
        body = json.dumps(split.to_dict(), sort_keys=True).encode("utf-8")
        status, payload = self._request("POST", self.url, body)
        if status == 409:
            raise StaleSplitError(f"webhook router refused generation {split.generation} as stale (409)")
        echoed = self._split_of(payload)
        if echoed != split:
            raise PermanentRouterError(
                f"webhook router echoed {echoed.to_dict() if echoed else None} instead of the split sent"
            )
        changed = True
        if isinstance(payload, dict) and isinstance(payload.get("changed"), bool):
            changed = payload["changed"]
        return AppliedSplit(split=split, changed=changed, location=self.url)

    def read_back(self, model: str) -> Split | None:
        url = f"{self.url}{'&' if '?' in self.url else '?'}{urllib.parse.urlencode({'model': model})}"
        status, payload = self._request("GET", url, b"")
        if status == 404:
            return None
        return self._split_of(payload)

    def manual_override(self, model: str) -> str:
        return f"set {model} to 0% canary directly in the router behind {self.url} (its own console or API)"

    def _request(self, method: str, url: str, body: bytes) -> tuple[int, Any]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json", "Accept": "application/json",
            TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        request = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers, method=method)
        try:
            with destinations.open_checked(request, timeout=self.timeout_s) as response:
                status, raw = response.status, response.read(MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as exc:
            status = exc.code
            if status in (404, 409):
                return status, None
            error: type[RouterError] = TransientRouterError if status >= 500 or status == 429 else PermanentRouterError
            # A status and a fixed reason only: what the server wrote is never stored or shown.
            moved = " (redirects are not followed)" if 300 <= status < 400 else ""
            raise error(
                f"webhook router {method} {self.url} answered {status} {destinations.reason(status)}{moved}"
            ) from None
        except TimeoutError:
            raise TransientRouterError(
                f"webhook router {method} {self.url} timed out after {self.timeout_s}s"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise TransientRouterError(
                    f"webhook router {method} {self.url} timed out after {self.timeout_s}s"
                ) from None
            raise TransientRouterError(f"webhook router {method} {self.url} failed: {reason}") from None
        return status, _json_or_text(raw)

    @staticmethod
    def _split_of(payload: Any) -> Split | None:
        value = payload.get("split", payload) if isinstance(payload, dict) else payload
        try:
            return Split.from_dict(value)
        except (ValueError, TypeError, KeyError):
            raise PermanentRouterError("webhook router answered something that is not a split") from None


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")



