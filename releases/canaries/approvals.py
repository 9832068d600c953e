"""Who must sign each step of a canary, and whose signature is refused (pure rules).

The pattern (seed 000, §4.1, §9.3) and DESIGN.md "Approvals":

| step                         | low / medium risk | high risk     |
|------------------------------|-------------------|---------------|
| start (traffic to stage 0)   | nobody            | owner + mrm   |
| promotion to a middle stage  | owner             | owner + mrm   |
| promotion to the final 100 % | owner + mrm       | owner + mrm   |

- Advancing always needs the model owner's signature (§9.3).
- High-risk models need the model-risk function's sign-off at every stage and before any traffic
  reaches the canary (§4.1).
- The final step to 100 % needs the chain of an initial deployment, which is owner + MRM, for
  every tier (§9.3).
- A low- or medium-risk canary starts at 1 % the moment it is initiated: the 1 % stage is the
  pattern's sanity check, and initiation is itself authorised (and audited) as an action.
- Starting a high-risk canary needs the owner's signature as well as MRM's. Initiating is not an
  e-signature: a CI service account or a platform engineer may initiate, and the initiation
  record is the model owner's artefact (§9.4). Asking for the owner's signature means a named,
  re-authenticated owner has accepted the exposure whoever pressed the button, and it gives the
  MRM sign-off the distinct owner signer that segregation of duties compares it with.

Signatures are refused (`signature_conflicts`) when they break segregation of duties: service
accounts never sign; only the model's owner signs as owner; only an MRM member signs as mrm; the
MRM signer is never the model's owner, nor the person who signed as owner for the same step, nor
the canary's initiator; a step takes one signature per role.

`signing_refusal` is the one answer to "may this person give this signature on the canary's step
now, and if not, why": the signing service, the API's readiness and the page's refusal text all
ask it. Its checks, in order (the reason given is the first that applies):

1. the signer is a service account (403), or the permission table refuses the role's signature
   on this model (403);
2. the canary takes no more signed steps, or is suspended (409);
3. the step needs no signature of this role (409);
4. segregation of duties (`signature_conflicts`, 403);
5. a promotion whose stage is not ready: residence, gates, fresh data (409).

`void_reasons` says which signatures already given on a promotion no longer count: every
signature that completes a step must be on an evaluation of the stage being left, and no red or
stale evaluation of that stage may come after it. A signature on the green evaluation of Monday
does not approve the stage after Tuesday's red one: it is voided (kept on record, marked void,
the signer told) and the role signs again on a newer evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from releases.canaries.schedules import Stage


class SignatureRole(StrEnum):
    OWNER = "owner"
    MRM = "mrm"


class StepKind(StrEnum):
    START = "start"
    PROMOTE = "promote"


@dataclass(frozen=True)
class Step:
    """What a set of signatures approves: the start of the canary (traffic to stage 0), or the
    promotion into stage `to_index`. `to_final` says the target stage is the final 100 %."""

    kind: StepKind
    to_index: int
    to_final: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", StepKind(self.kind))  # accept the plain string too
        if self.kind is StepKind.START and (self.to_index != 0 or self.to_final):
            raise ValueError("the start step enters stage 0, which is never final")
        if self.kind is StepKind.PROMOTE and self.to_index < 1:
            raise ValueError("a promotion enters stage 1 or later")

    @classmethod
    def start(cls) -> Step:
        return cls(kind=StepKind.START, to_index=0, to_final=False)

    @classmethod
    def promotion(cls, *, from_index: int, to_final: bool) -> Step:
        return cls(kind=StepKind.PROMOTE, to_index=from_index + 1, to_final=to_final)

    @property
    def from_index(self) -> int | None:
        return None if self.kind is StepKind.START else self.to_index - 1

    @property
    def key(self) -> str:
        """A stable name for the step, to file its signatures under: "start", "promote:2->3"."""
        if self.kind is StepKind.START:
            return "start"
        return f"promote:{self.from_index}->{self.to_index}"


def promotion_step(stages: Sequence[Stage], *, from_index: int) -> Step:
    """The step that promotes out of `stages[from_index]`."""
    if not 0 <= from_index < len(stages) - 1:
        raise ValueError(f"stage {from_index} has no next stage to promote to")
    return Step.promotion(from_index=from_index, to_final=stages[from_index + 1].is_final)


def required_signatures(*, step: Step, risk_tier: str) -> frozenset[SignatureRole]:
    """The roles that must sign before the step happens (see the table in the module docstring)."""
    if risk_tier not in ("low", "medium", "high"):
        raise ValueError(f"unknown risk tier {risk_tier!r}")
    high = risk_tier == "high"
    if step.kind is StepKind.START:
        return frozenset({SignatureRole.OWNER, SignatureRole.MRM}) if high else frozenset()
    if high or step.to_final:
        return frozenset({SignatureRole.OWNER, SignatureRole.MRM})
    return frozenset({SignatureRole.OWNER})


def outstanding_signatures(
    *, required: frozenset[SignatureRole] | frozenset[str], signed: Mapping[str, Any]
) -> frozenset[SignatureRole]:
    """Required roles not yet signed; the step happens when this is empty."""
    return frozenset(SignatureRole(role) for role in required if role not in signed)


def signature_meaning(*, role: str, step: Step, stages: Sequence[Stage], canary_id: Any, version: str) -> str:
    """What a signature on `step` means, in the words recorded with it (and shown before signing)."""
    who = "Model owner" if role == SignatureRole.OWNER else "Model risk (MRM) validator"
    if step.kind is StepKind.START:
        return f"{who}: approves starting canary #{canary_id} of {version} at {stages[0].percent}% of traffic"
    target = stages[step.to_index]
    return (
        f"{who}: approves promoting canary #{canary_id} of {version} from {stages[step.to_index - 1].percent}% "
        f"to {target.percent}%{' (full rollout)' if target.is_final else ''}"
    )


def signature_conflicts(
    *,
    role: str,
    signer_id: Any,
    initiator_id: Any,
    other_signatures: Mapping[str, Any],
    is_service_account: bool,
    is_model_owner: bool,
    has_mrm_role: bool,
) -> str | None:
    """Why this person may not sign this role for this step, or None when they may.

    `other_signatures` maps the roles already signed for the same step to their signer ids.
    Checked in order, so the reason given is the most fundamental one.
    """
    if role not in {r.value for r in SignatureRole}:
        return f"unknown signature role {role!r}; expected owner or mrm"
    if is_service_account:
        return "service accounts never sign: an approval is a human act"
    if role in other_signatures:
        if other_signatures[role] == signer_id:
            return f"you have already signed this step as {role}"
        return f"this step already has its {role} signature"
    if role == SignatureRole.OWNER:
        if not is_model_owner:
            return "only the model's owner may sign as owner"
        if other_signatures.get(SignatureRole.MRM) == signer_id:
            return "you gave this step's MRM sign-off; the owner signature must come from another person"
        return None
    if not has_mrm_role:
        return "only a member of the MRM role may give the MRM sign-off"
    # Independent validation: the model-risk sign-off cannot come from the side that owns the model.
    if is_model_owner:
        return "the model's owner may not give its MRM sign-off"
    if other_signatures.get(SignatureRole.OWNER) == signer_id:
        return "you signed this step as owner; the MRM sign-off must come from another person"
    if initiator_id is not None and signer_id == initiator_id:
        return "you initiated this canary; the MRM sign-off must come from another person"
    return None


@dataclass(frozen=True)
class StepFacts:
    """What the canary says about signing its current step now (read by the caller)."""

    state: str
    step: Step | None  # None: the canary takes no more signed steps
    risk_tier: str
    initiator_id: Any
    owner_id: Any
    signed: Mapping[str, Any]  # role -> signer id, on this step
    stage_ready: bool  # the stage may be promoted now (residence, gates, fresh data)
    stage_reason: str


@dataclass(frozen=True)
class SignerFacts:
    """Who asks to sign (read by the caller): the permission table's answer for this role's
    signature on this model is part of it."""

    user_id: Any
    is_service_account: bool
    has_mrm_role: bool
    permitted: bool
    permission_reason: str


@dataclass(frozen=True)
class Refusal:
    status: int  # 403: this person may not; 409: the canary's state does not allow it now
    reason: str


def step_readiness(facts: StepFacts) -> tuple[bool, str]:
    """Whether the canary's current step may collect signatures now, and if not, why (whoever signs)."""
    if facts.step is None:
        return False, f"the canary is {facts.state}: it takes no more signed steps"
    if facts.state == "suspended":
        return False, "the canary is suspended: advancement waits until the monitor reports again"
    if facts.step.kind is StepKind.START:
        # The start needs signatures only; there is no stage residence or evaluation yet.
        return True, "the start of the canary awaits its signatures"
    return facts.stage_ready, facts.stage_reason


def signing_refusal(*, role: str, facts: StepFacts, signer: SignerFacts) -> Refusal | None:
    """Why this person may not give a `role` signature on the canary's current step now, or None
    when they may (the order of the checks: module docstring)."""
    if signer.is_service_account:
        return Refusal(403, "service accounts never sign: an approval is a human act")
    if not signer.permitted:
        return Refusal(403, signer.permission_reason)
    if facts.step is None or facts.state == "suspended":
        return Refusal(409, step_readiness(facts)[1])
    if role not in {r.value for r in required_signatures(step=facts.step, risk_tier=facts.risk_tier)}:
        return Refusal(409, f"step {facts.step.key} needs no {role} signature")
    conflict = signature_conflicts(
        role=role, signer_id=signer.user_id, initiator_id=facts.initiator_id, other_signatures=facts.signed,
        is_service_account=signer.is_service_account, is_model_owner=facts.owner_id == signer.user_id,
        has_mrm_role=signer.has_mrm_role,
    )
    if conflict:
        return Refusal(403, conflict)
    ready, reason = step_readiness(facts)
    if not ready:
        return Refusal(409, f"not ready for signatures: {reason}")
    return None


# Verdicts after a signature that void it: the stage went bad, or its data stopped arriving.
VOIDING_VERDICTS = frozenset({"red", "stale"})


@dataclass(frozen=True)
class EvaluationFacts:
    """What the rule reads of an evaluation: which stage, when its window ended, its verdict."""

    id: Any
    stage_index: int
    window_end: datetime
    verdict: str

    @property
    def order(self) -> tuple[datetime, Any]:
        return (self.window_end, self.id)


def void_reason(*, step: Step, signed_on: EvaluationFacts | None,
                evaluations: Sequence[EvaluationFacts]) -> str | None:
    """Why a signature given on `step`, on the evaluation `signed_on`, no longer counts — or
    None while it does. `evaluations`: the canary's evaluations (any order)."""
    if step.kind is StepKind.START:
        return None  # the start is signed before any traffic: there is no evaluation to be on
    if signed_on is None:
        return "it names no evaluation"
    if signed_on.stage_index != step.from_index:
        # Stages are numbered from 1 for people.
        return (f"it was given on an evaluation of stage {signed_on.stage_index + 1}, not of stage "
                f"{step.from_index + 1} that the step leaves")
    later = sorted(
        (e for e in evaluations
         if e.stage_index == step.from_index and e.order > signed_on.order and e.verdict in VOIDING_VERDICTS),
        key=lambda e: e.order,
    )
    if later:
        first = later[0]
        return f"evaluation #{first.id} of the stage, after the one signed on (#{signed_on.id}), is {first.verdict}"
    return None


def void_reasons(*, step: Step | None, signatures: Mapping[Any, EvaluationFacts | None],
                 evaluations: Sequence[EvaluationFacts]) -> dict[Any, str]:
    """The signatures of `step` (key -> the evaluation each was given on) that no longer count,
    with the reason for each."""
    if step is None:
        return {}
    reasons = {}
    for key, signed in signatures.items():
        reason = void_reason(step=step, signed_on=signed, evaluations=evaluations)
        if reason is not None:
            reasons[key] = reason
    return reasons
