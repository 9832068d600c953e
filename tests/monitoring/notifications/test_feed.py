"""The feed (API and page), the outbox page, preferences and quiet hours — and what each role
may not do: read another person's feed, retry the outbox without being platform."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.tokens.services import token_create
from monitoring.models import NotificationDelivery
from monitoring.notifications import services as notify
from monitoring.notifications.services import quiet_until
from releases.canaries import services as lifecycle
from releases.register import services as register


@pytest.fixture
def people(role_user, settings):
    settings.NOTIFY_PAGERDUTY_ROUTING_KEY = "pd-key"
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "other": role_user(Role.MODEL_OWNER, username="other"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "oncall": role_user(Role.ON_CALL, username="oncall"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }


@pytest.fixture
def canary(people):
    register.model_register(actor=people["platform"], name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="quality drop")
    return canary


def api(user=None, *, token=None):
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    elif user is not None:
        client.force_authenticate(user)
    return client


def test_the_api_lists_the_callers_own_feed_newest_first(people, canary):
    body = api(people["owner"]).get("/api/v1/notifications/").json()
    kinds = [item["kind"] for item in body["results"]]
    assert kinds[0] == "canary.rolled_back" and kinds[-1] == "canary.initiated"
    first = body["results"][0]
    assert first["canary_id"] == canary.pk and first["link"].endswith(f"/canaries/{canary.pk}/")
    assert "quality drop" in first["text"] and set(first["delivered"]) == {"feed", "email"}
    assert first["delivered"]["feed"] is not None and first["delivered"]["email"] is None  # not sent yet


def test_nobody_reads_another_persons_feed(people, canary):
    assert api(people["other"]).get("/api/v1/notifications/").json()["results"] == []
    # on-call hears of the rollback only, and only their own rows
    oncall = api(people["oncall"]).get("/api/v1/notifications/").json()["results"]
    assert [i["kind"] for i in oncall] == ["canary.rolled_back"]
    owner_ids = set(NotificationDelivery.objects.filter(user=people["owner"]).values_list("pk", flat=True))
    assert owner_ids.isdisjoint({i["id"] for i in oncall})


def test_anonymous_and_service_accounts_have_no_feed(people, canary):
    assert api().get("/api/v1/notifications/").status_code == 401
    _, secret = token_create(actor=None, user=people["bot"], name="ci", scope=["scorer"])
    answer = api(token=secret).get("/api/v1/notifications/")
    assert answer.status_code == 403 and answer["Content-Type"].startswith("application/problem+json")
    assert api(people["owner"]).get("/api/v1/notifications/?page_size=0").status_code == 400


def test_the_page_shows_the_feed_the_unread_count_and_marks_read(client, people, canary):
    client.force_login(people["owner"])
    html = client.get("/notifications/").content.decode()
    unread = NotificationDelivery.objects.filter(user=people["owner"], channel="feed").count()
    assert f'data-testid="unread-count" title="unread notifications">{unread}<' in html
    assert "Canary ROLLED BACK" in html and 'data-testid="outbox"' not in html  # owners see no outbox
    client.post("/notifications/read/")
    assert 'data-testid="unread-count"' not in client.get("/notifications/").content.decode()
    # marking read touched only the owner's own rows
    assert NotificationDelivery.objects.filter(user=people["oncall"], read_at__isnull=True).exists()


def test_only_platform_sees_the_outbox_and_retries(client, people, canary):
    delivery = NotificationDelivery.objects.filter(channel="pagerduty").get()
    client.force_login(people["owner"])
    assert client.post(f"/notifications/outbox/{delivery.pk}/retry/").status_code == 403
    client.force_login(people["platform"])
    html = client.get("/notifications/").content.decode()
    assert 'data-testid="outbox"' in html and "routing key …-key" in html and "pd-key" not in html
    NotificationDelivery.objects.filter(pk=delivery.pk).update(status="dead", last_error="HTTP 503")
    assert client.post(f"/notifications/outbox/{delivery.pk}/retry/").status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert AuditEvent.objects.filter(action="notification.retried").count() == 1
    # a feed row is nobody's to retry
    feed_row = NotificationDelivery.objects.filter(channel="feed").first()
    client.post(f"/notifications/outbox/{feed_row.pk}/retry/")
    feed_row.refresh_from_db()
    assert feed_row.status == "sent"


def test_quiet_hours_hold_e_mail_but_never_a_page(client, people, settings):
    settings.NOTIFY_TIME_ZONE = "UTC"
    client.force_login(people["oncall"])
    now = datetime.now(UTC)
    client.post("/notifications/preferences/", {"email": "on", "quiet_start": f"{now - timedelta(hours=1):%H:%M}",
                                                "quiet_end": f"{now + timedelta(hours=2):%H:%M}"})
    assert AuditEvent.objects.filter(action="notification.preferences_changed").count() == 1
    register.model_register(actor=people["platform"], name="scorer", display_name="Scorer", risk_tier="medium",
                            owner="owner", on_call="x")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    notify.notification_record(kind="canary.suspended", canary_id=canary.pk, payload={"reason": "no heartbeat"})
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="quality drop")
    suspended = NotificationDelivery.objects.get(event__kind="canary.suspended", user=people["oncall"], channel="email")
    rolled = NotificationDelivery.objects.get(event__kind="canary.rolled_back", user=people["oncall"], channel="email")
    assert suspended.next_attempt_at > suspended.event.created_at + timedelta(hours=1)  # waits for the quiet end
    assert rolled.page and rolled.next_attempt_at <= rolled.event.created_at + timedelta(seconds=1)
    client.post("/notifications/preferences/", {"quiet_start": "01:00"})  # one end only: refused, nothing changed
    assert AuditEvent.objects.filter(action="notification.preferences_changed").count() == 1


def test_quiet_until_crosses_midnight():
    utc = UTC
    night = datetime(2025, 5, 5, 23, 30, tzinfo=utc)
    assert quiet_until(night, time(22), time(7), tz=utc) == datetime(2025, 5, 6, 7, 0, tzinfo=utc)
    assert quiet_until(night.replace(hour=12), time(22), time(7), tz=utc) is None
    assert quiet_until(night, None, None, tz=utc) is None


ALERTS = {"version": "4", "status": "firing", "alerts": [
    {"status": "firing", "labels": {"alertname": "CanaryHubDeadmanTripped", "severity": "P1"},
     "annotations": {"summary": "advancement suspended"}, "startsAt": "2025-05-04T11:00:00Z", "fingerprint": "ab12"}]}


def test_only_platform_posts_alerts_and_bad_bodies_are_refused(people):
    assert api().post("/api/v1/alerts/alertmanager/", ALERTS, format="json").status_code == 401
    assert api(people["owner"]).post("/api/v1/alerts/alertmanager/", ALERTS, format="json").status_code == 403
    bad = api(people["platform"]).post("/api/v1/alerts/alertmanager/", {"status": "firing", "alerts": [{}]},
                                       format="json")
    assert bad.status_code == 400 and bad["Content-Type"].startswith("application/problem+json")
    ok = api(people["platform"]).post("/api/v1/alerts/alertmanager/", ALERTS, format="json")
    assert ok.status_code == 202 and ok.json() == {"recorded": 1}
    told = set(NotificationDelivery.objects.filter(event__kind="alert.firing").values_list("channel", "user_id"))
    assert ("feed", people["oncall"].pk) in told and ("feed", people["platform"].pk) in told
    assert ("feed", people["owner"].pk) not in told
    resolved = {**ALERTS, "status": "resolved", "alerts": [{**ALERTS["alerts"][0], "status": "resolved"}]}
    assert api(people["platform"]).post("/api/v1/alerts/alertmanager/", resolved, format="json").json() == {
        "recorded": 1}
