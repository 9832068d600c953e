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
           "CANARYHUB_SIGNING_KEY_DIR": "/etc/canaryhub/signing-keys",
           "ALLOWED_HOSTS": "canaryhub.example", "DJANGO_SETTINGS_MODULE": "canaryhub.settings"}
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.SECURE_HSTS_SECONDS, settings.SECURE_REFERRER_POLICY, settings.SECURE_CONTENT_TYPE_NOSNIFF)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["31536000", "same-origin", "True"]


def policy_of(response) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    directives = [part.split() for part in response["Content-Security-Policy"].split(";") if part.strip()]
    return {words[0]: words[1:] for words in directives}


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/accounts/login/", "/", "/governance/certificates/", "/api/v1/models/"])
def test_pages_carry_a_content_security_policy_without_inline_script(role_user, settings, url):
    client = Client()
    client.force_login(role_user(Role.AUDITOR, username="auditor"))
    response = client.get(url)
    assert response.status_code == 200, url
    policy = policy_of(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no host
    # Styles from static/ only, plus the hashes of Plotly's two inline stylesheets (settings say
    # which): no 'unsafe-inline', so style= attributes and any other <style> are refused.
    assert policy["style-src"] == ["'self'", *settings.PLOTLY_STYLE_HASHES]
    assert "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='" in policy["style-src"]  # sha256 of b""
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)


@pytest.mark.django_db
def test_the_api_docs_page_adds_only_data_images_and_loads_its_script_from_the_same_url():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    policy = policy_of(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]  # Swagger UI's stylesheet draws its icons as data: SVG
    html = response.content.decode()
    assert "<style" not in html
    assert '<script src="/api/docs/?script="></script>' in html
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")


def test_the_plotly_style_hashes_match_the_installed_plotly(settings):
    """The policy lets in Plotly's inline stylesheets by hash: they are the ones the installed
    plotly.min.js creates (an empty <style>, and the fixed map stylesheet its bundle adds)."""
    import base64
    import hashlib
    import re

    from canaryhub.staticfinders import plotly_js_path

    def source(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    bundle = plotly_js_path().read_text()
    assert 'createElement("style"),n.setAttribute("id",i),n.appendChild(document.createTextNode(""))' in bundle
    stylesheets = re.findall(r"""\.textContent='(\.maplibregl-map\{[^']*)'""", bundle)
    assert len(stylesheets) == 1
    assert settings.PLOTLY_STYLE_HASHES == [source(""), source(stylesheets[0])]
