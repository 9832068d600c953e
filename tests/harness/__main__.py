"""Run the whole suite twice: on SQLite and on a real PostgreSQL server started here.

    python -m tests.harness                     # both passes, side by side
    python -m tests.harness --serial            # both passes, one after the other
    python -m tests.harness --only postgres -k audit
    python -m tests.harness -q tests/test_smoke.py

Every argument except `--only sqlite|postgres` and `--serial` goes to pytest unchanged. Each pass
runs pytest in its own process (Django reads DATABASE_URL once, at import), with
CANARYHUB_ENV=test and a fresh CANARYHUB_VAR_DIR so tests never touch the developer's var/.
The two passes share nothing (each starts its own servers on free ports), so they run at the
same time, one per core, each output line prefixed with its pass's name. Exit status is
non-zero if either pass fails; a pass that collects no test (pytest's exit code 5) is a failure
too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.plugin import EXPECTED_ENV
from tests.harness.postgres import PostgresServer, PostgresUnavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSES = ("sqlite", "postgres")
EXIT_NAMES = {
    0: "passed",
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}


@dataclass
class PassResult:
    name: str
    exit_code: int
    seconds: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def summary(self) -> str:
        verdict = "PASSED" if self.ok else "FAILED"
        reason = EXIT_NAMES.get(self.exit_code, f"exit code {self.exit_code}")
        extra = f"; {self.note}" if self.note else ""
        return f"harness: {self.name} pass {verdict} ({reason}) in {self.seconds:.1f}s{extra}"


def log(message: str) -> None:
    print(f"harness: {message}", flush=True)


def parse_args(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """Take `--only X` / `--only=X` and `--serial` out of argv; everything else is pytest's,
    order kept."""
    passes = list(PASSES)
    rest: list[str] = []
    serial = False
    args = iter(argv)
    for arg in args:
        if arg == "--":
            rest.extend(args)
            break
        value = None
        if arg == "--serial":
            serial = True
            continue
        if arg == "--only":
            value = next(args, None)
        elif arg.startswith("--only="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
            continue
        if value not in PASSES:
            raise SystemExit(f"harness: --only takes one of {', '.join(PASSES)}, not {value!r}")
        passes = [value]
    return passes, rest, serial


_print_lock = threading.Lock()
_children: list[subprocess.Popen[str]] = []  # the side-by-side passes' pytest processes


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env["CANARYHUB_ENV"] = "test"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_pytest(name: str, pytest_args: list[str], env: dict[str, str], *, prefix: bool = False) -> int:
    var_dir = tempfile.mkdtemp(prefix=f"canaryhub-test-{name}-")
    # STATIC_ROOT lives there; WhiteNoise warns on every request handler when it is missing.
    os.mkdir(os.path.join(var_dir, "staticfiles"))
    env = {**env, "CANARYHUB_VAR_DIR": var_dir}
    argv = [sys.executable, "-m", "pytest", "-p", "tests.harness.plugin", *pytest_args]
    log(f"{name} pass: {' '.join(argv[1:])}")
    try:
        if not prefix:
            return subprocess.run(argv, cwd=REPO_ROOT, env=env).returncode
        # Side by side with the other pass: each line, as pytest finishes it, with the pass's name.
        with subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace") as process:
            _children.append(process)
            assert process.stdout is not None
            for line in process.stdout:
                with _print_lock:
                    print(f"[{name}] {line}", end="", flush=True)
            return process.wait()
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def sqlite_pass(pytest_args: list[str], *, prefix: bool = False) -> PassResult:
    started = time.monotonic()
    env = {**base_env(), EXPECTED_ENV: "sqlite3"}
    code = run_pytest("sqlite", pytest_args, env, prefix=prefix)
    return PassResult("sqlite", code, time.monotonic() - started)


def postgres_pass(pytest_args: list[str], *, prefix: bool = False) -> PassResult:
    started = time.monotonic()
    server = PostgresServer()
    try:
        try:
            server.start()
        except (PostgresUnavailable, RuntimeError, OSError) as exc:
            log(f"could not start PostgreSQL: {exc}")
            return PassResult("postgres", 3, time.monotonic() - started, "PostgreSQL did not start")
        version = server.server_version().split(" on ")[0]
        log(f"{version} running at {server.url} (data in {server.base_dir})")
        env = {**base_env(), "DATABASE_URL": server.url, EXPECTED_ENV: "postgresql"}
        code = run_pytest("postgres", pytest_args, env, prefix=prefix)
        return PassResult("postgres", code, time.monotonic() - started, version)
    finally:
        server.stop()
        log("PostgreSQL stopped and its directory removed")


def main(argv: list[str]) -> int:
    passes, pytest_args, serial = parse_args(argv)

    # SIGTERM (CI cancelling, `kill`) takes the same way out as Ctrl-C, through the finally
    # blocks that stop PostgreSQL and remove its directory.
    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)

    results: list[PassResult] = []
    side_by_side = len(passes) > 1 and not serial
    threads: list[threading.Thread] = []

    def run(name: str) -> None:
        runner = sqlite_pass if name == "sqlite" else postgres_pass
        results.append(runner(pytest_args, prefix=side_by_side))

    try:
        if side_by_side:
            threads = [threading.Thread(target=run, args=(name,), name=f"pass-{name}") for name in passes]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)
            results.sort(key=lambda r: passes.index(r.name))
        else:
            for name in passes:
                run(name)
    except KeyboardInterrupt:
        log("interrupted")
        if side_by_side:
            # Stop the pytest children; their pass threads then stop PostgreSQL and clean up.
            for child in _children:
                child.terminate()
            for thread in threads:
                thread.join(timeout=60)
        for result in results:
            print(result.summary(), flush=True)
        return 130

    print(flush=True)
    for result in results:
        print(result.summary(), flush=True)
    failed = [r.name for r in results if not r.ok]
    print(f"harness: {'FAILED: ' + ', '.join(failed) if failed else 'all passes passed'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
