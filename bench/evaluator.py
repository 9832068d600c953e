"""Evaluator tick cost against a real Prometheus: wall time and PromQL queries per tick for 10,
100 and 1,000 active canaries.

    python bench/evaluator.py [--sizes 10,100,1000] [--ticks 3] [--postgres] [--segments 4] [--quick]

Every model serves its traffic over `--segments` segment labels (each judged against production's
same segment) and exports the LLM series (tokens by direction, cost) with the rest. `--quick`:
sizes 10,100 and 2 ticks, for a machine shared with other work.

Starts the simulator's model servers for every model (one exporter, production and canary series
per model) in a process of their own, a real Prometheus (Debian package) scraping them every 5 s,
a throwaway database with the canaries (SQLite; with --postgres a PostgreSQL server of its own,
tests.harness.postgres), and times `releases.canaries.loop.evaluate_tick` over all of them (the tick
includes writing every Evaluation record and reconciling every canary). Everything shares this
machine's cores. Prints the figures; not a test.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.synchronize
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["CANARYHUB_VAR_DIR"] = tempfile.mkdtemp(prefix="canaryhub-bench-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canaryhub.settings")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")

from prometheus_client import CollectorRegistry, start_http_server  # noqa: E402

from monitoring.simulator import ModelServer  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402
from tests.harness.prometheus import PrometheusServer, free_port  # noqa: E402


class Many:
    """One exporter for many simulated model servers."""

    def __init__(self, servers: list[ModelServer]) -> None:
        self.servers = servers

    def collect(self):  # type: ignore[no-untyped-def]
        merged: dict[str, object] = {}
        for s in self.servers:
            for family in s.collect():
                if family.name in merged:
                    merged[family.name].samples.extend(family.samples)  # type: ignore[attr-defined]
                else:
                    merged[family.name] = family
        yield from merged.values()


SEGMENT_NAMES = ("eu", "us", "apac", "latam", "mea", "anz", "cn", "in")


def run_fleet(models: int, port: int, stop: multiprocessing.synchronize.Event, segments: int = 4) -> None:
    """The model servers of `models` models behind one exporter on `port`, serving a step of
    requests every 5 s until `stop`. In a process of its own: a model server does not live in
    the evaluator's process, and here its scrapes (seconds of Python at 1,000 models) would hold
    the evaluator's interpreter lock and be timed as the tick's."""
    servers: list[ModelServer] = []
    for i in range(models):
        servers += [ModelServer(f"bench-{i}", "1.0.0", seed=i), ModelServer(f"bench-{i}", "1.1.0", seed=i + 1)]
    registry = CollectorRegistry()
    registry.register(Many(servers))  # type: ignore[arg-type]
    start_http_server(port, addr="127.0.0.1", registry=registry)
    while not stop.wait(5.0):
        for s in servers:
            for segment in SEGMENT_NAMES[:segments]:
                s.serve((4950 if s.version == "1.0.0" else 50) // segments, segment)


class StatementCounter:
    """The SQL statements run through Django's cursors (a `connection.execute_wrapper`)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        self.count += 1
        return execute(sql, params, many, context)


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
    parser.add_argument("--quick", action="store_true", help="--sizes 10,100 --ticks 2")
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
        port = free_port()
        # Forked with no database connection open and no thread started, for the child to copy.
        connection.close()
        fleet = fork.Process(target=run_fleet, args=(max(sizes), port, stop, args.segments), daemon=True)
        fleet.start()
        prometheus = PrometheusServer([f"127.0.0.1:{port}"], scrape_interval="5s").start()
        settings.PROMETHEUS_URL = prometheus.url
        settings.CANARYHUB_ROUTERS = {"file": {"path_dir": tempfile.mkdtemp(prefix="canaryhub-bench-router-")}}
        # Wait for a few scrapes of every series, so increase() has two samples everywhere.
        import requests

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            r = requests.get(f"{prometheus.url}/api/v1/query", timeout=5, params={
                "query": "count(count_over_time(model_requests_total[1m]) >= 3)"}).json()["data"]["result"]
            # success and error, of two versions, in every segment
            if r and float(r[0]["value"][1]) >= 4 * args.segments * max(sizes):
                break
            time.sleep(2)
        from releases.canaries.loop import evaluate_tick

        print(f"evaluator tick against Prometheus {prometheus.url} on {os.cpu_count()} CPUs "
              f"({connection.display_name}, {args.ticks} ticks per size, {args.segments} segments per model)")
        made: list[int] = []
        for n in sizes:
            made += make_canaries(n - len(made), len(made))
            walls, fetches, queries, sql, verdicts = [], [], [], [], {}
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
                time.sleep(1.1)  # a new second: a new evaluation window
            print(f"  {n:5d} canaries: tick {statistics.median(walls):6.2f} s median (max {max(walls):.2f} s), "
                  f"of which metric reads {statistics.median(fetches):.2f} s; {max(queries)} PromQL queries and "
                  f"{min(sql)}-{max(sql)} SQL statements per tick (with the rollbacks it ran); verdicts {verdicts}")
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
