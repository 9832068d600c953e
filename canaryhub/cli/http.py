"""The one HTTP layer of CanaryHub's client: authentication, retries and errors.

Standard library only (http.client keeps one keep-alive connection per thread, which the
assignment hot path needs). Every request carries `Authorization: Bearer <token>`; the token
is never part of a message this module builds.

Retries: a connection that cannot be made or breaks, a timeout, 502/503/504 and 429 are
transient and retried with exponential backoff and jitter (429 and 503 wait for `Retry-After`
when the server sends one, up to `RetryPolicy.max_retry_after_s`). A request that may have
reached the server is retried only when repeating it is safe: GET and HEAD, or a POST that
carries an `Idempotency-Key` (the server answers a repeat with the first answer). Any other
status of 300 and above is final and raised as `ApiError`, with the problem document the server
sent and an explanation in plain words.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

__all__ = [
    "ApiError",
    "CanaryHubError",
    "DEFAULT_RETRY",
    "Http",
    "Response",
    "RetryPolicy",
    "Unreachable",
]

TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "canaryhub-cli/1"


class CanaryHubError(Exception):
    """A request that did not get the answer it asked for. `str()` says why, in plain words."""


@dataclass(frozen=True)
class ProblemDocument:
    """An RFC 9457 problem document as CanaryHub sends it (type, title, status, detail, errors)."""

    raw: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.raw.get("title") or "")

    @property
    def detail(self) -> str:
        return str(self.raw.get("detail") or "")

    @property
    def errors(self) -> dict[str, list[str]]:
        errors = self.raw.get("errors")
        return errors if isinstance(errors, dict) else {}


# What each final status means for the person reading a CI log, in words that say what to check.
_EXPLANATIONS = {
    400: "CanaryHub refused the input; nothing was changed.",
    401: "CanaryHub did not accept the token (missing, unknown or revoked): check CANARYHUB_TOKEN.",
    403: "The token's account may not do this; nothing was changed.",
    404: "CanaryHub has no such object, or the token may not see it (a service-account token sees only "
         "the models it is scoped to).",
    405: "CanaryHub does not offer this operation at this address: check CANARYHUB_URL.",
    409: "The request conflicts with the object's current state; nothing was changed.",
    413: "The request is too large for CanaryHub.",
    415: "CanaryHub refused the request's content type.",
    422: "This Idempotency-Key was used before for a different request: give a new --run-id for a new request.",
}


class ApiError(CanaryHubError):
    """A final answer of 300 or above: a refusal (4xx), a redirect, or a server failure (5xx)."""

    def __init__(self, *, method: str, path: str, status: int, problem: ProblemDocument | None,
                 body_excerpt: str = "", replayed: bool = False, location: str = "") -> None:
        self.method = method
        self.path = path
        self.status = status
        self.problem = problem
        self.body_excerpt = body_excerpt
        self.replayed = replayed
        self.location = location
        super().__init__(self.explain())

    @property
    def title(self) -> str:
        if self.problem is not None and self.problem.title:
            return self.problem.title
        return http.client.responses.get(self.status, "Error")

    def explain(self) -> str:
        lines = [f"{self.method} {self.path} answered {self.status} {self.title}"
                 + (f": {self.problem.detail}" if self.problem is not None and self.problem.detail else "")]
        if self.problem is not None:
            for name, messages in sorted(self.problem.errors.items()):
                lines.append(f"  {name}: {' '.join(str(m) for m in messages)}")
        elif self.body_excerpt:
            lines.append(f"  the answer was not a problem document: {self.body_excerpt}")
        if 300 <= self.status < 400:
            lines.append("CanaryHub redirected the request"
                         + (f" to {self.location}" if self.location else "")
                         + "; the client does not follow redirects (the token would go along): "
                         "set CANARYHUB_URL to the address CanaryHub answers on.")
        elif self.status >= 500:
            lines.append("CanaryHub failed while answering; the error is in its log. Nothing here can fix it.")
        else:
            lines.append(_EXPLANATIONS.get(self.status, "CanaryHub refused the request."))
        if self.replayed:
            lines.append("This answer was recorded for an earlier try with the same Idempotency-Key (the same "
                         "CI run): CanaryHub repeats it. To try again as a new request, give a new --run-id.")
        return "\n".join(lines)


class Unreachable(CanaryHubError):
    """Every try failed with a transient failure (no connection, timeout, 429, 502/503/504)."""

    def __init__(self, *, method: str, path: str, attempts: int, last: str) -> None:
        self.method = method
        self.path = path
        self.attempts = attempts
        self.last = last
        super().__init__(f"{method} {path}: CanaryHub could not be reached after {attempts} "
                         f"tr{'y' if attempts == 1 else 'ies'} (last: {last})")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries in all, the first included
    base_delay_s: float = 1.0  # the wait before the second try; doubled for each later one
    max_delay_s: float = 30.0
    max_retry_after_s: float = 300.0  # a longer Retry-After is not waited for: the failure is final

    def backoff(self, failures: int, rng: random.Random) -> float:
        """The wait after `failures` failed tries: between half and all of the doubled delay
        (jitter, so that many CI jobs failing together do not retry together)."""
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** max(failures - 1, 0)))
        return rng.uniform(cap / 2, cap) if cap > 0 else 0.0


DEFAULT_RETRY = RetryPolicy()


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""
    replayed: bool = False

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class _Try:
    """The outcome of one try: a response, or the transient failure that ended it."""

    response: Response | None = None
    failure: str = ""
    retry_after_s: float | None = None
    maybe_sent: bool = True  # whether the request may have reached the server
    stream: http.client.HTTPResponse | None = field(default=None, repr=False)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class Http:
    """Requests to one CanaryHub with one token. Thread-safe: each thread keeps its own
    keep-alive connection."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        timeout_s: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("the CanaryHub URL must be an http(s) URL, such as https://canaryhub.example")
        if parsed.username or parsed.password or parsed.query or parsed.fragment:
            raise ValueError("the CanaryHub URL takes no user, password, query or fragment")
        if not token or any(c.isspace() for c in token):
            raise ValueError("the token must be one word without spaces (CANARYHUB_TOKEN)")
        self.base_url = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s
        self.retry = retry
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_retry = on_retry
        self._local = threading.local()

    # --- connections ------------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def close(self) -> None:
        self._drop_connection()

    # --- requests ---------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        accept: str = "application/json",
    ) -> Response:
        """One request with retries; the answer's body read whole. Raises ApiError for a final
        status of 300 or above and Unreachable when every try failed transiently."""
        response = self._send(method, path, query=query, body=body, headers=headers, accept=accept, stream=False)
        assert response.response is not None
        return response.response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def stream(self, path: str, *, accept: str, chunk_size: int = 1 << 16) -> tuple[Response, Iterator[bytes]]:
        """A GET whose body is read in chunks (a download). The status and headers come first;
        the connection is not reused afterwards."""
        outcome = self._send("GET", path, query=None, body=None, headers=None, accept=accept, stream=True)
        assert outcome.response is not None and outcome.stream is not None
        raw = outcome.stream

        def chunks() -> Iterator[bytes]:
            try:
                while True:
                    data = raw.read(chunk_size)
                    if not data:
                        return
                    yield data
            finally:
                raw.close()
                self._drop_connection()

        return outcome.response, chunks()

    def _send(self, method: str, path: str, *, query: Mapping[str, Any] | None, body: Any,
              headers: Mapping[str, str] | None, accept: str, stream: bool) -> _Try:
        target = self._prefix + path
        if query:
            target += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        sent_headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": f"{accept}, application/problem+json",
            "User-Agent": USER_AGENT,
        }
        payload: bytes | None = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            sent_headers["Content-Type"] = "application/json"
        sent_headers.update(headers or {})
        repeatable = method in SAFE_METHODS or IDEMPOTENCY_HEADER in sent_headers
        failures = 0
        while True:
            outcome = self._try(method, target, payload, sent_headers, stream=stream)
            if not outcome.failure:
                response = outcome.response
                assert response is not None
                if response.status >= 300:
                    raise _api_error(method, path, response)
                return outcome
            failures += 1
            may_repeat = repeatable or not outcome.maybe_sent
            if failures >= self.retry.attempts or not may_repeat:
                raise Unreachable(method=method, path=path, attempts=failures, last=outcome.failure)
            wait = self.retry.backoff(failures, self._rng)
            if outcome.retry_after_s is not None:
                if outcome.retry_after_s > self.retry.max_retry_after_s:
                    raise Unreachable(method=method, path=path, attempts=failures,
                                      last=f"{outcome.failure}; it asks to wait {outcome.retry_after_s:.0f} s")
                wait = max(wait, outcome.retry_after_s)
            if self._on_retry is not None:
                self._on_retry(f"{method} {path}: {outcome.failure}", wait)
            self._sleep(wait)

    def _try(self, method: str, target: str, payload: bytes | None, headers: dict[str, str], *,
             stream: bool) -> _Try:
        reused = getattr(self._local, "conn", None) is not None
        conn = self._connection()
        try:
            if conn.sock is None:
                try:
                    conn.connect()
                except OSError as exc:
                    self._drop_connection()
                    # Nothing was sent: any request may be tried again.
                    return _Try(failure=_describe(exc), maybe_sent=False)
            conn.request(method, target, body=payload, headers=headers)
            raw = conn.getresponse()
            response = Response(
                status=raw.status,
                headers={k.lower(): v for k, v in raw.getheaders()},
                replayed=raw.getheader("Idempotent-Replayed", "").lower() == "true",
            )
            if stream and response.status < 300:
                return _Try(response=response, stream=raw)
            response.body = raw.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            # A keep-alive connection the server had already closed fails before the request
            # reaches it: that is not a failure of CanaryHub, so it does not count as sent.
            stale = reused and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                ConnectionResetError))
            return _Try(failure=_describe(exc), maybe_sent=not stale)
        if response.headers.get("connection", "").lower() == "close":
            self._drop_connection()
        if response.status in TRANSIENT_STATUSES:
            self._drop_connection()
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return _Try(response=response, failure=f"{response.status} {http.client.responses.get(response.status, '')}"
                        .strip(), retry_after_s=retry_after)
        return _Try(response=response)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _api_error(method: str, path: str, response: Response) -> ApiError:
    problem = None
    excerpt = ""
    try:
        data = json.loads(response.body) if response.body else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and ("title" in data or "detail" in data):
        problem = ProblemDocument(data)
    elif response.body:
        excerpt = response.body[:200].decode("utf-8", "replace").replace("\n", " ")
    return ApiError(method=method, path=path, status=response.status, problem=problem, body_excerpt=excerpt,
                    replayed=response.replayed, location=response.headers.get("location", ""))
