"""The rollback watch between evaluations: the error-rate test on the stage's counts now, from
the memory the stage's last evaluation left, recorded through the durable rollback decision."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.access.permissions import Role
from monitoring.models import CanaryWatch, Evaluation, Observation, RollbackDecision
from monitoring.providers import COUNTS_QUERY, PrometheusProvider, PushProvider
from monitoring.samples import Target
from releases.canaries import loop
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register

T0 = timezone.now().replace(microsecond=0) - timedelta(minutes=20)


@pytest.fixture
def canary(role_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    settings.STALENESS_LIMIT_S = 10**6  # the windows here are pushed for moments in the past
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="ranker", display_name="r", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="ranker", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="ranker", version="1.1.0", artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        return lifecycle.canary_initiate(actor=owner, model_name="ranker", version="1.1.0",
                                         now=T0 - timedelta(minutes=30))


def window(end, *, canary_errors, minutes=5):
    """A window at 1 %: 600 canary requests a minute against 59,400 in production at 1 %."""
    for version, requests_, errors in (("1.0.0", 59_400 * minutes, 594 * minutes),
                                       ("1.1.0", 600 * minutes, canary_errors)):
        Observation.objects.create(model="ranker", version=version, window_start=end - timedelta(minutes=minutes),
                                   window_end=end, requests=requests_, errors=errors, latency_p99_ms=200.0,
                                   quality_sum=0.8 * requests_, quality_count=requests_)


def test_a_rise_after_the_last_evaluation_is_rolled_back_by_the_watch(canary, django_capture_on_commit_callbacks):
    window(T0, canary_errors=30)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=T0, canary_ids=[canary.pk])
    evaluations = Evaluation.objects.count()
    memory = CanaryWatch.objects.get(canary=canary).sequential
    assert memory["stage_index"] == canary.stage_index and memory["canary"]["requests"] == 3000
    # Twenty seconds later: 200 requests, 40 of them errors (20 % against 1 %).
    window(T0 + timedelta(seconds=20), canary_errors=40, minutes=1 / 3)
    with django_capture_on_commit_callbacks(execute=True):
        decided = loop.rollback_watch_tick(now=T0 + timedelta(seconds=20), canary_ids=[canary.pk])
    assert decided == [canary.pk]
    decision = RollbackDecision.objects.get(canary=canary)
    assert decision.evaluation_id is None and "rollback watch" in decision.reason
    assert "sequential test" in decision.reason
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK
    # The watch stores no evaluation, and leaves the memory as the evaluation left it.
    assert Evaluation.objects.count() == evaluations
    assert CanaryWatch.objects.get(canary=canary).sequential == memory


def test_a_healthy_canary_is_left_alone(canary, django_capture_on_commit_callbacks):
    window(T0, canary_errors=30)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=T0, canary_ids=[canary.pk])
    window(T0 + timedelta(seconds=20), canary_errors=2, minutes=1 / 3)
    assert loop.rollback_watch_tick(now=T0 + timedelta(seconds=20), canary_ids=[canary.pk]) == []
    assert not RollbackDecision.objects.filter(canary=canary).exists()


def test_nothing_is_judged_before_the_stage_has_an_evaluation(canary, django_capture_on_commit_callbacks):
    window(T0, canary_errors=300)  # 10 %: it would roll back, but the stage has no memory yet
    assert loop.rollback_watch_tick(now=T0, canary_ids=[canary.pk]) == []
    CanaryWatch.objects.update_or_create(canary=canary, defaults={"sequential": {"stage_index": 7, "canary": {}}})
    assert loop.rollback_watch_tick(now=T0, canary_ids=[canary.pk]) == []  # another stage's memory
    assert not RollbackDecision.objects.filter(canary=canary).exists()


def test_beat_runs_the_watch_on_the_rollbacks_queue_every_ten_seconds():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["rollback-watch"]
    assert entry["task"] == "releases.canaries.tasks.rollback_watch" and entry["schedule"] == 10.0
    assert entry["options"]["queue"] == "rollbacks"


# --- segments ---------------------------------------------------------------------------------------

SHARES = {"a": 0.3, "b": 0.3, "c": 0.3, "d": 0.1}


def segment_window(end, *, seconds, canary_rates, production_rate=0.01, canary_per_s=400):
    """One pushed window per segment: production at 100 times the canary's traffic, at
    `production_rate` in every segment; the canary at `canary_rates[segment]`."""
    for version, per_s, rates in (("1.0.0", canary_per_s * 100, dict.fromkeys(SHARES, production_rate)),
                                  ("1.1.0", canary_per_s, canary_rates)):
        for segment, share in SHARES.items():
            n = round(per_s * seconds * share)
            Observation.objects.create(model="ranker", version=version, segment=segment,
                                       window_start=end - timedelta(seconds=seconds), window_end=end, requests=n,
                                       errors=round(n * rates[segment]), latency_p99_ms=200.0,
                                       quality_sum=0.8 * n, quality_count=n)


def test_a_regression_of_one_segment_is_rolled_back_by_the_watch_naming_it(canary, django_capture_on_commit_callbacks):
    healthy = dict.fromkeys(SHARES, 0.01)
    segment_window(T0, seconds=300, canary_rates=healthy)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=T0, canary_ids=[canary.pk])
    memory = CanaryWatch.objects.get(canary=canary).sequential
    assert set(memory["segments"]) == set(SHARES)
    # Thirty seconds later segment d's errors have risen to 4 % (3 pp past production's 1 %), the
    # others are unchanged: the canary as a whole stays within the 0.5 pp threshold.
    later = T0 + timedelta(seconds=30)
    segment_window(later, seconds=30, canary_rates={**healthy, "d": 0.04})
    stage = Observation.objects.filter(version="1.1.0")
    canary_rate = sum(o.errors for o in stage) / sum(o.requests for o in stage)
    assert canary_rate - 0.01 < 0.005
    with django_capture_on_commit_callbacks(execute=True):
        decided = loop.rollback_watch_tick(now=later, canary_ids=[canary.pk])
    assert decided == [canary.pk]
    decision = RollbackDecision.objects.get(canary=canary)
    assert decision.reason.startswith("automatic (rollback watch): segment d: error rate")
    assert "sequential test" in decision.reason
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK and "segment d" in canary.end_reason
    assert CanaryWatch.objects.get(canary=canary).sequential == memory  # looked at, not advanced


def test_an_identical_segmented_canary_is_not_rolled_back(canary, django_capture_on_commit_callbacks):
    healthy = dict.fromkeys(SHARES, 0.01)
    segment_window(T0, seconds=300, canary_rates=healthy)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=T0, canary_ids=[canary.pk])
    for look in range(1, 6):
        at = T0 + timedelta(seconds=10 * look)
        segment_window(at, seconds=10, canary_rates=healthy)
        assert loop.rollback_watch_tick(now=at, canary_ids=[canary.pk]) == []
    assert not RollbackDecision.objects.filter(canary=canary).exists()


# --- Prometheus: one count query per look -----------------------------------------------------------


class Counters:
    """A Prometheus client answering from cumulative counters {(model, version, segment, outcome):
    count}, recording every query. The window's increase is taken as the counters themselves (the
    counters since `window_starts()`); queries about other metrics find no series."""

    def __init__(self):
        self.counters: dict[tuple[str, str, str, str], float] = {}
        self.before: dict[tuple[str, str, str, str], float] = {}
        self.queries: list[str] = []

    def window_starts(self):
        self.before = dict(self.counters)

    def serve(self, model, version, segment, requests_, errors):
        for outcome, n in (("success", requests_ - errors), ("error", errors)):
            key = (model, version, segment, outcome)
            self.counters[key] = self.counters.get(key, 0.0) + n

    def custom_query(self, query, params=None, timeout=None):
        self.queries.append(query)
        if "timestamp(model_requests_total)" in query:
            return [{"metric": {"model": m, "version": v}, "value": [0, str(params["time"])]}
                    for m, v in {(m, v) for m, v, _, _ in self.counters}]
        if "(model_requests_total" not in query and "(increase(model_requests_total" not in query:
            return []
        window = "increase(" in query
        return [{"metric": {"model": m, "version": v, "segment": s, "outcome": o},
                 "value": [0, str(max(n - self.before.get((m, v, s, o), 0.0), 0.0) if window else n)]}
                for (m, v, s, o), n in self.counters.items()]


def prometheus_canaries(role_user, settings, tmp_path, capture, names):
    """A serving canary of each model in `names`, read from Prometheus."""
    settings.PROMETHEUS_URL = "http://prometheus.invalid:9090"
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    out = []
    for name in names:
        register.model_register(actor=platform, name=name, display_name=name, risk_tier="medium", owner="owner",
                                on_call="x")
        register.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1",
                                  status="production")
        register.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")
        with capture(execute=True):
            canary = lifecycle.canary_initiate(actor=owner, model_name=name, version="1.1.0",
                                               now=T0 - timedelta(minutes=30))
        assert canary.metrics["provider"] == "prometheus"
        out.append(canary)
    return out


def serve_segments(client, model, *, canary_rates, requests_=100_000):
    for segment, share in SHARES.items():
        n = round(requests_ * share)
        client.serve(model, "1.0.0", segment, n * 100, round(n * 100 * 0.01))
        client.serve(model, "1.1.0", segment, n, round(n * canary_rates.get(segment, 0.01)))


def test_the_watch_reads_prometheus_with_one_query_whatever_the_canaries_and_segments(
        role_user, settings, tmp_path, django_capture_on_commit_callbacks):
    names = ["rank-a", "rank-b", "rank-c"]
    canaries = prometheus_canaries(role_user, settings, tmp_path, django_capture_on_commit_callbacks, names)
    client = Counters()
    for name in names:
        serve_segments(client, name, canary_rates={})
    provider = PrometheusProvider(client=client)
    ids = [c.pk for c in canaries]
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=T0, canary_ids=ids, providers={"prometheus": provider})
    assert all(len(w.sequential["segments"]) == 4 for w in CanaryWatch.objects.filter(canary_id__in=ids))
    for look in range(1, 4):
        for name in names:
            serve_segments(client, name, canary_rates={}, requests_=1_000)
        client.queries.clear()
        assert loop.rollback_watch_tick(now=T0 + timedelta(seconds=10 * look), canary_ids=ids,
                                        providers={"prometheus": provider}) == []
        assert client.queries == [COUNTS_QUERY]
    # A version that overrides its error count costs that override's two queries more (its
    # evaluations judged those numbers), the others still share the one count query.
    Canary.objects.filter(pk=ids[0]).update(metrics={"provider": "prometheus", "queries": {
        "errors": 'sum(increase(my_errors_total{model="$model",version="$version"}[$window]))'}})
    client.queries.clear()
    loop.rollback_watch_tick(now=T0 + timedelta(seconds=40), canary_ids=ids, providers={"prometheus": provider})
    assert client.queries[0] == COUNTS_QUERY and len(client.queries) == 3
    assert sorted(q for q in client.queries[1:]) == [
        'sum(increase(my_errors_total{model="rank-a",version="1.0.0"}[1840s]))',
        'sum(increase(my_errors_total{model="rank-a",version="1.1.0"}[1840s]))']


def test_a_counter_reset_neither_rolls_back_nor_fails(role_user, settings, tmp_path,
                                                      django_capture_on_commit_callbacks):
    (canary,) = prometheus_canaries(role_user, settings, tmp_path, django_capture_on_commit_callbacks, ["ranker"])
    client = Counters()
    # Counters from before the stage: an earlier, worse version of the canary's servers.
    serve_segments(client, "ranker", canary_rates=dict.fromkeys(SHARES, 0.10))
    client.window_starts()
    serve_segments(client, "ranker", canary_rates={}, requests_=1_000)
    provider = PrometheusProvider(client=client)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=T0, canary_ids=[canary.pk], providers={"prometheus": provider})
    client.window_starts()
    serve_segments(client, "ranker", canary_rates={}, requests_=20_000)
    with django_capture_on_commit_callbacks(execute=True):
        loop.evaluate_tick(now=T0 + timedelta(seconds=60), canary_ids=[canary.pk], providers={"prometheus": provider})
    watch = CanaryWatch.objects.get(canary=canary)
    assert watch.sequential["canary"]["requests"] == 20_000 and len(watch.sequential["segments"]) == 4
    # The canary's model servers restart: its counters start again from zero, below the stage's
    # baseline; what they count since is healthy. Subtracted, or taken whole against the memory,
    # they would be another basis (the whole reading still holds the earlier version's errors).
    for key in [k for k in client.counters if k[1] == "1.1.0"]:
        client.counters[key] = client.counters[key] * 0.5
    for look in range(1, 4):
        serve_segments(client, "ranker", canary_rates={}, requests_=2_000)
        assert loop.rollback_watch_tick(now=T0 + timedelta(seconds=60 + 10 * look), canary_ids=[canary.pk],
                                        providers={"prometheus": provider}) == []
    assert not RollbackDecision.objects.filter(canary=canary).exists()
    canary.refresh_from_db()
    assert canary.state in (Canary.State.RUNNING, Canary.State.AWAITING_APPROVAL, Canary.State.HELD)


def test_the_push_provider_counts_every_canary_in_one_aggregate_query(db, django_assert_num_queries):
    since = T0 - timedelta(minutes=10)
    for model in ("m1", "m2"):
        for version, errors in (("1.0.0", 10), ("1.1.0", 40)):
            for segment in ("eu", "us"):
                for end in (since - timedelta(minutes=1), since + timedelta(minutes=5), T0):  # one before the stage
                    Observation.objects.create(model=model, version=version, segment=segment,
                                               window_start=end - timedelta(minutes=1), window_end=end,
                                               requests=1000, errors=errors)
    targets = [Target(i, m, "1.1.0", "1.0.0", None, since) for i, m in ((1, "m1"), (2, "m2"))]
    provider = PushProvider()
    with django_assert_num_queries(1):
        counts = provider.fetch_counts(targets, now=T0, window_s=300)
    full = provider.fetch(targets, now=T0, window_s=300)
    for t in targets:
        reading = counts[t.canary_id]
        assert reading.error is None and provider.query_count == 2
        for role in ("canary", "production"):
            assert (reading.stage[role].requests, reading.stage[role].errors) == (
                full[t.canary_id].stage[role].requests, full[t.canary_id].stage[role].errors)
            for segment in ("eu", "us"):
                part, whole = reading.segments_stage[segment][role], full[t.canary_id].segments_stage[segment][role]
                assert (part.requests, part.errors) == (whole.requests, whole.errors)
        assert reading.stage["canary"].requests == 4000 and reading.stage["canary"].errors == 160


def test_the_watch_reads_only_the_deployments_prometheus(role_user, settings, tmp_path, monkeypatch,
                                                         django_capture_on_commit_callbacks):
    """Attack: a canary's frozen metric settings naming another server (written past the API's
    validation) do not move the watch's read; only the deployment's PROMETHEUS_URL is asked."""
    import monitoring.providers as providers_module

    (canary,) = prometheus_canaries(role_user, settings, tmp_path, django_capture_on_commit_callbacks, ["ranker"])
    settings.PROMETHEUS_URL = "http://prometheus.deployment.invalid:9090"
    asked: list[tuple[str, Counters]] = []

    class Connect(Counters):
        def __init__(self, url, timeout=None):
            super().__init__()
            asked.append((url, self))
            self._session = type("Session", (), {"verify": True})()

    monkeypatch.setattr(providers_module, "PrometheusConnect", Connect)
    Canary.objects.filter(pk=canary.pk).update(metrics={"provider": "prometheus", "url": "http://attacker.invalid",
                                                        "queries": {}})
    CanaryWatch.objects.update_or_create(canary=canary, defaults={"sequential": {
        "stage_index": canary.stage_index, "canary": {"requests": 0, "errors": 0, "m": 0.02, "s": [0.0] * 4,
                                                      "b": [2.36] * 4, "starts": 2}}})
    assert loop.rollback_watch_tick(now=T0, canary_ids=[canary.pk]) == []
    assert [url for url, _ in asked] == ["http://prometheus.deployment.invalid:9090"]
    assert asked[0][1].queries == [COUNTS_QUERY]
