"""A model version's status: its table of moves (pure). The one function that changes it is
releases.register.services.version_transition, which audits each move in the same transaction.

    registered ──(canary initiated)──> canary ──(canary completed)──> production ──(next one)──> deprecated
                                       canary ──(rolled back)──> rolled_back ──(re-initiated)──> canary
                                       canary ──(aborted)──> registered
    after a completion, while the previous version is on hot standby (a revert):
        production ──(reverted)──> rolled_back;  deprecated ──(reinstated)──> production

A model's first version may be registered directly as production (the incumbent canaries are
compared with): that is its creation, not a move.
"""

from __future__ import annotations

from django.db import models


class VersionStatus(models.TextChoices):
    REGISTERED = "registered", "Registered"
    CANARY = "canary", "In canary"
    PRODUCTION = "production", "Production"
    DEPRECATED = "deprecated", "Deprecated"
    ROLLED_BACK = "rolled_back", "Rolled back"


Status = VersionStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    Status.REGISTERED: frozenset({Status.CANARY}),
    Status.CANARY: frozenset({Status.PRODUCTION, Status.ROLLED_BACK, Status.REGISTERED}),
    Status.ROLLED_BACK: frozenset({Status.CANARY}),
    Status.PRODUCTION: frozenset({Status.DEPRECATED, Status.ROLLED_BACK}),
    Status.DEPRECATED: frozenset({Status.PRODUCTION}),
}


def may_become(current: str, target: str) -> bool:
    return target in TRANSITIONS[Status(current)]
