import pytest

from releases.canaries.approvals import (
    SignatureRole,
    Step,
    StepKind,
    outstanding_signatures,
    promotion_step,
    required_signatures,
    signature_conflicts,
)
from releases.canaries.schedules import expand_schedule

NONE: frozenset[str] = frozenset()
OWNER = frozenset({"owner"})
BOTH = frozenset({"owner", "mrm"})

START = Step.start()
MIDDLE = Step.promotion(from_index=0, to_final=False)
LATE_MIDDLE = Step.promotion(from_index=3, to_final=False)
FINAL = Step.promotion(from_index=4, to_final=True)


# --- required_signatures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "risk_tier", "expected"),
    [
        # a low/medium canary starts at 1 % as soon as it is initiated
        (START, "low", NONE),
        (START, "medium", NONE),
        # a high-risk one waits for the owner and MRM before any traffic
        (START, "high", BOTH),
        # advancing always needs the owner; high risk adds MRM at every stage
        (MIDDLE, "low", OWNER),
        (MIDDLE, "medium", OWNER),
        (MIDDLE, "high", BOTH),
        (LATE_MIDDLE, "low", OWNER),
        (LATE_MIDDLE, "medium", OWNER),
        (LATE_MIDDLE, "high", BOTH),
        # the final step to 100 % needs the initial-deployment chain whatever the tier
        (FINAL, "low", BOTH),
        (FINAL, "medium", BOTH),
        (FINAL, "high", BOTH),
    ],
)
def test_required_signatures(step, risk_tier, expected):
    assert required_signatures(step=step, risk_tier=risk_tier) == expected


def test_required_signatures_refuses_an_unknown_tier():
    with pytest.raises(ValueError):
        required_signatures(step=MIDDLE, risk_tier="extreme")


@pytest.mark.parametrize(
    ("kind", "risk_tier", "expected"),
    [
        ("standard", "low", [OWNER, OWNER, OWNER, OWNER, BOTH]),
        ("accelerated", "low", [OWNER, OWNER, BOTH]),
        ("conservative", "medium", [OWNER, OWNER, OWNER, OWNER, OWNER, BOTH]),
        ("cohort_first", "medium", [OWNER, BOTH]),
        ("standard", "high", [BOTH] * 5),
    ],
)
def test_every_promotion_of_a_schedule(kind, risk_tier, expected):
    stages = expand_schedule(kind, risk_tier=risk_tier, clock_speed=1)
    got = [
        required_signatures(step=promotion_step(stages, from_index=i), risk_tier=risk_tier)
        for i in range(len(stages) - 1)
    ]
    assert got == expected


def test_promotion_step_knows_the_final_stage():
    stages = expand_schedule("cohort_first", risk_tier="low", clock_speed=1)
    # The cohort stages run at 100 % of their cohorts; only the last one is everyone.
    assert promotion_step(stages, from_index=0) == Step(kind=StepKind.PROMOTE, to_index=1, to_final=False)
    assert promotion_step(stages, from_index=1) == Step(kind=StepKind.PROMOTE, to_index=2, to_final=True)
    with pytest.raises(ValueError):
        promotion_step(stages, from_index=2)
    with pytest.raises(ValueError):
        promotion_step(stages, from_index=-1)


@pytest.mark.parametrize(
    ("step", "key", "from_index"),
    [(START, "start", None), (MIDDLE, "promote:0->1", 0), (FINAL, "promote:4->5", 4)],
)
def test_step_key(step, key, from_index):
    assert step.key == key
    assert step.from_index == from_index


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "start", "to_index": 1, "to_final": False},
        {"kind": "start", "to_index": 0, "to_final": True},
        {"kind": "promote", "to_index": 0, "to_final": False},
        {"kind": "approve", "to_index": 1, "to_final": False},
    ],
)
def test_impossible_steps_are_refused(kwargs):
    with pytest.raises(ValueError):
        Step(**kwargs)


def test_step_accepts_the_kind_as_a_string():
    assert Step(kind="start", to_index=0, to_final=False) == START


@pytest.mark.parametrize(
    ("required", "signed", "expected"),
    [
        (NONE, {}, NONE),
        (OWNER, {}, OWNER),
        (OWNER, {"owner": 1}, NONE),
        (BOTH, {"owner": 1}, frozenset({"mrm"})),
        (BOTH, {"mrm": 2}, OWNER),
        (BOTH, {"owner": 1, "mrm": 2}, NONE),
        (OWNER, {"mrm": 2}, OWNER),
    ],
)
def test_outstanding_signatures(required, signed, expected):
    assert outstanding_signatures(required=required, signed=signed) == expected


# --- signature_conflicts -------------------------------------------------------------------------

OWNER_ID, MRM_ID, OTHER_MRM_ID, INITIATOR_ID, BOT_ID, STRANGER_ID = 1, 2, 3, 4, 5, 6


def sign(role, signer_id, **overrides):
    kwargs = {
        "role": role,
        "signer_id": signer_id,
        "initiator_id": INITIATOR_ID,
        "other_signatures": {},
        "is_service_account": False,
        "is_model_owner": signer_id == OWNER_ID,
        "has_mrm_role": signer_id in (MRM_ID, OTHER_MRM_ID),
    }
    kwargs.update(overrides)
    return signature_conflicts(**kwargs)


@pytest.mark.parametrize(
    ("role", "signer_id", "overrides"),
    [
        ("owner", OWNER_ID, {}),
        ("owner", OWNER_ID, {"other_signatures": {"mrm": MRM_ID}}),
        ("owner", OWNER_ID, {"initiator_id": OWNER_ID}),  # the owner usually initiates, and still signs
        ("owner", OWNER_ID, {"initiator_id": None}),
        ("mrm", MRM_ID, {}),
        ("mrm", MRM_ID, {"other_signatures": {"owner": OWNER_ID}}),
        ("mrm", MRM_ID, {"initiator_id": None}),
        ("mrm", OTHER_MRM_ID, {"other_signatures": {"owner": OWNER_ID}, "initiator_id": OWNER_ID}),
        (SignatureRole.MRM, MRM_ID, {}),
    ],
)
def test_allowed_signatures(role, signer_id, overrides):
    assert sign(role, signer_id, **overrides) is None


@pytest.mark.parametrize(
    ("role", "signer_id", "overrides", "reason"),
    [
        # roles
        ("admin", OWNER_ID, {}, "unknown signature role"),
        ("", OWNER_ID, {}, "unknown signature role"),
        # service accounts never sign, whatever they are members of
        ("owner", BOT_ID, {"is_service_account": True, "is_model_owner": True}, "service accounts"),
        ("mrm", BOT_ID, {"is_service_account": True, "has_mrm_role": True}, "service accounts never sign"),
        # one signature per role per step
        ("owner", OWNER_ID, {"other_signatures": {"owner": OWNER_ID}}, "already signed this step as owner"),
        ("mrm", MRM_ID, {"other_signatures": {"mrm": MRM_ID}}, "already signed this step as mrm"),
        ("mrm", OTHER_MRM_ID, {"other_signatures": {"mrm": MRM_ID}}, "already has its mrm signature"),
        ("owner", OWNER_ID, {"other_signatures": {"owner": STRANGER_ID}}, "already has its owner signature"),
        # owner signature only by the model's owner
        ("owner", STRANGER_ID, {}, "only the model's owner may sign as owner"),
        ("owner", MRM_ID, {}, "only the model's owner may sign as owner"),
        ("owner", INITIATOR_ID, {}, "only the model's owner may sign as owner"),
        # mrm only by a member of the MRM role
        ("mrm", STRANGER_ID, {}, "only a member of the MRM role"),
        ("mrm", OWNER_ID, {}, "only a member of the MRM role"),
        # the MRM signer is never the owner: not the model's owner ...
        ("mrm", OWNER_ID, {"has_mrm_role": True}, "the model's owner may not give its MRM sign-off"),
        # ... nor the person who signed as owner for this step (e.g. ownership changed since) ...
        (
            "mrm", MRM_ID, {"other_signatures": {"owner": MRM_ID}},
            "you signed this step as owner; the MRM sign-off must come from another person",
        ),
        # ... in either order ...
        (
            "owner", OWNER_ID, {"other_signatures": {"mrm": OWNER_ID}},
            "you gave this step's MRM sign-off",
        ),
        # ... nor the initiator
        ("mrm", MRM_ID, {"initiator_id": MRM_ID}, "you initiated this canary"),
        ("mrm", MRM_ID, {"initiator_id": MRM_ID, "other_signatures": {"owner": OWNER_ID}}, "you initiated"),
    ],
)
def test_refused_signatures(role, signer_id, overrides, reason):
    refusal = sign(role, signer_id, **overrides)
    assert refusal is not None and reason in refusal
