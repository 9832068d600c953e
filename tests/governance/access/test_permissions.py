"""The permission matrix: every role × every action, on a model the user owns and one they
don't, allowed and refused. The expected table is written out here independently of the
implementation's own tables, so a change to either shows up as a failure."""

from __future__ import annotations

import pytest

from canaryhub.errors import PermissionRefused
from governance.access.permissions import Action, Principal, Role, decide, require
from tests.factories import AIModelFactory, UserFactory

A = Action
ALL = set(Action)

# role -> (actions allowed on any model, actions allowed only on a model the user owns)
EXPECTED: dict[Role, tuple[set[Action], set[Action]]] = {
    Role.MODEL_OWNER: (
        {A.VIEW, A.VERIFY_AUDIT},
        {A.REGISTER_MODEL, A.CHANGE_MODEL, A.REGISTER_VERSION, A.CHANGE_VERSION, A.START_CANARY,
         A.ABORT_CANARY, A.ROLLBACK_CANARY, A.REVERT_CANARY, A.SIGN_OWNER, A.EXPORT_EVIDENCE,
         A.APPROVE_REINITIATION, A.REQUEST_THRESHOLD_CHANGE},
    ),
    Role.PLATFORM: (
        {A.VIEW, A.REGISTER_MODEL, A.CHANGE_MODEL, A.REGISTER_VERSION, A.CHANGE_VERSION, A.CONFIGURE_METRICS,
         A.START_CANARY, A.ABORT_CANARY, A.ROLLBACK_CANARY, A.REVERT_CANARY, A.PUSH_OBSERVATIONS, A.FILE_ROOT_CAUSE,
         A.EXPORT_EVIDENCE, A.VERIFY_AUDIT, A.MANAGE_ROUTERS, A.MANAGE_TOKENS, A.REQUEST_THRESHOLD_CHANGE,
         A.MANAGE_NOTIFICATIONS, A.CLEAR_STICKY, A.URGENT_PATCH},
        set(),
    ),
    Role.MRM: ({A.VIEW, A.SIGN_MRM, A.ACCEPT_ROOT_CAUSE, A.EXPORT_EVIDENCE, A.VERIFY_AUDIT, A.REVIEW_THRESHOLD_CHANGE,
              A.RESOLVE_ESCALATION}, set()),
    Role.AI_GOVERNANCE: ({A.VIEW, A.ISSUE_CERTIFICATE, A.EXPORT_EVIDENCE, A.VERIFY_AUDIT, A.REVIEW_THRESHOLD_CHANGE,
                        A.RESOLVE_ESCALATION}, set()),
    Role.RISK_OFFICER: ({A.VIEW, A.EXPORT_EVIDENCE, A.VERIFY_AUDIT}, set()),
    Role.ON_CALL: ({A.VIEW, A.FILE_ROOT_CAUSE, A.VERIFY_AUDIT, A.BREAK_GLASS}, set()),
    Role.AUDITOR: ({A.VIEW, A.EXPORT_EVIDENCE, A.VERIFY_AUDIT}, set()),
}
# By token purpose: a CI token never pushes the numbers that judge canaries; an observations
# token does nothing else.
SERVICE_ACCOUNT_ALLOWED = {
    "ci": {A.VIEW, A.REGISTER_VERSION, A.CHANGE_VERSION, A.START_CANARY, A.ABORT_CANARY},
    "observations": {A.VIEW, A.PUSH_OBSERVATIONS},
}

CASES = [
    (role, action, owns)
    for role in EXPECTED
    for action in Action
    for owns in (True, False)
]


@pytest.mark.django_db
@pytest.mark.parametrize(("role", "action", "owns"), CASES, ids=[f"{r}-{a}-{'own' if o else 'other'}" for r, a, o in CASES])
def test_matrix_for_people(role_user, role: Role, action: Action, owns: bool):
    user = role_user(role)
    model = AIModelFactory(owner=user if owns else UserFactory())
    any_model, own_model = EXPECTED[role]
    expected = action in any_model or (owns and action in own_model)
    decision = decide(user, action, model=model)
    assert decision.allowed is expected, decision.reason
    if not expected:
        with pytest.raises(PermissionRefused):
            require(user, action, model=model)
        assert decision.reason  # a refusal always says why


SA_CASES = [(purpose, action, scoped) for purpose in SERVICE_ACCOUNT_ALLOWED for action in Action
            for scoped in (True, False)]


@pytest.mark.django_db
@pytest.mark.parametrize(("purpose", "action", "scoped"), SA_CASES,
                         ids=[f"{p}-{a}-{'in' if s else 'out'}-of-scope" for p, a, s in SA_CASES])
def test_matrix_for_service_accounts(role_user, purpose: str, action: Action, scoped: bool):
    user = role_user(Role.SERVICE_ACCOUNT)
    model = AIModelFactory()
    principal = Principal(user=user, scope=frozenset({model.pk}) if scoped else frozenset(), token_prefix="abc",
                          token_purpose=purpose)
    expected = action in SERVICE_ACCOUNT_ALLOWED[purpose] and scoped
    assert decide(principal, action, model=model).allowed is expected


@pytest.mark.django_db
@pytest.mark.parametrize("action", [A.SIGN_OWNER, A.SIGN_MRM, A.ISSUE_CERTIFICATE, A.ACCEPT_ROOT_CAUSE,
                                    A.APPROVE_REINITIATION, A.REVIEW_THRESHOLD_CHANGE])
def test_service_accounts_never_sign_even_if_also_in_a_human_role(role_user, action):
    user = role_user(Role.SERVICE_ACCOUNT, Role.MODEL_OWNER, Role.MRM, Role.AI_GOVERNANCE)
    model = AIModelFactory(owner=user)
    decision = decide(Principal(user=user, scope=frozenset({model.pk})), action, model=model)
    assert not decision.allowed
    assert "human" in decision.reason


@pytest.mark.django_db
def test_user_without_role_may_do_nothing(db):
    user = UserFactory()
    model = AIModelFactory(owner=user)
    assert not any(decide(user, action, model=model).allowed for action in Action)


@pytest.mark.django_db
def test_inactive_user_may_do_nothing(role_user):
    user = role_user(Role.PLATFORM)
    user.is_active = False
    model = AIModelFactory()
    assert not any(decide(user, action, model=model).allowed for action in Action)


@pytest.mark.django_db
def test_superuser_flag_grants_nothing(db):
    user = UserFactory(is_superuser=True, is_staff=True)
    assert not decide(user, A.REGISTER_MODEL, model=AIModelFactory()).allowed


@pytest.mark.django_db
def test_owner_refusal_names_the_model(role_user):
    user = role_user(Role.MODEL_OWNER)
    model = AIModelFactory(name="fraud-scorer")
    assert "fraud-scorer" in decide(user, A.START_CANARY, model=model).reason
