"""Throughput and latency of GET /api/v1/assign under gunicorn with a real Redis, and the Python
client's in-process rate with its cache.

    python bench/assign.py [--seconds 10] [--clients 4] [--workers 2] [--threads 2]
                           [--worker-class gthread] [--load wrk|python]

Everything runs here: a redis-server (tests/harness/redis.py), a fresh SQLite database in a
temporary CANARYHUB_VAR_DIR, a model with a 10 % canary and a service-account token, gunicorn
(keep-alive) and the load generator, all on this machine's cores. The load generator is `wrk`
(one thread, `--clients` keep-alive connections, a Lua script giving every request a distinct
user id) when it is installed, else `--clients` Python processes each looping on one keep-alive
connection; the Python one costs about as much CPU per request as the server, so it measures
itself as much as the server. Besides the client-side rate and latencies the bench prints the
CPU the gunicorn workers, redis-server and the load generator used per request, read from
/proc: what a request costs the server, and where the cores went.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import re
import shutil
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
from governance.access.permissions import Role
from governance.tokens.services import token_create
from releases.canaries import services as lifecycle
from releases.register import services
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
from releases.canaries.models import Canary
Canary.objects.filter(pk=c.pk).update(traffic_percent=10)
print(token_create(actor=platform, user=app, name="bench", scope=["scorer"])[1])
"""


WRK_SCRIPT = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  wrk.headers["Authorization"] = "Bearer " .. args[1]
end
function request()
  counter = counter + 1
  return wrk.format("GET", "/api/v1/assign?model=scorer&user=w" .. tid .. "-" .. counter)
end
"""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes (children's time excluded), from /proc."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine spent busy (not idle or iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(n) for n in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port: int, token: str, seconds: float, connections: int) -> tuple[int, float, float, int, float]:
    """wrk's count of answers, p50 and p99 (ms), errors (non-2xx and socket errors), and its CPU seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    proc = subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "-s", script.name,
         f"http://127.0.0.1:{port}", "--", token], stdout=subprocess.PIPE, text=True,
    )
    cpu = 0.0
    while proc.poll() is None:  # wrk's own CPU, read just before it exits
        cpu = cpu_seconds([proc.pid]) or cpu
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    os.unlink(script.name)
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return count, p50, p99, errors, cpu


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
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--load", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
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
             "-k", args.worker_class, "--threads", str(args.threads), "--keep-alive", "30", "--log-level", "warning"],
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
            workers = children(server.pid)
            server_cpu0, redis_cpu0 = cpu_seconds(workers), cpu_seconds([redis.process.pid])
            machine0 = machine_busy_seconds()
            if args.load == "wrk":
                count, p50, p99, errors, load_cpu = run_wrk(port, token, args.seconds, args.clients)
            else:
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
                latencies.sort()
                count, load_cpu = len(latencies), float("nan")
                p50 = statistics.median(latencies) * 1000
                p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
            server_cpu = cpu_seconds(workers) - server_cpu0
            redis_cpu = cpu_seconds([redis.process.pid]) - redis_cpu0
            machine = machine_busy_seconds() - machine0
        finally:
            server.terminate()
            server.wait(timeout=10)
        rps = count / args.seconds
        load_name = f"wrk, {args.clients} connections" if args.load == "wrk" else f"{args.clients} Python processes"
        print(f"assign API: gunicorn {args.workers} {args.worker_class} workers x {args.threads} threads, real Redis, "
              f"load {load_name} (keep-alive) on {os.cpu_count()} cores for {args.seconds:.0f}s: "
              f"{rps:,.0f} requests/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, {errors} errors")
        per = 1e6 / max(count, 1)
        load_per = "n/a" if load_cpu != load_cpu else f"{load_cpu * per:.0f} us"  # NaN: not measured
        load_busy = "n/a" if load_cpu != load_cpu else f"{load_cpu / args.seconds:.2f}"
        print(f"CPU per request: gunicorn workers {server_cpu * per:.0f} us, redis-server {redis_cpu * per:.0f} us, "
              f"load generator {load_per}; cores busy: workers {server_cpu / args.seconds:.2f}, "
              f"redis {redis_cpu / args.seconds:.2f}, load {load_busy}, "
              f"whole machine {machine / args.seconds:.2f} of {os.cpu_count()}")

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
