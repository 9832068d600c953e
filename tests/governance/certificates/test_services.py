from __future__ import annotations

import base64
import io
import subprocess
import sys
import zipfile

import pytest
from pypdf import PdfReader

from canaryhub import keyring
from canaryhub.errors import Conflict, PermissionRefused, ValidationFailed
from governance.access.permissions import Principal, Role
from governance.audit.models import AuditEvent
from governance.certificates.models import Certificate
from governance.certificates.services import certificate_checklist, certificate_decide, certificate_verify, render_pdf
from governance.evidence.bundles import bundle_stream, canaries_for
from governance.evidence.selectors import VERIFY_SCRIPT
from monitoring.models import Evaluation
from tests.governance.helpers import make_model, run_to_completion


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner", first_name="Olivia", last_name="Owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm", first_name="Mira", last_name="Validator"),
        "gov": role_user(Role.AI_GOVERNANCE, username="gov", first_name="Grace", last_name="Governance"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }


@pytest.fixture
def completed(people):
    make_model(people["platform"])
    return run_to_completion(owner=people["owner"], mrm=people["mrm"])


def test_checklist_is_filled_by_the_system(completed):
    items = {c.key: c for c in certificate_checklist(completed)}
    assert all(c.ok for c in items.values()), items
    assert "5 promotions" in items["stages_green"].detail


def test_issue_certifies_the_canary_and_seals_the_hash_in_the_chain(completed, people):
    cert = certificate_decide(actor=people["gov"], canary_id=completed.pk, issue=True)
    completed.refresh_from_db()
    assert completed.state == "certified"
    event = AuditEvent.objects.get(seq=cert.audit_seq)
    assert event.action == "certificate.issued" and event.payload["content_hash"] == cert.content_hash
    result = certificate_verify(certificate_id=cert.pk)
    assert result.ok, result.checks
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(render_pdf(cert))).pages)
    assert "Canary Completion Certificate" in text and "scorer" in text and "Olivia Owner" in text
    assert cert.evidence_hash in text.replace("\n", "")
    # The signing key is named on the certificate: its id and its public key's fingerprint.
    key = keyring.active_key()
    assert cert.signature["key_id"] == key.key_id and key.key_id in text
    assert key.fingerprint in text.replace("\n", "")
    assert {c["name"]: c["ok"] for c in result.checks}["signature"]


def test_return_needs_reasons_and_leaves_the_canary_completed(completed, people):
    with pytest.raises(ValidationFailed):
        certificate_decide(actor=people["gov"], canary_id=completed.pk, issue=False)
    cert = certificate_decide(actor=people["gov"], canary_id=completed.pk, issue=False,
                              reasons="The stage notes are missing the fairness review.")
    assert cert.status == Certificate.Status.RETURNED
    completed.refresh_from_db()
    assert completed.state == "completed"


@pytest.mark.parametrize("who", ["owner", "mrm", "platform"])
def test_only_ai_governance_issues(completed, people, who):
    with pytest.raises(PermissionRefused):
        certificate_decide(actor=people[who], canary_id=completed.pk, issue=True)


def test_service_accounts_never_issue(completed, people):
    people["bot"].groups.add(*people["gov"].groups.all())
    principal = Principal(user=people["bot"], scope=frozenset({completed.model_id}))
    with pytest.raises(PermissionRefused):
        certificate_decide(actor=principal, canary_id=completed.pk, issue=True)


def test_an_open_incident_blocks_issue(completed, people):
    from governance.incidents.services import incident_open

    incident_open(severity="P1", kind="router", summary="router down", canary_id=completed.pk)
    with pytest.raises(Conflict, match="No open incident"):
        certificate_decide(actor=people["gov"], canary_id=completed.pk, issue=True)


def _bundle(canary) -> bytes:
    return b"".join(bundle_stream(canaries_for(canary_id=canary.pk), scope={"kind": "canary"}))


def test_bundle_holds_the_evidence_and_the_published_verifier_checks_it(completed, people, tmp_path):
    certificate_decide(actor=people["gov"], canary_id=completed.pk, issue=True)
    data = _bundle(completed)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    folder = f"canaries/{completed.pk}-scorer-1.1.0"
    for name in ["initiation.json", "stages.json", "evaluations.json", "evaluations.csv", "approvals.json",
                 "incidents.json", "router_pushes.json", "post_canary_report.pdf", "certificate.pdf"]:
        assert f"{folder}/{name}" in names
    assert {"manifest.json", "manifest.sig", "audit/events.jsonl", "audit/chain.jsonl"} <= set(names)
    assert not [n for n in names if n.endswith(".py")]  # the bundle carries no verifier of its own
    report = PdfReader(io.BytesIO(zipfile.ZipFile(io.BytesIO(data)).read(f"{folder}/post_canary_report.pdf")))
    text = "".join(p.extract_text() for p in report.pages)
    assert "Traffic split over time" in text and "Metric comparison per stage" in text and "certified" in text
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(data)
    ok = subprocess.run([sys.executable, "-I", str(VERIFY_SCRIPT), str(bundle),
                         "--fingerprint", keyring.active_key().fingerprint], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "audit events verify" in ok.stdout


def test_a_certificate_re_signed_by_another_key_or_unsigned_fails_verification(completed, people):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

    from governance.certificates.services import certificate_statement  # noqa: PLC0415

    cert = certificate_decide(actor=people["gov"], canary_id=completed.pk, issue=True)
    forged = base64.b64encode(Ed25519PrivateKey.generate().sign(certificate_statement(cert))).decode()
    Certificate.objects.filter(pk=cert.pk).update(signature={**cert.signature, "signature": forged})
    result = certificate_verify(certificate_id=cert.pk)
    assert not result.ok
    assert [c["name"] for c in result.checks if not c["ok"]] == ["signature"]
    Certificate.objects.filter(pk=cert.pk).update(signature={})  # stripped: the hash then changes too
    assert not certificate_verify(certificate_id=cert.pk).ok


def test_verification_names_an_evaluation_changed_after_issue(completed, people):
    cert = certificate_decide(actor=people["gov"], canary_id=completed.pk, issue=True)
    evaluation = Evaluation.objects.filter(canary=completed).first()
    Evaluation.objects.filter(pk=evaluation.pk).update(verdict="red")
    result = certificate_verify(certificate_id=cert.pk)
    assert not result.ok
    assert f"evaluation:{evaluation.pk}" in result.changed


def test_certificate_verify_answers_an_out_of_scope_token_as_unknown(people, completed):
    import uuid  # noqa: PLC0415 - only this test needs a random id

    from django.test import Client  # noqa: PLC0415 - only this test goes through HTTP

    from governance.tokens.services import token_create  # noqa: PLC0415 - as above
    from releases.register import services  # noqa: PLC0415 - as above

    cert = certificate_decide(actor=people["gov"], canary_id=completed.pk, issue=True)
    services.model_register(actor=people["platform"], name="other", display_name="Other", risk_tier="low",
                            owner="owner", on_call="x")
    _, secret = token_create(actor=people["platform"], user=people["bot"], name="o", scope=["other"])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    out_of_scope = client.get(f"/api/v1/certificates/{cert.pk}/verify/")
    unknown_id = uuid.uuid4()
    unknown = client.get(f"/api/v1/certificates/{unknown_id}/verify/")
    assert out_of_scope.status_code == unknown.status_code == 404
    assert out_of_scope.json()["detail"].replace(str(cert.pk), "X") == unknown.json()["detail"].replace(
        str(unknown_id), "X")
    _, in_scope = token_create(actor=people["platform"], user=people["bot"], name="s", scope=["scorer"])
    ok = Client(HTTP_AUTHORIZATION=f"Bearer {in_scope}").get(f"/api/v1/certificates/{cert.pk}/verify/")
    assert ok.status_code == 200 and ok.json()["ok"] is True
