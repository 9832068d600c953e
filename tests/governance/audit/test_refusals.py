"""Refusals of unknown callers are counted, not appended one by one under the chain lock: a flood
of bad tokens adds no event while it lasts and one event per (minute, source address) afterwards,
whose counts add up to the flood. A known caller's refusal is still one event naming them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.audit.models import AuditEvent, RefusalTally
from governance.audit.services import audit_verify, refusal_count_unknown, refusals_flush
from governance.audit.tasks import flush_refusals

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)


def test_a_flood_of_bad_tokens_appends_a_handful_of_events_whose_counts_add_up():
    before = AuditEvent.objects.count()
    clients = {address: APIClient(REMOTE_ADDR=address) for address in ("203.0.113.7", "198.51.100.9")}
    sent = {"203.0.113.7": 0, "198.51.100.9": 0}
    for i in range(1000):
        address = "203.0.113.7" if i % 4 else "198.51.100.9"
        answer = clients[address].get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer chk_{i:08x}_guess{i}")
        assert answer.status_code == 401
        sent[address] += 1
    assert AuditEvent.objects.count() == before, "a refusal of an unknown caller appended to the chain"
    appended = refusals_flush(include_current=True)
    # One per address, two if the flood crossed a minute boundary.
    assert 2 <= appended <= 4
    events = list(AuditEvent.objects.filter(action="access.refused_unknown"))
    assert len(events) == appended
    counted: dict[str, int] = {}
    for event in events:
        assert event.object_type == "address" and event.actor_name == "system"
        assert event.payload["by_status"] == {"401": event.payload["count"]}
        assert event.payload["first"] == "GET /api/v1/models/"
        counted[event.object_id] = counted.get(event.object_id, 0) + event.payload["count"]
    assert counted == sent
    assert not RefusalTally.objects.exists()
    assert audit_verify().ok


def test_only_finished_minutes_are_flushed_each_once_and_by_status():
    for _ in range(3):
        refusal_count_unknown(address="203.0.113.7", status=401, what="GET /api/v1/models/", now=T0)
    refusal_count_unknown(address="203.0.113.7", status=403, what="POST /api/v1/canaries/", now=T0)
    refusal_count_unknown(address="", status=401, what="GET /api/v1/models/", now=T0)
    refusal_count_unknown(address="203.0.113.7", status=401, what="GET /api/v1/models/", now=T0 + timedelta(minutes=1))
    # During the minute nothing is flushed; after it, that minute only.
    assert refusals_flush(now=T0 + timedelta(seconds=30)) == 0
    assert refusals_flush(now=T0 + timedelta(minutes=1, seconds=1)) == 2
    first = AuditEvent.objects.get(action="access.refused_unknown", object_id="203.0.113.7")
    assert first.payload == {"minute": "2026-03-01T12:00:00+00:00", "count": 4, "by_status": {"401": 3, "403": 1},
                             "first": "GET /api/v1/models/"}
    assert AuditEvent.objects.get(action="access.refused_unknown", object_id="unknown").payload["count"] == 1
    assert refusals_flush(now=T0 + timedelta(minutes=1, seconds=2)) == 0  # never twice
    assert flush_refusals() == 1  # the scheduled task: the next minute is finished by now
    assert AuditEvent.objects.filter(action="access.refused_unknown").count() == 3


def test_a_known_callers_refusal_is_still_one_event_naming_them(role_user):
    auditor = role_user(Role.AUDITOR, username="auditor")
    client = APIClient()
    client.force_authenticate(auditor)
    answer = client.post("/api/v1/models/", {"name": "x"}, format="json")
    assert answer.status_code == 403
    event = AuditEvent.objects.get(action="access.refused")
    assert event.actor_name == "auditor" and event.payload["status"] == 403
    assert not RefusalTally.objects.exists()
