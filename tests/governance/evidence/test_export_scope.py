"""An owner exports only their own models' evidence: the MRM register CSV and a date-range export
hold what the requester may export and nothing else; a model-scoped action asked without its
model is refused (never "allowed because allowed on some model")."""

from __future__ import annotations

import zipfile

import pytest
from django.test import Client

from canaryhub.errors import PermissionRefused
from governance.access.permissions import Action, Role, require
from governance.evidence.models import EvidenceExport
from releases.register import services
from tests.governance.helpers import run_to_completion

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(role_user, settings, tmp_path):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    settings.EVIDENCE_EXPORT_DIR = str(tmp_path / "exports")
    return {"alice": role_user(Role.MODEL_OWNER, username="alice"), "bob": role_user(Role.MODEL_OWNER, username="bob"),
            "platform": role_user(Role.PLATFORM, username="platform"), "mrm": role_user(Role.MRM, username="mrm"),
            "auditor": role_user(Role.AUDITOR, username="auditor")}


@pytest.fixture
def two_owners(people):
    platform = people["platform"]
    for name, owner in (("alice-model", "alice"), ("bob-model", "bob")):
        services.model_register(actor=platform, name=name, display_name=name, risk_tier="medium", owner=owner,
                                on_call="oncall@x")
        services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1",
                                  status="production")
        services.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")
        run_to_completion(owner=people[owner], mrm=people["mrm"], model_name=name)
    return people


def page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_register_csv_of_an_owner_holds_only_their_models(two_owners):
    body = b"".join(page(two_owners["alice"]).get("/governance/register.csv").streaming_content).decode()
    assert "alice-model" in body and "bob-model" not in body
    everything = b"".join(page(two_owners["auditor"]).get("/governance/register.csv").streaming_content).decode()
    assert "alice-model" in everything and "bob-model" in everything


def test_a_range_export_of_an_owner_holds_only_their_canaries(two_owners, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = page(two_owners["alice"]).post("/governance/evidence/", {"scope": "range", "since": "2000-01-01", "until": "2100-01-01"})
    assert response.status_code == 302, response.content[:500]
    export = EvidenceExport.objects.get(requested_by=two_owners["alice"])
    assert export.status == EvidenceExport.Status.DONE, export.status
    names = "\n".join(zipfile.ZipFile(export.path).namelist())
    assert "alice-model" in names and "bob-model" not in names


def test_a_model_scoped_action_without_its_model_is_refused(people):
    with pytest.raises(PermissionRefused, match="the model must be named"):
        require(people["alice"], Action.EXPORT_EVIDENCE)
    with pytest.raises(PermissionRefused):
        require(people["platform"], Action.START_CANARY, model=None)
