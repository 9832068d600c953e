"""The client's one HTTP layer against a real HTTP server on loopback that answers from a script:
what is retried (and how long it waits), what is final, and what the messages say."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from canaryhub.cli.client import AssignmentUnavailable, CanaryHubClient
from canaryhub.cli.http import ApiError, Http, RetryPolicy, Unreachable, parse_retry_after
from tests.harness.nginx import free_port

TOKEN = "chk_abcd1234_s3cret-token-value"
PROBLEM = {"type": "urn:canaryhub:problem:validation-error", "title": "Invalid input", "status": 400,
           "detail": "version: must be greater than the production version 1.0.0",
           "errors": {"version": ["must be greater than the production version 1.0.0"]}}


class Script:
    """Answers in order: each is (status, headers, body); the last one repeats."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict] = []

    def then(self, status: int, body: object = None, **headers: str) -> Script:
        raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.answers.append((status, {k.replace("_", "-"): v for k, v in headers.items()}, raw))
        return self


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            script.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                    "body": self.rfile.read(length) if length else b""})
            index = min(len(script.requests) - 1, len(script.answers) - 1)
            status, headers, body = script.answers[index]
            self.send_response(status)
            content_type = "application/problem+json" if status >= 400 else "application/json"
            self.send_header("Content-Type", headers.pop("Content-Type", content_type))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def http(url: str, sleeps: list[float], **kwargs) -> Http:
    return Http(url, token=TOKEN, timeout_s=5, sleep=sleeps.append, rng=random.Random(1), **kwargs)


def test_a_503_then_an_answer_is_retried_with_backoff_and_the_token_is_sent(server):
    url, script = server
    script.then(503).then(503).then(200, {"ok": True})
    sleeps: list[float] = []
    assert http(url, sleeps).json("GET", "/api/v1/canaries/1/") == {"ok": True}
    assert len(script.requests) == 3 and len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # doubling, with jitter
    assert all(r["headers"]["Authorization"] == f"Bearer {TOKEN}" for r in script.requests)


def test_429_waits_for_retry_after(server):
    url, script = server
    script.then(429, Retry_After="7").then(200, {"ok": True})
    sleeps: list[float] = []
    http(url, sleeps).json("GET", "/x")
    assert sleeps == [7.0]


def test_a_retry_after_beyond_the_limit_is_not_waited_for(server):
    url, script = server
    script.then(503, Retry_After="3600")
    sleeps: list[float] = []
    with pytest.raises(Unreachable, match="asks to wait 3600 s"):
        http(url, sleeps, retry=RetryPolicy(max_retry_after_s=600)).json("GET", "/x")
    assert sleeps == [] and len(script.requests) == 1


def test_a_4xx_is_final_and_explained(server):
    url, script = server
    script.then(400, PROBLEM)
    sleeps: list[float] = []
    with pytest.raises(ApiError) as exc:
        http(url, sleeps).json("POST", "/api/v1/models/scorer/versions/", body={"version": "0.9.0"},
                               headers={"Idempotency-Key": "k"})
    assert len(script.requests) == 1 and sleeps == []
    assert exc.value.status == 400 and exc.value.problem.raw == PROBLEM
    assert str(exc.value).splitlines() == [
        "POST /api/v1/models/scorer/versions/ answered 400 Invalid input: version: must be greater than the "
        "production version 1.0.0",
        "  version: must be greater than the production version 1.0.0",
        "CanaryHub refused the input; nothing was changed.",
    ]


def test_a_replayed_refusal_says_how_to_try_again(server):
    url, script = server
    script.then(409, {**PROBLEM, "status": 409, "title": "Conflict with the current state"}, Idempotent_Replayed="true")
    with pytest.raises(ApiError) as exc:
        http(url, []).json("POST", "/api/v1/canaries/", body={}, headers={"Idempotency-Key": "k"})
    assert exc.value.replayed and "give a new --run-id" in str(exc.value)


def test_a_post_with_an_idempotency_key_is_retried_after_a_502_and_one_without_is_not(server):
    url, script = server
    script.then(502).then(201, {"id": 1})
    assert http(url, []).json("POST", "/api/v1/canaries/", body={}, headers={"Idempotency-Key": "k"}) == {"id": 1}
    assert [r["headers"]["Idempotency-Key"] for r in script.requests] == ["k", "k"]
    script.requests.clear()
    with pytest.raises(Unreachable):
        http(url, []).json("POST", "/api/v1/canaries/", body={})  # it may have acted: not repeated
    assert len(script.requests) == 1


def test_a_500_is_final(server):
    url, script = server
    script.then(500, {"type": "urn:canaryhub:problem:internal-error", "title": "Internal error", "status": 500,
                      "detail": "The server failed; the error was logged."})
    with pytest.raises(ApiError, match="the error is in its log") as exc:
        http(url, []).json("GET", "/x")
    assert exc.value.status == 500 and len(script.requests) == 1


def test_a_redirect_is_not_followed_with_the_token(server):
    url, script = server
    script.then(301, b"", Location="https://elsewhere.example/api/v1/x")
    with pytest.raises(ApiError, match="set CANARYHUB_URL to the address") as exc:
        http(url, []).json("GET", "/x")
    assert "https://elsewhere.example/api/v1/x" in str(exc.value) and len(script.requests) == 1


def test_connection_refused_is_retried_then_unreachable_without_the_token_in_the_message():
    sleeps: list[float] = []
    client = http(f"http://127.0.0.1:{free_port()}", sleeps, retry=RetryPolicy(attempts=3))
    with pytest.raises(Unreachable) as exc:
        client.json("POST", "/api/v1/canaries/", body={"model": "m"})  # nothing was sent: safe to repeat
    assert len(sleeps) == 2 and "connection refused" in str(exc.value) and TOKEN not in str(exc.value)


def test_an_answer_that_is_not_a_problem_document_is_shown_briefly(server):
    url, script = server
    script.then(404, b"<html>nginx 404</html>", Content_Type="text/html")
    with pytest.raises(ApiError, match="the answer was not a problem document: <html>nginx 404</html>"):
        http(url, []).json("GET", "/x")


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0), ("soon", None)])
def test_retry_after_as_seconds_or_a_date(value, seconds):
    now = parsedate_to_datetime("Wed, 21 Oct 2015 07:27:30 GMT").timestamp()
    assert parse_retry_after(value, now=now) == seconds


def test_urls_and_tokens_are_checked():
    with pytest.raises(ValueError, match="http"):
        Http("ftp://x", token=TOKEN)
    with pytest.raises(ValueError, match="user, password"):
        Http("https://me:pw@x", token=TOKEN)
    with pytest.raises(ValueError, match="token"):
        Http("https://x", token="two words")


# --- the assignment client (the application's hot path) ----------------------------------------


def assignment(version: str, variant: str = "canary") -> dict:
    return {"model": "bot", "user": "u1", "variant": variant, "version": version, "canary_id": 3, "percent": 5,
            "sticky": True, "fallback": False, "detail": ""}


def test_assign_caches_each_answer_for_its_ttl(server):
    url, script = server
    script.then(200, assignment("1.1.0"))
    hub = CanaryHubClient(url, token=TOKEN, ttl_s=60)
    first, second = hub.assign("bot", "u1", region="eu"), hub.assign("bot", "u1", region="eu")
    assert (first.version, first.cached, second.cached, second.canary_id) == ("1.1.0", False, True, 3)
    assert len(script.requests) == 1
    assert script.requests[0]["path"] == "/api/v1/assign?model=bot&user=u1&region=eu"


def test_assign_falls_back_to_the_default_fast_and_raises_without_one(server):
    url, script = server
    script.then(503, Retry_After="30")
    hub = CanaryHubClient(url, token=TOKEN, ttl_s=60)
    answer = hub.assign("bot", "u1", default="1.0.0")
    assert (answer.variant, answer.version, answer.fallback) == ("production", "1.0.0", True)
    assert len(script.requests) == 1  # a Retry-After is never waited for on the hot path
    with pytest.raises(AssignmentUnavailable):
        hub.assign("bot", "u2")
    refused = CanaryHubClient(url, token=TOKEN)
    script.answers[:] = [(404, {}, json.dumps({"title": "Not found", "detail": "No model 'bot'."}).encode())]
    with pytest.raises(AssignmentUnavailable, match="404"):
        refused.assign("bot", "u3")
