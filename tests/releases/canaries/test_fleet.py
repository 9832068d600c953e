"""The fleet page: every active canary in one row, with a fixed number of queries whatever the
number of canaries; sortable, filterable, and only what the viewer may see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from governance.access.permissions import Role
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from tests.factories import make_evaluation, window_inputs

pytestmark = pytest.mark.django_db
URL = reverse("releases:fleet")


@pytest.fixture(autouse=True)
def _router_dir(settings, tmp_path) -> None:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
        "nobody": role_user(username="nobody"),
    }


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def start(people, name: str, *, tier: str = "low") -> Canary:
    platform = people["platform"]
    services.model_register(actor=platform, name=name, display_name=name, risk_tier=tier, owner="owner",
                            on_call="oncall@example.test")
    services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")
    return lifecycle.canary_initiate(actor=people["owner"], model_name=name, version="1.1.0", schedule="standard")


def with_history(canary: Canary, diffs: list[float]) -> None:
    now = timezone.now()
    for i, diff in enumerate(diffs):
        make_evaluation(canary, window_end=now - timedelta(minutes=len(diffs) - i),
                        inputs=window_inputs(difference_pp=diff), error_rate="insufficient" if i % 2 else "green")


def test_every_active_canary_is_a_row_with_its_state_gates_and_sparkline(people):
    running = start(people, "alpha")
    with_history(running, [0.01, 0.03, 0.02])
    pending = start(people, "bravo", tier="high")  # waits for owner + MRM to sign the start
    ended = start(people, "charlie")
    lifecycle.canary_rollback(actor=people["owner"], canary_id=ended.pk, reason="bad")
    response = client_for(people["platform"]).get(URL)
    assert response.status_code == 200
    rows = {row.canary.pk: row for row in response.context["rows"]}
    assert set(rows) == {running.pk, pending.pk}
    assert rows[pending.pk].who == "Model owner + Model risk (MRM)"
    assert rows[running.pk].who == "—"
    assert [g["status"] for g in rows[running.pk].gates] == ["green"] * 5
    assert rows[running.pk].spark_last == "0.020"
    assert len(rows[running.pk].spark.split()) == 3
    assert rows[running.pk].to_next is not None and rows[running.pk].to_next > timedelta(hours=23)
    html = response.content.decode()
    assert f'data-canary="{running.pk}"' in html and "<polyline" in html
    assert f'data-canary="{ended.pk}"' not in html


def test_queries_do_not_grow_with_the_canaries(people):
    client = client_for(people["platform"])

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(URL).status_code == 200
        return len(queries)

    for name in ("a1", "a2"):
        with_history(start(people, name), [0.01, 0.02])
    few = count()
    for name in ("b1", "b2", "b3", "b4", "b5"):
        with_history(start(people, name, tier="high" if name == "b1" else "low"), [0.01, 0.02, 0.05])
    assert count() == few


def test_sort_and_filter(people):
    start(people, "zulu")
    start(people, "alpha")
    start(people, "mike", tier="high")
    client = client_for(people["platform"])
    names = lambda response: [row.canary.model.name for row in response.context["rows"]]  # noqa: E731
    assert names(client.get(URL, {"sort": "model"})) == ["alpha", "mike", "zulu"]
    assert names(client.get(URL, {"sort": "model", "desc": "1"})) == ["zulu", "mike", "alpha"]
    assert names(client.get(URL, {"who": "Model risk (MRM)"})) == ["mike"]
    assert names(client.get(URL, {"state": "pending_approval"})) == ["mike"]
    assert names(client.get(URL, {"q": "ulu"})) == ["zulu"]
    # Unknown sorts and states are ignored, not errors.
    assert client.get(URL, {"sort": "evil", "state": "nonsense"}).status_code == 200
    # The htmx refresh gets the table alone.
    fragment = client.get(URL, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="fleet-table"' in fragment and "<html" not in fragment


def test_who_sees_the_fleet(people):
    canary = start(people, "alpha")
    assert [r.canary.pk for r in client_for(people["owner"]).get(URL).context["rows"]] == [canary.pk]
    # A service account's session has no token scope: it sees no canary.
    assert client_for(people["bot"]).get(URL).context["rows"] == []
    assert client_for(people["nobody"]).get(URL).status_code == 403
    anonymous = Client().get(URL)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_pages_of_the_fleet(people, monkeypatch):
    from releases.canaries import fleet

    monkeypatch.setattr(fleet, "PAGE_SIZE", 2)
    for name in ("a", "b", "c"):
        start(people, name)
    client = client_for(people["platform"])
    first = client.get(URL, {"sort": "model"})
    assert [r.canary.model.name for r in first.context["rows"]] == ["a", "b"]
    assert "Showing 1–2." in first.content.decode() and 'data-testid="fleet-pages"' in first.content.decode()
    second = client.get(URL, {"sort": "model", "page": "2"})
    assert [r.canary.model.name for r in second.context["rows"]] == ["c"]
    assert client.get(URL, {"page": "x"}).status_code == 200
