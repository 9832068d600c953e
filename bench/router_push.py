"""Breach-to-0% through the nginx router: render, `nginx -t`, reload, read back, old workers gone.

    python bench/router_push.py [--pushes 100]

Starts its own nginx (tests/harness/nginx.py) with two version servers, puts the canary at 25 %,
then times `NginxRouter.apply` of the 0 % split, 100 times (alternating with 25 % pushes that
are not timed). Prints median and p99 in milliseconds, and checks after each rollback that a
fresh request goes to production.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canaryhub.settings")

from releases.routing.routers import Split  # noqa: E402
from releases.routing.routers.nginx import NginxRouter  # noqa: E402
from tests.harness.nginx import NginxServer, VersionServer  # noqa: E402


def served(port: int, user: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/bench/x", headers={"X-User-Id": user})
    version = json.loads(conn.getresponse().read())["version"]
    conn.close()
    return version


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=100)
    args = parser.parse_args()
    with VersionServer("1.0.0") as prod, VersionServer("1.1.0") as canary, NginxServer() as nginx:
        router = NginxRouter(**nginx.router_config(
            {"bench": {"production": [prod.address], "canary": [canary.address], "location": "/bench/"}}
        ))
        timings = []
        generation = 0
        for _ in range(args.pushes):
            generation += 1
            router.apply(Split(model="bench", production_version="1.0.0", canary_version="1.1.0", percent=100,
                               canary_id=1, generation=generation))
            generation += 1
            rollback = Split(model="bench", production_version="1.0.0", canary_version="1.1.0", percent=0,
                             canary_id=1, generation=generation)
            t0 = time.perf_counter()
            router.apply(rollback)
            timings.append((time.perf_counter() - t0) * 1000)
            assert served(nginx.port, f"user-{generation}") == "1.0.0", "a request reached the canary after rollback"
        timings.sort()
        p99 = timings[min(len(timings) - 1, int(round(0.99 * len(timings))) - 1)]
        print(f"nginx router breach-to-0% over {len(timings)} pushes: median {statistics.median(timings):.1f} ms, "
              f"p99 {p99:.1f} ms, max {timings[-1]:.1f} ms")


if __name__ == "__main__":
    main()
