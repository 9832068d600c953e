"""Segregation of duties for a change reviewed by AI Governance and MRM (a threshold change of a
running canary, a metric configuration change of a version): two different people, neither of
them the requester, each side once. The change is any record with `requested_by_id`,
`governance_by_id` and `mrm_by_id`."""

from __future__ import annotations

from typing import Any

from governance.access.permissions import Role


def review_side(change: Any, *, user_id: Any, roles: Any, pending: bool) -> str | None:
    """Which review a pending change still needs from this person — "governance" (AI Governance)
    or "mrm" — or None."""
    if not pending or change.requested_by_id == user_id:
        return None
    if change.governance_by_id is None and Role.AI_GOVERNANCE in roles and change.mrm_by_id != user_id:
        return "governance"
    if change.mrm_by_id is None and Role.MRM in roles and change.governance_by_id != user_id:
        return "mrm"
    return None
