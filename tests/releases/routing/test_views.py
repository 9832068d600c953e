"""The router registry and a canary's push history through Django's test client: platform
engineers register routers, the secret stays out of pages, audit payloads and logs, everyone
else reads but cannot write, and a config that cannot build its router is refused per field."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from releases.canaries import services as lifecycle
from releases.register import services
from releases.routing.models import RouterConfig
from releases.routing.routers.file import FileRouter
from releases.routing.services import router_config_save, router_for

pytestmark = pytest.mark.django_db

SECRET = "hunter2-very-secret-signing-key"
HTMX = {"HTTP_HX_REQUEST": "true"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def _router_dir(settings, tmp_path) -> None:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "settings-router")}}
    settings.CANARYHUB_ROUTER_TARGET_DIRS = [str(tmp_path), "/tmp/x"]


@pytest.fixture
def people(role_user):
    return {
        "platform": role_user(Role.PLATFORM, username="platform"),
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "auditor": role_user(Role.AUDITOR, username="auditor"),
    }


def form_data(**overrides) -> dict[str, str]:
    data = {"name": "files", "kind": "file", "target": "", "options": "", "secret": "", "enabled": "on"}
    return {**data, **overrides}


def audit_text() -> str:
    return repr(list(AuditEvent.objects.values_list("payload", flat=True)))


def test_platform_saves_a_file_router_and_the_secret_is_never_shown_audited_or_logged(people, tmp_path, caplog):
    client = client_for(people["platform"])
    target = tmp_path / "ui-router"
    with caplog.at_level(logging.DEBUG):
        response = client.post("/routers/", form_data(target=str(target), secret=SECRET), follow=True)
        assert response.status_code == 200
        page = response.content.decode()

    config = RouterConfig.objects.get(name="files")
    assert (config.kind, config.target, config.enabled, config.secret) == ("file", str(target), True, SECRET)
    assert target.is_dir()  # built once to prove it works
    assert "Router files saved." in page and "secret: set" in page and str(target) in page
    assert SECRET not in page
    event = AuditEvent.objects.get(action="router.registered")
    assert event.object_id == "files" and event.payload["secret"] == "***set***"
    assert event.payload["target"] == str(target)
    assert SECRET not in audit_text()
    assert "router.registered files" in caplog.text
    assert SECRET not in caplog.text
    # The enabled config now decides where the file kind's pushes go.
    router = router_for("file")
    assert isinstance(router, FileRouter) and router.path_dir == target


def test_a_blank_secret_keeps_the_stored_one_and_the_audit_says_unchanged(people, caplog):
    client = client_for(people["platform"])
    url = "https://router.example.test/split"
    data = form_data(name="mesh", kind="webhook", target=url, options='{"timeout_s": 2}', secret=SECRET)
    assert client.post("/routers/", data).status_code == 302

    edit = client.get("/routers/mesh/")
    assert edit.status_code == 200 and SECRET not in edit.content.decode()
    with caplog.at_level(logging.DEBUG):
        response = client.post("/routers/mesh/", {**data, "target": url + "/v2", "secret": ""})
    assert response.status_code == 302

    config = RouterConfig.objects.get(name="mesh")
    assert config.secret == SECRET and config.target == url + "/v2" and config.options == {"timeout_s": 2}
    updated = AuditEvent.objects.get(action="router.updated")
    assert updated.payload == {"changes": {"target": [url, url + "/v2"]}, "secret": "unchanged"}
    assert SECRET not in audit_text() and SECRET not in caplog.text
    listing = client.get("/routers/").content.decode()
    assert "secret: set" in listing and SECRET not in listing


@pytest.mark.parametrize("role", ["owner", "auditor"])
def test_others_read_the_registry_but_every_write_is_refused(people, role, tmp_path):
    router_config_save(actor=people["platform"], kind="file", name="files", target=str(tmp_path / "r"), enabled=True)
    client = client_for(people[role])

    listing = client.get("/routers/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "files" in page and "secret: not set" in page
    assert 'data-testid="router-form"' not in page and "/routers/files/disable/" not in page
    assert 'href="/routers/"' not in page  # the navigation link is for those who manage routers

    assert client.post("/routers/", form_data(name="mine", target=str(tmp_path / "x"))).status_code == 403
    assert client.get("/routers/files/").status_code == 403
    assert client.post("/routers/files/", form_data(target=str(tmp_path / "y"))).status_code == 403
    assert client.post("/routers/files/disable/").status_code == 403
    assert RouterConfig.objects.get().target == str(tmp_path / "r")
    assert list(RouterConfig.objects.values_list("name", flat=True)) == ["files"]


def test_the_routers_link_is_in_the_navigation_of_platform_engineers(people):
    page = client_for(people["platform"]).get("/routers/").content.decode()
    assert 'href="/routers/" aria-current="page">Routers</a>' in page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"kind": "webhook", "target": "ftp://router.example.test/", "secret": SECRET}, "target", "http(s) URL"),
        ({"kind": "webhook", "target": "https://router.example.test/"}, "secret", "signing secret"),
        ({"kind": "webhook", "target": "https://r.example.test/", "secret": SECRET, "options": '{"retries": 3}'},
         "options", "retries is not an option of the webhook router (it takes timeout_s)"),
        ({"kind": "webhook", "target": "https://r.example.test/", "secret": SECRET, "options": '{"secret": "x"}'},
         "options", "comes from the target and secret fields"),
        ({"kind": "nginx", "target": "/tmp/x/nginx"}, "kind", "the deployment configures no nginx"),
        ({"kind": "file", "target": "/tmp/x", "options": "{not json"}, "options", "not valid JSON"),
        ({"kind": "file", "target": "/tmp/x", "options": '{"clock": 1}'}, "options", "comes from the deployment"),
        ({"kind": "file", "target": "/tmp/x", "options": '{"mode": 1}'}, "options", "it takes no options"),
        ({"kind": "file", "target": "/proc/canaryhub-cannot-create"}, "target", "inside one of the deployment's"),
        ({"kind": "file", "target": "/tmp/x/../../etc"}, "target", "inside one of the deployment's"),
        ({"kind": "file", "target": "relative/dir"}, "target", "absolute folder path"),
        ({"name": "Not A Slug"}, "name", ""),
        ({"kind": "carrier-pigeon"}, "kind", ""),
    ],
)
def test_an_invalid_config_is_refused_with_field_errors_and_the_secret_is_not_echoed(
    people, data, field, message, caplog
):
    with caplog.at_level(logging.DEBUG):
        response = client_for(people["platform"]).post("/routers/", form_data(**{"target": "/tmp/x", **data}))
    assert response.status_code == 400
    page = response.content.decode()
    errors = response.context["form"].errors.get(field, [])
    assert errors and message in " ".join(errors), response.context["form"].errors
    assert f'data-field="{field}"' in page
    assert SECRET not in page and SECRET not in caplog.text
    assert not RouterConfig.objects.exists() and not AuditEvent.objects.filter(object_type="router").exists()


def test_a_second_enabled_router_of_a_kind_is_refused_until_the_first_is_disabled(people, tmp_path):
    client = client_for(people["platform"])
    assert client.post("/routers/", form_data(name="one", target=str(tmp_path / "1"))).status_code == 302
    refused = client.post("/routers/", form_data(name="two", target=str(tmp_path / "2")))
    assert refused.status_code == 400 and "another file router is enabled" in refused.content.decode()

    assert client.post("/routers/one/disable/").status_code == 302
    assert client.post("/routers/", form_data(name="two", target=str(tmp_path / "2"))).status_code == 302
    assert dict(RouterConfig.objects.values_list("name", "enabled")) == {"one": False, "two": True}
    assert AuditEvent.objects.filter(action="router.disabled", object_id="one").count() == 1


def test_everyone_who_views_sees_a_canarys_push_history_page_and_fragment(
    people, django_capture_on_commit_callbacks
):
    platform = people["platform"]
    services.model_register(
        actor=platform, name="scorer", display_name="Scorer", risk_tier="medium", owner="owner", on_call="x"
    )
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0")

    client = client_for(people["auditor"])
    detail = client.get(f"/canaries/{canary.pk}/").content.decode()
    assert f'hx-get="/canaries/{canary.pk}/pushes/"' in detail

    page = client.get(f"/canaries/{canary.pk}/pushes/")
    assert page.status_code == 200 and page.templates[0].name == "releases/router_pushes.html"
    rows = page.context["pushes"]
    assert len(rows) == 1 and rows[0].ok and rows[0].requested["percent"] == 1
    fragment = client.get(f"/canaries/{canary.pk}/pushes/", **HTMX)
    body = fragment.content.decode()
    assert fragment.templates[0].name == "releases/partials/_router_pushes.html" and "<html" not in body
    assert 'data-testid="router-push"' in body and "1%" in body and ">applied<" in body
    assert "HX-Request" in fragment["Vary"]
    assert client.get("/canaries/999999/pushes/").status_code == 404


# --- deployment-only settings: what a platform engineer must not reach through the form ---------------


@pytest.fixture
def deployment_nginx(settings, tmp_path):
    """The deployment's nginx settings (the environment's CANARYHUB_ROUTER_NGINX): the binary is a
    stand-in that records each call, so a test sees which program a push would run."""
    calls = tmp_path / "calls.log"
    fake = tmp_path / "deployment-nginx"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    main_conf = tmp_path / "nginx.conf"
    main_conf.write_text("# the deployment's main configuration\n")
    settings.CANARYHUB_ROUTERS = {
        **settings.CANARYHUB_ROUTERS,
        "nginx": {"conf_dir": str(tmp_path / "nginx"), "main_conf": str(main_conf), "nginx_bin": str(fake)},
    }
    return {"calls": calls, "bin": str(fake), "main_conf": str(main_conf)}


UPSTREAMS = {"ranker": {"production": ["127.0.0.1:9001"], "canary": ["127.0.0.1:9002"]}}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        # `script -c <command>` runs any command: the review's proof of concept.
        ({"nginx_bin": "/usr/bin/script", "main_conf": "touch /tmp/pwned"}, "main_conf, nginx_bin"),
        ({"pid_file": "/proc/1/stat"}, "pid_file"),  # SIGHUP to any process
        ({"readback_url": "http://169.254.169.254/latest/meta-data"}, "readback_url"),
        ({"conf_dir": "/etc/cron.d"}, "conf_dir"),
    ],
)
def test_the_form_refuses_programs_files_signals_and_urls_for_the_nginx_router(
    people, deployment_nginx, tmp_path, options, named
):
    client = client_for(people["platform"])
    data = form_data(name="edge", kind="nginx", target=str(tmp_path / "nginx"),
                     options=json.dumps({"upstreams": UPSTREAMS, **options}))
    response = client.post("/routers/", data)
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors["options"])
    assert f"{named} cannot be set here: it comes from the deployment (CANARYHUB_ROUTER_NGINX)" in errors
    assert not RouterConfig.objects.exists() and not AuditEvent.objects.filter(object_type="router").exists()


def test_a_registered_nginx_router_runs_only_the_deployments_program(people, deployment_nginx, tmp_path):
    client = client_for(people["platform"])
    data = form_data(name="edge", kind="nginx", target=str(tmp_path / "nginx"),
                     options=json.dumps({"upstreams": UPSTREAMS, "confirm_timeout_s": 2}))
    assert client.post("/routers/", data).status_code == 302
    router = router_for("nginx")
    assert router.nginx_bin == deployment_nginx["bin"] and str(router.main_conf) == deployment_nginx["main_conf"]
    assert router.pid_file is None and router.readback_url == "" and router.confirm_timeout_s == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"upstreams": {"ranker": {"production": ["10.0.0.1:80; include /etc/passwd"], "canary": ["x:1"]}}},
         "is not an upstream server address"),
        ({"upstreams": {"../etc": {"production": ["a:1"], "canary": ["b:1"]}}}, "is not a register model name"),
        ({"upstreams": UPSTREAMS, "user_header": "X-User\nId"}, "must be a header name"),
        ({"upstreams": UPSTREAMS, "confirm_timeout_s": 1e308}, "between 0.1 and 60 seconds"),
        ({"upstreams": UPSTREAMS, "drain_timeout_s": True}, "must be a number of seconds"),
        ({"upstreams": UPSTREAMS, "segment_headers": {"shell": "X-A"}}, "is not a segment"),
    ],
)
def test_each_allowed_nginx_option_is_validated(people, deployment_nginx, tmp_path, options, message):
    data = form_data(name="edge", kind="nginx", target=str(tmp_path / "nginx"), options=json.dumps(options))
    response = client_for(people["platform"]).post("/routers/", data)
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors["options"])


def test_a_stored_row_with_deployment_only_options_is_refused_at_use_and_flagged_on_the_page(
    people, deployment_nginx, tmp_path
):
    """A config written before the allow-list (or straight into the database) is never obeyed."""
    pwned = tmp_path / "pwned"
    RouterConfig.objects.create(
        name="legacy", kind="nginx", target=str(tmp_path / "nginx"), created_by=people["platform"],
        options={"upstreams": UPSTREAMS, "nginx_bin": "/usr/bin/script", "main_conf": f"touch {pwned}"},
    )
    with pytest.raises(Exception) as refused:
        router_for("nginx")
    assert "router config legacy is refused: options: main_conf, nginx_bin cannot be set here" in str(refused.value)
    assert not pwned.exists() and not deployment_nginx["calls"].exists()

    page = client_for(people["auditor"]).get("/routers/").content.decode()
    assert 'data-testid="router-refused"' in page and "main_conf, nginx_bin cannot be set here" in page


def test_a_stored_file_router_outside_the_deployments_folders_is_refused(people, tmp_path):
    RouterConfig.objects.create(name="anywhere", kind="file", target="/etc/cron.d", created_by=people["platform"])
    with pytest.raises(Exception, match="inside one of the deployment's router folders"):
        router_for("file")
    assert not (tmp_path / "etc").exists()
