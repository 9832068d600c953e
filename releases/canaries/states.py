"""A canary's states: the one place that names them, groups them, says which moves between
them are allowed, which state a serving canary's readiness calls for, and what a person may do
in each. Everything else uses these names; nothing spells a group out again.

    initiate ─┬─> pending_approval ──(start signatures)──┐
              └──────────────────────────────────────────┴─> running
    running ──(residence over, gates green)──> awaiting_approval ──(last signature)──> running (next stage)
    running/awaiting_approval ──(residence over, gates not green)──> held ──(green again)──> awaiting_approval
    the last signature into the final 100 % stage ──> completed ──(certificate)──> certified
    completed/certified, while the post-promotion watch lasts ──(revert)──> reverted
    any active state ──(rollback)──> rolled_back;  ──(abort)──> aborted
    running/awaiting_approval/held ──(monitor silent)──> suspended ──(monitor back)──> previous

Pure: no database, no clock.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from django.db import models


class CanaryState(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    RUNNING = "running", "Running"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    HELD = "held", "Held"
    SUSPENDED = "suspended", "Suspended"
    COMPLETED = "completed", "Completed"
    CERTIFIED = "certified", "Certified"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ABORTED = "aborted", "Aborted"
    REVERTED = "reverted", "Reverted after completion"


State = CanaryState

# Serving, and not suspended: the stage's readiness decides between these three (reconcile), the
# dead-man's switch suspends them, and a promotion step may be signed in them.
ADVANCING = frozenset({State.RUNNING, State.AWAITING_APPROVAL, State.HELD})
# Serving users at the stage's percent: rollback triggers apply and the evaluator watches them.
SERVING = ADVANCING | {State.SUSPENDED}
# Not ended: a model has at most one (a database constraint backs it), and it can be aborted.
ACTIVE = SERVING | {State.PENDING_APPROVAL}
# A step that may collect signatures now (readiness permitting): the start, or a promotion.
SIGNABLE = ADVANCING | {State.PENDING_APPROVAL}
# Stopped before completion: every user is back on production (0 %).
STOPPED = frozenset({State.ROLLED_BACK, State.ABORTED})
# Reached 100 %: the version is production (for as long as the watch after it is not reverted).
COMPLETE = frozenset({State.COMPLETED, State.CERTIFIED})
# Every user is on the version the canary was compared with (0 %): stopped before completion, or
# reverted after it. The router push that gets there is held to the rollback SLO.
AT_ZERO = STOPPED | {State.REVERTED}
# Nothing more happens to the canary (a certified one may still be reverted while it is watched).
TERMINAL = AT_ZERO
# Whose page keeps refreshing itself: anything that can still change without the viewer (a
# completed canary still becomes certified; a watched one may still be reverted).
LIVE = ACTIVE | COMPLETE

# Which state may follow which. A serving state may "move" to itself: a promotion enters the next
# stage as running again.
TRANSITIONS: dict[str, frozenset[str]] = {
    State.PENDING_APPROVAL: frozenset({State.RUNNING, State.ABORTED}),
    State.RUNNING: ADVANCING | {State.SUSPENDED, State.COMPLETED, State.ROLLED_BACK, State.ABORTED},
    State.AWAITING_APPROVAL: ADVANCING | {State.SUSPENDED, State.COMPLETED, State.ROLLED_BACK, State.ABORTED},
    State.HELD: ADVANCING | {State.SUSPENDED, State.COMPLETED, State.ROLLED_BACK, State.ABORTED},
    State.SUSPENDED: ADVANCING | {State.ROLLED_BACK, State.ABORTED},
    State.COMPLETED: frozenset({State.CERTIFIED, State.REVERTED}),
    State.CERTIFIED: frozenset({State.REVERTED}),
    State.ROLLED_BACK: frozenset(),
    State.ABORTED: frozenset(),
    State.REVERTED: frozenset(),
}


def may_become(current: str, target: str) -> bool:
    return target in TRANSITIONS[State(current)]


def reconcile_target(*, ready: bool, reason: str, residence_remaining: timedelta) -> tuple[str, str]:
    """The state (and hold reason) a serving, unsuspended canary's readiness calls for: awaiting
    approval when its stage may be signed, running while the minimum residence lasts, held (with
    the reason) when the residence is over but the gates are not green."""
    if ready:
        return State.AWAITING_APPROVAL, ""
    if residence_remaining > timedelta(0):
        return State.RUNNING, ""
    return State.HELD, reason[:300]


class Act(StrEnum):
    """What a person can do to a canary (the buttons its page offers, permission allowing)."""

    SIGN = "sign"
    ROLLBACK = "rollback"
    ABORT = "abort"
    CERTIFY = "certify"
    REQUEST_THRESHOLD_CHANGE = "request_threshold_change"
    REVERT = "revert"


_ACTS: dict[Act, frozenset[str]] = {
    Act.SIGN: SIGNABLE,
    Act.ROLLBACK: SERVING,
    Act.ABORT: ACTIVE,
    Act.CERTIFY: frozenset({State.COMPLETED}),
    Act.REQUEST_THRESHOLD_CHANGE: ACTIVE,
    Act.REVERT: COMPLETE,
}


def allows(state: str, act: Act, *, standby: str = "") -> bool:
    """Whether a canary in `state` allows `act` at all (who may do it is governance.access's).
    A revert also needs the previous version still on standby (`standby` "watching")."""
    if act is Act.REVERT and standby != Standby.WATCHING:
        return False
    return State(state) in _ACTS[act]


# --- after 100 %: the post-promotion watch and the previous version's hot standby -----------------
#
#     (none) ──(completed)──> watching ──(watch period over, no breach)──> released
#                             watching ──(revert: by hand, or a breach of the rollback rule)──> used
#
# While "watching", the control loop judges the new production version against the previous
# version's numbers from the canary's last stages, with the rollback rule, and the previous
# version's servers are kept: a revert pushes 100 % back to it at once. "released": the watch is
# over and the standby may be taken down. "used": the canary was reverted (state `reverted`).


class Standby(models.TextChoices):
    NONE = "", "No standby"
    WATCHING = "watching", "Watched; the previous version is on hot standby"
    RELEASED = "released", "Watch over; the previous version's standby is released"
    USED = "used", "Reverted to the previous version"


STANDBY_TRANSITIONS: dict[str, frozenset[str]] = {
    Standby.NONE: frozenset({Standby.WATCHING}),
    Standby.WATCHING: frozenset({Standby.RELEASED, Standby.USED}),
    Standby.RELEASED: frozenset(),
    Standby.USED: frozenset(),
}


def standby_may_become(current: str, target: str) -> bool:
    return target in STANDBY_TRANSITIONS[Standby(current)]


def watched(state: str, standby: str) -> bool:
    """Whether the control loop judges this canary after its completion."""
    return State(state) in COMPLETE and standby == Standby.WATCHING


# A threshold change request's moves (releases.canaries.models.ThresholdChangeRequest.Status):
# reviewed (approved by AI Governance and MRM, or rejected), applied when the canary next enters a
# stage, or lapsed when the canary ends first.
THRESHOLD_CHANGE_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"pending", "approved", "rejected", "lapsed"}),
    "approved": frozenset({"applied", "lapsed"}),
    "rejected": frozenset(),
    "applied": frozenset(),
    "lapsed": frozenset(),
}
# Still able to take effect: under review, or approved and waiting for the next stage.
THRESHOLD_CHANGE_OPEN = frozenset({"pending", "approved"})


def threshold_change_may_become(current: str, target: str) -> bool:
    return target in THRESHOLD_CHANGE_TRANSITIONS[current]
