"""Providers (errors and timeouts are data), the push API, the tick's idempotency, retention."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from governance.access.permissions import Role
from governance.tokens.services import token_create
from monitoring import services as monitor
from monitoring.models import CanaryWatch, Evaluation, Heartbeat, NotificationEvent, Observation
from monitoring.providers import PrometheusProvider, PushProvider
from monitoring.samples import Target
from releases.canaries import loop as services
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register

NOW = timezone.now().replace(microsecond=0)


class FailingClient:
    def __init__(self, exc):
        self.exc, self.calls = exc, []

    def custom_query(self, query, params=None, timeout=None):
        self.calls.append(timeout)
        raise self.exc


def target(**kw):
    return Target(canary_id=1, model="m", version="1.1.0", baseline="1.0.0", segments=None,
                  stage_since=NOW - timedelta(hours=1), **kw)


@pytest.mark.parametrize("exc", [requests.Timeout("read timed out"), requests.ConnectionError("refused"),
                                 ValueError("HTTP Status Code 503")])
def test_prometheus_errors_and_timeouts_are_data_and_every_query_has_a_timeout(exc):
    client = FailingClient(exc)
    provider = PrometheusProvider(url="http://127.0.0.1:9", timeout_s=2.5, client=client)
    readings = provider.fetch([target(), Target(2, "n", "2.0.0", "1.0.0", None, NOW)], now=NOW, window_s=300)
    assert set(readings) == {1, 2}
    assert all(r.error and type(exc).__name__ in r.error for r in readings.values())
    assert client.calls and all(t == 2.5 for t in client.calls)
    assert provider.query_count == len(client.calls) <= 18  # one set of queries for both canaries


def test_a_garbled_prometheus_answer_is_a_source_error_not_a_crash():
    class Garbled:
        def custom_query(self, query, params=None, timeout=None):
            return [{"metric": {"model": "m", "version": "1.1.0"}, "value": "not a pair"}]

    readings = PrometheusProvider(url="http://x", client=Garbled()).fetch([target()], now=NOW, window_s=300)
    assert readings[1].error and "queries failed" in readings[1].error and readings[1].window is None


def test_prometheus_provider_costs_the_same_queries_for_one_or_many_canaries():
    class Empty:
        def custom_query(self, query, params=None, timeout=None):
            return []

    one = PrometheusProvider(url="http://x", client=Empty())
    one.fetch([target()], now=NOW, window_s=300)
    many = PrometheusProvider(url="http://x", client=Empty())
    many.fetch([Target(i, f"m{i}", "1.1.0", "1.0.0", None, NOW) for i in range(500)], now=NOW, window_s=300)
    assert one.query_count == many.query_count <= 18


@pytest.fixture
def canary(role_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="scorer", display_name="s", risk_tier="medium", owner="owner", on_call="x")
    register.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1", status="production")
    register.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        c = lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0", now=NOW - timedelta(minutes=30))
    return c


def push(version, *, requests_=10_000, errors=5, end=None, safety=0, model="scorer"):
    end = end or timezone.now()
    Observation.objects.create(model=model, version=version, window_start=end - timedelta(seconds=60),
                               window_end=end, requests=requests_, errors=errors, latency_p99_ms=200.0,
                               quality_sum=0.8 * requests_, quality_count=requests_, safety_violations=safety)


def test_tick_evaluated_twice_writes_one_record_and_one_rollback(canary, tmp_path, django_capture_on_commit_callbacks):
    push("1.0.0", requests_=100_000, errors=100)
    push("1.1.0", requests_=1000, errors=1, safety=1)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        first = services.evaluate_tick(now=now, canary_ids=[canary.pk])
        second = services.evaluate_tick(now=now, canary_ids=[canary.pk])
    assert first.outcomes[0].rollback and "safety" in first.outcomes[0].rollback
    assert second.outcomes == [] or second.outcomes[0].duplicate
    assert Evaluation.objects.filter(canary=canary).count() == 1
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK and canary.incidents.count() == 1
    assert json.loads((tmp_path / "scorer.json").read_text())["percent"] == 0
    assert Heartbeat.objects.get(pk=1).ticks == 2


def another_canary(name):
    """A second canary, of its own model, started by the `canary` fixture's users."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    platform, owner = users.get(username="platform"), users.get(username="owner")
    register.model_register(actor=platform, name=name, display_name=name, risk_tier="medium", owner="owner", on_call="x")
    register.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1", status="production")
    register.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")
    return lifecycle.canary_initiate(actor=owner, model_name=name, version="1.1.0", now=NOW - timedelta(minutes=30))


@pytest.mark.parametrize("stored_meanwhile", [False, True], ids=["found-by-the-read", "met-by-the-insert"])
def test_tick_stores_each_window_once_and_queues_rollbacks_only_for_the_records_it_inserted(
        canary, stored_meanwhile, monkeypatch, django_capture_on_commit_callbacks):
    """One canary's window is judged already: found by the round's read of the stored windows,
    or stored by another worker after that read, so that the round's insert meets it and the
    tick falls back to one insert per evaluation. Either way the other canary's evaluation is
    stored and its rollback queued, and nothing more for the first."""
    from releases.canaries.tasks import rollback_canary

    with django_capture_on_commit_callbacks(execute=True):
        ranker = another_canary("ranker")
    for model in ("scorer", "ranker"):
        push("1.0.0", requests_=100_000, errors=100, model=model)
        push("1.1.0", requests_=1000, errors=1, safety=1, model=model)
    now = timezone.now().replace(microsecond=0)
    with django_capture_on_commit_callbacks(execute=False):  # its rollback is not what is tested
        earlier = services.evaluate_tick(now=now, canary_ids=[canary.pk]).outcomes[0]
    queued = []
    monkeypatch.setattr(rollback_canary, "apply_async", lambda args, queue: queued.append((*args[:2], queue)))
    if stored_meanwhile:
        monkeypatch.setattr(monitor, "_windows_stored", lambda evaluations: set())
    with django_capture_on_commit_callbacks(execute=True):
        result = services.evaluate_tick(now=now, canary_ids=[canary.pk, ranker.pk])
    outcomes = {o.canary_id: o for o in result.outcomes}
    assert outcomes[canary.pk].duplicate and not outcomes[canary.pk].rollback
    assert not outcomes[ranker.pk].duplicate and "safety" in outcomes[ranker.pk].rollback
    assert list(Evaluation.objects.filter(canary=canary).values_list("pk", flat=True)) == [earlier.evaluation_id]
    stored = Evaluation.objects.get(canary=ranker)
    assert outcomes[ranker.pk].evaluation_id == stored.pk
    assert queued == [(ranker.pk, stored.pk, "rollbacks")]


def test_evaluate_canary_stores_a_window_once(canary, django_capture_on_commit_callbacks):
    from monitoring.samples import Reading

    now = timezone.now().replace(microsecond=0)
    reading = Reading(error="database unavailable", source="push")
    with django_capture_on_commit_callbacks(execute=True):
        first = services.evaluate_canary(canary, reading, now=now)
        again = services.evaluate_canary(canary, reading, now=now)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert first.evaluation_id == Evaluation.objects.get(canary=canary).pk and first.verdict == "stale"
    assert CanaryWatch.objects.get(canary=canary).consecutive_errors == 1  # the duplicate changed nothing


def test_tick_pauses_the_garbage_collector_and_always_resumes_it(canary):
    import gc

    class Recording(PushProvider):
        def fetch(self, targets, *, now, window_s):
            self.collecting = gc.isenabled()
            if self.fail:
                raise RuntimeError("provider bug")
            return super().fetch(targets, now=now, window_s=window_s)

    assert gc.isenabled()
    for fail in (False, True):
        provider = Recording()
        provider.fail = fail
        if fail:
            with pytest.raises(RuntimeError):
                services.evaluate_tick(canary_ids=[canary.pk], providers={"push": provider})
        else:
            services.evaluate_tick(canary_ids=[canary.pk], providers={"push": provider})
        assert provider.collecting is False and gc.isenabled()


def test_stage_counters_are_taken_at_the_first_look_at_a_stage_and_kept(canary):
    from monitoring.samples import Reading, Sample

    class Counters(PushProvider):
        """Cumulative counters, as Prometheus gives them."""

        def __init__(self, canary_requests, production_requests):
            super().__init__()
            self.totals = {"canary": canary_requests, "production": production_requests}

        def fetch(self, targets, *, now, window_s):
            samples = {role: Sample(requests=n, present=True, last_seen=now) for role, n in self.totals.items()}
            return {t.canary_id: Reading(window=samples, totals=samples, source="counters") for t in targets}

    now = timezone.now().replace(microsecond=0)
    services.evaluate_tick(now=now, canary_ids=[canary.pk], providers={"push": Counters(100, 10_000)})
    watch = CanaryWatch.objects.get(canary=canary)
    assert (watch.stage_index, watch.stage_baseline["canary"]["requests"]) == (canary.stage_index, 100)
    later = now + timedelta(seconds=1)
    services.evaluate_tick(now=later, canary_ids=[canary.pk], providers={"push": Counters(150, 15_000)})
    watch.refresh_from_db()
    assert watch.stage_baseline["canary"]["requests"] == 100
    stage = Evaluation.objects.get(canary=canary, window_end=later).inputs["raw"]["stage"]
    assert (stage["canary"]["requests"], stage["production"]["requests"]) == (50, 5000)


def test_an_alert_that_fired_and_cleared_during_the_stage_still_blocks_it(canary):
    from monitoring.samples import Reading, Sample

    class Alerts(PushProvider):
        def __init__(self, alerts):
            super().__init__()
            self.alerts = alerts

        def fetch(self, targets, *, now, window_s):
            samples = {"canary": Sample(requests=100, present=True, last_seen=now, anomaly_alerts=self.alerts),
                       "production": Sample(requests=10_000, present=True, last_seen=now)}
            return {t.canary_id: Reading(window=samples, totals=samples, source="alerts") for t in targets}

    def anomaly_gate(at):
        gates = Evaluation.objects.get(canary=canary, window_end=at).gates
        return next(g for g in gates if g["name"] == "anomaly_alerts")

    now = timezone.now().replace(microsecond=0)
    services.evaluate_tick(now=now, canary_ids=[canary.pk], providers={"push": Alerts(0)})
    assert anomaly_gate(now)["status"] == "green"
    fired, cleared = now + timedelta(seconds=60), now + timedelta(seconds=120)
    services.evaluate_tick(now=fired, canary_ids=[canary.pk], providers={"push": Alerts(2)})
    services.evaluate_tick(now=cleared, canary_ids=[canary.pk], providers={"push": Alerts(0)})
    gate = anomaly_gate(cleared)
    assert gate["status"] == "red" and gate["value"] == 2 and "during this stage" in gate["detail"]
    watch = CanaryWatch.objects.get(canary=canary)
    assert watch.stage_alerts["stage_index"] == canary.stage_index and watch.stage_alerts["alerts"] == 2
    # A new stage starts with a clean slate.
    Canary.objects.filter(pk=canary.pk).update(stage_index=canary.stage_index + 1)
    later = cleared + timedelta(seconds=60)
    services.evaluate_tick(now=later, canary_ids=[canary.pk], providers={"push": Alerts(0)})
    assert anomaly_gate(later)["status"] == "green"


def test_claim_takes_each_due_canary_once(canary):
    assert services.claim_due(now=NOW) == [canary.pk]
    assert services.claim_due(now=NOW) == []  # a second beat in the same cadence finds nothing due
    assert services.claim_due(now=NOW + timedelta(minutes=2)) == [canary.pk]


def test_suspended_canary_still_rolls_back(canary, django_capture_on_commit_callbacks):
    lifecycle.canary_suspend(canary_id=canary.pk, reason="monitor silent")
    push("1.0.0", requests_=100_000, errors=100)
    push("1.1.0", requests_=5000, errors=1000)
    with django_capture_on_commit_callbacks(execute=True):
        services.evaluate_tick(canary_ids=[canary.pk])
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK and "error rate" in canary.end_reason


def test_source_failing_four_times_fails_closed(canary, django_capture_on_commit_callbacks):
    class Broken(PushProvider):
        def fetch(self, targets, *, now, window_s):
            from monitoring.samples import Reading

            return {t.canary_id: Reading(error="database unavailable") for t in targets}

    for i in range(4):
        with django_capture_on_commit_callbacks(execute=True):
            services.evaluate_tick(now=timezone.now() + timedelta(seconds=i), canary_ids=[canary.pk],
                                   providers={"push": Broken()})
        canary.refresh_from_db()
        assert (canary.state == Canary.State.ROLLED_BACK) == (i == 3)
    assert CanaryWatch.objects.get(canary=canary).consecutive_errors == 4
    assert Evaluation.objects.filter(canary=canary, verdict="stale").count() == 4


def test_early_warning_is_an_outbox_event_once_per_hour(canary, django_capture_on_commit_callbacks):
    push("1.0.0", requests_=1_000_000, errors=10_000)
    push("1.1.0", requests_=100_000, errors=1_440)  # +0.44 pp
    for i in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            services.evaluate_tick(now=timezone.now() + timedelta(seconds=i), canary_ids=[canary.pk])
    assert NotificationEvent.objects.filter(kind="early_warning", canary=canary).count() == 1
    # On-call (the model's on-call contact when it is an address) and the owner hear of it.
    warning = NotificationEvent.objects.get(kind="early_warning", canary=canary)
    told = {(d.channel, d.user_id or d.address) for d in warning.deliveries.all()}
    owner = canary.model.owner
    assert {("feed", owner.pk), ("email", owner.pk)} <= told
    assert all(d.roles[0] in ("owner", "on_call") for d in warning.deliveries.all())


def test_observation_api_stores_a_window_and_refuses_bad_input(canary, role_user, client):
    bot = role_user(Role.SERVICE_ACCOUNT, username="ci")
    _, secret = token_create(actor=bot, user=bot, name="pusher", scope=["scorer"], purpose="observations")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    end = timezone.now().replace(microsecond=0)
    body = {"model": "scorer", "version": "1.1.0", "window_start": (end - timedelta(seconds=60)).isoformat(),
            "window_end": end.isoformat(), "requests": 100, "errors": 2,
            "latency_buckets": [[0.1, 50], [0.5, 99], ["+Inf", 100]]}
    r = client.post("/api/v1/observations/", body, content_type="application/json", **headers)
    assert r.status_code == 201, r.content
    assert Observation.objects.get().latency_buckets[-1] == ["+Inf", 100.0]
    bad = client.post("/api/v1/observations/", {**body, "errors": 101}, content_type="application/json", **headers)
    assert bad.status_code == 400
    unknown = client.post("/api/v1/observations/", {**body, "version": "9.9.9"}, content_type="application/json", **headers)
    assert unknown.status_code == 400


def test_retention_prunes_only_old_evaluations_of_ended_canaries(canary, django_capture_on_commit_callbacks):
    from tests.factories import make_evaluation

    old = make_evaluation(canary, window_end=NOW - timedelta(days=200))
    assert lifecycle.evaluations_prune(now=NOW + timedelta(days=400)) == 0  # still active
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.canary_rollback(actor=None, canary_id=canary.pk, reason="test", automatic=True)
    Canary.objects.filter(pk=canary.pk).update(ended_at=NOW - timedelta(days=183))
    assert lifecycle.evaluations_prune(now=NOW) == 0  # kept at least 184 days after the canary ended
    Canary.objects.filter(pk=canary.pk).update(ended_at=NOW - timedelta(days=185))
    recent = make_evaluation(canary, window_end=NOW - timedelta(days=1), stage_index=1)
    assert lifecycle.evaluations_prune(now=NOW) == 2
    assert not Evaluation.objects.filter(pk__in=[old.pk, recent.pk]).exists()
    assert lifecycle.evaluations_prune(now=NOW) == 0
