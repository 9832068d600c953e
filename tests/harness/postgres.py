"""A throwaway PostgreSQL server for tests: its own data directory, port and socket.

    server = PostgresServer().start()
    try:
        os.environ["DATABASE_URL"] = server.url
        ...
    finally:
        server.stop()

or `with PostgresServer() as server: ...`. Several may run at once (each picks a free port
and its own temporary directory), so a test can start a second server when it needs one.

The server is tuned for tests, not durability (fsync, synchronous_commit and full_page_writes
off) and trusts every local connection: it listens on 127.0.0.1 only and disappears with its
directory on stop(). PostgreSQL refuses to run as root, so when we are root the server runs as
the `postgres` system user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir"]

# Test speed over durability: a crash loses nothing we want to keep.
TEST_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
}


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries or the user to run them as are missing."""


def find_bin_dir() -> Path:
    """The directory with initdb and pg_ctl: $PG_BIN, else the newest Debian install, else PATH."""
    if os.environ.get("PG_BIN"):
        candidate = Path(os.environ["PG_BIN"])
        if (candidate / "initdb").is_file():
            return candidate
        raise PostgresUnavailable(f"PG_BIN={candidate} has no initdb")

    def major(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if installed:
        return Path(installed[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries found (initdb); install them with "
        "scripts/install-system-deps.sh or `apt-get install postgresql`, or set PG_BIN"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One PostgreSQL server in a fresh temporary directory, on a free loopback port."""

    def __init__(
        self,
        *,
        database: str = "canaryhub",
        user: str = "postgres",
        bin_dir: str | Path | None = None,
        settings: dict[str, str] | None = None,
        start_timeout_s: int = 60,
    ) -> None:
        self.database = database
        self.user = user
        self.bin_dir = Path(bin_dir) if bin_dir else None
        self.settings = {**TEST_SETTINGS, **(settings or {})}
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.base_dir: Path | None = None
        self._run_as: pwd.struct_passwd | None = None

    # --- public ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "server.log"

    @property
    def running(self) -> bool:
        return self.port is not None

    def start(self) -> PostgresServer:
        if self.running:
            return self
        self.bin_dir = self.bin_dir or find_bin_dir()
        self._run_as = self._system_user()
        self.base_dir = Path(tempfile.mkdtemp(prefix="canaryhub-pg-"))
        try:
            if self._run_as is not None:
                os.chown(self.base_dir, self._run_as.pw_uid, self._run_as.pw_gid)
            self._initdb()
            # A free port can be taken between our probe and the server's bind: try a few.
            for attempt in range(3):
                port = _free_port()
                self._write_settings(port)
                if self._pg_ctl_start():
                    self.port = port
                    break
                if attempt == 2:
                    raise RuntimeError(f"PostgreSQL did not start; its log:\n{self._log_tail()}")
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory. Safe to call twice."""
        if self.base_dir is None:
            return
        base_dir = self.base_dir
        try:
            if (base_dir / "data" / "postmaster.pid").exists():
                result = self._run(
                    [self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
                    check=False,
                )
                if result.returncode != 0:
                    self._kill_postmaster()
        finally:
            self.port = None
            self.base_dir = None
            shutil.rmtree(base_dir, ignore_errors=True)

    def server_version(self) -> str:
        """`SELECT version()` from the running server, read with psql."""
        result = subprocess.run(
            [self._bin("psql"), "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", self.database, "-c", "SELECT version()"],
            capture_output=True, text=True, check=True,
        )
        return result.stdout.strip()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<PostgresServer {self.url if self.running else 'stopped'}>"

    # --- internals ------------------------------------------------------------------------------
    def _system_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` "
                "system user to run it as (Debian's postgresql package creates one)"
            ) from None

    def _bin(self, name: str) -> str:
        assert self.bin_dir is not None
        return str(self.bin_dir / name)

    def _as_server_user(self, argv: list[str]) -> tuple[list[str], dict[str, object]]:
        if self._run_as is None:
            return argv, {}
        if shutil.which("runuser"):
            return ["runuser", "-u", self._run_as.pw_name, "--", *argv], {}
        return argv, {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv, extra = self._as_server_user(argv)
        # cwd: the server user may not be allowed into ours (root's home, say).
        result = subprocess.run(
            argv, capture_output=True, text=True, cwd=self.base_dir, stdin=subprocess.DEVNULL, **extra
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed with exit code {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def _initdb(self) -> None:
        self._run([
            self._bin("initdb"), "-D", str(self.data_dir), "-U", self.user, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        ])

    def _write_settings(self, port: int) -> None:
        lines = {**self.settings, "port": str(port), "unix_socket_directories": f"'{self.base_dir}'"}
        # postgresql.auto.conf is read last and is rewritten whole on each attempt.
        (self.data_dir / "postgresql.auto.conf").write_text(
            "# written by tests.harness.postgres\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())
        )

    def _pg_ctl_start(self) -> bool:
        result = self._run(
            [self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
             "-t", str(self.start_timeout_s), "start"],
            check=False,
        )
        return result.returncode == 0

    def _create_database(self) -> None:
        # Over TCP with trust auth: works whoever we are, no need to switch user.
        deadline = time.monotonic() + 10
        while True:
            argv = [self._bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
            result = subprocess.run(
                [*argv, self.database], capture_output=True, text=True, stdin=subprocess.DEVNULL
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {result.stderr.strip()}")
            time.sleep(0.2)

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
