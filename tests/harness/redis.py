"""A throwaway redis-server for tests and benchmarks: free loopback port, no persistence.

    with RedisServer() as redis: os.environ["REDIS_URL"] = redis.url

`kill()` stops it abruptly (SIGKILL), as a crashed store would. Missing redis-server is an
error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.harness.nginx import free_port

__all__ = ["RedisServer", "RedisUnavailable"]
from tests.harness.process import terminate


class RedisUnavailable(RuntimeError):
    pass


def find_redis() -> str:
    for candidate in (os.environ.get("REDIS_SERVER_BIN", ""), shutil.which("redis-server") or "", "/usr/bin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RedisUnavailable(
        "redis-server is not installed: the assignment tests drive a real Redis "
        "(scripts/install-system-deps.sh or `apt-get install redis-server`)"
    )


class RedisServer:
    def __init__(self, *, start_timeout_s: float = 10.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = find_redis()
        self.dir = Path(tempfile.mkdtemp(prefix="canaryhub-redis-"))
        self.port = free_port()
        self.process = subprocess.Popen(  # noqa: S603
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisUnavailable(f"redis-server exited at start: {self._log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RedisUnavailable(f"redis-server did not answer on {self.port}: {self._log()}")

    def _log(self) -> str:
        try:
            return (self.dir / "redis.log").read_text()[-2000:] if self.dir else ""
        except OSError:
            return ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        terminate(self.process)
        self.process = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
