"""Resolving a committee escalation."""

from __future__ import annotations

import pytest

from canaryhub.errors import Conflict, PermissionRefused, ValidationFailed
from governance.access.permissions import Principal, Role
from governance.audit.models import AuditEvent
from governance.incidents.models import CommitteeEscalation
from governance.rootcause import services as rootcause
from releases.register.models import ModelVersion
from tests.governance.helpers import make_model
from tests.governance.rootcause.test_services import clear, rolled_back


@pytest.fixture
def people(role_user):
    return {r: role_user(role, username=r) for r, role in [
        ("owner", Role.MODEL_OWNER), ("platform", Role.PLATFORM), ("oncall", Role.ON_CALL), ("mrm", Role.MRM),
        ("gov", Role.AI_GOVERNANCE), ("risk", Role.RISK_OFFICER), ("bot", Role.SERVICE_ACCOUNT)]}


@pytest.fixture
def escalation(people):
    make_model(people["platform"])
    for n in range(3):
        _, incident = rolled_back(people)
        if n < 2:
            clear(people, incident)
    return CommitteeEscalation.objects.get()


def test_governance_resolves_an_escalation_with_a_note_and_the_flag_stays(people, escalation):
    with pytest.raises(ValidationFailed):
        rootcause.escalation_resolve(actor=people["gov"], escalation_id=escalation.pk, note="ok")
    for refused in ("owner", "risk", "oncall"):
        with pytest.raises(PermissionRefused):
            rootcause.escalation_resolve(actor=people[refused], escalation_id=escalation.pk,
                                         note="The committee accepts the fix plan.")
    with pytest.raises(PermissionRefused):
        rootcause.escalation_resolve(actor=Principal(user=people["bot"], scope=frozenset()),
                                     escalation_id=escalation.pk, note="The committee accepts the fix plan.")
    resolved = rootcause.escalation_resolve(actor=people["gov"], escalation_id=escalation.pk,
                                            note="The committee accepts the fix plan.")
    assert resolved.resolved_at is not None and resolved.resolved_by == people["gov"]
    assert ModelVersion.objects.get(version="1.1.0").committee_escalated_at is not None
    event = AuditEvent.objects.get(action="version.escalation_resolved")
    assert event.payload["note"] == "The committee accepts the fix plan." and event.actor == people["gov"]
    with pytest.raises(Conflict):
        rootcause.escalation_resolve(actor=people["mrm"], escalation_id=escalation.pk,
                                     note="The committee accepts the fix plan.")


def test_incident_page_resolves_the_escalation(people, escalation, client):
    from governance.incidents.models import Incident

    incident = Incident.objects.order_by("-opened_at", "-id").first()
    client.force_login(people["mrm"])
    page = client.get(f"/governance/incidents/{incident.pk}/")
    assert b"Resolve escalation" in page.content
    response = client.post(f"/governance/incidents/{incident.pk}/escalations/{escalation.pk}/resolve/", {
        "note": "Committee met; retrain approved."})
    assert response.status_code == 302
    page = client.get(f"/governance/incidents/{incident.pk}/")
    assert b"Resolve escalation" not in page.content and b"Committee met; retrain approved." in page.content
    escalation.refresh_from_db()
    assert escalation.resolved_by == people["mrm"]
