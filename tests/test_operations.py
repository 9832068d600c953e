from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from governance.audit.services import audit_verify
from governance.tokens.models import ApiToken
from releases.register.models import AIModel, ModelVersion

ROOT = Path(__file__).resolve().parent.parent


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_dependency(client):
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "broker": "ok", "metric_source": "ok", "rollbacks": "ok",
                              "evaluator": "ok", "queues": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_when_the_metric_source_is_down(client, settings):
    settings.PROMETHEUS_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.PROMETHEUS_TIMEOUT_S = 0.5
    response = client.get("/readyz")
    assert response.status_code == 503
    message = response.json()["checks"]["metric_source"]
    # Answered without login: the kind of error, never its text (hosts, users, paths).
    assert message == "URLError (details in the server log)", message


@pytest.mark.django_db
def test_metrics_exports_own_gauges(client):
    call_command("seed_demo", password="pw-for-tests")
    text = client.get("/metrics").content.decode()
    assert 'canaryhub_models{risk_tier="high"} 1.0' in text
    assert 'canaryhub_model_versions{status="production"} 1.0' in text
    assert "canaryhub_audit_chain_length" in text


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_logins_work(client):
    call_command("seed_demo", password="pw-for-tests")
    call_command("seed_demo", password="pw-for-tests")
    assert AIModel.objects.count() == 1
    assert list(ModelVersion.objects.values_list("version", "status")) == [("1.5.0", "registered"), ("1.4.2", "production")]
    for username in ["owner", "platform", "mrm", "governance", "risk", "oncall", "auditor"]:
        assert client.login(username=username, password="pw-for-tests"), username
    assert audit_verify().ok


@pytest.mark.django_db
def test_create_token_prints_a_working_scoped_token(capsys, client):
    call_command("seed_demo", password="pw-for-tests")
    capsys.readouterr()
    call_command("create_token", "ci-bot", "--service-account", "--models", "support-assistant")
    secret = capsys.readouterr().out.strip()
    token = ApiToken.objects.get()
    assert secret.startswith(f"chk_{token.prefix}_") and token.key_hash != secret
    response = client.get("/api/v1/models/support-assistant/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200


@pytest.mark.django_db
def test_revoke_token_stops_a_stolen_token_and_is_audited(capsys, client):
    from django.core.management.base import CommandError  # noqa: PLC0415 - as the test below

    from governance.audit.models import AuditEvent  # noqa: PLC0415 - as the test below

    call_command("seed_demo", password="pw-for-tests")
    call_command("create_token", "ci-bot", "--service-account", "--models", "support-assistant")
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    token = ApiToken.objects.get()
    call_command("revoke_token", token.prefix)
    assert "revoked" in capsys.readouterr().out
    response = client.get("/api/v1/models/support-assistant/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 401
    assert AuditEvent.objects.filter(action="token.revoked", object_id=token.prefix).count() == 1
    with pytest.raises(CommandError, match="already revoked"):
        call_command("revoke_token", token.prefix)
    with pytest.raises(CommandError, match="no token"):
        call_command("revoke_token", "nope")


@pytest.mark.django_db
def test_create_token_refuses_unscoped_service_account():
    from django.core.management.base import CommandError

    call_command("seed_demo", password="pw-for-tests")
    with pytest.raises(CommandError, match="scoped"):
        call_command("create_token", "ci-bot", "--service-account")


def _settings_in_subprocess(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"SECRET_KEY", "DEBUG", "CANARYHUB_ENV", "DATABASE_URL", "CANARYHUB_SIGNING_KEY_DIR"}}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "canaryhub.settings", **env},
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CANARYHUB_ENV": "production"}, "SECRET_KEY"),
        ({"CANARYHUB_ENV": "production", "SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"CANARYHUB_ENV": "production", "SECRET_KEY": "x" * 50, "DEBUG": "true"}, "DEBUG"),
        ({"CANARYHUB_ENV": "production", "SECRET_KEY": "x" * 50, "CANARYHUB_SIGNING_KEY_DIR": "/keys",
          "CANARYHUB_CLOCK_SPEED": "60"}, "CLOCK_SPEED"),
        ({"CANARYHUB_ENV": "production", "SECRET_KEY": "x" * 50}, "CANARYHUB_SIGNING_KEY_DIR"),
        ({"CANARYHUB_CLOCK_SPEED": "0.5"}, "CLOCK_SPEED"),
        ({"CANARYHUB_EVALUATION_CADENCE_S": "0"}, "CADENCE"),
        ({"CANARYHUB_DEADMAN_LIMIT_S": "60"}, "DEADMAN_LIMIT_S must be longer"),
        ({"CANARYHUB_EVALUATION_CADENCE_S": "120", "CANARYHUB_DEADMAN_LIMIT_S": "90"}, "DEADMAN_LIMIT_S must be longer"),
        ({"CANARYHUB_EVALUATION_RETENTION_DAYS": "90"}, "EVALUATION_RETENTION_DAYS must be at least 184"),
        ({"CANARYHUB_OBSERVATION_RETENTION_DAYS": "183"}, "OBSERVATION_RETENTION_DAYS must be at least 184"),
        ({"CANARYHUB_NOTIFICATION_RETENTION_DAYS": "30"}, "NOTIFICATION_RETENTION_DAYS must be at least 184"),
        ({"CANARYHUB_ROLLBACK_SWEEP_AFTER_S": "120"}, "ROLLBACK_SWEEP_AFTER_S"),
        ({"CANARYHUB_ENV": "staging"}, "CANARYHUB_ENV"),
    ],
)
def test_settings_refuse_unsafe_configuration(env, message):
    result = _settings_in_subprocess(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_production_starts_with_a_real_secret():
    result = _settings_in_subprocess(CANARYHUB_ENV="production", SECRET_KEY="k" * 50, ALLOWED_HOSTS="canaryhub.example",
                                     CANARYHUB_SIGNING_KEY_DIR="/etc/canaryhub/signing-keys")
    assert result.returncode == 0, result.stderr
