"""The permission matrix: every API operation of the OpenAPI schema, called by every role, a
person without a role, the service account's CI token and its observations token scoped to the
model, a CI token scoped to another model, and an anonymous caller — each answer compared with the row written here.

Writes are sent a body that is never valid (an unknown field): whoever may act gets 400, whoever
may not gets 403 (404 when they may not even see the object) — so the matrix also proves that
the refusal comes before the body is read. A new operation without a row fails the test."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.incidents.models import Incident
from governance.incidents.services import incident_open
from governance.thresholds.services import threshold_change_request
from governance.tokens.services import token_create
from releases.canaries import services as lifecycle
from releases.register import services
from releases.register.models import MetricConfigChange

HUMANS = ("owner", "other_owner", "platform", "mrm", "gov", "risk", "oncall", "auditor")
CALLERS = ("anonymous", "nobody", *HUMANS, "token", "obs_token", "out_token")
BAD_BODY = {"not_a_field": 1}


def row(default: int, **cells: int | tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """A row of the matrix: the status each caller gets. Unnamed human roles get `default`; a
    person without a role 403; an anonymous caller 401; tokens as named (else `default`)."""
    answers: dict[str, Any] = {"anonymous": 401, "nobody": 403, **{h: default for h in HUMANS},
                               "token": default, "obs_token": default, "out_token": default, **cells}
    return {k: v if isinstance(v, tuple) else (v,) for k, v in answers.items()}


def read(**cells: int | tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Every role reads; a token reads inside its scope, and outside it the object is unknown."""
    return row(200, **{"out_token": 404, **cells})


def write(*allowed: str, out_token: int | tuple[int, ...] = 404) -> dict[str, tuple[int, ...]]:
    """Only `allowed` may act (and get 400 for the bad body); everyone else is refused first."""
    return row(403, **{"out_token": 400 if "out_token" in allowed else out_token,
                       **{who: 400 for who in allowed if who != "out_token"}})


# operationId -> (method, path with placeholders, expected answers)
MATRIX: dict[str, tuple[str, str, dict[str, tuple[int, ...]]]] = {
    "assign": ("GET", "/api/v1/assign?model=scorer&user=u-1", read(out_token=(403, 404))),
    "assignments_sweep_create": ("POST", "/api/v1/assignments/sweep/", write("platform", out_token=403)),
    "audit_list": ("GET", "/api/v1/audit/", read(token=403, obs_token=403, out_token=403)),
    "audit_verify": ("GET", "/api/v1/audit/verify/", read(token=403, obs_token=403, out_token=403)),
    "canaries_list": ("GET", "/api/v1/canaries/", read(out_token=200)),
    "canaries_retrieve": ("GET", "/api/v1/canaries/{canary}/", read()),
    "canaries_evaluations_list": ("GET", "/api/v1/canaries/{canary}/evaluations/", read()),
    "canaries_report_retrieve": ("GET", "/api/v1/canaries/{canary}/report/", read()),
    "canaries_threshold_changes_list": ("GET", "/api/v1/canaries/{canary}/threshold-changes/", read()),
    "canaries_evidence_retrieve": ("GET", "/api/v1/canaries/{canary}/evidence/",
                                   read(other_owner=403, oncall=403, token=403, obs_token=403)),
    # Public and read-only: the keys that signatures are checked with.
    "signing_keys_list": ("GET", "/api/v1/signing-keys/", row(200, anonymous=200, nobody=200)),
    "certificates_retrieve": ("GET", "/api/v1/certificates/{certificate}/", row(404)),
    "certificates_verify": ("GET", "/api/v1/certificates/{certificate}/verify/", row(404)),
    "incidents_list": ("GET", "/api/v1/incidents/", read(out_token=200)),
    "alerts_alertmanager_receive": ("POST", "/api/v1/alerts/alertmanager/", write("platform", out_token=403)),
    "notifications_list": ("GET", "/api/v1/notifications/", read(token=403, obs_token=403, out_token=403)),
    "models_list": ("GET", "/api/v1/models/", read(out_token=200)),
    "models_retrieve": ("GET", "/api/v1/models/scorer/", read()),
    "versions_list": ("GET", "/api/v1/models/scorer/versions/", read()),
    "versions_retrieve": ("GET", "/api/v1/models/scorer/versions/1.1.0/", read()),
    "models_create": ("POST", "/api/v1/models/", write("owner", "other_owner", "platform", out_token=403)),
    "models_partial_update": ("PATCH", "/api/v1/models/scorer/", write("owner", "platform")),
    "versions_create": ("POST", "/api/v1/models/scorer/versions/", write("owner", "platform", "token")),
    "versions_partial_update": ("PATCH", "/api/v1/models/scorer/versions/1.1.0/",
                                write("owner", "platform", "token")),
    "observations_create": ("POST", "/api/v1/observations/", write("platform", "obs_token", out_token=403)),
    "canaries_create": ("POST", "/api/v1/canaries/",
                        write("owner", "other_owner", "platform", "token", "out_token")),
    "canaries_approvals_create": ("POST", "/api/v1/canaries/{canary}/approvals/", write("owner", "mrm")),
    "canaries_rollback_create": ("POST", "/api/v1/canaries/{canary}/rollback/",
                                 write("owner", "platform", "oncall")),
    # On-call may too: break-glass (with its reason in full).
    "canaries_revert_create": ("POST", "/api/v1/canaries/{canary}/revert/", write("owner", "platform", "oncall")),
    "canaries_urgent_patch_create": ("POST", "/api/v1/canaries/urgent-patch/", write("platform", out_token=403)),
    "canaries_abort_create": ("POST", "/api/v1/canaries/{canary}/abort/", write("owner", "platform", "token")),
    "canaries_certificate_create": ("POST", "/api/v1/canaries/{canary}/certificate/", write("gov")),
    "canaries_threshold_changes_create": ("POST", "/api/v1/canaries/{canary}/threshold-changes/",
                                          write("owner", "platform")),
    "threshold_changes_approvals_create": ("POST", "/api/v1/threshold-changes/{change}/approvals/",
                                           write("mrm", "gov", out_token=403)),
    "metric_changes_list": ("GET", "/api/v1/metric-changes/", read(token=403, obs_token=403, out_token=403)),
    "metric_changes_approvals_create": ("POST", "/api/v1/metric-changes/{metric_change}/approvals/",
                                        write("mrm", "gov", out_token=403)),
    "incidents_root_cause_create": ("POST", "/api/v1/incidents/{incident}/root-cause/",
                                    write("platform", "oncall", out_token=403)),
    "incidents_root_cause_review_create": ("POST", "/api/v1/incidents/{incident}/root-cause/review/",
                                           write("mrm", out_token=403)),
    # Every caller here comes in with a token: a token lists and revokes (its user's own tokens;
    # a platform engineer's, anyone's) but never creates one; a service account manages none.
    "tokens_list": ("GET", "/api/v1/tokens/", read(token=403, obs_token=403, out_token=403)),
    "tokens_create": ("POST", "/api/v1/tokens/", row(403)),
    "tokens_revoke_create": ("POST", "/api/v1/tokens/{token}/revoke/",
                             row(404, owner=400, platform=400, token=403, obs_token=403, out_token=403)),
    "incidents_reinitiation_create": ("POST", "/api/v1/incidents/{incident}/reinitiation/",
                                      write("owner", out_token=403)),
}


def schema_operations() -> dict[str, tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {op["operationId"]: (method.upper(), path) for path, item in schema["paths"].items()
            for method, op in item.items() if method in ("get", "post", "put", "patch", "delete")}


def test_every_operation_of_the_schema_has_a_row_and_every_row_an_operation():
    operations = schema_operations()
    assert sorted(set(operations) - set(MATRIX)) == [], "add a row to MATRIX for each new operation"
    assert sorted(set(MATRIX) - set(operations)) == []
    for op_id, (method, _, answers) in MATRIX.items():
        assert operations[op_id][0] == method, op_id
        assert set(answers) == set(CALLERS), op_id


@pytest.fixture
def world(role_user, settings, tmp_path) -> dict[str, Any]:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    people = {
        "nobody": role_user(username="nobody"),
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "other_owner": role_user(Role.MODEL_OWNER, username="other_owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm"),
        "gov": role_user(Role.AI_GOVERNANCE, username="gov"),
        "risk": role_user(Role.RISK_OFFICER, username="risk"),
        "oncall": role_user(Role.ON_CALL, username="oncall"),
        "auditor": role_user(Role.AUDITOR, username="auditor"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
    }
    platform = people["platform"]
    for name, owner in (("scorer", "owner"), ("other", "other_owner")):
        services.model_register(actor=platform, name=name, display_name=name, risk_tier="medium", owner=owner,
                                on_call="oncall@x")
        services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1",
                                  status="production")
        services.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0",
                                       now=timezone.now() - timedelta(hours=25))
    incident = incident_open(severity=Incident.Severity.P2, kind=Incident.Kind.ROLLBACK, canary_id=canary.pk,
                             summary="a test incident", actor=None, now=timezone.now())
    change = threshold_change_request(actor=people["owner"], canary_id=canary.pk,
                                      proposed={"promote": {"latency_p99_ratio": 1.1}}, reason="tighter latency after review")
    services.version_update(actor=platform, model_name="other", version="1.1.0",
                            changes={"metrics": {"provider": "prometheus"}})
    metric_change = MetricConfigChange.objects.get()
    clients: dict[str, APIClient] = {"anonymous": APIClient()}
    prefixes: dict[str, str] = {}
    # Each person through a personal token (the way scripts and /assign callers come in); the
    # service account through tokens scoped to the model and to another one.
    for who, user, scope in [*((h, people[h], None) for h in ("nobody", *HUMANS)),
                             ("token", people["bot"], ["scorer"]), ("obs_token", people["bot"], ["scorer"]),
                             ("out_token", people["bot"], ["other"])]:
        purpose = "observations" if who == "obs_token" else "ci"
        token, secret = token_create(actor=platform, user=user, name=who, scope=scope, purpose=purpose)
        prefixes[who] = token.prefix
        clients[who] = APIClient()
        clients[who].credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    ids = {"canary": canary.pk, "incident": incident.pk, "change": change.pk, "metric_change": metric_change.pk, "certificate": uuid.uuid4(),
           "token": prefixes["owner"]}
    return {"clients": clients, "ids": ids}


@pytest.mark.django_db
@pytest.mark.parametrize("op_id", sorted(MATRIX))
def test_every_caller_gets_the_answer_of_the_matrix(world, op_id):
    method, path, answers = MATRIX[op_id]
    url = path.format(**world["ids"])
    wrong = []
    for caller in CALLERS:
        client = world["clients"][caller]
        if method == "GET":
            response = client.get(url)
        else:
            response = getattr(client, method.lower())(url, BAD_BODY, format="json")
        if response.status_code not in answers[caller]:
            detail = response.content[:160] if response.status_code != 200 else b""
            wrong.append(f"{caller}: {response.status_code} (expected {answers[caller]}) {detail!r}")
    assert not wrong, f"{method} {url}:\n" + "\n".join(wrong)
