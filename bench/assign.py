"""Throughput and latency of GET /api/v1/assign under gunicorn (2 workers) with a real Redis,
and the Python client's in-process rate with its cache.

    python bench/assign.py [--seconds 10] [--clients 4] [--workers 2] [--threads 4]

Everything runs here: a redis-server (tests/harness/redis.py), a fresh SQLite database in a
temporary CANARYHUB_VAR_DIR, a model with a 10 % canary and a service-account token, gunicorn
(gthread workers, keep-alive), and `--clients` load processes, each looping over distinct user
ids on one keep-alive connection. Load generator and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.nginx import free_port  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

SETUP = """
import django; django.setup()
from django.contrib.auth.models import Group
from governance.permissions import Role
from governance.tokens import token_create
from releases import lifecycle, services
from tests.factories import UserFactory
def user(name, role):
    u = UserFactory(username=name); u.groups.add(Group.objects.get_or_create(name=str(role))[0]); return u
platform, owner = user("platform", Role.PLATFORM), user("owner", Role.MODEL_OWNER)
app = user("app", Role.SERVICE_ACCOUNT)
services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="low", owner="owner",
                        on_call="x")
services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                          status="production")
services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
c = lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0")
from releases.models import Canary
Canary.objects.filter(pk=c.pk).update(traffic_percent=10)
print(token_create(actor=platform, user=app, name="bench", scope=["scorer"])[1])
"""


def load(port: int, token: str, seconds: float, offset: int, queue: multiprocessing.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Authorization": f"Bearer {token}"}
    latencies, errors, i = [], 0, 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        i += 1
        t0 = time.perf_counter()
        try:
            conn.request("GET", f"/api/v1/assign?model=scorer&user=u{offset}-{i}", headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            continue
        latencies.append(time.perf_counter() - t0)
    queue.put((latencies, errors))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    var_dir = tempfile.mkdtemp(prefix="canaryhub-bench-")
    with RedisServer() as redis:
        env = {**os.environ, "CANARYHUB_VAR_DIR": var_dir, "REDIS_URL": redis.url, "CANARYHUB_ENV": "test",
               "DJANGO_SETTINGS_MODULE": "canaryhub.settings", "CELERY_TASK_ALWAYS_EAGER": "true",
               "CANARYHUB_ASSIGN_CACHE_S": "2", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        token = subprocess.run([sys.executable, "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True,
                               text=True).stdout.strip().splitlines()[-1]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "canaryhub.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(args.workers),
             "-k", "gthread", "--threads", str(args.threads), "--keep-alive", "30", "--log-level", "warning"],
            cwd=ROOT, env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/api/v1/assign?model=scorer&user=warm",
                                 headers={"Authorization": f"Bearer {token}"})
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not answer")
                time.sleep(0.2)
            # Warm every worker's caches before timing.
            queue: multiprocessing.Queue = multiprocessing.Queue()
            warm = [multiprocessing.Process(target=load, args=(port, token, 1.0, 10_000 + n, queue)) for n in range(4)]
            for p in warm:
                p.start()
            for _ in warm:
                queue.get()
            procs = [multiprocessing.Process(target=load, args=(port, token, args.seconds, n, queue))
                     for n in range(args.clients)]
            for p in procs:
                p.start()
            latencies, errors = [], 0
            for _ in procs:
                lat, err = queue.get()
                latencies += lat
                errors += err
            for p in procs:
                p.join()
        finally:
            server.terminate()
            server.wait(timeout=10)
        latencies.sort()
        rps = len(latencies) / args.seconds
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
        print(f"assign API: gunicorn {args.workers} gthread workers x {args.threads} threads, real Redis, "
              f"{args.clients} keep-alive load processes on {os.cpu_count()} cores for {args.seconds:.0f}s: "
              f"{rps:,.0f} requests/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, {errors} errors")

        from canaryhub.client import CanaryHubClient

        client = CanaryHubClient(f"http://127.0.0.1:{port}", token=token, ttl_s=60)
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "canaryhub.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1",
             "-k", "gthread", "--threads", "2", "--log-level", "warning"], cwd=ROOT, env=env,
        )
        try:
            time.sleep(2)
            users = [f"c{i}" for i in range(1000)]
            for user in users:  # fill the cache: 1,000 real requests
                client.assign("scorer", user)
            calls, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 2.0:
                for user in users:
                    client.assign("scorer", user)
                calls += len(users)
            rate = calls / (time.perf_counter() - t0)
        finally:
            server.terminate()
            server.wait(timeout=10)
        print(f"python client with its cache (1,000 users, TTL 60 s): {rate:,.0f} assignments/s in one thread")


if __name__ == "__main__":
    main()
