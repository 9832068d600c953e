"""A real Alertmanager for the integration tests: the Debian `prometheus-alertmanager` binary on a
free loopback port with a temporary data directory. Missing binary is an error, not a skip."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.harness.process import terminate
from tests.harness.prometheus import free_port


class AlertmanagerUnavailable(RuntimeError):
    pass


class AlertmanagerServer:
    def __init__(self, config: str, *, files: dict[str, str] | None = None, binary: str | None = None) -> None:
        self.config = config
        self.files = files or {}
        self.binary = binary or shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
        self.port = 0
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> AlertmanagerServer:
        if not Path(self.binary).exists():
            raise AlertmanagerUnavailable(
                f"no alertmanager at {self.binary}: run scripts/install-system-deps.sh "
                "(Debian package prometheus-alertmanager)")
        self.dir = Path(tempfile.mkdtemp(prefix="canaryhub-alertmanager-"))
        for name, text in self.files.items():
            (self.dir / name).write_text(text)
        config = self.dir / "alertmanager.yml"
        config.write_text(self.config.replace("{dir}", str(self.dir)))
        self.port = free_port()
        log = open(self.dir / "alertmanager.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AlertmanagerUnavailable(
                    f"alertmanager exited: {(self.dir / 'alertmanager.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AlertmanagerUnavailable("alertmanager did not become ready")

    def stop(self) -> None:
        terminate(self.process)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
