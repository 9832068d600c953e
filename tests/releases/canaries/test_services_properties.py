"""Property-based test of the canary lifecycle: random sequences of actions by random people
(and machines) must never break the pattern's invariants, whatever is refused along the way.

Invariants checked after every action:
- a canary never serves more than its current stage's percent (and exactly that while serving;
  0 % before it starts and after it stops);
- no stage is ever entered without every signature its step requires;
- a model never has two active canaries;
- a rolled-back or aborted canary never moves again;
- the audit chain verifies.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from canaryhub.errors import DomainError
from governance.access.permissions import Principal, Role
from governance.audit.services import audit_verify
from releases.canaries import approvals as rules
from releases.canaries import selectors as canary_selectors
from releases.canaries import services as lifecycle
from releases.canaries import states
from releases.canaries.models import Approval, Canary
from releases.register import services
from releases.register.models import AIModel
from tests.factories import PASSWORD, make_evaluation

State = Canary.State
PEOPLE = ["owner", "platform", "mrm", "mrm2", "risk", "bot"]
MODELS = {"low-m": "low", "medium-m": "medium", "high-m": "high"}

SIGNERS = ["owner", "owner", "mrm", "mrm", "mrm2", "platform", "risk", "bot"]

actions = st.one_of(
    # "ready": residence served and a fresh green evaluation, so that sequences reach later stages.
    st.tuples(st.just("ready")),
    st.tuples(st.just("ready+sign"), st.sampled_from(SIGNERS), st.sampled_from(["owner", "mrm"])),
    st.tuples(st.just("ready+sign"), st.just("owner"), st.just("owner")),
    st.tuples(st.just("sign"), st.sampled_from(SIGNERS), st.sampled_from(["owner", "mrm"]), st.sampled_from([True, True, False])),
    st.tuples(st.just("initiate"), st.sampled_from(PEOPLE), st.sampled_from(list(MODELS)),
              st.sampled_from(["standard", "conservative", "accelerated"])),
    st.tuples(st.just("evaluate"), st.sampled_from(["green", "green", "red", "insufficient"])),
    st.tuples(st.just("wait"), st.sampled_from([1, 12, 25, 49])),
    st.tuples(st.just("reconcile")),
    st.tuples(st.just("rollback"), st.sampled_from(PEOPLE)),
    st.tuples(st.just("abort"), st.sampled_from(PEOPLE)),
)


@pytest.fixture
def world(role_user):
    people = {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "mrm2": role_user(Role.MRM, username="mrm2"),
        "risk": role_user(Role.RISK_OFFICER, username="risk"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="bot"),
    }
    for name, tier in MODELS.items():
        services.model_register(actor=people["platform"], name=name, display_name=name, risk_tier=tier, owner="owner", on_call="x")
        services.version_register(actor=people["platform"], model_name=name, version="1.0.0", artifact_uri="s3://1", status="production")
        for minor in range(1, 4):
            services.version_register(actor=people["platform"], model_name=name, version=f"1.{minor}.0", artifact_uri="s3://n")
    people["bot"] = Principal(user=people["bot"], scope=frozenset(AIModel.objects.values_list("pk", flat=True)))
    return people


def _check_invariants(frozen: dict[int, tuple]) -> None:
    for canary in Canary.objects.select_related("model"):
        stages = canary_selectors.canary_stages(canary)
        stage = stages[canary.stage_index]
        assert canary.traffic_percent <= stage.percent
        if canary.state in states.SERVING or canary.state == State.COMPLETED:
            assert canary.traffic_percent == stage.percent
        if canary.state in (State.PENDING_APPROVAL, State.ROLLED_BACK, State.ABORTED):
            assert canary.traffic_percent == 0
        # Every stage entered was entered through a fully signed step.
        entered = canary.stage_index if canary.stage_entered_at else -1
        signed = {}
        for approval in Approval.objects.filter(canary=canary):
            signed.setdefault(approval.step, set()).add(approval.role)
        if canary.stage_entered_at is not None:
            start_roles = {r.value for r in rules.required_signatures(step=rules.Step.start(), risk_tier=canary.model.risk_tier)}
            assert start_roles <= signed.get("start", set())
        for index in range(1, entered + 1):
            step = rules.promotion_step(stages, from_index=index - 1)
            required = {r.value for r in rules.required_signatures(step=step, risk_tier=canary.model.risk_tier)}
            assert required <= signed.get(step.key, set()), (canary.pk, step.key, signed)
        if canary.pk in frozen:
            assert frozen[canary.pk] == (canary.state, canary.stage_index, canary.traffic_percent)
        if canary.state in (State.ROLLED_BACK, State.ABORTED):
            frozen[canary.pk] = (canary.state, canary.stage_index, canary.traffic_percent)
    for model in AIModel.objects.all():
        assert model.canaries.filter(state__in=states.ACTIVE).count() <= 1


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@example(  # the whole way: a medium-risk canary promoted to 100 % with the final owner + MRM chain
    first=("initiate", "owner", "low-m", "accelerated"),
    rest=[("ready",), ("sign", "owner", "owner", True)] * 2 + [("ready",), ("sign", "owner", "owner", True), ("sign", "mrm", "mrm", True)],
)
@example(  # high risk: start signed by owner and MRM, promoted, then rolled back and poked at
    first=("initiate", "platform", "high-m", "conservative"),
    rest=[("sign", "owner", "owner", False), ("sign", "mrm", "mrm", False), ("ready",), ("sign", "owner", "owner", True),
          ("sign", "mrm2", "mrm", True), ("rollback", "owner"), ("ready",), ("sign", "owner", "owner", True), ("abort", "owner")],
)
@given(
    first=st.tuples(st.just("initiate"), st.sampled_from(["owner", "platform", "bot"]), st.sampled_from(list(MODELS)),
                    st.sampled_from(["standard", "conservative", "accelerated"])),
    rest=st.lists(actions, min_size=1, max_size=40),
)
def test_no_sequence_of_actions_breaks_the_rules(world, first, rest):
    steps = [first, *rest]
    now = timezone.now().replace(microsecond=0) - timedelta(days=60)
    frozen: dict[int, tuple] = {}
    with transaction.atomic():
        for step in steps:
            kind = step[0]
            current = Canary.objects.filter(state__in=states.ACTIVE).order_by("-pk").first()
            try:
                if kind == "initiate":
                    _, who, model, schedule = step
                    version = AIModel.objects.get(name=model).versions.filter(status="registered").first()
                    if version is not None:
                        lifecycle.canary_initiate(
                            actor=world[who], model_name=model, version=version.version, schedule=schedule,
                            rationale="Shadow evidence shows parity across all metrics.", shadow_evidence_ref="shadow-1",
                            now=now,
                        )
                elif current is None:
                    pass
                elif kind in ("sign", "ready+sign"):
                    if kind == "ready+sign":
                        now += timedelta(hours=49)
                        if current.stage_entered_at is not None:
                            make_evaluation(current, status="green", window_end=now)
                        step = (*step, True)
                    _, who, role, with_hash = step
                    latest = canary_selectors.latest_evaluation(current)
                    lifecycle.canary_sign(
                        actor=world[who], canary_id=current.pk, role=role, password=PASSWORD,
                        statement="Reviewed the evaluation; approve.",
                        evaluation_hash=latest.content_hash if (latest and with_hash) else "", now=now,
                    )
                elif kind == "evaluate":
                    already = current.evaluations.filter(stage_index=current.stage_index, window_end=now).exists()
                    if current.stage_entered_at is not None and not already:
                        make_evaluation(current, status=step[1], window_end=now)
                elif kind == "ready":
                    now += timedelta(hours=49)
                    if current.stage_entered_at is not None:
                        make_evaluation(current, status="green", window_end=now)
                elif kind == "wait":
                    now += timedelta(hours=step[1])
                elif kind == "reconcile":
                    lifecycle.canary_reconcile(canary_id=current.pk, now=now)
                elif kind == "rollback":
                    lifecycle.canary_rollback(actor=world[step[1]], canary_id=current.pk, reason="property test")
                elif kind == "abort":
                    lifecycle.canary_abort(actor=world[step[1]], canary_id=current.pk, reason="property test")
            except DomainError:
                pass  # a refusal is a fine outcome; the invariants below are what matter  # a refusal is a fine outcome; the invariants below are what matter
            _check_invariants(frozen)
        assert audit_verify().ok
        furthest = max(Canary.objects.values_list("stage_index", flat=True), default=-1)
        event(f"furthest stage reached: {furthest}")
        event(f"states seen: {sorted(set(Canary.objects.values_list('state', flat=True)))}")
        transaction.set_rollback(True)  # each example starts from the same register
