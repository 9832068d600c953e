"""Delivery with real parts: an SMTP server (aiosmtpd) and local HTTP receivers standing in for
Slack, PagerDuty and a consumer's webhook; retries, dead letters, reclaimed claims, refused
addresses and the numbers on /metrics."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from canaryhub.errors import PermissionRefused
from canaryhub.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from governance.access.permissions import Role
from governance.incidents.models import Incident
from governance.rootcause import services as rootcause
from governance.tokens.services import token_create
from monitoring.models import NotificationDelivery
from monitoring.notifications import services as notify
from releases.canaries import services as lifecycle
from releases.register import services as register
from tests.factories import make_evaluation
from tests.harness.receivers import HttpReceiver, SmtpReceiver

SECRET = "test-webhook-secret"


@pytest.fixture
def http():
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp():
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def wired(settings, http, smtp):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    settings.NOTIFY_SLACK_WEBHOOK_URL = f"{http.url}/slack"
    settings.NOTIFY_PAGERDUTY_URL = f"{http.url}/pagerduty"
    settings.NOTIFY_PAGERDUTY_ROUTING_KEY = "pd-key"
    settings.NOTIFY_WEBHOOK_SECRET = SECRET
    settings.NOTIFY_ALLOW_PRIVATE_URLS = True
    settings.NOTIFY_ON_CALL_ADDRESS = ""
    settings.NOTIFY_BASE_URL = "https://canaryhub.example.test"
    settings.NOTIFY_RETRY_BASE_S, settings.NOTIFY_RETRY_CAP_S = 0.05, 0.2
    return settings


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "oncall": role_user(Role.ON_CALL, username="oncall"),
        "mrm": role_user(Role.MRM, username="mrm"),
    }


def model(people, http, *, hook_path="/hook"):
    register.model_register(
        actor=people["platform"], name="scorer", display_name="Scorer", risk_tier="medium", owner="owner",
        on_call="scorer-oncall@example.test",
        consumers=[{"name": "ci", "contact": f"{http.url}{hook_path}", "channel": "webhook"}])
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")


def rolled_back(people):
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0",
                                       rollback_contact="rollback@example.test")
    evaluation = make_evaluation(canary, status="red")
    lifecycle.canary_rollback(actor=None, canary_id=canary.pk, reason="automatic: error_rate red", automatic=True,
                              evaluation_id=evaluation.pk)
    return canary


def drain(*, seconds: float = 5.0) -> None:
    """Run sender rounds until nothing is left to send (or the time is up)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        notify.deliveries_send_due(limit=100)
        if not NotificationDelivery.objects.filter(status__in=["pending", "sending"]).exists():
            return
        time.sleep(0.05)


def test_a_rollback_reaches_smtp_slack_pagerduty_and_the_signed_webhook_once(people, wired, http, smtp):
    model(people, http)
    canary = rolled_back(people)
    drain()
    rollback = NotificationDelivery.objects.filter(event__kind="canary.rolled_back").exclude(channel="feed")
    assert {d.status for d in rollback} == {"sent"} and all(d.latency_s is not None for d in rollback)
    # e-mail: owner, on-call person, model on-call address, rollback contact; HTML + text; threading headers
    mails = {to[0]: msg for to, msg in smtp.messages if "ROLLED BACK" in msg["Subject"]}
    assert set(mails) == {"owner@example.test", "oncall@example.test", "scorer-oncall@example.test",
                          "rollback@example.test"}
    mail = mails["rollback@example.test"]
    assert mail["List-Id"] and mail["In-Reply-To"] == mail["References"]
    assert f"canary-{canary.pk}@" in mail["In-Reply-To"]
    assert {p.get_content_type() for p in mail.walk()} >= {"text/plain", "text/html"}
    assert f"https://canaryhub.example.test/canaries/{canary.pk}/" in mail.get_body(("plain",)).get_content()
    # Slack: Block Kit with a button to the canary
    slack = [r.json() for r in http.at("/slack") if "ROLLED BACK" in r.json()["text"]]
    assert len(slack) == 1
    button = slack[0]["blocks"][-1]["elements"][0]
    assert button["url"] == f"https://canaryhub.example.test/canaries/{canary.pk}/"
    # PagerDuty Events v2: a trigger with the canary's dedup key
    pages = [r.json() for r in http.at("/pagerduty")]
    assert len(pages) == 1
    assert pages[0]["event_action"] == "trigger" and pages[0]["routing_key"] == "pd-key"
    assert pages[0]["dedup_key"] == f"canaryhub-canary-{canary.pk}" and pages[0]["payload"]["severity"] == "error"
    # the consumer's webhook: version 1, signed with a timestamp
    hooks = [r for r in http.at("/hook") if r.json()["kind"] == "canary.rolled_back"]
    assert len(hooks) == 1
    hook = hooks[0]
    assert hook.json()["version"] == 1 and hook.json()["canary_id"] == canary.pk
    assert verify(SECRET, timestamp=hook.headers[TIMESTAMP_HEADER.lower()], body=hook.body,
                  signature=hook.headers[SIGNATURE_HEADER.lower()])
    assert not verify("another secret", timestamp=hook.headers[TIMESTAMP_HEADER.lower()], body=hook.body,
                      signature=hook.headers[SIGNATURE_HEADER.lower()])
    assert hook.headers["idempotency-key"] == NotificationDelivery.objects.get(
        event__kind="canary.rolled_back", channel="webhook").idempotency_key
    # sent once: another round sends nothing
    count = len(http.requests), len(smtp.messages)
    notify.deliveries_send_due(limit=100)
    assert (len(http.requests), len(smtp.messages)) == count


def test_accepting_the_root_cause_resolves_the_page(people, wired, http):
    model(people, http)
    canary = rolled_back(people)
    incident = Incident.objects.get(canary=canary)
    report = rootcause.root_cause_file(actor=people["oncall"], incident_id=incident.pk,
                                       cause="Tokenizer change doubled latency on long prompts.",
                                       fix="Pin the tokenizer and re-run the load test.")
    rootcause.root_cause_review(actor=people["mrm"], report_id=report.pk, accept=True)
    drain()
    actions = [(r.json()["event_action"], r.json()["dedup_key"]) for r in http.at("/pagerduty")]
    assert actions == [("trigger", f"canaryhub-canary-{canary.pk}"), ("resolve", f"canaryhub-canary-{canary.pk}")]


def test_a_receiver_down_for_a_while_still_gets_the_message(people, wired, http):
    model(people, http)
    http.status = 503
    rolled_back(people)
    for _ in range(5):
        notify.deliveries_send_due(limit=100)
        time.sleep(0.1)
    hook = NotificationDelivery.objects.get(event__kind="canary.rolled_back", channel="webhook")
    assert hook.status == "pending" and hook.attempts >= 2 and "503" in hook.last_error
    http.status = 200
    drain()
    hook.refresh_from_db()
    assert hook.status == "sent" and hook.sent_at is not None
    assert len([r for r in http.at("/hook") if r.json()["kind"] == "canary.rolled_back"]) == 1


def test_past_its_deadline_a_delivery_is_dead_lettered_and_counted(people, wired, http, client):
    wired.NOTIFY_DEADLINE_S = 0.3
    model(people, http)
    http.status = 503
    rolled_back(people)
    drain(seconds=2.0)
    dead = NotificationDelivery.objects.filter(status="dead")
    assert dead.filter(channel="webhook").exists() and all("503" in d.last_error for d in dead)
    metrics = client.get("/metrics").content.decode()
    line = next(x for x in metrics.splitlines() if x.startswith("canaryhub_notification_dead_letters "))
    assert float(line.split()[1]) == dead.count()
    # platform retries it now; an owner cannot
    delivery = dead.filter(channel="webhook").first()
    with pytest.raises(PermissionRefused):
        notify.delivery_retry_now(actor=people["owner"], delivery_id=delivery.pk)
    http.status = 200
    notify.delivery_retry_now(actor=people["platform"], delivery_id=delivery.pk)
    drain()
    delivery.refresh_from_db()
    assert delivery.status == "sent"


def test_a_refusal_is_not_retried(people, wired, http):
    model(people, http)
    http.status = 400
    rolled_back(people)
    drain(seconds=1.0)
    hook = NotificationDelivery.objects.get(event__kind="canary.rolled_back", channel="webhook")
    assert (hook.status, hook.attempts) == ("dead", 1) and "400" in hook.last_error


def test_a_claim_left_by_a_dead_worker_is_taken_again_and_sent_once(people, wired, http):
    model(people, http)
    rolled_back(people)
    claimed = notify.deliveries_claim(now=timezone.now(), limit=1000)  # this "worker" dies before sending
    assert claimed
    assert notify.deliveries_send_due(limit=1000) == {}  # a fresh claim is not taken from its owner
    later = timezone.now() + timedelta(seconds=wired.NOTIFY_CLAIM_TIMEOUT_S + 1)
    counts = notify.deliveries_send_due(limit=1000, now=later)
    assert counts == {"sent": len(claimed)}
    # the dead worker's late stamp does nothing: the row is the second sender's
    assert notify.delivery_send(claimed[0][0], claimed_at=claimed[0][1]) == "skipped"
    assert len([r for r in http.at("/hook") if r.json()["kind"] == "canary.rolled_back"]) == 1


def test_a_webhook_to_a_private_address_is_refused_unless_the_deployment_allows(people, wired, http):
    wired.NOTIFY_ALLOW_PRIVATE_URLS = False
    model(people, http)
    rolled_back(people)
    drain(seconds=1.0)
    hook = NotificationDelivery.objects.get(event__kind="canary.rolled_back", channel="webhook")
    assert hook.status == "dead" and "private or local address" in hook.last_error
    assert http.at("/hook") == []
    # the deployment's own endpoints (settings) are trusted
    assert NotificationDelivery.objects.get(event__kind="canary.rolled_back", channel="pagerduty").status == "sent"


def test_the_latency_histogram_is_on_metrics(people, wired, http, client):
    model(people, http)
    rolled_back(people)
    drain()
    text = client.get("/metrics").content.decode()
    count = next(x for x in text.splitlines()
                 if x.startswith('canaryhub_notification_delivery_seconds_count{channel="webhook"}'))
    assert float(count.split()[1]) >= 1
    assert 'canaryhub_notification_delivery_seconds_bucket{channel="pagerduty",le="300.0"} 1.0' in text


def test_a_pipeline_hears_every_state_change_at_its_callback_url(people, wired, http, role_user):
    model(people, http)
    bot = role_user(Role.SERVICE_ACCOUNT, username="ci")
    _, secret = token_create(actor=None, user=bot, name="ci", scope=["scorer"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    refused = api.post("/api/v1/canaries/", {"model": "scorer", "version": "1.1.0", "callback_url": "ftp://ci/x"},
                       format="json")
    assert refused.status_code == 400 and "callback_url" in refused.json()["errors"]
    started = api.post("/api/v1/canaries/", {"model": "scorer", "version": "1.1.0",
                                             "callback_url": f"{http.url}/ci-callback"}, format="json")
    assert started.status_code == 201, started.content
    canary_id = started.json()["id"]
    assert api.post(f"/api/v1/canaries/{canary_id}/abort/", {"reason": "pipeline cancelled"},
                    format="json").status_code == 200
    drain()
    calls = http.at("/ci-callback")
    assert [c.json()["kind"] for c in calls] == ["canary.initiated", "canary.aborted"]
    assert all(c.json()["canary_id"] == canary_id and c.json()["version"] == 1 for c in calls)
    assert all(verify(SECRET, timestamp=c.headers[TIMESTAMP_HEADER.lower()], body=c.body,
                      signature=c.headers[SIGNATURE_HEADER.lower()]) for c in calls)
