"""Stopping the servers the harness starts."""

from __future__ import annotations

import subprocess


def terminate(process: subprocess.Popen | None, *, timeout: float = 10) -> None:
    """SIGTERM (a fast, clean shutdown for nginx, Redis and Prometheus alike), then SIGKILL if the
    server has not exited within `timeout` seconds. Reaps it either way."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
