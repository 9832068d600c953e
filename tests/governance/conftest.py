"""Fixtures the governance tests share (a module may define its own instead): the people of
every role, and a running canary of the helpers' model."""

from __future__ import annotations

import pytest

from governance.access.permissions import Role
from releases.canaries import services as lifecycle
from tests.governance.helpers import make_model


@pytest.fixture
def people(role_user):
    return {r: role_user(role, username=r) for r, role in [
        ("owner", Role.MODEL_OWNER), ("platform", Role.PLATFORM), ("mrm", Role.MRM), ("gov", Role.AI_GOVERNANCE),
        ("oncall", Role.ON_CALL), ("risk", Role.RISK_OFFICER), ("bot", Role.SERVICE_ACCOUNT)]}


@pytest.fixture
def canary(people):
    make_model(people["platform"])
    return lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")
