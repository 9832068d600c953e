"""Server-side time of the canary dashboard at size: the canary page, its chart data and the fleet
page, p50/p99 over repeated requests.

    python bench/dashboard.py [--evaluations 130000] [--canaries 1000] [--requests 30] [--segments 3]
                              [--postgres] [--quick]

Seeds a fresh database (SQLite in a temporary CANARYHUB_VAR_DIR, or a PostgreSQL server started
for the bench with --postgres): one canary that ran 90 days with `--evaluations` evaluation
windows (one a minute is ~130,000) across five stages, each window with p50/p95, tokens, cost,
guardrail blocks, schema failures, unavailable requests, response length and `--segments` judged
segments (a chart panel each), and `--canaries` active canaries of
their own models with their last half hour of evaluations (what the fleet page's sparklines
read). Then times each view in-process through Django's test client (the whole request: URL
routing, middleware, queries, figure building and template rendering; no network), after one
warm-up request each. The canary page and the chart data are asked for the whole canary (the
largest range). Targets: page < 300 ms, chart data < 300 ms, fleet < 500 ms.
`--quick`: 20,000 evaluations, 200 canaries, 10 requests.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.postgres import PostgresServer  # noqa: E402

TARGETS_MS = {"canary page": 300, "chart data": 300, "fleet page": 500}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


SEGMENTS = ("eu", "us", "apac", "latam", "mea", "anz")


def window_inputs(i: int, *, percent: int, spike: bool, segments: int = 0) -> dict:
    requests_c, requests_p = 10 * percent + 50, 1000
    errors_c = 8 if spike else (i % 3)
    inputs = {
        "source": "bench", "traffic_percent": percent, "data_age_s": 12.0,
        "window": {
            "canary": {"requests": requests_c, "errors": errors_c, "p50_s": 0.05 + (i % 3) * 0.002,
                       "p95_s": 0.15 + (i % 5) * 0.004, "p99_s": 0.2 + (i % 7) * 0.005,
                       "quality_mean": 0.9 - (i % 5) * 0.002, "quality_count": 40, "safety_violations": 0,
                       "anomaly_alerts": 0, "tokens_in": 300.0 * requests_c, "tokens_out": 120.0 * requests_c,
                       "cost_usd": 0.002 * requests_c, "guardrail_blocks": i % 2, "schema_failures": i % 3 // 2,
                       "unavailable": i % 5 // 4, "availability": 1 - (i % 5 // 4) / requests_c,
                       "response_tokens_p50": 110.0 + i % 7, "response_tokens_p95": 300.0 + i % 11,
                       "last_seen": None},
            "production": {"requests": requests_p, "errors": 1 + i % 2, "p50_s": 0.05, "p95_s": 0.15, "p99_s": 0.2,
                           "quality_mean": 0.9, "quality_count": 400, "safety_violations": 0, "anomaly_alerts": 0,
                           "tokens_in": 300.0 * requests_p, "tokens_out": 110.0 * requests_p,
                           "cost_usd": 0.002 * requests_p, "guardrail_blocks": 5, "schema_failures": 1,
                           "unavailable": 0, "availability": 1.0, "response_tokens_p50": 110.0,
                           "response_tokens_p95": 300.0, "last_seen": None},
        },
        "gates": {"error_rate": {"difference": 0.0004 + (i % 11) * 0.00001, "ci_pp": [-0.05, 0.09]}},
        "warnings": [{"metric": "error_rate"}] if spike else [], "rollback_triggers": [],
    }
    if segments:
        # As monitoring.evaluator.judge_segments records them: each segment's window and stage numbers.
        def brief(requests: float, errors: float) -> dict:
            return {"requests": requests, "errors": errors, "p99_s": 0.2, "quality_mean": 0.9, "quality_count": 10}

        by_segment = {}
        for k, name in enumerate(SEGMENTS[:segments]):
            window = {"canary": brief(requests_c // segments, (errors_c + k) % 3),
                      "production": brief(requests_p // segments, 1)}
            by_segment[name] = {"window": window, "stage": window, "tests": {}, "red": [], "rollback": []}
        inputs["segments"] = {"judged": {"segments": segments}, "by_segment": by_segment}
    return inputs


def evaluation(canary, i: int, window_end, *, stage: int, percent: int, spike: bool = False, segments: int = 0):
    from monitoring.evaluations import PROMOTION_GATES, Gate
    from monitoring.models import Evaluation

    gates = [Gate(name, "green", 0.0, 0.1).to_dict() for name in PROMOTION_GATES]
    # The hash is not what this bench measures: a placeholder of the right length.
    return Evaluation(canary=canary, stage_index=stage, window_start=window_end - timedelta(minutes=5),
                      window_end=window_end, gates=gates, verdict="green",
                      inputs=window_inputs(i, percent=percent, spike=spike, segments=segments),
                      content_hash=f"{i:064x}")


def seed(n_evaluations: int, n_canaries: int, segments: int = 0) -> tuple[int, object]:
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from governance.access.permissions import Role
    from monitoring.models import Evaluation
    from releases.canaries import services as lifecycle
    from releases.canaries.models import Canary
    from releases.register import services
    from releases.register.models import AIModel, ModelVersion
    from tests.factories import UserFactory

    owner = UserFactory(username="owner")
    owner.groups.add(Group.objects.get_or_create(name=str(Role.MODEL_OWNER))[0])
    platform = UserFactory(username="platform")
    platform.groups.add(Group.objects.get_or_create(name=str(Role.PLATFORM))[0])
    services.model_register(actor=platform, name="long-runner", display_name="Long runner", risk_tier="low",
                            owner="owner", on_call="x")
    services.version_register(actor=platform, model_name="long-runner", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="long-runner", version="1.1.0", artifact_uri="s3://2")
    big = lifecycle.canary_initiate(actor=owner, model_name="long-runner", version="1.1.0", schedule="standard")
    now = timezone.now()
    start = now - timedelta(days=90)
    Canary.objects.filter(pk=big.pk).update(initiated_at=start, stage_index=4, traffic_percent=50,
                                            stage_entered_at=now - timedelta(days=18))
    big.refresh_from_db()
    percents = [1, 5, 10, 25, 50]
    step = timedelta(days=90) / n_evaluations
    t0 = time.perf_counter()
    batch = []
    for i in range(n_evaluations):
        stage = min(4, i * 5 // n_evaluations)
        batch.append(evaluation(big, i, start + step * (i + 1), stage=stage, percent=percents[stage],
                                spike=i % 5000 == 17, segments=segments))
        if len(batch) == 5000:
            Evaluation.objects.bulk_create(batch)
            batch = []
            print(f"  seeded {i + 1:,} evaluations of canary #{big.pk} ({time.perf_counter() - t0:.0f} s)", flush=True)
    Evaluation.objects.bulk_create(batch)
    template = Canary.objects.select_related("version", "baseline").get(pk=big.pk)
    fleet_evals = []
    for k in range(n_canaries):
        name = f"fleet-{k}"
        model = AIModel.objects.create(name=name, display_name=name, risk_tier="low", owner=owner, on_call="x")
        versions = {src.version: ModelVersion.objects.create(
            model=model, version=src.version, major=src.major, minor=src.minor, patch=src.patch,
            artifact_uri=src.artifact_uri, status=src.status, change_type=src.change_type,
            thresholds=src.thresholds, metrics=src.metrics, registered_by=owner)
            for src in (template.baseline, template.version)}
        state = ("running", "held", "awaiting_approval", "suspended")[k % 4]
        canary = Canary.objects.create(
            model=model, version=versions["1.1.0"], baseline=versions["1.0.0"], schedule=template.schedule,
            stages=template.stages, segmentation=template.segmentation, thresholds=template.thresholds,
            rollback_contact="x", router=template.router, state=state, stage_index=k % 4,
            stage_entered_at=now - timedelta(hours=k % 48), traffic_percent=percents[k % 4], split_generation=1,
            initiated_by=owner, risk_tier="low", owner=owner,
            hold_reason="error_rate is insufficient" if state == "held" else "")
        fleet_evals += [evaluation(canary, j, now - timedelta(minutes=j), stage=k % 4, percent=percents[k % 4])
                        for j in range(30)]
        if len(fleet_evals) >= 5000:
            Evaluation.objects.bulk_create(fleet_evals)
            fleet_evals = []
        if (k + 1) % 200 == 0:
            print(f"  seeded {k + 1:,} active canaries ({time.perf_counter() - t0:.0f} s)", flush=True)
    Evaluation.objects.bulk_create(fleet_evals)
    return big.pk, platform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaluations", type=int, default=130_000)
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--segments", type=int, default=3, choices=range(len(SEGMENTS) + 1),
                        help="segments judged in each of the long canary's evaluations (a panel each)")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.evaluations, args.canaries, args.requests = 20_000, 200, 10
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("CANARYHUB_VAR_DIR", tempfile.mkdtemp(prefix="canaryhub-bench-dashboard-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canaryhub.settings")
    # No evaluator runs here: the web process's dead-man watchdog would suspend the seeded canaries.
    os.environ["CANARYHUB_WATCHDOG_INTERVAL_S"] = "0"
    postgres = PostgresServer().start() if args.postgres else None
    try:
        if postgres is not None:
            os.environ["DATABASE_URL"] = postgres.url  # read once, by django.setup() below
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client

        settings.ALLOWED_HOSTS = ["*"]
        call_command("migrate", verbosity=0)
        print(f"seeding {args.evaluations:,} evaluations and {args.canaries:,} active canaries on "
              f"{connection.vendor} ...", flush=True)
        big, platform = seed(args.evaluations, args.canaries, args.segments)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        client = Client()
        client.force_login(platform)
        urls = {"canary page": f"/canaries/{big}/?range=all", "chart data": f"/canaries/{big}/charts/?range=all",
                "fleet page": "/fleet/"}
        print(f"\n{connection.vendor}: {args.evaluations:,} evaluations of one canary ({args.segments} segments), "
              f"{args.canaries:,} active "
              f"canaries; {args.requests} requests each after one warm-up, on {os.cpu_count()} CPUs")
        print(f"{'view':<12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'target':>8}  size")
        failed = False
        for name, url in urls.items():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            times = []
            for _ in range(args.requests):
                t = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t) * 1000)
            p50, p99 = statistics.median(times), percentile(times, 0.99)
            ok = p99 < TARGETS_MS[name]
            failed |= not ok
            print(f"{name:<12} {p50:>8.0f} {p99:>8.0f} {max(times):>8.0f} {'<' + str(TARGETS_MS[name]):>8}  "
                  f"{len(response.content) / 1024:.0f} KiB {'ok' if ok else 'OVER'}")
        sys.exit(1 if failed else 0)
    finally:
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    main()
