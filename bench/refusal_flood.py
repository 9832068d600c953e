"""A flood of bad bearer tokens: how much it grows the audit chain, and what a refusal costs.

    python bench/refusal_flood.py [--requests 1000] [--addresses 4]

A fresh SQLite database in a temporary CANARYHUB_VAR_DIR (or DATABASE_URL if set); `--requests`
GET /api/v1/models/ with a different bad token each, spread over `--addresses` source addresses,
through Django's in-process test client. Prints the audit events appended during the flood (the
refusals are only counted), the events the flush appends (one per minute and address), the sum
of their counts, and the median and 99th-percentile time of one refused request.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--addresses", type=int, default=4)
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="canaryhub-bench-refusals-"))
    os.environ.update({"DJANGO_SETTINGS_MODULE": "canaryhub.settings", "CANARYHUB_VAR_DIR": str(var),
                       "CANARYHUB_ENV": "test"})
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    import logging

    from django.test import Client

    from governance.audit.models import AuditEvent
    from governance.audit.services import audit_verify, refusals_flush

    logging.getLogger("django.request").setLevel(logging.ERROR)  # a line per refusal otherwise
    try:
        clients = [Client(REMOTE_ADDR=f"203.0.113.{i + 1}") for i in range(args.addresses)]
        before = AuditEvent.objects.count()
        times = []
        for i in range(args.requests):
            started = time.perf_counter()
            answer = clients[i % args.addresses].get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer chk_{i:08x}_x{i}")
            times.append(time.perf_counter() - started)
            assert answer.status_code == 401, answer.status_code
        during = AuditEvent.objects.count() - before
        flushed = refusals_flush(include_current=True)
        counted = sum(e.payload["count"] for e in AuditEvent.objects.filter(action="access.refused_unknown"))
        times.sort()
        print(f"bad-token requests:               {args.requests} from {args.addresses} addresses")
        print(f"audit events during the flood:    {during}")
        print(f"audit events appended by flush:   {flushed} (refusals counted in them: {counted})")
        print(f"refused request, median:          {statistics.median(times) * 1000:.2f} ms")
        print(f"refused request, p99:             {times[int(len(times) * 0.99) - 1] * 1000:.2f} ms")
        print(f"chain verifies:                   {audit_verify().ok}")
    finally:
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
