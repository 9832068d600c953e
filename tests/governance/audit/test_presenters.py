"""The audit trail in words: one line per event kind, its objects linked."""

from __future__ import annotations

import pytest

from governance.audit.presenters import event_links, event_summary
from governance.audit.services import audit_append

pytestmark = pytest.mark.django_db


def test_a_signature_reads_as_a_sentence_with_the_canary_linked(owner):
    event = audit_append(actor=owner, action="canary.signed", object_type="canary", object_id=4,
                         payload={"step": "promote:0->1", "role": "owner"})
    assert str(event_summary(event)) == (
        'owner signed the promotion to stage 2 of <a href="/canaries/4/">canary #4</a> as model owner')


def test_the_start_signature_and_mrm_read_in_words(owner):
    event = audit_append(actor=owner, action="canary.signed", object_type="canary", object_id=7,
                         payload={"step": "start", "role": "mrm"})
    assert str(event_summary(event)).endswith("as model risk (MRM)")
    assert "signed the start of" in str(event_summary(event))


def test_a_system_move_names_the_stage_from_one_and_its_share():
    event = audit_append(actor=None, action="canary.promoted", object_type="canary", object_id=3,
                         payload={"from": "running", "to": "running", "stage_index": 2, "traffic_percent": 25})
    assert str(event_summary(event)) == 'CanaryHub promoted <a href="/canaries/3/">canary #3</a> (stage 3, 25% of traffic)'


def test_an_incident_links_itself_and_its_canary():
    event = audit_append(actor=None, action="incident.opened", object_type="incident", object_id=9,
                         payload={"canary": 3, "summary": "error rate <breached>"})
    text = str(event_summary(event))
    assert '<a href="/governance/incidents/9/">incident #9</a>' in text
    assert '<a href="/canaries/3/">canary #3</a>' in text
    assert "&lt;breached&gt;" in text  # payload text is escaped


def test_a_version_event_links_the_version_and_names_its_canary_once(owner):
    event = audit_append(actor=owner, action="version.reinitiation_approved", object_type="model_version",
                         object_id="fraud-scorer@1.2.0", payload={"canary": 5, "incident": 2})
    text = str(event_summary(event))
    assert '<a href="/models/fraud-scorer/versions/1.2.0/">fraud-scorer 1.2.0</a>' in text
    assert [str(link) for link in event_links(event)] == [
        '<a href="/canaries/5/">canary #5</a>', '<a href="/governance/incidents/2/">incident #2</a>']


def test_a_certificate_links_the_certificate_and_the_canary(owner):
    event = audit_append(actor=owner, action="certificate.issued", object_type="certificate",
                         object_id="0b1f6a52-5c0e-4c36-9d4c-1d3f1b7a2e11", payload={"canary": 6})
    text = str(event_summary(event))
    assert '/governance/certificates/0b1f6a52-5c0e-4c36-9d4c-1d3f1b7a2e11/' in text and "canary #6" in text


def test_an_unknown_kind_and_an_odd_payload_still_read(owner):
    event = audit_append(actor=owner, action="router.reweighed", object_type="router", object_id="file")
    assert str(event_summary(event)) == "owner: reweighed — router file"
    odd = audit_append(actor=owner, action="canary.signed", object_type="canary", object_id=1, payload={"step": 5})
    assert "canary #1" in str(event_summary(odd))


def test_field_history_is_marked_as_such(owner):
    event = audit_append(actor=owner, action="field_changes.update", object_type="releases.modelversion",
                         object_id="2", payload={"object_repr": "ranker@1", "changes": {"status": ["a", "b"]}})
    assert str(event_summary(event)) == "Field history: owner updated releases.modelversion ranker@1 (status)"
