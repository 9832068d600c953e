"""SLOs measured (pattern §10.1): each rollback and promotion is timed to the router's
confirmation, metric staleness at every evaluation; exported on /metrics, shown on the SLO page,
and a breach is an audited, notified event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from monitoring import services as monitor
from monitoring.models import NotificationEvent, SloHistogram, SloMeasurement
from monitoring.selectors import slo_figures
from releases.canaries import loop
from releases.canaries import services as lifecycle
from tests.releases.canaries.test_watch import complete, observe


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "risk": role_user(Role.RISK_OFFICER, username="risk"),
    }


@pytest.fixture
def completed(people, settings, tmp_path, django_capture_on_commit_callbacks):
    return complete(people, settings, tmp_path, django_capture_on_commit_callbacks,
                    now=timezone.now().replace(microsecond=0) - timedelta(days=5, minutes=10))


def test_every_signed_promotion_is_timed_to_the_routers_confirmation(completed):
    promotions = SloMeasurement.objects.filter(canary=completed, slo="promotion").order_by("generation")
    # Five signed steps (1→5→10→25→50→100), each pushed and confirmed by the file router. The test
    # dates the signatures back (a day apart, the last one 10 minutes ago): the earlier ones are
    # measured, honestly, as days late, and each of those breaches is audited.
    assert promotions.count() == 5
    last = promotions.last()
    assert last.detail["percent"] == 100 and last.started_at == completed.stage_entered_at
    assert 600 <= last.seconds < 1800 and not last.breached
    assert [p.breached for p in promotions] == [True, True, True, True, False]
    assert AuditEvent.objects.filter(action="slo.breached", payload__slo="promotion").count() == 4


def test_an_automatic_revert_is_timed_from_the_first_breaching_window(completed, django_capture_on_commit_callbacks):
    observe("1.1.0", errors=1_000)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = loop.watch_tick()[0]
    rollback = SloMeasurement.objects.get(canary=completed, slo="rollback")
    assert rollback.started_at == outcome.evaluation.window_end and rollback.detail["automatic"] is True
    assert 0 <= rollback.seconds < 120 and not rollback.breached
    # The same generation confirmed again (a reconcile, a retried task) is measured once.
    loop.slo_measure(completed.__class__.objects.get(pk=completed.pk), confirmed_at=timezone.now())
    assert SloMeasurement.objects.filter(canary=completed, slo="rollback").count() == 1


def test_a_manual_rollback_is_timed_from_the_decision(people, settings, tmp_path, django_capture_on_commit_callbacks):
    from releases.register import services as register

    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    register.model_register(actor=people["platform"], name="scorer", display_name="s", risk_tier="medium",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    assert not SloMeasurement.objects.filter(slo="promotion").exists()  # started unsigned: no promotion
    with django_capture_on_commit_callbacks(execute=True):
        canary = lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="bad answers")
    rollback = SloMeasurement.objects.get(canary=canary, slo="rollback")
    assert rollback.started_at == canary.ended_at and rollback.detail["automatic"] is False


def test_a_breach_is_an_audited_and_notified_event(completed):
    start = timezone.now() - timedelta(minutes=3)
    measured = monitor.slo_record(slo="rollback", canary_id=completed.pk, generation=999, started_at=start,
                                  finished_at=start + timedelta(seconds=150))
    assert measured.breached and measured.seconds == 150
    event = AuditEvent.objects.get(action="slo.breached", payload__slo="rollback")
    assert event.payload["target_s"] == 120 and event.payload["seconds"] == 150
    assert NotificationEvent.objects.filter(kind="slo.breached", canary=completed).exists()
    figures = {f.slo: f for f in slo_figures()}
    assert figures["rollback"].breaches == 1 and figures["rollback"].met is False
    assert figures["promotion"].count == 5 and figures["promotion"].breaches == 4


def test_staleness_is_observed_at_every_evaluation(db):
    monitor.staleness_observe([10.0, 50.0, 400.0])
    hist = SloHistogram.objects.get(slo="staleness")
    assert (hist.count, hist.over_target, hist.buckets["60.0"], hist.buckets["300.0"]) == (3, 1, 2, 2)
    figures = {f.slo: f for f in slo_figures()}
    assert figures["staleness"].count == 3 and figures["staleness"].breaches == 1


def test_the_tick_feeds_the_staleness_histogram(people, settings, tmp_path, django_capture_on_commit_callbacks):
    from releases.register import services as register

    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    register.model_register(actor=people["platform"], name="scorer", display_name="s", risk_tier="medium",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0",
                                       now=timezone.now() - timedelta(minutes=10))
    end = timezone.now() - timedelta(seconds=40)
    observe("1.1.0", end=end)
    observe("1.0.0", requests_=200_000, errors=100, end=end)
    loop.evaluate_tick(canary_ids=[canary.pk])
    hist = SloHistogram.objects.get(slo="staleness")
    assert hist.count == 1 and 30 <= hist.total <= 120


def test_metrics_export_the_slo_histograms(completed, client):
    body = client.get("/metrics").content.decode()
    assert 'canaryhub_slo_seconds_count{slo="promotion"} 5.0' in body
    assert 'canaryhub_slo_breaches{slo="promotion"} 4.0' in body


def test_the_slo_page(completed, people, client):
    assert client.get("/slo/").status_code == 302  # anonymous: to the login page
    client.force_login(people["risk"])
    response = client.get("/slo/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Promotion: last signature" in page and 'data-slo="promotion"' in page


def test_the_evidence_bundle_and_the_certificate_carry_the_canarys_slo_figures(completed):
    import json

    from governance.certificates.services import _body
    from governance.evidence.bundles import _canary_files

    files = dict(_canary_files(completed))
    name = next(n for n in files if n.endswith("/slo.json"))
    slo = json.loads(b"".join(files[name]()))
    assert [m["slo"] for m in slo["measurements"]] == ["promotion"] * 5
    figures = {f["slo"]: f for f in slo["figures"]}
    assert figures["promotion"]["count"] == 5 and figures["rollback"]["count"] == 0
    assert "staleness" not in figures  # kept over every evaluation, not per canary
    body = _body(completed, reviewer_name="G", now=timezone.now(), checklist=[])
    assert {f["slo"]: f["count"] for f in body["slo"]} == {"rollback": 0, "promotion": 5, "notification": 0}
