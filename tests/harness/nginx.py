"""A throwaway nginx for tests and benchmarks, plus tiny upstream servers answering their version.

    with VersionServer("1.0.0") as prod, VersionServer("1.1.0") as canary, NginxServer() as nginx:
        router = NginxRouter(**nginx.router_config({"scorer": {"production": [prod.address], ...}}))

nginx runs in the foreground (`daemon off;`) on a free loopback port, with everything (pid,
logs, temp paths, the CanaryHub include directory) under its own temporary prefix. The main
configuration includes `<conf_dir>/http/*.conf` and `<conf_dir>/server/*.conf`, as a
production nginx pointed at CanaryHub would. Missing nginx is an error, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["NginxServer", "NginxUnavailable", "VersionServer", "find_nginx", "free_port"]
from tests.harness.process import terminate


class NginxUnavailable(RuntimeError):
    pass


def find_nginx() -> str:
    for candidate in (os.environ.get("NGINX_BIN", ""), shutil.which("nginx") or "", "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise NginxUnavailable(
        "nginx is not installed: the routing tests drive a real nginx "
        "(scripts/install-system-deps.sh or `apt-get install nginx-light`)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MAIN_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_timeout 5;
    include {conf_dir}/http/*.conf;
    server {{
        listen 127.0.0.1:{port};
        include {conf_dir}/server/*.conf;
        location = /healthz {{ return 200 "ok"; }}
    }}
}}
"""


class NginxServer:
    def __init__(self, *, start_timeout_s: float = 10.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.prefix: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.nginx_bin = ""

    @property
    def conf_dir(self) -> Path:
        assert self.prefix is not None
        return self.prefix / "canaryhub"

    @property
    def main_conf(self) -> Path:
        assert self.prefix is not None
        return self.prefix / "nginx.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def router_config(self, upstreams: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Keyword arguments for releases.routing.routers.nginx.NginxRouter against this server."""
        assert self.prefix is not None
        return {
            "conf_dir": str(self.conf_dir), "main_conf": str(self.main_conf), "upstreams": upstreams,
            "readback_url": self.url, "nginx_bin": self.nginx_bin, "pid_file": str(self.prefix / "nginx.pid"),
            **extra,
        }

    def start(self) -> NginxServer:
        self.nginx_bin = find_nginx()
        self.prefix = Path(tempfile.mkdtemp(prefix="canaryhub-nginx-"))
        (self.prefix / "tmp").mkdir()
        (self.conf_dir / "http").mkdir(parents=True)
        (self.conf_dir / "server").mkdir(parents=True)
        self.port = free_port()
        # Workers run as nobody by default when the master is root; nobody may not read our
        # temporary prefix, so as root the workers stay root (a loopback test server only).
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.main_conf.write_text(
            MAIN_CONF.format(prefix=self.prefix, conf_dir=self.conf_dir, port=self.port, user=user)
        )
        return self._launch()

    def halt(self) -> None:
        """Stop nginx but keep its prefix, configuration and port: a router that stops answering."""
        terminate(self.process)
        self.process = None

    def resume(self) -> NginxServer:
        """Start nginx again after `halt`, on the same port with whatever configuration it finds."""
        (self.prefix / "nginx.pid").unlink(missing_ok=True)  # type: ignore[operator]
        return self._launch()

    def _launch(self) -> NginxServer:
        self.process = subprocess.Popen(  # noqa: S603
            [self.nginx_bin, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"), "-c", str(self.main_conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise NginxUnavailable(f"nginx exited at start: {err}{self.error_log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise NginxUnavailable(f"nginx did not listen on {self.port}: {self.error_log_tail()}")

    def error_log_tail(self) -> str:
        if self.prefix is None:
            return ""
        try:
            return (self.prefix / "error.log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        terminate(self.process)
        self.process = None
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class VersionServer:
    """An HTTP server on a free loopback port answering every GET with its version as JSON."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> VersionServer:
        version = self.version

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's API
                body = json.dumps({"version": version, "variant": self.headers.get("X-CanaryHub-Variant")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> VersionServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
