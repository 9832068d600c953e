"""`python -m canaryhub.launcher`: the embedded CanaryHub in one terminal (what `make run` ends with).

Starts its children — web (Django's server), a Celery worker, Celery workers of their own for
rollbacks and for notifications, Celery beat and the built-in traffic simulator for the demo model — prefixes each
line they print with the process name, supervises them — a child that exits is restarted after a
backoff (1 s, doubling to 60 s; back to 1 s once it had run a minute), and the log says which,
with what exit code and when it comes back — and stops them all on Ctrl-C or SIGTERM.

Environment: HOST (default 127.0.0.1), PORT (8000), CANARYHUB_DEMO_PASSWORD (the password
`seed_demo` was given, only printed), CANARYHUB_WORKER_QUEUES (default "celery"),
CANARYHUB_WEB_SERVER ("runserver", default, or "gunicorn"), CANARYHUB_SIMULATE ("1", default: simulate
the demo model's production and canary traffic and push each window to the push provider; "0": no
simulated traffic, e.g. when real model servers publish to Prometheus).

Says where notifications go: the in-app feed always; e-mail to files under var/mail/ unless
CANARYHUB_SMTP_HOST is set; Slack and PagerDuty when their settings are.

Migrations, demo data and static files are not done here: `make run` does them first.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Each demo user and its role in the words of governance.access.labels (the kernel cannot import
# it; tests/test_launcher_ready.py holds the two to the same words).
DEMO_LOGINS = (("owner", "Model owner"), ("platform", "Platform"), ("mrm", "Model risk (MRM)"),
               ("governance", "AI governance"), ("risk", "Risk officer"), ("oncall", "On-call"),
               ("auditor", "Auditor"))
DEFAULT_DEMO_PASSWORD = "canaryhub-demo"
STOP_GRACE_S = 20.0  # a Celery worker's warm shutdown takes 5-10 s even when idle
COLOURS = {"web": "\033[36m", "worker": "\033[33m", "notify": "\033[34m", "beat": "\033[35m", "launcher": "\033[32m"}
RESET = "\033[0m"

_print_lock = threading.Lock()
_use_colour = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None


def say(name: str, line: str) -> None:
    label = f"{name:<8}|"
    if _use_colour:
        label = f"{COLOURS.get(name, '')}{label}{RESET}"
    with _print_lock:
        sys.stdout.write(f"{label} {line}\n")
        sys.stdout.flush()


RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
STABLE_AFTER_S = 60.0  # a child that ran this long before exiting starts its backoff afresh


def restart_delay(crashes_in_a_row: int) -> float:
    """Seconds before restarting a child that exited this many times in a row (1, 2, 4 … 60)."""
    return min(RESTART_FIRST_S * 2 ** max(crashes_in_a_row - 1, 0), RESTART_MAX_S)


# Lines every Celery child prints alike (its superuser warning, kombu's note on the broker URL
# without a host): the terminal shows each once, from whichever child says it first.
ONCE_ONLY = re.compile(
    r"SecurityWarning: You're running the worker with superuser privileges|absolutely not recommended!"
    r"|Please specify a different user using the --uid option|User information: uid="
    r"|No hostname was supplied|_warn_or_raise_security_error"
)
_said_once: set[str] = set()
_said_once_lock = threading.Lock()


def first_time(line: str) -> bool:
    """False for a repeat of a line that is worth saying only once (ONCE_ONLY) and for an empty
    line (a prefix alone says nothing), True otherwise."""
    if not line.strip():
        return False
    match = ONCE_ONLY.search(line)
    if match is None:
        return True
    with _said_once_lock:
        if match.group(0) in _said_once:
            return False
        _said_once.add(match.group(0))
        return True


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0
    crashes_in_a_row: int = 0
    restart_at: float | None = None  # set while the child waits out its backoff

    def start(self, env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        # Own session: Ctrl-C in the terminal reaches only the launcher, which then stops the
        # children in order, instead of all four racing to shut down at once.
        self.process = subprocess.Popen(
            self.argv,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._pump, name=f"pump-{self.name}", daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            if first_time(line):
                say(self.name, line)

    def signal(self, signum: int) -> None:
        """Ask the child itself: Celery's main process stops its pool in order (warm shutdown)."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass

    def kill_group(self) -> None:
        """SIGKILL the child's whole process group, pool processes included, even after the child
        itself exited (orphaned pool processes would hold the port or the broker folder)."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()


def build_children(host: str, port: int) -> list[Child]:
    python = sys.executable
    queues = os.environ.get("CANARYHUB_WORKER_QUEUES", "celery")
    if os.environ.get("CANARYHUB_WEB_SERVER", "runserver") == "gunicorn":
        web = [python, "-m", "gunicorn", "canaryhub.wsgi", "--bind", f"{host}:{port}", "--workers", "2",
               "--access-logfile", "-"]
    else:
        web = [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"]
    simulator = []
    if os.environ.get("CANARYHUB_SIMULATE", "1") == "1":
        # The demo model of seed_demo: its production version and the version a canary can start.
        # The simulator follows the file router's split, so traffic moves as the canary does.
        simulator = [Child("simulator", [python, "manage.py", "simulate", "support-assistant", "--production", "1.4.2",
                                         "--canary", "1.5.0"])]
    return [
        Child("web", web),
        Child("worker", [python, "-m", "celery", "-A", "canaryhub", "--quiet", "worker", "-Q", queues, "-c", "2",
                         "-n", "worker@%h", "--loglevel=INFO"]),
        # Rollbacks have a worker of their own, so a backlog of evaluations never delays one.
        Child("rollbacks", [python, "-m", "celery", "-A", "canaryhub", "--quiet", "worker", "-Q", "rollbacks",
                            "-c", "1", "-n", "rollbacks@%h", "--loglevel=INFO"]),
        # Notifications too, so a flood of summaries or a slow receiver never delays an evaluation.
        Child("notify", [python, "-m", "celery", "-A", "canaryhub", "--quiet", "worker", "-Q", "notifications",
                         "-c", "1", "-n", "notifications@%h", "--loglevel=INFO"]),
        # --quiet: no Celery banner per child; the launcher prints the one ready block.
        Child("beat", [python, "-m", "celery", "-A", "canaryhub", "--quiet", "beat", "--loglevel=INFO"]),
    ] + simulator


def delivery_summary(environ: dict[str, str], *, base_dir: str) -> str:
    """Where notifications go with these settings (said at start-up)."""
    var = environ.get("CANARYHUB_VAR_DIR", os.path.join(base_dir, "var"))
    smtp = environ.get("CANARYHUB_SMTP_HOST", "")
    parts = [f"e-mail via SMTP {smtp}:{environ.get('CANARYHUB_SMTP_PORT', '25')}" if smtp
             else f"e-mail written one file per message to {os.path.join(var, 'mail')}/ (no SMTP host set)"]
    parts.append("Slack: " + ("team channel webhook set" if environ.get("CANARYHUB_SLACK_WEBHOOK_URL") else "off"))
    parts.append("PagerDuty: " + ("on" if environ.get("CANARYHUB_PAGERDUTY_ROUTING_KEY") else "off (no routing key)"))
    return "notifications: in-app feed; " + "; ".join(parts)




def ready_block(url: str, password: str, env: dict[str, str], *, notices: str = "") -> list[str]:
    """The one block a newcomer reads once CanaryHub answers: where, who, how fast, what is
    simulated, where notices go, how to stop."""
    speed = float(env.get("CANARYHUB_CLOCK_SPEED", "1") or 1)
    scale = float(env.get("CANARYHUB_SIMULATOR_TRAFFIC_SCALE", "") or speed)
    rps = float(env.get("CANARYHUB_SIMULATOR_RPS", "50") or 50) * scale
    lines = ["=" * 72, f"CanaryHub is ready: {url}", f"Log in with the password {password!r} as:"]
    lines += [f"  {name:<11} {role}" for name, role in DEMO_LOGINS]
    if speed == 1:
        lines.append("Clock: real time (CANARYHUB_CLOCK_SPEED=1440 make run: a demo canary in about 15 minutes)")
    else:
        lines.append(f"Clock: {speed:g}x faster than real time: a stage lasts minutes, not days")
    if env.get("CANARYHUB_SIMULATE", "1") == "1":
        lines.append(f"Simulated: traffic of support-assistant 1.4.2 (production) and 1.5.0 (canary), "
                     f"{rps:,.0f} requests/s, following the file router in var/router/")
    else:
        lines.append("Simulated: nothing (CANARYHUB_SIMULATE=0): metrics come from your model servers")
    if notices:
        lines.append(notices)
    lines += ["Stop: press Ctrl-C (stops every process)", "=" * 72]
    return lines


def wait_until_serving(url: str, children: list[Child], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(c.returncode is not None for c in children):
            return False
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def supervise_once(children: list[Child], env: dict[str, str], *, now: float | None = None) -> None:
    """One look at the children: schedule the restart of one that exited, restart one whose
    backoff is over. Every step is said in the log."""
    now = time.monotonic() if now is None else now
    for child in children:
        if child.restart_at is None:
            code = child.returncode
            if code is None:
                continue
            child.kill_group()  # pool processes it left would hold the port or the broker
            ran_s = now - child.started_at
            child.crashes_in_a_row = 1 if ran_s >= STABLE_AFTER_S else child.crashes_in_a_row + 1
            delay = restart_delay(child.crashes_in_a_row)
            child.restart_at = now + delay
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            say("launcher", f"{child.name} {how} after {ran_s:.0f} s; restarting it in {delay:.0f} s "
                            f"({child.crashes_in_a_row} exit(s) in a row)")
        elif now >= child.restart_at:
            child.restart_at = None
            child.restarts += 1
            child.start(env)
            say("launcher", f"restarted {child.name} (pid {child.process.pid}, restart #{child.restarts})")


class Stop(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m canaryhub.launcher", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--demo-password", default=os.environ.get("CANARYHUB_DEMO_PASSWORD", DEFAULT_DEMO_PASSWORD),
        help="the password seed_demo was given; only printed",
    )
    args = parser.parse_args(argv)

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "canaryhub.settings"}
    children = build_children(args.host, args.port)
    url_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    url = f"http://{url_host}:{args.port}/"

    def on_signal(signum: int, frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    exit_code = 0
    try:
        for child in children:
            child.start(env)
            say("launcher", f"started {child.name} (pid {child.process.pid}): {' '.join(child.argv[1:])}")
        if wait_until_serving(url, children[:1]):
            notices = delivery_summary(env, base_dir=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            for line in ready_block(url, args.demo_password, env, notices=notices):
                say("launcher", line)
        elif all(c.returncode is None for c in children):
            say("launcher", f"{url}healthz has not answered yet; the processes keep running (Ctrl-C to stop)")
        while True:
            supervise_once(children, env)
            time.sleep(0.5)
    except Stop as stop:
        running = ", ".join(c.name for c in children if c.returncode is None)
        say("launcher", f"{stop.reason}: stopping {running} (Ctrl-C again to kill at once)")
    finally:
        # A second Ctrl-C while we wait means "now": SIGKILL instead of waiting out the grace.
        try:
            shutdown(children)
        except Stop:
            shutdown(children, grace_s=0)
    return exit_code


def shutdown(children: list[Child], grace_s: float = STOP_GRACE_S) -> None:
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say("launcher", f"{child.name} did not stop in {grace_s:.0f}s: killing it")
            child.kill_group()
            child.process.wait()
        if child.reader is not None:
            child.reader.join(timeout=1)
    # Pool processes that outlived their parent would hold the broker folder or the port.
    for child in children:
        child.kill_group()
    say("launcher", "stopped")


if __name__ == "__main__":
    sys.exit(main())
