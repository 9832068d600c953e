"""A signature given on an evaluation stops counting when a red or stale evaluation of the stage
follows it: the pure rule (table-tested) and the attack through the API — an owner's signature
from before the stage went red must not complete the promotion with a later MRM sign-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone as dj_timezone
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from monitoring.models import NotificationEvent
from releases.canaries import services as lifecycle
from releases.canaries.approvals import EvaluationFacts, Step, void_reason, void_reasons
from releases.canaries.models import Approval, Canary
from releases.register import services
from tests.factories import PASSWORD, make_evaluation

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROMOTE_0 = Step.promotion(from_index=0, to_final=False)
STATEMENT = "I reviewed the evaluation and approve this step."


def ev(id_: int, minute: int, verdict: str = "green", stage: int = 0) -> EvaluationFacts:
    return EvaluationFacts(id=id_, stage_index=stage, window_end=T0 + timedelta(minutes=minute), verdict=verdict)


@pytest.mark.parametrize(("signed", "evaluations", "voided_because"), [
    (ev(1, 1), [ev(1, 1)], None),
    (ev(1, 1), [ev(1, 1), ev(2, 2)], None),  # a newer green one: still counts
    (ev(1, 1), [ev(1, 1), ev(2, 2, "insufficient")], None),  # too little data is not a bad stage
    (ev(1, 1), [ev(1, 1), ev(2, 2, "red"), ev(3, 3)], "evaluation #2"),  # red in between, green again
    (ev(1, 1), [ev(1, 1), ev(2, 2, "stale")], "evaluation #2 of the stage, after the one signed on (#1), is stale"),
    (ev(2, 2), [ev(1, 1, "red"), ev(2, 2)], None),  # red before the signature: what was signed is newer
    (ev(1, 1), [ev(1, 1), ev(2, 2, "red", stage=1)], None),  # another stage's verdict
    (ev(1, 1, stage=1), [ev(1, 1, stage=1)], "of stage 2, not of stage 1"),  # another stage's evaluation, stages from 1
    (None, [ev(1, 1)], "names no evaluation"),
])
def test_a_signature_counts_only_while_no_red_or_stale_evaluation_follows_it(signed, evaluations, voided_because):
    reason = void_reason(step=PROMOTE_0, signed_on=signed, evaluations=evaluations)
    if voided_because is None:
        assert reason is None
    else:
        assert reason is not None and voided_because in reason


def test_the_start_is_never_voided_and_void_reasons_names_each_signature():
    assert void_reason(step=Step.start(), signed_on=None, evaluations=[ev(1, 1, "red")]) is None
    reasons = void_reasons(step=PROMOTE_0, signatures={"a": ev(1, 1), "b": ev(3, 3)},
                           evaluations=[ev(1, 1), ev(2, 2, "red"), ev(3, 3)])
    assert list(reasons) == ["a"]
    assert void_reasons(step=None, signatures={"a": None}, evaluations=[]) == {}


# --- the attack through the API ---------------------------------------------------------------------


@pytest.fixture
def people(role_user, settings, tmp_path):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    return {"owner": role_user(Role.MODEL_OWNER, username="owner"), "platform": role_user(Role.PLATFORM),
            "mrm": role_user(Role.MRM, username="mrm")}


def sign(user, canary, role, evaluation):
    client = APIClient()
    client.force_authenticate(user)
    return client.post(f"/api/v1/canaries/{canary.pk}/approvals/",
                       {"role": role, "statement": STATEMENT, "password": PASSWORD,
                        "evaluation_hash": evaluation.content_hash}, format="json")


@pytest.mark.django_db
def test_an_owner_signature_from_before_a_red_evaluation_no_longer_completes_the_promotion(people):
    platform = people["platform"]
    services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="high", owner="owner",
                            on_call="oncall@x")
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=platform, model_name="scorer", version="1.1.0")
    now = dj_timezone.now()
    for role in ("owner", "mrm"):
        lifecycle.canary_sign(actor=people[role], canary_id=canary.pk, role=role, statement=STATEMENT,
                              password=PASSWORD, now=now - timedelta(hours=50))
    Canary.objects.filter(pk=canary.pk).update(stage_entered_at=now - timedelta(hours=49))
    canary.refresh_from_db()
    monday = make_evaluation(canary, window_end=now - timedelta(minutes=3))
    assert sign(people["owner"], canary, "owner", monday).status_code == 201
    make_evaluation(canary, window_end=now - timedelta(minutes=2), status="red")  # the stage went red
    wednesday = make_evaluation(canary, window_end=now - timedelta(minutes=1))
    response = sign(people["mrm"], canary, "mrm", wednesday)
    assert response.status_code == 201, response.content
    canary.refresh_from_db()
    assert canary.stage_index == 0, "the owner's signature from before the red evaluation completed the step"
    owner_signature = Approval.objects.get(canary=canary, step="promote:0->1", role="owner")
    assert owner_signature.voided_at is not None and "is red" in owner_signature.void_reason
    assert response.json()["canary"]["required_approvals"]["outstanding"] == ["owner"]
    # The API shows the voided signature as voided, with why (it stays on record).
    shown = {(a["role"], a["step"]): a for a in response.json()["canary"]["approvals"]}
    voided = shown[("owner", "promote:0->1")]
    assert voided["voided_at"] is not None and "is red" in voided["void_reason"]
    assert shown[("mrm", "promote:0->1")]["voided_at"] is None and shown[("mrm", "promote:0->1")]["void_reason"] == ""
    # The signer is told, and the chain holds it.
    told = NotificationEvent.objects.get(kind="canary.signature_voided")
    assert told.payload["signer"] == "owner" and told.audience == ["signer"]
    assert AuditEvent.objects.filter(action="canary.signature_voided").count() == 1
    # The owner signs again, on what is now the newest evaluation: the step is taken.
    assert sign(people["owner"], canary, "owner", wednesday).status_code == 201
    canary.refresh_from_db()
    assert canary.stage_index == 1
