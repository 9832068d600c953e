"""Every row of the notification table, driven through the services that make the event, with
who received what (channel, address) asserted exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from governance.access.permissions import Role
from governance.incidents.models import Incident
from governance.rootcause import services as rootcause
from governance.thresholds.services import threshold_change_request
from monitoring.models import NotificationDelivery, NotificationEvent
from monitoring.notifications.recipients import WHO_HEARS, check_table, summary_slot, targets
from monitoring.services import incident_raise
from releases.canaries import services as lifecycle
from releases.register import services as register
from tests.factories import PASSWORD, make_evaluation

T0 = timezone.now().replace(microsecond=0)
DAY = timedelta(hours=24)
STATEMENT = "I reviewed the evaluation and approve this step."
CONSUMERS = [
    {"name": "billing", "contact": "billing-team@example.test", "channel": "email"},
    {"name": "fraud-ci", "contact": "https://hooks.example.test/fraud", "channel": "webhook"},
    {"name": "chat", "contact": "https://slack.example.test/T1/B1", "channel": "slack"},
]
CONSUMER_TARGETS = {("email", "billing-team@example.test"), ("webhook", "https://hooks.example.test/fraud"),
                    ("slack", "https://slack.example.test/T1/B1")}


@pytest.fixture
def people(role_user, settings):
    settings.NOTIFY_PAGERDUTY_ROUTING_KEY = "pd-routing-key"
    settings.NOTIFY_COMMITTEE_ADDRESS = "committee@example.test"
    settings.NOTIFY_SLACK_WEBHOOK_URL = ""
    settings.NOTIFY_ON_CALL_ADDRESS = ""
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "oncall": role_user(Role.ON_CALL, username="oncall"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "mrm2": role_user(Role.MRM, username="mrm2"),
        "gov": role_user(Role.AI_GOVERNANCE, username="gov"),
        "bystander": role_user(Role.MODEL_OWNER, username="bystander"),
    }


def user(username: str) -> set[tuple[str, str]]:
    pk = get_user_model().objects.get(username=username).pk
    return {("feed", f"user:{pk}"), ("email", f"{username}@example.test")}


def received(kind: str) -> set[tuple[str, str]]:
    event = NotificationEvent.objects.filter(kind=kind).order_by("-id").first()
    assert event is not None, f"no {kind} row"
    return set(NotificationDelivery.objects.filter(event=event).values_list("channel", "address"))


def make_model(people, *, tier="medium"):
    register.model_register(actor=people["platform"], name="scorer", display_name="Scorer", risk_tier=tier,
                            owner="owner", on_call="scorer-oncall@example.test", consumers=CONSUMERS)
    register.version_register(actor=people["platform"], model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=people["platform"], model_name="scorer", version="1.1.0", artifact_uri="s3://2")


def initiate(people, **kw):
    return lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0",
                                     rollback_contact="rollback@example.test", now=T0, **kw)


def sign(people, canary, who, role, *, now, evaluation=None):
    return lifecycle.canary_sign(actor=people[who], canary_id=canary.pk, role=role, statement=STATEMENT,
                                 password=PASSWORD, evaluation_hash=evaluation.content_hash if evaluation else "",
                                 now=now)


def test_the_table_names_only_roles_that_are_resolved():
    assert check_table() == []
    assert targets(WHO_HEARS["canary.running"], []) == []


def test_initiated_tells_consumers_owner_and_rollback_contact_with_the_plan(people):
    make_model(people)
    initiate(people)
    assert received("canary.initiated") == CONSUMER_TARGETS | user("owner") | {("email", "rollback@example.test")}
    payload = NotificationEvent.objects.get(kind="canary.initiated").payload
    assert payload["thresholds"] and payload["expected_timeline"] and payload["rollback_contact"]


def test_a_step_ready_for_signatures_tells_exactly_the_outstanding_signers(people):
    make_model(people, tier="high")
    canary = initiate(people, schedule="conservative")
    # The initiator is the owner; both MRM validators may sign: owner and MRM are outstanding.
    assert received("canary.signatures_requested") == user("owner") | user("mrm") | user("mrm2")
    sign(people, canary, "mrm", "mrm", now=T0)
    assert canary.approvals.count() == 1
    # Promotion step: after the residence, a green evaluation makes it awaiting approval.
    sign(people, canary, "owner", "owner", now=T0)  # start
    assert received("canary.started") == CONSUMER_TARGETS | user("owner")
    now = T0 + 3 * DAY
    make_evaluation(canary, window_end=now)
    lifecycle.canary_reconcile(canary_id=canary.pk, now=now)
    assert received("canary.awaiting_approval") == user("owner") | user("mrm") | user("mrm2")


def test_promoted_and_completed_tell_consumers_and_owner(people):
    make_model(people)
    canary = initiate(people)
    now = T0
    for _ in range(len(canary.stages)):
        if canary.state == "completed":
            break
        now += 3 * DAY
        evaluation = make_evaluation(canary, window_end=now - timedelta(seconds=30))
        stage = canary.stage_index
        sign(people, canary, "owner", "owner", now=now, evaluation=evaluation)
        canary.refresh_from_db()
        if canary.stage_index == stage and canary.state != "completed":  # the last step needs MRM too
            sign(people, canary, "mrm", "mrm", now=now, evaluation=evaluation)
            canary.refresh_from_db()
    assert canary.state == "completed"
    assert received("canary.promoted") == CONSUMER_TARGETS | user("owner")
    assert received("canary.completed") == CONSUMER_TARGETS | user("owner")


def test_rollback_pages_on_call_and_tells_owner_contact_and_consumers(people):
    make_model(people)
    canary = initiate(people)
    evaluation = make_evaluation(canary, status="red")
    lifecycle.canary_rollback(actor=None, canary_id=canary.pk, reason="automatic: error_rate red", automatic=True,
                              evaluation_id=evaluation.pk)
    got = received("canary.rolled_back")
    assert got == (CONSUMER_TARGETS | user("owner") | user("oncall") | {
        ("email", "rollback@example.test"), ("email", "scorer-oncall@example.test"), ("pagerduty", "pd-routing-key")})
    pages = NotificationDelivery.objects.filter(event__kind="canary.rolled_back", page=True)
    assert ("pagerduty", "pd-routing-key") in set(pages.values_list("channel", "address"))
    assert user("bystander").isdisjoint(got)


def test_held_tells_owner_and_platform(people):
    make_model(people)
    canary = initiate(people)
    lifecycle.canary_reconcile(canary_id=canary.pk, now=T0 + DAY)
    assert received("canary.held") == user("owner") | user("platform")


def test_p1_incident_pages_on_call_and_tells_platform(people):
    incident_raise(severity="P1", kind=Incident.Kind.MONITOR_SILENT, summary="no evaluator tick for 10 minutes")
    assert received("incident.monitor_silent") == user("oncall") | user("platform") | {("pagerduty", "pd-routing-key")}


def test_root_cause_due_overdue_and_returned_tell_on_call_and_mrm(people):
    make_model(people)
    canary = initiate(people)
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="quality drop")
    incident = Incident.objects.get(canary=canary)
    assert rootcause.root_cause_reminders(now=timezone.now()) == 0  # due in 48 h: nothing yet
    due = incident.root_cause_due_at
    assert rootcause.root_cause_reminders(now=due - timedelta(hours=11)) == 1
    assert rootcause.root_cause_reminders(now=due - timedelta(hours=10)) == 0  # once
    on_call_mrm = user("oncall") | user("mrm") | user("mrm2") | {("email", "scorer-oncall@example.test")}
    assert received("incident.root_cause_due") == on_call_mrm
    assert rootcause.root_cause_reminders(now=due + timedelta(minutes=1)) == 1
    assert received("incident.root_cause_overdue") == on_call_mrm
    report = rootcause.root_cause_file(actor=people["oncall"], incident_id=incident.pk,
                                       cause="Tokenizer change doubled latency on long prompts.",
                                       fix="Pin the tokenizer and re-run the load test.")
    rootcause.root_cause_review(actor=people["mrm"], report_id=report.pk, accept=False,
                                note="Show the load test results, please.")
    assert received("incident.root_cause_returned") == on_call_mrm


def test_three_rollbacks_reach_the_committee_address(people):
    make_model(people)
    for n in range(3):
        canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
        lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="quality drop")
        if n < 2:
            incident = Incident.objects.get(canary=canary)
            report = rootcause.root_cause_file(actor=people["oncall"], incident_id=incident.pk,
                                               cause="Tokenizer change doubled latency on long prompts.",
                                               fix="Pin the tokenizer and re-run the load test.")
            rootcause.root_cause_review(actor=people["mrm"], report_id=report.pk, accept=True)
            rootcause.reinitiation_approve(actor=people["owner"], incident_id=incident.pk, password=PASSWORD,
                                           statement="Root cause fixed and accepted; start again.")
    assert received("committee.escalation") == ({("email", "committee@example.test")} | user("owner")
                                                | user("mrm") | user("mrm2"))


def test_threshold_change_request_tells_its_reviewers(people):
    make_model(people)
    canary = initiate(people)
    threshold_change_request(actor=people["owner"], canary_id=canary.pk,
                             proposed={"promote": {"latency_p99_ratio": 1.1}},
                             reason="Latency budget tightened by the consumer team.")
    assert received("canary.threshold_change_requested") == user("gov") | user("mrm") | user("mrm2")


def test_on_call_summary_every_four_hours_in_business_hours_while_a_canary_is_active(people, settings):
    settings.NOTIFY_TIME_ZONE, settings.NOTIFY_BUSINESS_HOURS, settings.NOTIFY_BUSINESS_DAYS = "UTC", "09-17", "1-5"
    monday_10 = datetime(2025, 5, 5, 10, 0, tzinfo=UTC)
    assert lifecycle.oncall_summary_record(now=monday_10) is False  # no active canary
    make_model(people)
    initiate(people)
    assert lifecycle.oncall_summary_record(now=monday_10) is True
    assert lifecycle.oncall_summary_record(now=monday_10 + timedelta(hours=2)) is False  # same slot
    assert lifecycle.oncall_summary_record(now=monday_10 + timedelta(hours=4)) is True
    assert lifecycle.oncall_summary_record(now=monday_10 + timedelta(hours=8)) is False  # 18:00: after hours
    assert lifecycle.oncall_summary_record(now=monday_10 + timedelta(days=5)) is False  # Saturday
    assert received("oncall.summary") == user("oncall")
    latest = NotificationEvent.objects.filter(kind="oncall.summary").order_by("-id").first()
    assert latest.payload["canaries"][0]["trend"].startswith("1% ")


def test_summary_slots_follow_the_local_business_day():
    tz = ZoneInfo("Europe/London")
    at = datetime(2025, 7, 7, 8, 30, tzinfo=UTC)  # 09:30 in London (BST)
    assert summary_slot(at, tz=tz, hours="09-17", days="1-5", every_h=4) == "2025-07-07T09"
    assert summary_slot(at + timedelta(hours=4), tz=tz, hours="09-17", days="1-5", every_h=4) == "2025-07-07T13"
    assert summary_slot(at - timedelta(hours=1), tz=tz, hours="09-17", days="1-5", every_h=4) is None
