"""An incident's status: its table of moves (pure). The one function that changes it is
governance.incidents.services.incident_transition, which audits each move in the same transaction.

    open ──(root cause filed)──> root_cause_filed ──(MRM accepts)──> resolved
                                 root_cause_filed ──(MRM returns it)──> open
"""

from __future__ import annotations

from django.db import models


class IncidentStatus(models.TextChoices):
    OPEN = "open", "Open"
    ROOT_CAUSE_FILED = "root_cause_filed", "Root cause filed"
    RESOLVED = "resolved", "Resolved"


Status = IncidentStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    Status.OPEN: frozenset({Status.ROOT_CAUSE_FILED}),
    Status.ROOT_CAUSE_FILED: frozenset({Status.OPEN, Status.RESOLVED}),
    Status.RESOLVED: frozenset(),
}


def may_become(current: str, target: str) -> bool:
    return target in TRANSITIONS[Status(current)]
