"""Two evaluation workers ticking the same canaries at once, on the real PostgreSQL server: each
window is stored once and each rollback queued once, by the worker that stored its window."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from governance.access.permissions import Role
from monitoring import services as monitor
from monitoring.models import Evaluation, Observation
from releases.canaries import loop as services
from releases.canaries import services as lifecycle
from releases.canaries.tasks import rollback_canary
from releases.register import services as register

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

MODELS = ("scorer", "ranker", "tagger")


@pytest.fixture
def canaries(role_user, settings, tmp_path):
    """A canary per model, each with a content-safety violation in its window: a rollback."""
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    made = []
    for name in MODELS:
        register.model_register(actor=platform, name=name, display_name=name, risk_tier="medium", owner="owner",
                                on_call="x")
        register.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1",
                                  status="production")
        register.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")
        made.append(lifecycle.canary_initiate(actor=owner, model_name=name, version="1.1.0",
                                              now=timezone.now() - timedelta(minutes=30)))
        end = timezone.now()
        for version, requests_, safety in (("1.0.0", 100_000, 0), ("1.1.0", 1000, 1)):
            Observation.objects.create(model=name, version=version, window_start=end - timedelta(seconds=60),
                                       window_end=end, requests=requests_, errors=requests_ // 1000,
                                       latency_p99_ms=200.0, quality_sum=0.8 * requests_, quality_count=requests_,
                                       safety_violations=safety)
    return made


@pytest.mark.parametrize("attempt", range(3))
@pytest.mark.parametrize("stored_meanwhile", [False, True], ids=["found-by-the-read", "met-by-the-insert"])
def test_two_workers_store_each_window_once_and_queue_each_rollback_once(canaries, monkeypatch, stored_meanwhile,
                                                                        attempt):
    # met-by-the-insert: as if each worker's read of the stored windows came before the other's
    # commit, so that the later insert meets the stored windows and falls back to one by one.
    if stored_meanwhile:
        monkeypatch.setattr(monitor, "_windows_stored", lambda evaluations: set())
    queued: list[tuple[int, int]] = []
    lock = threading.Lock()

    def queue(args, queue):
        assert queue == "rollbacks"
        with lock:
            queued.append((args[0], args[1]))

    monkeypatch.setattr(rollback_canary, "apply_async", queue)
    ids = [c.pk for c in canaries]
    now = timezone.now().replace(microsecond=0)
    barrier = threading.Barrier(2)
    results: list[services.TickResult | BaseException] = []

    def worker():
        try:
            barrier.wait()
            results.append(services.evaluate_tick(now=now, canary_ids=ids))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, BaseException)], results
    for result in results:  # each worker accounts for every canary: stored by it, or a duplicate
        assert sorted(o.canary_id for o in result.outcomes) == sorted(ids)
    stored = dict(Evaluation.objects.filter(canary_id__in=ids).values_list("canary_id", "pk"))
    assert sorted(stored) == sorted(ids) and Evaluation.objects.filter(canary_id__in=ids).count() == len(ids)
    assert sorted(queued) == sorted(stored.items())
    inserted = [(o.canary_id, o.evaluation_id) for r in results for o in r.outcomes if not o.duplicate]
    assert sorted(inserted) == sorted(stored.items())
