"""Audit chain verification: the whole chain against the incremental check from the last signed
checkpoint (what the certificate queue and the certificate verification run on every request).

    python bench/audit_verify.py [--events 50000] [--after 200] [--repeat 5]

A fresh SQLite database in a temporary CANARYHUB_VAR_DIR (or DATABASE_URL if set) gets `--events`
audit events; the nightly verification (governance.evidence.services.chain_check) runs once and
signs its checkpoint; then `--after` more events are appended, as a day's work would. Prints the
median time of a full verification and of one from the checkpoint, over `--repeat` runs each.
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
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--after", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="canaryhub-bench-audit-"))
    os.environ.update({"DJANGO_SETTINGS_MODULE": "canaryhub.settings", "CANARYHUB_VAR_DIR": str(var),
                       "CANARYHUB_ENV": "test"})
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from django.db import transaction

    from governance.audit.services import audit_append, audit_verify
    from governance.evidence.services import chain_check

    def append(n: int) -> None:
        for start in range(0, n, 1000):
            with transaction.atomic():
                for i in range(start, min(n, start + 1000)):
                    audit_append(actor=None, action="bench.event", object_type="thing", object_id=i,
                                 payload={"i": i, "note": "x" * 80})

    append(args.events)
    export = chain_check()
    assert export.ok, export.reason
    append(args.after)

    def timed(**kwargs: bool) -> float:
        runs = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            result = audit_verify(**kwargs)
            runs.append(time.perf_counter() - began)
            assert result.ok, result.reason
        return statistics.median(runs)

    full = timed()
    incremental = timed(from_checkpoint=True)
    print(f"chain: {args.events + args.after} events, checkpoint at #{export.length}")
    print(f"full verification:            {full * 1000:9.1f} ms (median of {args.repeat})")
    print(f"from the signed checkpoint:   {incremental * 1000:9.1f} ms (median of {args.repeat})")
    print(f"speed-up: {full / incremental:.0f}x")
    shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
