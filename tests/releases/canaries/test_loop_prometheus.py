"""The evaluator against a real Prometheus scraping the traffic simulator."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from governance.access.permissions import Role
from governance.incidents.models import Incident
from monitoring.models import CanaryWatch, Evaluation
from monitoring.providers import COUNTS_QUERY, PrometheusProvider
from monitoring.simulator import inject
from releases.canaries import loop as services
from releases.canaries import selectors as canary_selectors
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register
from tests.factories import PASSWORD

State = Canary.State


@pytest.fixture
def env(live_metrics, settings, role_user):
    settings.PROMETHEUS_URL = live_metrics["prometheus"].url
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(live_metrics["router_dir"])}}
    settings.CLOCK_SPEED = 24 * 3600  # stage residence of one second: a speed setting only
    settings.EVALUATION_WINDOW_S = 60
    people = {"owner": role_user(Role.MODEL_OWNER, username="owner"), "platform": role_user(Role.PLATFORM, username="platform")}
    return {**live_metrics, "people": people}


def start_canary(env, name, capture):
    p = env["people"]
    register.model_register(actor=p["platform"], name=name, display_name=name, risk_tier="medium", owner="owner", on_call="oncall@x")
    register.version_register(actor=p["platform"], model_name=name, version="1.0.0", artifact_uri="s3://1", status="production")
    register.version_register(actor=p["platform"], model_name=name, version="1.1.0", artifact_uri="s3://2")
    with capture(execute=True):
        canary = lifecycle.canary_initiate(actor=p["owner"], model_name=name, version="1.1.0")
    assert canary.version.metrics["provider"] == "prometheus"
    return canary


def router_percent(env, name):
    return json.loads((env["router_dir"] / f"{name}.json").read_text())["percent"]


def tick(canary, capture):
    with capture(execute=True):
        return services.evaluate_tick(canary_ids=[canary.pk])


def test_healthy_canary_turns_green_stage_by_stage(env, django_capture_on_commit_callbacks):
    canary = start_canary(env, "sim-healthy", django_capture_on_commit_callbacks)
    seen = []
    while True:
        deadline = time.monotonic() + 60
        while True:
            time.sleep(1.2)
            result = tick(canary, django_capture_on_commit_callbacks)
            assert result.queries >= 10 and not result.outcomes[0].rollback
            canary.refresh_from_db()
            if canary.state == State.AWAITING_APPROVAL:
                break
            assert time.monotonic() < deadline, Evaluation.objects.filter(canary=canary).first().gates
        evaluation = Evaluation.objects.filter(canary=canary, stage_index=canary.stage_index).first()
        assert evaluation.verdict == "green"
        gates = {g["name"]: g for g in evaluation.gates}
        assert {"error_rate", "latency_p99", "quality", "safety_violations", "anomaly_alerts"} <= set(gates)
        info = evaluation.inputs["gates"]["error_rate"]
        assert info["required"] > 0 and info["ci_pp"][1] <= 0.1 and info["time_to_sufficiency_s"] == 0
        assert evaluation.inputs["gates"]["latency_p99"]["rank_test"]["n_c"] > 0
        seen.append(canary.traffic_percent)
        if canary_selectors.required_roles(canary) != {"owner"}:
            break  # the final step to 100 % takes the initial deployment's approval chain
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.canary_sign(actor=env["people"]["owner"], canary_id=canary.pk, role="owner",
                                  statement="I reviewed the green gates of this stage.", password=PASSWORD,
                                  evaluation_hash=evaluation.content_hash)
        canary.refresh_from_db()
        assert router_percent(env, "sim-healthy") == canary.traffic_percent
    assert seen == [1, 5, 10, 25, 50]
    assert canary.state == State.AWAITING_APPROVAL and router_percent(env, "sim-healthy") == 50


def test_injected_error_spike_rolls_back_with_router_at_zero(env, django_capture_on_commit_callbacks):
    canary = start_canary(env, "sim-fault", django_capture_on_commit_callbacks)
    sim = env["sims"]["sim-fault"]
    time.sleep(3)
    tick(canary, django_capture_on_commit_callbacks)
    canary.refresh_from_db()
    assert canary.state in (State.RUNNING, State.AWAITING_APPROVAL, State.HELD), (
        Evaluation.objects.filter(canary=canary).first().inputs)
    assert router_percent(env, "sim-fault") == 1
    inject(sim.canary, "error_spike", magnitude=0.2)
    breach = time.monotonic()
    try:
        deadline = breach + 30
        while time.monotonic() < deadline:
            time.sleep(1.0)  # one scrape
            result = tick(canary, django_capture_on_commit_callbacks)
            canary.refresh_from_db()
            if canary.state == State.ROLLED_BACK:
                break
        elapsed = time.monotonic() - breach
    finally:
        sim.canary.behaviour.error_rate = 0.0005
    assert canary.state == State.ROLLED_BACK, Evaluation.objects.filter(canary=canary).first().inputs["rollback_window"]
    assert router_percent(env, "sim-fault") == 0
    assert "error rate" in canary.end_reason and result.outcomes[0].rollback
    assert elapsed < 60  # one (test) cadence plus the push, far inside the 2-minute SLO
    assert canary.incidents.get().severity == "P2"


def test_silent_evaluator_suspends_advancement_and_its_return_lifts_it(env, settings, django_capture_on_commit_callbacks):
    settings.DEADMAN_LIMIT_S = 3
    canary = start_canary(env, "sim-deadman", django_capture_on_commit_callbacks)
    time.sleep(2)
    tick(canary, django_capture_on_commit_callbacks)
    assert services.deadman_check() == "ok"
    time.sleep(3.5)  # no tick for longer than the dead-man's limit
    with django_capture_on_commit_callbacks(execute=True):
        assert services.deadman_check() == "tripped"
    canary.refresh_from_db()
    assert canary.state == State.SUSPENDED
    incident = Incident.objects.get(kind="monitor_silent")
    assert incident.severity == "P1"
    assert services.deadman_check() == "tripped" and Incident.objects.filter(kind="monitor_silent").count() == 1
    # Rollback triggers are still checked while suspended, and signing is refused.
    tick(canary, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.deadman_check(now=timezone.now() + timedelta(seconds=1)) == "lifted"
    canary.refresh_from_db()
    assert canary.state in (State.RUNNING, State.AWAITING_APPROVAL, State.HELD)


def test_the_rollback_watch_reads_one_query_and_rolls_back_between_evaluations(env, django_capture_on_commit_callbacks):
    canary = start_canary(env, "sim-watch", django_capture_on_commit_callbacks)
    sim = env["sims"]["sim-watch"]
    provider = PrometheusProvider(url=env["prometheus"].url)
    target = services.subject_of(canary).target
    deadline = time.monotonic() + 20
    while not provider.fetch_counts([target], now=timezone.now(), window_s=60)[canary.pk].totals["canary"].requests:
        assert time.monotonic() < deadline, "the canary's traffic never reached Prometheus"
        time.sleep(0.5)  # the router's 1 % reaches the simulator, then a scrape
    # Two evaluations: the stage's first takes its counters' baseline (nothing counted yet), the
    # second leaves the memory the watch continues from (the rate production's counts bound).
    for _ in range(2):
        time.sleep(1.2)  # a round reads at a whole second: one more scrape
        with django_capture_on_commit_callbacks(execute=True):
            services.evaluate_tick(canary_ids=[canary.pk], providers={"prometheus": provider})
    canary.refresh_from_db()
    assert canary.state in (State.RUNNING, State.AWAITING_APPROVAL, State.HELD)
    memory = CanaryWatch.objects.get(canary=canary).sequential
    assert memory["stage_index"] == canary.stage_index and memory["canary"]["requests"] > 0
    # The count read is the full read's counters, to the request, by version and segment.
    now = timezone.now()
    counts, full = provider.fetch_counts([target], now=now, window_s=60), provider.fetch([target], now=now, window_s=60)
    reading, whole = counts[canary.pk], full[canary.pk]
    assert reading.error is None and reading.queries == [COUNTS_QUERY]
    assert reading.totals["canary"].requests > 0 and len(reading.segments_totals) >= 2
    for role in ("canary", "production"):
        assert (reading.totals[role].requests, reading.totals[role].errors) == (
            whole.totals[role].requests, whole.totals[role].errors)
        for segment, pair in whole.segments_totals.items():
            assert (reading.segments_totals[segment][role].requests, reading.segments_totals[segment][role].errors) \
                == (pair[role].requests, pair[role].errors)
    inject(sim.canary, "error_spike", magnitude=0.2)
    try:
        decided, deadline = [], time.monotonic() + 30
        while not decided and time.monotonic() < deadline:
            time.sleep(1.0)  # one scrape
            before = provider.query_count
            with django_capture_on_commit_callbacks(execute=True):
                decided = services.rollback_watch_tick(canary_ids=[canary.pk], providers={"prometheus": provider})
            assert provider.query_count - before == 1  # one query per look
    finally:
        sim.canary.behaviour.error_rate = 0.0005
    canary.refresh_from_db()
    assert decided == [canary.pk] and canary.state == State.ROLLED_BACK
    assert "rollback watch" in canary.end_reason and router_percent(env, "sim-watch") == 0
    assert Evaluation.objects.filter(canary=canary).count() == 2  # the watch stores none
