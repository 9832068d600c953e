"""The one place that names roles for people: "Model owner", "Model risk (MRM)", "On-call"...

Both kinds of role read the same: the access roles (`governance.access.permissions.Role`) and the
signing roles of a canary step ("owner", "mrm"), which are the same people acting in a capacity.
Pages, notifications and API texts take their words from `role_label`, never from the raw value.
"""

from __future__ import annotations

from collections.abc import Iterable

from governance.access.permissions import Role

ROLE_LABELS: dict[str, str] = {
    Role.MODEL_OWNER.value: "Model owner",
    Role.PLATFORM.value: "Platform",
    Role.MRM.value: "Model risk (MRM)",
    Role.AI_GOVERNANCE.value: "AI governance",
    Role.RISK_OFFICER.value: "Risk officer",
    Role.ON_CALL.value: "On-call",
    Role.AUDITOR.value: "Auditor",
    Role.SERVICE_ACCOUNT.value: "Service account",
    # The signing capacity of a canary step: the model's owner signs as "owner".
    "owner": "Model owner",
}

# The order roles are listed in: the people who act on a canary first.
ROLE_ORDER = [Role.MODEL_OWNER.value, Role.MRM.value, Role.AI_GOVERNANCE.value, Role.PLATFORM.value,
              Role.ON_CALL.value, Role.RISK_OFFICER.value, Role.AUDITOR.value, Role.SERVICE_ACCOUNT.value]


def role_label(role: str) -> str:
    """The human name of a role value; an unknown value reads as its words."""
    value = str(role)
    return ROLE_LABELS.get(value, value.replace("_", " ").capitalize())


def role_labels(roles: Iterable[str]) -> list[str]:
    """Human names of the roles, in the one order (`ROLE_ORDER`), each once."""
    values = {"model_owner" if str(r) == "owner" else str(r) for r in roles}
    known = [r for r in ROLE_ORDER if r in values]
    return [role_label(r) for r in [*known, *sorted(values - set(known))]]
