"""Faults injected into the production shape, started once for the module: the web under
gunicorn (two workers), a Celery worker (evaluations, pushes, notifications), the rollbacks
worker and beat on a real Redis broker, the harness's PostgreSQL, a real Prometheus scraping the
traffic simulator (`manage.py simulate`, as the launcher runs it) and a real nginx as the
router. Each test drives a canary through the public API (personal tokens over HTTP), injects
one fault, and then checks what the rules demand: the canary's state, the router's own answer
(traffic through nginx) agreeing with the canary, every rollback carried out once, the audit
chain verifying, and the notification outbox holding each transition once with nothing
dead-lettered.

The stack runs on short cadences so that a fault plays out in seconds, not minutes: an
evaluation every 2 s (production: 60 s), so the 4 consecutive metric-source errors after which
a canary fails closed take about 8 s instead of 4 minutes; the watchdog every second; the
dead-man's limit 30 s. The rules themselves are the production ones.

PostgreSQL pass only (the processes must see the test's committed rows)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from http.client import HTTPException
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from django.utils import timezone

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.audit.services import audit_verify
from governance.incidents.models import Incident
from governance.tokens.models import IdempotencyRecord
from governance.tokens.services import token_create
from monitoring.models import Evaluation, Heartbeat, NotificationDelivery, NotificationEvent, RollbackDecision
from releases.canaries.models import Canary
from releases.register import services as register
from releases.routing.models import RouterPush
from tests.factories import PASSWORD
from tests.harness.nginx import NginxServer, VersionServer, free_port
from tests.harness.prometheus import PrometheusServer
from tests.harness.redis import RedisServer
from tests.releases.routing.test_nginx_router import USERS, traffic

pytestmark = [pytest.mark.postgres, pytest.mark.faults, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
MODEL, PRODUCTION, CANDIDATE = "scorer", "1.0.0", "1.1.0"


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    ready: bytes  # printed once the process serves
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> Proc:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(  # noqa: S603
                self.argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while self.ready not in self.log.read_bytes():
            assert self.process is not None and self.process.poll() is None, f"{self.name} exited:\n{self.tail()}"
            assert time.monotonic() < deadline, f"{self.name} not ready in {timeout_s} s:\n{self.tail()}"
            time.sleep(0.2)

    def tail(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if "Sending due task" not in line]
        return "\n".join(lines)[-2500:]

    def kill(self) -> None:
        """kill -9 of the process group (a Celery main process and its pool, gunicorn and its workers)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


@dataclass
class Stack:
    env: dict[str, str]
    web_url: str
    nginx: NginxServer
    prometheus: PrometheusServer
    redis: RedisServer
    procs: dict[str, Proc] = field(default_factory=dict)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.procs.values())


@pytest.fixture(scope="module")
def stack(django_db_setup, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    production, candidate = VersionServer(PRODUCTION).start(), VersionServer(CANDIDATE).start()
    redis = RedisServer().start()
    nginx = NginxServer().start()
    sim_ports = (free_port(), free_port())
    prometheus = PrometheusServer([f"127.0.0.1:{p}" for p in sim_ports]).start()
    upstreams = {MODEL: {"production": [production.address], "canary": [candidate.address], "location": f"/{MODEL}/"}}
    web_port = free_port()
    env = {
        **os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": redis.url, "PROMETHEUS_URL": prometheus.url,
        "CANARYHUB_PROMETHEUS_TIMEOUT_S": "2", "CANARYHUB_VAR_DIR": str(tmp / "var"),
        "CANARYHUB_ROUTER_FILE_DIR": str(tmp / "router"),
        "CANARYHUB_ROUTER_NGINX": json.dumps(nginx.router_config(upstreams, confirm_timeout_s=2.0)),
        "CANARYHUB_ROUTER_ALLOWED_NETWORKS": "127.0.0.0/8", "CANARYHUB_ROUTER_PUSH_DEADLINE_S": "3",
        "CANARYHUB_EVALUATION_CADENCE_S": "2", "CANARYHUB_WATCHDOG_INTERVAL_S": "1",
        "CANARYHUB_ROLLBACK_SWEEP_AFTER_S": "3", "CANARYHUB_ROLLBACK_SLO_S": "8", "CANARYHUB_DEADMAN_LIMIT_S": "30",
        "CANARYHUB_NOTIFY_SEND_INTERVAL_S": "1", "CANARYHUB_SIMULATOR_PRODUCTION_PORT": str(sim_ports[0]),
        "CANARYHUB_SIMULATOR_CANARY_PORT": str(sim_ports[1]), "CANARYHUB_BASE_URL": f"http://127.0.0.1:{web_port}",
        "DJANGO_SETTINGS_MODULE": "canaryhub.settings", "PYTHONUNBUFFERED": "1",
    }
    py = sys.executable
    celery = [py, "-m", "celery", "-A", "canaryhub"]
    procs = [
        Proc("web", [py, "-m", "gunicorn", "canaryhub.wsgi", "--bind", f"127.0.0.1:{web_port}", "--workers", "2",
                     "--timeout", "30"], tmp / "web.log", b"Booting worker"),
        Proc("worker", [*celery, "worker", "-Q", "celery,notifications", "-c", "1", "-n", "worker@%h",
                        "--loglevel=INFO"], tmp / "worker.log", b"watchdog started"),
        Proc("rollbacks", [*celery, "worker", "-Q", "rollbacks", "-c", "1", "-n", "rollbacks@%h", "--loglevel=INFO"],
             tmp / "rollbacks.log", b"watchdog started"),
        Proc("beat", [*celery, "beat", "--loglevel=INFO", "-s", str(tmp / "beat-schedule")], tmp / "beat.log",
             b"beat: Starting"),
        Proc("simulator", [py, "manage.py", "simulate", MODEL, "--production", PRODUCTION, "--canary", CANDIDATE,
                           "--rps", "2000", "--traffic-scale", "1"], tmp / "simulator.log", b"simulating"),
    ]
    built = Stack(env=env, web_url=f"http://127.0.0.1:{web_port}", nginx=nginx, prometheus=prometheus, redis=redis,
                  procs={p.name: p for p in procs})
    try:
        for proc in procs:
            proc.start(env)
        for proc in procs:
            proc.wait_ready()
        wait_for(lambda: http(built, "GET", "/healthz")[0] == 200, timeout_s=30, stack=built)
        yield built
    finally:
        for proc in procs:
            proc.kill()
        prometheus.stop()
        nginx.stop()
        redis.stop()
        production.stop()
        candidate.stop()


@pytest.fixture
def resumed_after_flush(stack):
    """Outermost: after the database is emptied, the stack runs on (SIGCONT)."""
    yield stack
    for proc in paused(stack):
        os.killpg(proc.process.pid, signal.SIGCONT)


def paused(stack: Stack) -> list[Proc]:
    """The processes that use the database (the simulator does not)."""
    return [p for p in stack.procs.values() if p.name != "simulator" and p.process is not None
            and p.process.poll() is None]


@pytest.fixture(autouse=True)
def quiet_for_flush(resumed_after_flush, transactional_db):
    """Before the test's database is emptied (TRUNCATE of every table, which deadlocks with a
    running process's transaction): the stack's processes are paused (SIGSTOP) and their sessions
    ended, so nothing holds a lock. They find their connections gone when they resume and open
    new ones, as after a database restart."""
    yield
    import psycopg

    for proc in paused(resumed_after_flush):
        os.killpg(proc.process.pid, signal.SIGSTOP)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own = cursor.fetchone()[0]
    with psycopg.connect(database_url(), connect_timeout=5, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND backend_type = 'client backend' AND pid NOT IN (pg_backend_pid(), %s)", [own])


def wait_for(predicate, *, timeout_s: float, stack: Stack, every_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    evaluations = [(e.window_end.isoformat(), e.verdict, {k: e.inputs.get(k) for k in ("source_error", "fail_closed")})
                   for e in Evaluation.objects.order_by("-window_end")[:8]]
    canaries = list(Canary.objects.values_list("pk", "state", "traffic_percent", "hold_reason"))
    raise AssertionError(f"not within {timeout_s} s; canaries {canaries}; latest evaluations {evaluations}; "
                         f"logs:\n{stack.logs()}")


def http(stack: Stack, method: str, path: str, *, token: str = "", body: Any = None,
         headers: dict[str, str] | None = None, timeout_s: float = 30) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(stack.web_url + path, data=data, method=method, headers={
        "Accept": "application/json", **({"Content-Type": "application/json"} if data else {}),
        **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - loopback
            raw, status, head = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, head = exc.read(), exc.code, dict(exc.headers)
    except OSError:
        return 0, {}, None
    try:
        return status, head, json.loads(raw) if raw else None
    except ValueError:
        return status, head, raw.decode(errors="replace")


def person(role_user, role: Role, username: str) -> tuple[Any, str]:
    """A user whose password the web process can check (the tests' fast hasher is this process's
    only), and a personal token of theirs."""
    user = role_user(role, username=username)
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt(), iterations=1000)
    user.save(update_fields=["password"])
    return user, token_create(actor=user, user=user, name=f"{username} token")[1]


def start_canary(stack: Stack, role_user, settings, *, risk_tier: str = "medium") -> tuple[dict[str, Any], dict[str, str]]:
    """Register the model (a platform engineer's act, done directly, with the stack's settings:
    its versions are judged on the stack's Prometheus) and start a canary of it over the API with
    the owner's token, on the nginx router. Returns the canary and the tokens."""
    settings.PROMETHEUS_URL = stack.prometheus.url
    platform, _ = person(role_user, Role.PLATFORM, "platform")
    _, owner_token = person(role_user, Role.MODEL_OWNER, "owner")
    _, mrm_token = person(role_user, Role.MRM, "mrm")
    register.model_register(actor=platform, name=MODEL, display_name="Scorer", risk_tier=risk_tier, owner="owner",
                            on_call="oncall@example.org")
    register.version_register(actor=platform, model_name=MODEL, version=PRODUCTION, artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name=MODEL, version=CANDIDATE, artifact_uri="s3://2")
    status, _, body = http(stack, "POST", "/api/v1/canaries/", token=owner_token, body={
        "model": MODEL, "version": CANDIDATE, "router": "nginx", "rationale": "fault injection on the running stack"},
        headers={"Idempotency-Key": "start-1"})
    assert status == 201, body
    return body, {"owner": owner_token, "mrm": mrm_token}


def canary_share(stack: Stack) -> float | None:
    """The percent of users nginx itself sends to the canary version (the router's own answer);
    None while nginx has no route for the model."""
    for attempt in range(5):
        try:
            served = traffic(stack.nginx, USERS[:1000], path=f"/{MODEL}/predict")
            break
        except AssertionError:  # 404: no configuration for the model yet
            return None
        except (OSError, HTTPException):  # a reload closed the keep-alive connection: again
            if attempt == 4:
                raise
            time.sleep(0.1)
    return 100 * sum(v == CANDIDATE for v in served.values()) / len(served)


def router_agrees(stack: Stack, canary_id: int) -> bool:
    canary = Canary.objects.get(pk=canary_id)
    share = canary_share(stack)
    if share is None:  # no route for the model: right only for a canary never pushed
        return canary.split_generation == 0 and canary.traffic_percent == 0
    return abs(share - canary.traffic_percent) <= 2


def assert_consistent(stack: Stack, canary_id: int, *, state: str, percent: int, rollbacks: int) -> None:
    """What must hold after every fault."""
    canary = Canary.objects.get(pk=canary_id)
    assert (canary.state, canary.traffic_percent) == (state, percent), (canary.state, canary.traffic_percent)
    wait_for(lambda: router_agrees(stack, canary_id), timeout_s=20, stack=stack)
    audited = AuditEvent.objects.filter(action="canary.rolled_back", object_id=str(canary_id)).count()
    assert audited == rollbacks
    assert RollbackDecision.objects.filter(canary_id=canary_id, done_at__isnull=False).count() <= rollbacks
    assert Incident.objects.filter(canary_id=canary_id, kind=Incident.Kind.ROLLBACK).count() == rollbacks
    assert audit_verify().ok
    # The outbox: each audited transition of the canary is told once, and every message is delivered.
    transitions = Counter(AuditEvent.objects.filter(object_type="canary", object_id=str(canary_id))
                          .values_list("action", flat=True))
    told = Counter(NotificationEvent.objects.filter(canary_id=canary_id).values_list("kind", flat=True))
    for kind in ("canary.initiated", "canary.rolled_back", "canary.suspended", "canary.resumed", "canary.started",
                 "canary.promoted"):
        assert told[kind] == transitions[kind], (kind, told, transitions)
    wait_for(lambda: not NotificationDelivery.objects.filter(event__canary_id=canary_id).exclude(
        status=NotificationDelivery.Status.SENT).exists(), timeout_s=30, stack=stack)


def gate_list(evaluation: Evaluation) -> list[dict[str, Any]]:
    return list(evaluation.gates.values()) if isinstance(evaluation.gates, dict) else list(evaluation.gates)


def test_prometheus_stopped_the_canary_fails_closed_after_four_source_errors(stack, role_user, settings):
    """Prometheus stops answering: each evaluation records a source error with every gate stale
    (the stage holds; nothing promotes on it), and the fourth in a row fails closed — one
    rollback, the router at 0 %."""
    canary, _ = start_canary(stack, role_user, settings)
    cid = canary["id"]
    wait_for(lambda: Canary.objects.get(pk=cid).traffic_percent == 1 and router_agrees(stack, cid), timeout_s=30,
             stack=stack)
    assert Canary.objects.get(pk=cid).metrics["provider"] == "prometheus"
    wait_for(lambda: Evaluation.objects.filter(canary_id=cid).exclude(inputs__has_key="source_error").exists(),
             timeout_s=30, stack=stack)
    stack.prometheus.halt()
    try:
        halted = time.monotonic()
        wait_for(lambda: Canary.objects.get(pk=cid).state == Canary.State.ROLLED_BACK, timeout_s=60, stack=stack)
        failed_closed_s = time.monotonic() - halted
        wait_for(lambda: canary_share(stack) == 0, timeout_s=30, stack=stack)
    finally:
        stack.prometheus.resume()
    print(f"Prometheus stopped → failed closed and rolled back in {failed_closed_s:.1f} s (cadence 2 s)")
    errors = list(Evaluation.objects.filter(canary_id=cid, inputs__has_key="source_error").order_by("window_end"))
    assert len(errors) >= 4
    assert all({g["status"] for g in gate_list(e)} == {"stale"} for e in errors[:3]), [e.gates for e in errors]
    assert "fail_closed" in errors[3].inputs and "fail_closed" not in errors[2].inputs
    assert Canary.objects.get(pk=cid).stage_index == 0  # never promoted on the outage
    assert_consistent(stack, cid, state=Canary.State.ROLLED_BACK, percent=0, rollbacks=1)
    assert RollbackDecision.objects.get(canary_id=cid).outcome == "rolled back"


def test_nginx_refusing_its_configuration_keeps_the_previous_one_until_it_is_fixed(stack, role_user, settings):
    """An operator's broken file in nginx's include folder makes `nginx -t` refuse every new
    configuration. The owner's rollback over the API stands (200, rolled back, once); its 0 % push
    is refused and nginx keeps serving the previous split; past the rollback SLO (8 s here) a P1
    says the rollback is not confirmed; once the file is fixed the sweeper's next push puts nginx
    at 0 %."""
    canary, tokens = start_canary(stack, role_user, settings)
    cid = canary["id"]
    wait_for(lambda: Canary.objects.get(pk=cid).traffic_percent == 1 and router_agrees(stack, cid), timeout_s=30,
             stack=stack)
    broken = stack.nginx.conf_dir / "http" / "zz-operator.conf"
    broken.write_text("this_is_not_a_directive on;\n")
    try:
        status, _, body = http(stack, "POST", f"/api/v1/canaries/{cid}/rollback/", token=tokens["owner"],
                               body={"reason": "errors reported by a consumer"}, headers={"Idempotency-Key": "rb-1"})
        assert status == 200, body
        assert Canary.objects.get(pk=cid).state == Canary.State.ROLLED_BACK
        refused = wait_for(lambda: RouterPush.objects.filter(canary_id=cid, ok=False, requested__percent=0,
                                                             finished_at__isnull=False).first(), timeout_s=30, stack=stack)
        assert "nginx -t refused" in refused.error
        share = canary_share(stack)
        assert share is not None and abs(share - 1) <= 2  # the previous configuration keeps serving
        incident = wait_for(lambda: Incident.objects.filter(canary_id=cid, kind=Incident.Kind.ROLLBACK_UNCONFIRMED)
                            .first(), timeout_s=30, stack=stack)
        assert incident.severity == "P1"
    finally:
        broken.unlink()
    fixed = time.monotonic()
    wait_for(lambda: canary_share(stack) == 0, timeout_s=30, stack=stack)
    print(f"nginx configuration fixed → router at 0 % in {time.monotonic() - fixed:.1f} s")
    assert RouterPush.objects.filter(canary_id=cid, ok=True, requested__percent=0).exists()
    assert_consistent(stack, cid, state=Canary.State.ROLLED_BACK, percent=0, rollbacks=1)
    status, _, again = http(stack, "POST", f"/api/v1/canaries/{cid}/rollback/", token=tokens["owner"],
                            body={"reason": "errors reported by a consumer"}, headers={"Idempotency-Key": "rb-1"})
    assert status == 200 and again["state"] == Canary.State.ROLLED_BACK  # the retry replays, acts not again
    assert AuditEvent.objects.filter(action="canary.rolled_back", object_id=str(cid)).count() == 1


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def process_of_local_port(port: int, pids: list[int]) -> int:
    """Which of `pids` owns the TCP socket bound to local port `port` (/proc/net/tcp and the fds)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no process of {pids} holds local port {port}")


def test_the_web_process_killed_mid_signature_records_all_or_nothing(stack, role_user, settings):
    """`kill -9` of the gunicorn worker that serves a signature, while its transaction is open
    (the canary's row is held by another session, so the request is caught in the middle): the
    transaction dies with it — no signature, no audit event, no idempotency record. The client's
    retry with the same Idempotency-Key signs once; a second retry replays the answer."""
    import threading

    import psycopg

    canary, tokens = start_canary(stack, role_user, settings, risk_tier="high")  # the start awaits owner and MRM
    cid = canary["id"]
    assert Canary.objects.get(pk=cid).state == Canary.State.PENDING_APPROVAL
    sign = {"role": "owner", "statement": "I approve starting this canary.", "password": PASSWORD}
    key = {"Idempotency-Key": "sign-owner-1"}
    answers: list[tuple[int, dict[str, str], Any]] = []
    holder = psycopg.connect(database_url(), connect_timeout=5)
    try:
        holder.execute("SELECT id FROM releases_canary WHERE id = %s FOR UPDATE", [cid])
        client = threading.Thread(target=lambda: answers.append(
            http(stack, "POST", f"/api/v1/canaries/{cid}/approvals/", token=tokens["owner"], body=sign, headers=key)))
        client.start()
        with psycopg.connect(database_url(), connect_timeout=5, autocommit=True) as watcher:
            port = wait_for(lambda: not answers and watcher.execute(
                "SELECT client_port, query FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND state = 'active'"
            ).fetchone() or (answers and pytest.fail(str(answers))),
                            timeout_s=30, stack=stack)[0]
        master = stack.procs["web"].process.pid
        worker = process_of_local_port(port, children(master))
        os.kill(worker, signal.SIGKILL)
        client.join(timeout=30)
    finally:
        holder.rollback()
        holder.close()
    assert answers and answers[0][0] == 0, answers  # the client saw the connection drop, no answer
    with psycopg.connect(database_url(), connect_timeout=5, autocommit=True) as watcher:
        # The killed worker's session, freed from the lock, finds its client gone and ends.
        wait_for(lambda: not watcher.execute("SELECT 1 FROM pg_stat_activity WHERE client_port = %s",
                                             [port]).fetchone(), timeout_s=30, stack=stack)
    assert not Canary.objects.get(pk=cid).approvals.exists()
    assert not IdempotencyRecord.objects.filter(key=key["Idempotency-Key"]).exists()
    assert not AuditEvent.objects.filter(action="canary.signed", object_id=str(cid)).exists()
    # gunicorn's master replaces the worker; the client retries with the same key.
    status, _, body = wait_for(lambda: (lambda r: r if r[0] != 0 else None)(http(
        stack, "POST", f"/api/v1/canaries/{cid}/approvals/", token=tokens["owner"], body=sign, headers=key)),
        timeout_s=30, stack=stack)
    assert status == 201, body
    status, head, replay = http(stack, "POST", f"/api/v1/canaries/{cid}/approvals/", token=tokens["owner"],
                                body=sign, headers=key)
    assert (status, head.get("Idempotent-Replayed"), replay) == (201, "true", body)
    assert Canary.objects.get(pk=cid).approvals.count() == 1
    assert AuditEvent.objects.filter(action="canary.signed", object_id=str(cid)).count() == 1
    assert worker not in children(master) and len(children(master)) == 2
    assert_consistent(stack, cid, state=Canary.State.PENDING_APPROVAL, percent=0, rollbacks=0)


def pg_ctl_on(data_dir: str, *args: str) -> None:
    from tests.harness.postgres import find_bin_dir

    argv = [str(find_bin_dir() / "pg_ctl"), "-D", data_dir, *args]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, cwd="/", timeout=60)  # noqa: S603


def test_postgresql_restarted_the_api_answers_503_and_every_process_recovers(stack, role_user, settings):
    """PostgreSQL stops (fast shutdown: every session ended) under a running canary and comes
    back on the same port. While it is down the API answers 503 with Retry-After (reads and
    observation pushes alike), never 500; once it is back every process serves again without a
    restart: evaluations resume, the canary is where it was, and a rollback over the API is
    carried out once by the workers."""
    canary, tokens = start_canary(stack, role_user, settings)
    cid = canary["id"]
    wait_for(lambda: Canary.objects.get(pk=cid).traffic_percent == 1 and router_agrees(stack, cid), timeout_s=30,
             stack=stack)
    before = Canary.objects.get(pk=cid)
    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        data_dir = cursor.fetchone()[0]
    connection.close()
    pg_ctl_on(data_dir, "-m", "fast", "-w", "stop")
    try:
        down = [http(stack, "GET", f"/api/v1/canaries/{cid}/", token=tokens["owner"]),
                http(stack, "POST", "/api/v1/observations/", token=tokens["owner"], body={
                    "model": MODEL, "version": CANDIDATE, "window_start": "2026-01-01T00:00:00Z",
                    "window_end": "2026-01-01T00:01:00Z", "requests": 10, "errors": 0})]
        time.sleep(4)  # two evaluation rounds fail on the database
    finally:
        pg_ctl_on(data_dir, "-w", "-l", str(Path(data_dir).parent / "server.log"), "start")
    back = time.monotonic()
    for status, head, body in down:
        assert status == 503 and int(head["Retry-After"]) > 0, (status, body)
        assert body["type"].endswith("database-unavailable"), body
    wait_for(lambda: http(stack, "GET", f"/api/v1/canaries/{cid}/", token=tokens["owner"])[0] == 200, timeout_s=30,
             stack=stack)
    restarted_at = timezone.now()
    wait_for(lambda: Evaluation.objects.filter(canary_id=cid, created_at__gt=restarted_at).exists(), timeout_s=30,
             stack=stack)
    print(f"PostgreSQL back → API and evaluations again in {time.monotonic() - back:.1f} s")
    after = Canary.objects.get(pk=cid)
    assert (after.state, after.stage_index, after.traffic_percent) == (before.state, before.stage_index, 1)
    status, _, body = http(stack, "POST", f"/api/v1/canaries/{cid}/rollback/", token=tokens["owner"],
                           body={"reason": "checking the stack after the restart"})
    assert status == 200, body
    wait_for(lambda: canary_share(stack) == 0, timeout_s=30, stack=stack)
    assert_consistent(stack, cid, state=Canary.State.ROLLED_BACK, percent=0, rollbacks=1)


def test_a_clock_jump_never_promotes_on_stale_data_and_a_jump_back_breaks_nothing(stack, role_user, settings):
    """The evaluator's clock jumps forward past the staleness limit: one round of the control
    loop (the code the workers run, here in the test's process with its clock moved, on the
    stack's database, Prometheus and router) finds the newest data older than the limit: every
    gate stale, no rollback, and the owner's signature on that evaluation is refused over the API.
    The clock then jumps back to the true time (the stack's own rounds go on at it): evaluations
    continue with no negative data age, the canary and the API answer as before."""
    from releases.canaries import loop

    settings.CANARYHUB_ROUTERS = {**settings.CANARYHUB_ROUTERS,
                                  "nginx": json.loads(stack.env["CANARYHUB_ROUTER_NGINX"])}
    canary, tokens = start_canary(stack, role_user, settings)
    cid = canary["id"]
    wait_for(lambda: Canary.objects.get(pk=cid).traffic_percent == 1 and router_agrees(stack, cid), timeout_s=30,
             stack=stack)
    wait_for(lambda: Evaluation.objects.filter(canary_id=cid).exclude(inputs__has_key="source_error").exists(),
             timeout_s=30, stack=stack)
    before = Canary.objects.get(pk=cid)
    worker_log_from = stack.procs["worker"].log.stat().st_size
    jumped = timezone.now() + timedelta(seconds=settings.STALENESS_LIMIT_S + 60)
    outcome = loop.evaluate_tick(now=jumped, canary_ids=[cid]).outcomes[0]
    assert not outcome.rollback
    stale = Evaluation.objects.get(pk=outcome.evaluation_id)
    assert stale.verdict == "stale" and {g["status"] for g in gate_list(stale)} == {"stale"}, stale.gates
    age = stale.inputs["data_age_s"]  # None: no sample at all in the window the moved clock asks for
    assert age is None or age > settings.STALENESS_LIMIT_S, stale.inputs
    status, _, body = http(stack, "POST", f"/api/v1/canaries/{cid}/approvals/", token=tokens["owner"], body={
        "role": "owner", "statement": "I approve this stage on what I was shown.", "password": PASSWORD,
        "evaluation_hash": stale.content_hash})
    assert status in (400, 409), (status, body)
    assert not Canary.objects.get(pk=cid).approvals.exists()

    # Back to the true time: the stack's rounds carry on behind the evaluation from the future.
    back = timezone.now()
    wait_for(lambda: Evaluation.objects.filter(canary_id=cid, created_at__gt=back, window_end__lt=jumped).count() >= 2,
             timeout_s=30, stack=stack)
    after = list(Evaluation.objects.filter(canary_id=cid, created_at__gt=back, window_end__lt=jumped))
    # The heartbeat the jumped round stamped in the future is overwritten by the next true round:
    # the dead-man's switch is not blinded until the true time catches up.
    assert Heartbeat.objects.get(pk=1).last_tick_at < jumped
    assert all(e.inputs.get("data_age_s") is None or e.inputs["data_age_s"] >= 0 for e in after), \
        [e.inputs.get("data_age_s") for e in after]
    for path in (f"/api/v1/canaries/{cid}/", f"/api/v1/canaries/{cid}/evaluations/"):
        status, _, body = http(stack, "GET", path, token=tokens["owner"])
        assert status == 200, (path, status, body)
    now = Canary.objects.get(pk=cid)
    assert (now.state, now.stage_index, now.traffic_percent) == (before.state, before.stage_index, 1)
    assert b"Traceback" not in stack.procs["worker"].log.read_bytes()[worker_log_from:]
    assert_consistent(stack, cid, state=before.state, percent=1, rollbacks=0)
