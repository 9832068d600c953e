"""Container health checks for docker-compose.yml (the image has no curl).

    python scripts/healthcheck.py web     # GET /healthz on this container answers 200
    python scripts/healthcheck.py beat    # beat has written its schedule file in the last 15 minutes

The worker is checked with `celery inspect ping` instead, which asks the worker itself through
the broker: a worker that stopped consuming fails it.
"""

from __future__ import annotations

import glob
import os
import sys
import time
import urllib.request
from pathlib import Path

BEAT_STALE_AFTER_S = 900  # beat rewrites its schedule file every 3-8 minutes (sync_every, max_interval)


def check_web() -> str | None:
    port = os.environ.get("PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:  # noqa: S310
            return None if response.status == 200 else f"/healthz answered {response.status}"
    except OSError as exc:
        return f"/healthz: {exc}"


def check_beat() -> str | None:
    var_dir = Path(os.environ.get("CANARYHUB_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
    files = glob.glob(str(var_dir / "celerybeat-schedule*"))
    if not files:
        return f"no beat schedule file in {var_dir} yet"
    age = time.time() - max(os.path.getmtime(f) for f in files)
    return None if age < BEAT_STALE_AFTER_S else f"beat schedule file not written for {age:.0f}s"


def main(argv: list[str]) -> int:
    checks = {"web": check_web, "beat": check_beat}
    if len(argv) != 1 or argv[0] not in checks:
        print(f"usage: healthcheck.py {'|'.join(checks)}", file=sys.stderr)
        return 2
    problem = checks[argv[0]]()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
