"""The webhook router against a real local HTTP server: signature, echo, read-back, timeout."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from releases.routing.routers import PermanentRouterError, Split, StaleSplitError, TransientRouterError
from releases.routing.routers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookRouter, verify

SECRET = "s3cret-signing-key"


class Receiver:
    """A custom router: verifies the signature, keeps the split, echoes it."""

    def __init__(self) -> None:
        self.splits: dict[str, dict] = {}
        self.delay_s = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _authentic(self, body: bytes) -> bool:
                return verify(SECRET, timestamp=self.headers.get(TIMESTAMP_HEADER, ""), body=body,
                              signature=self.headers.get(SIGNATURE_HEADER, ""))

            def _send(self, status: int, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                if not self._authentic(body):
                    return self._send(401, {"error": "bad signature"})
                split = json.loads(body)
                current = receiver.splits.get(split["model"])
                if current and (current["canary_id"], current["generation"]) > (split["canary_id"], split["generation"]):
                    return self._send(409, {"error": "stale"})
                receiver.splits[split["model"]] = split
                self._send(200, {"split": split, "changed": current != split})

            def do_GET(self) -> None:  # noqa: N802
                if not self._authentic(b""):
                    return self._send(401, {"error": "bad signature"})
                model = self.path.split("model=", 1)[1]
                if model not in receiver.splits:
                    return self._send(404, {"error": "unknown"})
                self._send(200, receiver.splits[model])

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/canary"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def split(**overrides) -> Split:
    fields = {"model": "scorer", "production_version": "1.0.0", "canary_version": "1.1.0", "percent": 5,
              "canary_id": 3, "generation": 1}
    return Split(**{**fields, **overrides})


def test_apply_is_signed_echoed_and_read_back(receiver):
    router = WebhookRouter(url=receiver.url, secret=SECRET)
    assert router.read_back("scorer") is None
    applied = router.apply(split())
    assert applied.changed and applied.split == split()
    assert router.read_back("scorer") == split()
    assert router.apply(split()).changed is False


def test_a_wrong_signature_is_a_permanent_error_that_never_shows_the_secret(receiver):
    router = WebhookRouter(url=receiver.url, secret="not-the-secret")
    with pytest.raises(PermanentRouterError, match="401") as info:
        router.apply(split())
    assert "not-the-secret" not in str(info.value) and "not-the-secret" not in repr(router)
    assert receiver.splits == {}


def test_a_slow_router_times_out_as_a_transient_error(receiver):
    receiver.delay_s = 1.0
    router = WebhookRouter(url=receiver.url, secret=SECRET, timeout_s=0.2)
    with pytest.raises(TransientRouterError, match="timed out"):
        router.apply(split())


def test_a_stale_split_is_refused(receiver):
    router = WebhookRouter(url=receiver.url, secret=SECRET)
    router.apply(split(generation=5))
    with pytest.raises(StaleSplitError):
        router.apply(split(generation=4))


def test_nobody_listening_is_transient():
    with pytest.raises(TransientRouterError):
        WebhookRouter(url="http://127.0.0.1:9/canary", secret=SECRET, timeout_s=0.5).apply(split())


# --- where the router may send requests (server-side request forgery) ---------------------------------


class Plain:
    """A server that answers every request with a fixed status, headers and body, and counts them."""

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.hits = 0
        plain = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                plain.hits += 1
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data/",
                                 "http://10.0.0.8/", "http://[::1]:8080/", "http://0.0.0.0/"])
def test_private_loopback_and_link_local_urls_are_refused_unless_the_deployment_allows_them(settings, url):
    settings.CANARYHUB_ROUTER_ALLOWED_NETWORKS = []
    with pytest.raises(PermanentRouterError, match="CANARYHUB_ROUTER_ALLOWED_NETWORKS"):
        WebhookRouter(url=url, secret=SECRET)


def test_a_name_that_resolves_to_loopback_is_refused_at_the_request(settings):
    target = Plain(200, b"{}")
    try:
        settings.CANARYHUB_ROUTER_ALLOWED_NETWORKS = []
        router = WebhookRouter(url=f"http://localhost:{target.port}/canary", secret=SECRET)
        with pytest.raises(PermanentRouterError, match="loopback"):
            router.apply(split())
        assert target.hits == 0
    finally:
        target.close()


def test_redirects_are_not_followed():
    inner = Plain(200, b"{}")
    outer = Plain(302, headers={"Location": inner.url})
    try:
        with pytest.raises(PermanentRouterError, match="302 Found \\(redirects are not followed\\)"):
            WebhookRouter(url=outer.url, secret=SECRET).apply(split())
        assert outer.hits == 1 and inner.hits == 0
    finally:
        inner.close()
        outer.close()


@pytest.mark.parametrize("status", [400, 500])
def test_the_answer_body_is_never_kept_only_the_status_and_a_short_reason(status):
    leaked = b"root:x:0:0:root:/root:/bin/bash internal-hostname db-password=hunter2"
    server = Plain(status, leaked)
    try:
        with pytest.raises((PermanentRouterError, TransientRouterError)) as info:
            WebhookRouter(url=server.url, secret=SECRET).apply(split())
        message = str(info.value)
        assert f"answered {status}" in message
        assert "root:x" not in message and "hunter2" not in message
    finally:
        server.close()


@pytest.mark.django_db
def test_the_routers_page_refuses_a_metadata_address(role_user, settings):
    from django.test import Client  # noqa: PLC0415 - this module's other tests need no database

    settings.CANARYHUB_ROUTER_ALLOWED_NETWORKS = []
    client = Client()
    client.force_login(role_user("platform"))
    response = client.post("/routers/", {"name": "meta", "kind": "webhook", "target": "http://169.254.169.254/latest",
                                         "secret": SECRET, "enabled": "on"})
    assert response.status_code == 400
    assert "CANARYHUB_ROUTER_ALLOWED_NETWORKS" in " ".join(response.context["form"].errors["target"])
