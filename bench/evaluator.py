"""Evaluator tick cost against a real Prometheus: wall time and PromQL queries per tick for 10,
100 and 1,000 active canaries.

    python bench/evaluator.py [--sizes 10,100,1000] [--ticks 3] [--postgres] [--segments 4] [--quick]
                              [--scrape-interval 15] [--models-per-target 100] [--profile PATH]

Every model serves its traffic over `--segments` segment labels (each judged against production's
same segment) and exports the LLM series (tokens by direction, cost, guardrail blocks, schema
failures, response tokens) with the rest: about 212 series a version at 4 segments, 424,000 for
1,000 models. `--quick`: sizes 10,100 and 2 ticks, for a machine shared with other work.

Starts the simulator's model servers for every model in a process of their own, behind one
exporter per `--models-per-target` models, a real Prometheus (Debian package) scraping them every
`--scrape-interval` seconds (15 s by default, a common production setting; the servers take a
step of traffic at the same pace), a throwaway database with the canaries (SQLite; with
--postgres a PostgreSQL server of its own, tests.harness.postgres), and times
`releases.canaries.loop.evaluate_tick` over all of them (the tick includes writing every
Evaluation record and reconciling every canary). Everything shares this machine's cores: in a
deployment the model servers and Prometheus run elsewhere, here their work competes with the
tick's. So the exporters answer a scrape with bytes rendered once per step, not per scrape:
rendered per scrape by prometheus-client (0.65 s of Python at 100 models on a quiet core, and
growing with the models) a scrape on a loaded machine can pass Prometheus' scrape timeout, and
the fleet's Python competes with the tick at every scrape.

Prints per size the median and maximum tick, its metric reads, the PromQL queries and SQL
statements per tick, the verdicts (why any was stale: a source error names the failed query;
which gates were red), the load average and the exporters' scrape health. `--profile`: one more
tick per size under cProfile, split into metric reads, decisions and SQL. Not a test.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.synchronize
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["CANARYHUB_VAR_DIR"] = tempfile.mkdtemp(prefix="canaryhub-bench-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canaryhub.settings")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")

from prometheus_client.utils import floatToGoString  # noqa: E402

from monitoring.simulator import ModelServer  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402
from tests.harness.prometheus import PrometheusServer, free_port  # noqa: E402

SEGMENT_NAMES = ("eu", "us", "apac", "latam", "mea", "anz", "cn", "in")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(servers: list[ModelServer]) -> bytes:
    """The servers' samples in the Prometheus text format, from their own `collect()`: the
    samples prometheus-client's `generate_latest` would write, at a third of its cost (no HELP
    and TYPE lines, untyped samples; the evaluator's queries name their series)."""
    lines = []
    for server in servers:
        for family in server.collect():
            for sample in family.samples:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
                lines.append(f"{sample.name}{{{labels}}} {floatToGoString(sample.value)}\n")
    return "".join(lines).encode()


def run_fleet(models: int, ports: list[int], stop: multiprocessing.synchronize.Event, segments: int = 4,
              interval_s: float = 15.0) -> None:
    """The model servers of `models` models, split over one exporter per port, serving a step
    of requests (5,000 a model every 5 s, 1 % of them to the canary, spread over the segments)
    every `interval_s` until `stop`. In a process of its own: a model server does not live in
    the evaluator's process, and its Python would hold the evaluator's interpreter lock and be
    timed as the tick's.

    Each exporter's answer is rendered once per step, right after it, and every scrape is sent
    those bytes: a scrape takes milliseconds instead of seconds of Python at hundreds of models,
    so it never meets Prometheus' scrape timeout (the scrape interval) on a loaded machine, and
    its samples are never late. Counters change only at a step, so the answer is the same."""
    servers: list[ModelServer] = []
    for i in range(models):
        servers += [ModelServer(f"bench-{i}", "1.0.0", seed=i), ModelServer(f"bench-{i}", "1.1.0", seed=i + 1)]
    # A model's two versions behind the same exporter, scraped at the same moment: traffic comes in
    # steps, and versions scraped a step apart would show the router's share off by a step's worth.
    shards = [[s for i, s in enumerate(servers) if i // 2 % len(ports) == k] for k in range(len(ports))]
    answers: list[bytes] = [exposition(shard) for shard in shards]

    def handler(k: int) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = answers[k]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        return Handler

    for k, port in enumerate(ports):
        httpd = ThreadingHTTPServer(("127.0.0.1", port), handler(k))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    per_step = interval_s / 5.0
    while not stop.wait(interval_s):
        for s in servers:
            for segment in SEGMENT_NAMES[:segments]:
                s.serve(int((4950 if s.version == "1.0.0" else 50) * per_step) // segments, segment)
        for k, shard in enumerate(shards):
            answers[k] = exposition(shard)


class StatementCounter:
    """The SQL statements run through Django's cursors (a `connection.execute_wrapper`)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        self.count += 1
        return execute(sql, params, many, context)


def profile_tick(evaluate_tick, canary_ids: list[int], out: Path) -> None:  # type: ignore[no-untyped-def]
    """One more tick under cProfile: its time split into metric reads, decisions and database
    statements (the profiler's cumulative times, profiler overhead included), the whole profile
    written to `out` (pstats)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    result = evaluate_tick(canary_ids=canary_ids)
    profiler.disable()
    profiler.dump_stats(out)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def cumulative(path_end: str, function: str) -> float:
        return sum(v[3] for (path, _, name), v in stats.items() if path.endswith(path_end) and name == function)

    total = result.duration_ms / 1000
    reads = cumulative("monitoring/services.py", "read_metrics")
    decide = cumulative("monitoring/services.py", "judge")
    database = cumulative("django/db/backends/utils.py", "_execute")
    print(f"        profiled tick {total:.2f} s: metric reads {reads:.2f} s, decisions (monitor.judge) {decide:.2f} s, "
          f"SQL statements {database:.2f} s, the rest {total - reads - decide - database:.2f} s; profile in {out}")


def make_canaries(n: int, start: int) -> list[int]:
    """Canaries through the lifecycle service for the first, then row copies of it (setup cost
    is not what is measured)."""
    from django.contrib.auth.models import Group

    from governance.access.permissions import Role
    from releases.canaries import services as lifecycle
    from releases.canaries.models import Canary
    from releases.register import services
    from releases.register.models import AIModel, ModelVersion
    from tests.factories import UserFactory

    owner = UserFactory(username="owner")
    owner.groups.add(Group.objects.get_or_create(name=str(Role.MODEL_OWNER))[0])
    platform = UserFactory(username="platform")
    platform.groups.add(Group.objects.get_or_create(name=str(Role.PLATFORM))[0])
    ids = []
    for i in range(start, start + n):
        name = f"bench-{i}"
        if i == 0:
            services.model_register(actor=platform, name=name, display_name=name, risk_tier="medium",
                                    owner="owner", on_call="x")
            services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1",
                                      status="production")
            services.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")
            ids.append(lifecycle.canary_initiate(actor=owner, model_name=name, version="1.1.0").pk)
            continue
        template = Canary.objects.select_related("model", "version", "baseline").get(model__name="bench-0")
        model = AIModel.objects.create(name=name, display_name=name, risk_tier="medium", owner=owner, on_call="x")
        v = {}
        for src in (template.baseline, template.version):
            v[src.version] = ModelVersion.objects.create(
                model=model, version=src.version, major=src.major, minor=src.minor, patch=src.patch,
                artifact_uri=src.artifact_uri, status=src.status, change_type=src.change_type,
                thresholds=src.thresholds, metrics=src.metrics, registered_by=owner)
        c = Canary.objects.create(
            model=model, version=v["1.1.0"], baseline=v["1.0.0"], schedule=template.schedule, stages=template.stages,
            segmentation=template.segmentation, thresholds=template.thresholds, rollback_contact="x",
            router=template.router, state=template.state, stage_index=0, stage_entered_at=template.stage_entered_at,
            traffic_percent=template.traffic_percent, split_generation=1, initiated_by=owner,
            risk_tier=model.risk_tier, owner=owner)
        ids.append(c.pk)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--ticks", type=int, default=3)
    parser.add_argument("--postgres", action="store_true",
                        help="on a PostgreSQL server started for the bench instead of SQLite")
    parser.add_argument("--segments", type=int, default=4, help=f"segment labels per model (1-{len(SEGMENT_NAMES)})")
    parser.add_argument("--scrape-interval", type=float, default=15.0,
                        help="seconds between Prometheus' scrapes and between the model servers' steps")
    parser.add_argument("--models-per-target", type=int, default=100,
                        help="models behind each exporter Prometheus scrapes")
    parser.add_argument("--quick", action="store_true", help="--sizes 10,100 --ticks 2")
    parser.add_argument("--profile", type=Path, default=None,
                        help="after each size, one more tick under cProfile, its stats written to PROFILE-<size>")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.ticks = "10,100", 2
    args.segments = max(1, min(args.segments, len(SEGMENT_NAMES)))
    sizes = [int(s) for s in args.sizes.split(",")]
    import signal

    # A terminated bench must still stop its servers (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    postgres = PostgresServer().start() if args.postgres else None
    fork = multiprocessing.get_context("fork")
    stop = fork.Event()
    fleet: multiprocessing.Process | None = None
    prometheus: PrometheusServer | None = None
    try:
        if postgres is not None:
            os.environ["DATABASE_URL"] = postgres.url  # read once, by django.setup() below
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        ports = [free_port() for _ in range(-(-max(sizes) // max(1, args.models_per_target)))]
        interval = args.scrape_interval
        # Forked with no database connection open and no thread started, for the child to copy.
        connection.close()
        fleet = fork.Process(target=run_fleet, args=(max(sizes), ports, stop, args.segments, interval), daemon=True)
        fleet.start()
        prometheus = PrometheusServer([f"127.0.0.1:{p}" for p in ports], scrape_interval=f"{interval:g}s").start()
        settings.PROMETHEUS_URL = prometheus.url
        settings.CANARYHUB_ROUTERS = {"file": {"path_dir": tempfile.mkdtemp(prefix="canaryhub-bench-router-")}}
        # Wait for a few scrapes of every series, so increase() has two samples everywhere.
        import requests

        def promql(query: str) -> list[dict]:
            return requests.get(f"{prometheus.url}/api/v1/query", timeout=30,
                                params={"query": query}).json()["data"]["result"]

        deadline = time.monotonic() + max(180.0, 12 * interval)
        while time.monotonic() < deadline:
            r = promql(f"count(count_over_time(model_requests_total[{4 * interval:g}s]) >= 3)")
            # success, error and unavailable, of two versions, in every segment
            if r and float(r[0]["value"][1]) >= 6 * args.segments * max(sizes):
                break
            time.sleep(2)
        from releases.canaries.loop import evaluate_tick

        print(f"evaluator tick against Prometheus {prometheus.url} on {os.cpu_count()} CPUs "
              f"({connection.display_name}, {args.ticks} ticks per size, {args.segments} segments per model; "
              f"{len(ports)} exporter(s) scraped every {interval:g} s)")
        made: list[int] = []
        for n in sizes:
            made += make_canaries(n - len(made), len(made))
            walls, fetches, queries, sql, verdicts = [], [], [], [], {}
            why_stale: dict[str, int] = {}
            red_gates: dict[str, int] = {}
            for _ in range(args.ticks):
                statements = StatementCounter()
                with connection.execute_wrapper(statements):
                    result = evaluate_tick(canary_ids=made)
                walls.append(result.duration_ms / 1000)
                fetches.append(result.fetch_ms / 1000)
                queries.append(result.queries)
                sql.append(statements.count)
                for o in result.outcomes:
                    verdicts[o.verdict] = verdicts.get(o.verdict, 0) + 1
                    if o.verdict == "stale" and o.evaluation is not None:
                        why = next((g["detail"] for g in o.evaluation.gates if g["status"] == "stale"), "")
                        why = re.sub(r"\d+(\.\d+)?", "N", why)[:160]
                        why_stale[why] = why_stale.get(why, 0) + 1
                    if o.verdict == "red" and o.evaluation is not None:
                        for gate in o.evaluation.gates:
                            if gate["status"] == "red":
                                red_gates[gate["name"]] = red_gates.get(gate["name"], 0) + 1
                time.sleep(1.1)  # a new second: a new evaluation window
            print(f"  {n:5d} canaries: tick {statistics.median(walls):6.2f} s median (max {max(walls):.2f} s), "
                  f"of which metric reads {statistics.median(fetches):.2f} s; {max(queries)} PromQL queries and "
                  f"{min(sql)}-{max(sql)} SQL statements per tick (with the rollbacks it ran); verdicts {verdicts}")
            up = promql('sum(up{job="model-servers"})')
            took = promql('max(max_over_time(scrape_duration_seconds{job="model-servers"}[5m]))')
            series = promql('sum(scrape_samples_scraped{job="model-servers"})')
            print(f"        load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; exporters up "
                  f"{up[0]['value'][1] if up else '?'}/{len(ports)}, "
                  f"slowest scrape in 5 min {float(took[0]['value'][1]) if took else float('nan'):.2f} s, "
                  f"{series[0]['value'][1] if series else '?'} series")
            for why, count in sorted(why_stale.items(), key=lambda kv: -kv[1]):
                print(f"        stale ({count}): {why}")
            if red_gates:
                print(f"        red gates (evaluations): {red_gates}")
            if args.profile is not None:
                profile_tick(evaluate_tick, made, Path(f"{args.profile}-{n}"))
    finally:
        stop.set()
        if prometheus is not None:
            prometheus.stop()
        if fleet is not None:
            fleet.join(timeout=10)
        if postgres is not None:
            from django.db import connections

            connections.close_all()
            postgres.stop()


if __name__ == "__main__":
    main()
