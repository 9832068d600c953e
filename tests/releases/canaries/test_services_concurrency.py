"""Races on one canary, on the real PostgreSQL server: row locks must give exactly one outcome
and lose no audit record."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from canaryhub.errors import DomainError
from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.audit.services import audit_verify
from releases.canaries import services as lifecycle
from releases.canaries.models import Approval, Canary
from releases.register import services
from tests.factories import PASSWORD, make_evaluation

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(*calls):
    barrier = threading.Barrier(len(calls))
    outcomes: list[tuple[str, str]] = [("", "")] * len(calls)

    def run(index, name, fn):
        try:
            barrier.wait()
            fn()
            outcomes[index] = (name, "ok")
        except DomainError as exc:
            outcomes[index] = (name, type(exc).__name__)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run, args=(i, name, fn)) for i, (name, fn) in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return dict(outcomes)


@pytest.mark.parametrize("attempt", range(5))
def test_two_signers_and_a_rollback_race_on_one_canary(role_user, attempt):
    owner = role_user(Role.MODEL_OWNER, username="owner")
    mrm = role_user(Role.MRM, username="mrm")
    platform = role_user(Role.PLATFORM, username="platform")
    services.model_register(actor=platform, name="m", display_name="m", risk_tier="high", owner="owner", on_call="x")
    services.version_register(actor=platform, model_name="m", version="1.0.0", artifact_uri="s3://1", status="production")
    services.version_register(actor=platform, model_name="m", version="1.1.0", artifact_uri="s3://2")
    start = timezone.now() - timedelta(hours=50)
    canary = lifecycle.canary_initiate(actor=platform, model_name="m", version="1.1.0", schedule="conservative", now=start)
    for who, role in ((owner, "owner"), (mrm, "mrm")):
        lifecycle.canary_sign(actor=who, canary_id=canary.pk, role=role, statement="approve the start", password=PASSWORD, now=start)
    canary.refresh_from_db()
    evaluation = make_evaluation(canary, window_end=timezone.now())

    def signer(user, role):
        return lambda: lifecycle.canary_sign(
            actor=user, canary_id=canary.pk, role=role, statement="approve the promotion", password=PASSWORD,
            evaluation_hash=evaluation.content_hash,
        )

    outcomes = _race(
        ("owner", signer(owner, "owner")),
        ("mrm", signer(mrm, "mrm")),
        ("rollback", lambda: lifecycle.canary_rollback(actor=owner, canary_id=canary.pk, reason="race")),
    )
    canary.refresh_from_db()
    assert outcomes["rollback"] == "ok"
    assert (canary.state, canary.traffic_percent) == (Canary.State.ROLLED_BACK, 0)
    promotion_signatures = Approval.objects.filter(canary=canary, step="promote:0->1")
    signed_ok = [name for name in ("owner", "mrm") if outcomes[name] == "ok"]
    assert sorted(promotion_signatures.values_list("role", flat=True)) == sorted(signed_ok)
    promoted = AuditEvent.objects.filter(action="canary.promoted").count()
    assert promoted == (1 if len(signed_ok) == 2 else 0)  # both signatures, or no promotion at all
    assert canary.stage_index == promoted
    assert AuditEvent.objects.filter(action="canary.signed").count() == 2 + len(signed_ok)
    assert AuditEvent.objects.filter(action="canary.rolled_back").count() == 1
    assert audit_verify().ok


def test_two_initiations_of_one_model_race_to_one_canary(role_user):
    platform = role_user(Role.PLATFORM, username="platform")
    role_user(Role.MODEL_OWNER, username="owner")
    services.model_register(actor=platform, name="m", display_name="m", risk_tier="low", owner="owner", on_call="x")
    services.version_register(actor=platform, model_name="m", version="1.0.0", artifact_uri="s3://1", status="production")
    services.version_register(actor=platform, model_name="m", version="1.1.0", artifact_uri="s3://2")
    services.version_register(actor=platform, model_name="m", version="1.2.0", artifact_uri="s3://3")
    outcomes = _race(
        *[(f"v{v}-{i}", (lambda v=v: lifecycle.canary_initiate(actor=platform, model_name="m", version=v)))
          for i, v in enumerate(["1.1.0", "1.2.0", "1.1.0", "1.2.0"])]
    )
    assert sorted(outcomes.values()).count("ok") == 1
    assert set(outcomes.values()) == {"ok", "Conflict"}
    assert Canary.objects.count() == 1
    assert AuditEvent.objects.filter(action="canary.initiated").count() == 1
    assert audit_verify().ok
