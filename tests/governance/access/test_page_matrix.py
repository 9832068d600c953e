"""The permission matrix of the pages: every route of the URL resolver outside the API (which
test_permission_matrix.py covers) and Django's admin, requested by each role of the API matrix,
a person without a role and an anonymous visitor, each answer compared with the row written here.

Pages are fetched with GET. A route that only acts (POST) answers GET with 405 to a person who is
logged in; it is then also POSTed, with an empty form, by everyone who may NOT act, who must be
refused (403, or 404 for what they may not see) before the form is read. Who may act is not sent
the empty form (it would act); the API matrix and the feature tests cover what they get.
A new page route without a row fails the test."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.page_world import HUMANS, make_people, seed_pages

CALLERS = ("anonymous", "nobody", *HUMANS)
LOGIN = "login"  # 302 to the login page
ACTS = "acts"  # may act: not sent the empty form
EXCLUDED_PREFIXES = ("api/v1/", "admin/")


def row(default: int | str, **cells: int | str) -> dict[str, Any]:
    """What GET answers: logged-in roles get `default` unless named; a person without a role 403;
    an anonymous visitor is sent to the login page."""
    return {"get": {"anonymous": LOGIN, "nobody": 403, **{h: default for h in HUMANS}, **cells}}


def public(**cells: int | str) -> dict[str, Any]:
    """Open to everyone, logged in or not."""
    return row(200, anonymous=200, nobody=200, **cells)


def act(*allowed: str, refused: int = 403, get: dict[str, Any] | None = None, **cells: int | str) -> dict[str, Any]:
    """A route that acts on POST: only `allowed` may POST. GET answers as `get` says (by default
    the route is POST only: 405 once logged in)."""
    posts = {"anonymous": LOGIN, **{who: (ACTS if who in allowed else refused) for who in ("nobody", *HUMANS)}}
    return {**(get or row(405, nobody=405)), "post": {**posts, **cells}}


# Route name -> (URL keyword arguments, answers). Values in the kwargs naming a key of the seeded
# world (tests/page_world.py) are replaced by that object's id.
PAGES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # Probes and the machine-readable API description: open, and they reveal nothing per user.
    "healthz": ({}, public()),
    "readyz": ({}, public()),
    "metrics": ({}, public()),
    "api-schema": ({}, public()),
    "api-docs": ({}, public()),
    "login": ({}, public()),
    "logout": ({}, row(405, anonymous=405, nobody=405)),  # POST only (Django's LogoutView)
    # Anyone may verify a certificate from its QR code, without an account.
    "evidence:certificate-verify-page": ({"certificate_id": "certificate"}, public()),
    # The public keys that sign the evidence, and the stand-alone verifier: published to anyone.
    "evidence:signing-keys": ({}, public()),
    "evidence:verifier-download": ({}, public()),
    # Read pages: every role reads.
    "releases:model-list": ({}, row(200)),
    "releases:model-detail": ({"name": "scorer"}, row(200)),
    "releases:version-detail": ({"name": "scorer", "version": "1.2.0"}, row(200)),
    "releases:canary-list": ({}, row(200)),
    "releases:fleet": ({}, row(200)),
    "releases:inbox": ({}, row(200)),
    "releases:canary-detail": ({"pk": "live"}, row(200)),
    "releases:canary-report": ({"pk": "live"}, row(200)),
    "releases:canary-charts": ({"pk": "live"}, row(200)),
    "releases:canary-chart-csv": ({"pk": "live", "key": "error_rate"}, row(200)),
    "releases:canary-pushes": ({"pk": "live"}, row(200)),
    # The Inbox when work waits for this person, else the register.
    "releases:home": ({}, row(302, nobody=302)),
    # `/`: platform engineers and on-call are sent where they land (Inbox or fleet); everyone
    # else reads the register there.
    "releases:root": ({}, row(200, platform=302, oncall=302)),
    # The router list is read by every role (targets and whether a secret is set; never a secret).
    "releases:router-list": ({}, row(200)),
    "slo": ({}, row(200)),
    "notifications:page": ({}, row(200)),
    "governance:audit-list": ({}, row(200)),
    "governance:audit-verify": ({}, row(200)),
    "evidence:certificate-queue": ({}, row(200)),
    "evidence:certificate-detail": ({"certificate_id": "certificate"}, row(200)),
    "evidence:certificate-pdf": ({"certificate_id": "certificate"}, row(200)),
    "evidence:incident-list": ({}, row(200)),
    "evidence:incident-detail": ({"incident_id": "incident"}, row(200)),
    "evidence:threshold-changes": ({}, row(200)),
    "evidence:mrm-register": ({}, row(200)),
    "evidence:mrm-register-csv": ({}, row(200, oncall=403)),  # an export: on-call exports no evidence
    "evidence:evidence": ({}, row(200)),
    # An export is seen and downloaded only by whoever asked for it (the risk officer, here); to
    # anyone else it does not exist. 286 is htmx's "stop polling": the export is built.
    "evidence:export-progress": ({"export_id": "export"}, row(404, nobody=404, risk=286)),
    "evidence:export-download": ({"export_id": "export"}, row(404, nobody=404, risk=200)),
    # Forms: only who may take the act (on this model) gets the form.
    "releases:model-create": ({}, row(403, owner=200, other_owner=200, platform=200)),
    "releases:version-create": ({"name": "scorer"}, row(403, owner=200, platform=200)),
    "releases:canary-create": ({"name": "scorer", "version": "1.2.0"}, row(403, owner=200, platform=200)),
    "releases:canary-urgent-patch": ({"name": "other", "version": "1.1.0"}, row(403, platform=200)),
    "releases:canary-sign": ({"pk": "live", "role": "owner"}, row(403, owner=200)),
    "releases:canary-rollback": ({"pk": "live"}, row(403, owner=200, platform=200, oncall=200)),
    "releases:canary-revert": ({"pk": "live"}, row(403, owner=200, platform=200, oncall=200)),
    "releases:canary-abort": ({"pk": "live"}, row(403, owner=200, platform=200)),
    "releases:router-edit": ({"name": "router"}, row(403, platform=200)),
    # Acts (POST only).
    "notifications:mark-read": ({}, act(*CALLERS[1:])),  # one's own notifications
    "notifications:preferences": ({}, act(*CALLERS[1:])),  # one's own preferences
    "notifications:retry": ({"delivery_id": 1}, act("platform")),
    "evidence:certificate-decide": ({"canary_id": "done"}, act("gov")),
    "evidence:incident-root-cause": ({"incident_id": "incident"}, act("platform", "oncall")),
    "evidence:incident-root-cause-review": ({"incident_id": "incident"}, act("mrm")),
    # The incident is of `other`'s canary: its owner approves, not another owner.
    "evidence:incident-reinitiation": ({"incident_id": "incident"}, act("other_owner")),
    "evidence:incident-escalation-resolve": ({"incident_id": "incident", "escalation_id": 1}, act("mrm", "gov")),
    # The canary is named in the form, so who may request for which canary is decided by the
    # service after reading it; roles that may request for no canary are refused first.
    "evidence:threshold-change-request": ({}, act("owner", "other_owner", "platform")),
    "evidence:threshold-change-review": ({"change_id": "change"}, act("mrm", "gov")),
    "evidence:metric-change-review": ({"change_id": "metric_change"}, act("mrm", "gov")),
    # Every role reads the sweeps of the sticky assignment store; a platform engineer sweeps it.
    "releases:sticky-assignments": ({}, act("platform", get=row(200))),
    # Personal API tokens: each person with a role sees and creates their own; a platform engineer
    # revokes any; to anyone else another person's token does not exist (here: the risk officer's).
    "tokens:page": ({}, row(200)),
    "tokens:create": ({}, act(*HUMANS)),
    "tokens:revoke": ({"prefix": "token"}, act("platform", "risk", refused=404, nobody=403)),
    "releases:router-disable": ({"name": "router"}, act("platform")),
}


def page_routes(resolver: URLResolver | None = None, prefix: str = "", namespace: str = "") -> dict[str, str]:
    """{route name: route} for every route outside the API and the admin."""
    found: dict[str, str] = {}
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if route.startswith(EXCLUDED_PREFIXES):
            continue
        if isinstance(entry, URLResolver):
            inner = ":".join(n for n in (namespace, entry.namespace or "") if n)
            found.update(page_routes(entry, route, inner))
        elif isinstance(entry, URLPattern):
            assert entry.name, f"the page route {route!r} needs a name (and a row here)"
            found[f"{namespace}:{entry.name}" if namespace else entry.name] = route
    return found


def test_every_page_route_has_a_row_and_every_row_a_route():
    routes = page_routes()
    assert sorted(set(routes) - set(PAGES)) == [], "add a row to PAGES for each new page route"
    assert sorted(set(PAGES) - set(routes)) == []
    for name, (_, answers) in PAGES.items():
        for method, cells in answers.items():
            assert set(cells) == set(CALLERS), (name, method)


def _close(response) -> None:
    """Close a response (a download holds its file open) without the request_finished signal's
    close_old_connections, which the test client holds off during a request: inside the test's
    transaction it would close the PostgreSQL connection under the test."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def matches(response, expected: int | str) -> bool:
    if expected == LOGIN:
        return response.status_code == 302 and response["Location"].startswith(reverse("login"))
    return response.status_code == expected


@pytest.mark.django_db
def test_every_caller_gets_the_answer_of_the_page_matrix(role_user, settings, tmp_path,
                                                         django_capture_on_commit_callbacks):
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    people = make_people(role_user)
    with django_capture_on_commit_callbacks(execute=True):  # the evidence export is built
        world = seed_pages(people)
    clients = {"anonymous": Client()}
    for who in CALLERS[1:]:
        clients[who] = Client()
        clients[who].force_login(people[who])
    wrong = []
    for name, (kwargs, answers) in PAGES.items():
        url = reverse(name, kwargs={k: world.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()})
        for method, cells in answers.items():
            for caller, expected in cells.items():
                if expected == ACTS:
                    continue
                response = getattr(clients[caller], method)(url, {}) if method == "post" else clients[caller].get(url)
                if not matches(response, expected):
                    wrong.append(f"{method.upper()} {url} as {caller}: {response.status_code} (expected {expected})")
                _close(response)
    assert not wrong, "\n".join(wrong)
