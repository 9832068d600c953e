"""A sender process killed (SIGKILL) between claiming deliveries and sending them: nothing is lost,
and each message is sent once — by the sender that takes the stale claim over. And two senders
draining one outbox at once (SELECT … FOR UPDATE SKIP LOCKED) never send a message twice. Real
processes on the real PostgreSQL server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from governance.access.permissions import Role
from monitoring.models import NotificationDelivery
from monitoring.notifications import services as notify
from releases.canaries import services as lifecycle
from releases.register import services as register
from tests.harness.receivers import HttpReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[3]

CLAIM_THEN_HANG = """
import sys, time, django
django.setup()
from django.utils import timezone
from monitoring.notifications.services import deliveries_claim
claimed = deliveries_claim(now=timezone.now(), limit=1000)
print(len(claimed), flush=True)
time.sleep(120)  # killed here, before sending anything
"""

DRAIN = """
import django
django.setup()
from monitoring.notifications.services import deliveries_send_due
sent = 0
while True:
    counts = deliveries_send_due(limit=3)
    if not counts:
        break
    sent += counts.get("sent", 0)
print(sent, flush=True)
"""


@pytest.fixture
def http():
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


def _env() -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {**os.environ, "DATABASE_URL": url, "CANARYHUB_NOTIFY_ALLOW_PRIVATE_URLS": "1",
            "CANARYHUB_NOTIFY_RETRY_BASE_S": "0.05", "DJANGO_SETTINGS_MODULE": "canaryhub.settings"}


@pytest.fixture
def rolled_back(role_user, http, settings):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = True
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    consumers = [{"name": f"c{i}", "contact": f"{http.url}/hook/{i}", "channel": "webhook"} for i in range(6)]
    register.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="medium", owner="owner",
                            on_call="x", consumers=consumers)
    register.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0")
    lifecycle.canary_rollback(actor=owner, canary_id=canary.pk, reason="quality drop")
    # E-mail is not what this test is about: only the webhooks go out.
    NotificationDelivery.objects.exclude(channel__in=["feed", "webhook"]).delete()
    return canary


def test_a_sender_killed_after_its_claim_loses_nothing_and_nothing_is_sent_twice(rolled_back, http, settings):
    worker = subprocess.Popen([sys.executable, "-c", CLAIM_THEN_HANG], cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, text=True)
    claimed = int(worker.stdout.readline())
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert claimed == NotificationDelivery.objects.exclude(channel="feed").count() == 12
    assert NotificationDelivery.objects.filter(status="sending").count() == claimed
    assert notify.deliveries_send_due(limit=1000) == {}  # the claim is fresh: not taken from its owner yet
    later = timezone.now() + timedelta(seconds=settings.NOTIFY_CLAIM_TIMEOUT_S + 1)
    assert notify.deliveries_send_due(limit=1000, now=later) == {"sent": claimed}
    paths = Counter(r.path for r in http.requests)
    assert len(paths) == 6 and set(paths.values()) == {2}  # initiated + rolled back, once each, per consumer


def test_two_senders_at_once_send_each_message_once(rolled_back, http):
    senders = [subprocess.Popen([sys.executable, "-c", DRAIN], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]
    sent = [int(s.communicate(timeout=120)[0].strip() or 0) for s in senders]
    assert sum(sent) == 12
    assert Counter(r.path for r in http.requests) == Counter({f"/hook/{i}": 2 for i in range(6)})
    assert set(NotificationDelivery.objects.values_list("status", flat=True)) == {"sent"}
