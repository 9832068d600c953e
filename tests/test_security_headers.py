"""The usual security headers on pages and API answers, and HSTS when the deployment is production
(a fresh interpreter, since the settings read the environment once)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import Client

from governance.access.permissions import Role


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/accounts/login/", "/", "/api/v1/models/", "/governance/certificates/"])
def test_pages_and_api_answers_carry_the_security_headers(role_user, url):
    client = Client()
    client.force_login(role_user(Role.AUDITOR, username="auditor"))
    response = client.get(url)
    assert response.status_code == 200, url
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in response  # not in development (plain HTTP)


def test_production_sends_hsts():
    env = {**os.environ, "CANARYHUB_ENV": "production", "SECRET_KEY": "x" * 40, "DEBUG": "false",
           "ALLOWED_HOSTS": "canaryhub.example", "DJANGO_SETTINGS_MODULE": "canaryhub.settings"}
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.SECURE_HSTS_SECONDS, settings.SECURE_REFERRER_POLICY, settings.SECURE_CONTENT_TYPE_NOSNIFF)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["31536000", "same-origin", "True"]
