"""A real Prometheus server for the integration tests: the Debian `prometheus` binary on a free
loopback port, a temporary data directory and a 1-second scrape interval. Missing binary is an
error, not a skip: the integration tests are the proof that the evaluator works."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.harness.process import terminate


class PrometheusUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    def __init__(self, targets: list[str], *, scrape_interval: str = "1s", binary: str | None = None,
                 extra_config: str = "", files: dict[str, str] | None = None) -> None:
        self.targets = targets
        self.extra_config = extra_config  # appended to prometheus.yml (rule_files, alerting)
        self.files = files or {}  # written beside prometheus.yml (rule files)
        self.scrape_interval = scrape_interval
        self.binary = binary or shutil.which("prometheus") or "/usr/bin/prometheus"
        self.port = 0
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        if not Path(self.binary).exists():
            raise PrometheusUnavailable(
                f"no prometheus binary at {self.binary}: run scripts/install-system-deps.sh (Debian package prometheus)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="canaryhub-prometheus-"))
        config = self.dir / "prometheus.yml"
        targets = ", ".join(f'"{t}"' for t in self.targets)
        config.write_text(
            f"global:\n  scrape_interval: {self.scrape_interval}\n  evaluation_interval: {self.scrape_interval}\n"
            f"scrape_configs:\n  - job_name: model-servers\n    static_configs:\n      - targets: [{targets}]\n"
            + self.extra_config
        )
        for name, text in self.files.items():
            (self.dir / name).write_text(text)
        self.port = free_port()
        return self._launch(timeout_s)

    def halt(self) -> None:
        """Stop Prometheus but keep its directory, data and port: a metric source that stops answering."""
        terminate(self.process)
        self.process = None

    def resume(self, timeout_s: float = 30.0) -> PrometheusServer:
        """Start Prometheus again after `halt`, on the same port with the same configuration and data."""
        return self._launch(timeout_s)

    def _launch(self, timeout_s: float) -> PrometheusServer:
        assert self.dir is not None
        log = open(self.dir / "prometheus.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusUnavailable(f"prometheus exited: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise PrometheusUnavailable("prometheus did not become ready")

    def stop(self) -> None:
        terminate(self.process)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
