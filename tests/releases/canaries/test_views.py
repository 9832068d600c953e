"""The canary pages through Django's test client: the start form and its preview, the canary
page and its live fragment, the signing, rollback and abort dialogs, the inbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from governance.access.permissions import Role
from releases.canaries import services as lifecycle
from releases.canaries.models import Approval, Canary
from releases.register import services
from releases.register.models import ModelVersion
from tests.factories import PASSWORD, make_evaluation

pytestmark = pytest.mark.django_db

State = Canary.State
STATEMENT = "I reviewed the evaluation and approve this step."
HTMX = {"HTTP_HX_REQUEST": "true"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def _router_dir(settings, tmp_path) -> None:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner", first_name="Olivia", last_name="Owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm", first_name="Mira", last_name="Validator"),
        "risk": role_user(Role.RISK_OFFICER, username="risk"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),
        "stranger": role_user(Role.MODEL_OWNER, username="stranger"),
    }


def register(people, *, name: str = "scorer", tier: str = "medium") -> None:
    platform = people["platform"]
    services.model_register(
        actor=platform, name=name, display_name=name.title(), risk_tier=tier, owner="owner", on_call="oncall@example.test"
    )
    services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri="s3://1", status="production")
    services.version_register(actor=platform, model_name=name, version="1.1.0", artifact_uri="s3://2")


def start(people, *, tier: str = "medium", schedule: str = "standard", name: str = "scorer") -> Canary:
    register(people, name=name, tier=tier)
    return lifecycle.canary_initiate(actor=people["owner"], model_name=name, version="1.1.0", schedule=schedule)


def make_ready(canary: Canary):
    """Residence served and a fresh green evaluation: the stage can collect signatures."""
    Canary.objects.filter(pk=canary.pk).update(stage_entered_at=timezone.now() - timedelta(hours=49))
    canary.refresh_from_db()
    return make_evaluation(canary, window_end=timezone.now())


def start_data(**overrides) -> dict[str, str]:
    data = {
        "schedule": "standard",
        "segmentation_strategy": "random",
        "segmentation_values": "",
        "rationale": "",
        "shadow_evidence_ref": "",
        "rollback_contact": "oncall@example.test",
    }
    return {**data, **overrides}


def sign_data(evaluation=None, **overrides) -> dict[str, str]:
    data = {
        "statement": STATEMENT,
        "password": PASSWORD,
        "evaluation_hash": evaluation.content_hash if evaluation else "",
    }
    return {**data, **overrides}


START_URL = "/models/scorer/versions/1.1.0/canary/new/"


# --- starting a canary ------------------------------------------------------------------------------


def test_start_form_prefills_the_on_call_and_recommends_conservative_for_high_risk(people):
    register(people, tier="high")
    response = client_for(people["owner"]).get(START_URL)
    assert response.status_code == 200
    form = response.context["form"]
    assert form["rollback_contact"].value() == "oncall@example.test"
    assert form["schedule"].value() == "conservative"
    assert "Model owner + Model risk (MRM)" in response.content.decode()


def test_preview_fragment_shows_stages_residence_timeline_signatures_and_warnings(people):
    register(people, tier="high")
    response = client_for(people["owner"]).get(
        START_URL, {"schedule": "standard", "segmentation_strategy": "random"}, **HTMX
    )
    assert response.status_code == 200
    assert "HX-Request" in response["Vary"]
    body = response.content.decode()
    assert "<html" not in body and 'id="canary-preview"' in body
    preview = response.context["preview"]
    assert [row["label"] for row in preview["rows"]] == ["1%", "5%", "10%", "25%", "50%", "100% (everyone)"]
    assert preview["residence"] == timedelta(hours=48)
    assert {row["signatures"] for row in preview["rows"]} == {"Model owner + Model risk (MRM)"}
    earliest = [row["earliest"] for row in preview["rows"]]
    assert earliest[1] - earliest[0] == timedelta(hours=48)
    assert "48 h" in body
    assert any("recommends the conservative schedule" in w for w in preview["warnings"])


def test_preview_of_a_medium_risk_canary_says_it_starts_at_once(people, settings):
    settings.CLOCK_SPEED = 24.0
    register(people, tier="medium")
    response = client_for(people["owner"]).get(START_URL, {"schedule": "conservative"}, **HTMX)
    rows = response.context["preview"]["rows"]
    assert rows[0]["signatures"] == "none (starts at 1% immediately)"
    assert [row["signatures"] for row in rows[1:-1]] == ["Model owner"] * 5
    assert rows[-1]["signatures"] == "Model owner + Model risk (MRM)"  # the final step needs the initial deployment's chain
    assert response.context["preview"]["residence"] == timedelta(hours=1)
    assert response.context["preview"]["warnings"] == []


def test_preview_of_cohort_first_names_the_stages_after_the_cohorts(people):
    register(people)
    response = client_for(people["owner"]).get(
        START_URL,
        {"schedule": "cohort_first", "segmentation_strategy": "cohort", "segmentation_values": "staff, beta-testers"},
        **HTMX,
    )
    preview = response.context["preview"]
    assert [row["label"] for row in preview["rows"]] == ["cohort staff", "cohort beta-testers", "100% (everyone)"]
    assert any("cohort segmentation" in w for w in preview["warnings"])


def test_owner_starts_a_canary_through_the_form(people):
    register(people)
    response = client_for(people["owner"]).post(
        START_URL,
        start_data(
            segmentation_strategy="region", segmentation_values="eu-west, eu-north",
            rationale="EU regions first: the fairness review found no vulnerable segment there.",
            rollback_contact="pager:scorer",
        ),
        follow=True,
    )
    canary = Canary.objects.get()
    assert response.redirect_chain == [(f"/canaries/{canary.pk}/", 302)]
    assert (canary.state, canary.traffic_percent, canary.initiated_by) == (State.RUNNING, 1, people["owner"])
    assert canary.segmentation == {"strategy": "region", "values": ["eu-west", "eu-north"]}
    assert canary.rollback_contact == "pager:scorer"
    assert f"Canary #{canary.pk} of scorer@1.1.0 started at 1% of traffic." in response.content.decode()


def test_a_high_risk_start_waits_for_signatures_and_says_so(people):
    register(people, tier="high")
    response = client_for(people["owner"]).post(START_URL, start_data(schedule="conservative"), follow=True)
    canary = Canary.objects.get()
    assert canary.state == State.PENDING_APPROVAL
    assert "It starts when Model owner + Model risk (MRM) have signed the start." in response.content.decode()


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"schedule": "accelerated"}, "schedule", "only for low-risk models"),
        ({"segmentation_strategy": "region", "segmentation_values": "eu-west"}, "rationale", "fairness review"),
        ({"segmentation_values": "eu-west"}, "segmentation_values", "random segmentation takes no values"),
        ({"segmentation_strategy": "cohort"}, "segmentation_values", "needs at least one value"),
        ({"rollback_contact": ""}, "rollback_contact", "required"),
    ],
)
def test_start_form_errors_land_on_their_fields(people, overrides, field, text):
    register(people)
    response = client_for(people["owner"]).post(START_URL, start_data(**overrides))
    assert response.status_code == 400
    assert text in " ".join(response.context["form"].errors[field])
    assert not Canary.objects.exists()
    # The preview follows what was submitted, so the page still explains the schedule.
    assert response.context["preview"]["rows"]


def test_a_second_active_canary_is_refused_on_the_form(people):
    start(people)
    services.version_register(actor=people["platform"], model_name="scorer", version="1.2.0", artifact_uri="s3://3")
    client = client_for(people["owner"])
    page = client.get("/models/scorer/versions/1.2.0/canary/new/")
    assert b"already has an active canary" in page.content
    response = client.post("/models/scorer/versions/1.2.0/canary/new/", start_data())
    assert response.status_code == 409
    assert "already has an active canary" in " ".join(response.context["form"].non_field_errors())


@pytest.mark.parametrize("who", ["mrm", "risk", "stranger"])
def test_who_may_not_start_a_canary_is_refused_the_form(people, who):
    register(people)
    client = client_for(people[who])
    assert client.get(START_URL).status_code == 403
    assert client.post(START_URL, start_data()).status_code == 403
    assert not Canary.objects.exists()


def test_start_button_shows_on_a_registered_version_for_its_owner_only(people):
    register(people)
    owner, risk = client_for(people["owner"]), client_for(people["risk"])
    assert START_URL.encode() in owner.get("/models/scorer/versions/1.1.0/").content
    assert START_URL.encode() in owner.get("/models/scorer/").content
    assert b"Start a canary" not in owner.get("/models/scorer/versions/1.0.0/").content  # production
    assert b"Start a canary" not in risk.get("/models/scorer/versions/1.1.0/").content
    assert b"Start a canary" not in risk.get("/models/scorer/").content


def test_model_and_version_pages_list_the_canaries(people):
    canary = start(people)
    for url in ("/models/scorer/", "/models/scorer/versions/1.1.0/"):
        body = client_for(people["risk"]).get(url).content.decode()
        assert f'href="/canaries/{canary.pk}/"' in body


# --- the list -----------------------------------------------------------------------------------------


def test_list_is_newest_first_and_filters_by_state_and_model(people):
    first = start(people, name="scorer")
    lifecycle.canary_abort(actor=people["owner"], canary_id=first.pk, reason="release train cancelled")
    second = start(people, name="ranker", tier="high")
    client = client_for(people["risk"])
    assert [c.pk for c in client.get("/canaries/").context["canaries"]] == [second.pk, first.pk]
    assert [c.pk for c in client.get("/canaries/", {"state": "active"}).context["canaries"]] == [second.pk]
    assert [c.pk for c in client.get("/canaries/", {"state": "aborted"}).context["canaries"]] == [first.pk]
    fragment = client.get("/canaries/", {"model": "scorer"}, **HTMX)
    assert [c.pk for c in fragment.context["canaries"]] == [first.pk]
    assert b"<html" not in fragment.content and "HX-Request" in fragment["Vary"]
    # An unknown filter value means no filter, as on the register list.
    assert len(client.get("/canaries/", {"state": "exploded"}).context["canaries"]) == 2


def test_canary_pages_need_a_login_and_a_role(people, role_user, client: Client):
    canary = start(people)
    for url in ("/canaries/", f"/canaries/{canary.pk}/", "/inbox/", START_URL):
        assert client.get(url).status_code == 302
    nobody = client_for(role_user(username="nobody"))
    assert nobody.get("/canaries/").status_code == 403
    assert client_for(people["owner"]).get("/canaries/999/").status_code == 404


# --- the canary page ----------------------------------------------------------------------------------


def test_canary_page_shows_stage_timeline_step_readiness_and_record(people):
    canary = start(people, tier="high", schedule="conservative")
    response = client_for(people["owner"]).get(f"/canaries/{canary.pk}/")
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    body = response.content.decode()
    assert "Pending approval" in body and 'data-testid="traffic-percent">0%' in body
    assert [row["status"] for row in response.context["stage_rows"]] == ["upcoming"] * 7
    assert [r["role"] for r in response.context["required"]] == ["owner", "mrm"]
    assert response.context["readiness"].ready
    assert [s["role"] for s in response.context["signable"]] == ["owner"]
    assert "Sign as Model owner" in body and "Sign as Model risk (MRM)" not in body
    assert "Abort" in body and "Roll back" not in body  # a canary that never served is aborted, not rolled back
    assert "canary ≤ production + 0.1 pp" in body  # the frozen thresholds
    assert "oncall@example.test" in body and "Conservative" in body


def test_live_fragment_refreshes_at_the_evaluation_cadence(people, settings):
    settings.EVALUATION_CADENCE_S = 15
    canary = start(people)
    make_evaluation(canary, window_end=timezone.now(), latency_p99="red")
    response = client_for(people["owner"]).get(f"/canaries/{canary.pk}/", **HTMX)
    body = response.content.decode()
    assert "<html" not in body and "HX-Request" in response["Vary"]
    assert 'hx-trigger="every 15s"' in body
    assert "Initiation record" not in body  # the frozen parts are not re-sent
    assert "minimum residence" in body  # not ready: the readiness reason
    assert [g["status"] for g in response.context["gates"]] == ["green", "red", "green", "green", "green"]


def test_a_finished_canary_page_stops_refreshing(people):
    canary = start(people)
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="users complain")
    body = client_for(people["owner"]).get(f"/canaries/{canary.pk}/").content.decode()
    assert "hx-trigger" not in body.split('id="canary-live"')[1].split(">")[0]
    assert "users complain" in body


def test_a_held_canary_shows_why(people):
    canary = start(people)
    Canary.objects.filter(pk=canary.pk).update(stage_entered_at=timezone.now() - timedelta(hours=25))
    make_evaluation(canary, window_end=timezone.now(), quality="insufficient")
    lifecycle.canary_reconcile(canary_id=canary.pk)
    body = client_for(people["owner"]).get(f"/canaries/{canary.pk}/").content.decode()
    assert 'data-testid="canary-state">Held' in body
    assert "Held — what it waits for" in body
    assert "<strong>Quality score</strong>: " in body and "<strong>Held:</strong> quality" not in body
    assert "Sign as Model owner" not in body


def test_risk_officer_sees_the_canary_but_no_buttons(people):
    canary = start(people)
    make_ready(canary)
    response = client_for(people["risk"]).get(f"/canaries/{canary.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    for button in ("Sign as Model owner", "Sign as Model risk (MRM)", "Roll back", "Abort"):
        assert button not in body
    client = client_for(people["risk"])
    assert client.post(f"/canaries/{canary.pk}/rollback/", {"reason": "no"}).status_code == 403
    assert client.post(f"/canaries/{canary.pk}/abort/", {"reason": "no"}).status_code == 403
    assert client.get(f"/canaries/{canary.pk}/sign/owner/").status_code == 403


# --- signing ------------------------------------------------------------------------------------------


def test_owner_signs_the_start_in_the_dialog(people):
    canary = start(people, tier="high", schedule="conservative")
    client = client_for(people["owner"])
    dialog = client.get(f"/canaries/{canary.pk}/sign/owner/", **HTMX)
    body = dialog.content.decode()
    assert "<dialog" in body and "<html" not in body
    assert f"approves starting canary #{canary.pk} of scorer@1.1.0 at 1% of traffic" in body
    assert 'name="password"' in body and 'type="password"' in body
    response = client.post(f"/canaries/{canary.pk}/sign/owner/", sign_data(), **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == f"/canaries/{canary.pk}/"
    approval = Approval.objects.get()
    assert (approval.role, approval.printed_name, approval.step) == ("owner", "Olivia Owner", "start")
    page = client.get(f"/canaries/{canary.pk}/").content.decode()
    assert "Still needed: Model risk (MRM)." in page
    assert "Sign as Model owner" not in page  # signed already


def test_promotion_dialog_shows_the_evaluation_signed_on_and_promotes(people):
    canary = start(people)
    evaluation = make_ready(canary)
    client = client_for(people["owner"])
    body = client.get(f"/canaries/{canary.pk}/sign/owner/", **HTMX).content.decode()
    assert f"You are signing on evaluation\n        <span class=\"mono\" title=\"{evaluation.content_hash}\">" in body
    assert evaluation.content_hash[:12] in body
    assert f'name="evaluation_hash" value="{evaluation.content_hash}"' in body
    assert "from 1% to 5%" in body
    response = client.post(f"/canaries/{canary.pk}/sign/owner/", sign_data(evaluation), follow=True)
    canary.refresh_from_db()
    assert (canary.state, canary.stage_index, canary.traffic_percent) == (State.RUNNING, 1, 5)
    assert "Stage 2 entered: 5%." in response.content.decode()
    assert Approval.objects.get().evaluation_hash == evaluation.content_hash


def test_wrong_password_is_shown_in_the_dialog_and_nothing_is_signed(people):
    canary = start(people, tier="high", schedule="conservative")
    client = client_for(people["owner"])
    response = client.post(f"/canaries/{canary.pk}/sign/owner/", sign_data(password="not my password"), **HTMX)
    # htmx swaps only 2xx answers: the dialog with its error is the content.
    assert response.status_code == 200 and "HX-Redirect" not in response
    body = response.content.decode()
    assert "<dialog" in body and "re-authentication failed" in body
    assert not Approval.objects.exists()
    plain = client.post(f"/canaries/{canary.pk}/sign/owner/", sign_data(password="not my password"))
    assert plain.status_code == 403 and b"re-authentication failed" in plain.content


def test_a_newer_evaluation_is_refused_and_the_dialog_shows_the_newest(people):
    canary = start(people)
    seen = make_ready(canary)
    newer = make_evaluation(canary, window_end=timezone.now() + timedelta(seconds=1))
    response = client_for(people["owner"]).post(f"/canaries/{canary.pk}/sign/owner/", sign_data(seen), **HTMX)
    body = response.content.decode()
    assert "no longer the newest" in body
    assert f'name="evaluation_hash" value="{newer.content_hash}"' in body
    assert not Approval.objects.exists()


def test_a_stage_not_ready_is_explained_instead_of_a_form(people):
    canary = start(people)
    body = client_for(people["owner"]).get(f"/canaries/{canary.pk}/sign/owner/", **HTMX).content.decode()
    assert "You cannot sign now" in body and "minimum residence" in body
    assert 'name="password"' not in body
    response = client_for(people["owner"]).post(f"/canaries/{canary.pk}/sign/owner/", sign_data())
    assert response.status_code == 409 and b"not ready" in response.content


def test_statement_too_short_is_a_field_error(people):
    canary = start(people, tier="high", schedule="conservative")
    response = client_for(people["owner"]).post(f"/canaries/{canary.pk}/sign/owner/", sign_data(statement="ok"))
    assert response.status_code == 400
    assert "at least 10 characters" in " ".join(response.context["form"].errors["statement"])


@pytest.mark.parametrize(
    ("who", "role"),
    [("bot", "owner"), ("bot", "mrm"), ("risk", "owner"), ("risk", "mrm"), ("mrm", "owner"),
     ("owner", "mrm"), ("stranger", "owner"), ("platform", "owner")],
)
def test_who_may_not_sign_a_role_gets_403(people, who, role):
    canary = start(people, tier="high", schedule="conservative")
    client = client_for(people[who])
    assert client.get(f"/canaries/{canary.pk}/sign/{role}/").status_code == 403
    assert client.post(f"/canaries/{canary.pk}/sign/{role}/", sign_data()).status_code == 403
    assert not Approval.objects.exists()


def test_an_unknown_signature_role_is_404(people):
    canary = start(people)
    assert client_for(people["owner"]).get(f"/canaries/{canary.pk}/sign/ceo/").status_code == 404


# --- rollback and abort -------------------------------------------------------------------------------


def test_owner_rolls_back_through_the_page(people):
    canary = start(people)
    client = client_for(people["owner"])
    assert "Roll back" in client.get(f"/canaries/{canary.pk}/").content.decode()
    dialog = client.get(f"/canaries/{canary.pk}/rollback/", **HTMX).content.decode()
    assert "<dialog" in dialog and 'name="reason"' in dialog
    response = client.post(f"/canaries/{canary.pk}/rollback/", {"reason": "support tickets doubled"}, follow=True)
    canary.refresh_from_db()
    assert (canary.state, canary.traffic_percent, canary.end_reason) == (State.ROLLED_BACK, 0, "support tickets doubled")
    assert ModelVersion.objects.get(version="1.1.0").status == "rolled_back"
    body = response.content.decode()
    assert f"Canary #{canary.pk} rolled back" in body and 'data-testid="traffic-percent">0%' in body
    assert "Roll back</a>" not in body


def test_rollback_needs_a_reason(people):
    canary = start(people)
    response = client_for(people["owner"]).post(f"/canaries/{canary.pk}/rollback/", {"reason": "  "}, **HTMX)
    assert response.status_code == 200 and "HX-Redirect" not in response
    assert response.context["form"].errors["reason"]
    canary.refresh_from_db()
    assert canary.state == State.RUNNING


def test_platform_aborts_a_pending_canary(people):
    canary = start(people, tier="high", schedule="conservative")
    response = client_for(people["platform"]).post(f"/canaries/{canary.pk}/abort/", {"reason": "wrong artifact"}, **HTMX)
    assert response["HX-Redirect"] == f"/canaries/{canary.pk}/"
    canary.refresh_from_db()
    assert canary.state == State.ABORTED


def test_rolling_back_a_pending_canary_is_a_conflict_shown_in_the_form(people):
    canary = start(people, tier="high", schedule="conservative")
    response = client_for(people["owner"]).post(f"/canaries/{canary.pk}/rollback/", {"reason": "x"})
    assert response.status_code == 409
    assert "abort it instead" in " ".join(response.context["form"].non_field_errors())


# --- the inbox ----------------------------------------------------------------------------------------


def inbox_ids(user) -> list[int]:
    return [item.canary.pk for item in client_for(user).get("/inbox/").context["items"]]


def test_inbox_of_owner_and_mrm_for_a_high_risk_start(people):
    canary = start(people, tier="high", schedule="conservative")
    assert inbox_ids(people["owner"]) == [canary.pk]
    assert inbox_ids(people["mrm"]) == [canary.pk]
    assert inbox_ids(people["stranger"]) == []  # not their model
    body = client_for(people["owner"]).get("/canaries/").content.decode()
    assert 'data-testid="inbox-count"' in body
    lifecycle.canary_sign(actor=people["owner"], canary_id=canary.pk, role="owner", statement=STATEMENT, password=PASSWORD)
    assert inbox_ids(people["owner"]) == []  # signed
    assert inbox_ids(people["mrm"]) == [canary.pk]
    recent = client_for(people["owner"]).get("/inbox/").context["recent"]
    assert [a.step for a in recent] == ["start"]


def test_inbox_lists_a_promotion_only_when_ready_and_only_for_the_roles_it_needs(people):
    canary = start(people)  # medium risk: a middle promotion needs the owner alone
    assert inbox_ids(people["owner"]) == []  # residence not served
    make_ready(canary)
    assert inbox_ids(people["owner"]) == [canary.pk]
    assert inbox_ids(people["mrm"]) == []
    item = client_for(people["owner"]).get("/inbox/").context["items"][0]
    assert item.step == "Promote 1% → 5%" and [r["role"] for r in item.roles] == ["owner"]


def test_risk_officer_has_no_inbox_link(people):
    start(people, tier="high", schedule="conservative")
    body = client_for(people["risk"]).get("/canaries/").content.decode()
    assert 'href="/inbox/"' not in body and 'href="/canaries/"' in body
    assert client_for(people["risk"]).get("/inbox/").context["items"] == []


def test_platform_and_on_call_land_on_the_fleet_unless_work_waits(people, role_user):
    oncall = role_user(Role.ON_CALL, username="oncall")
    canary = start(people)
    for user in (people["platform"], oncall):
        client = client_for(user)
        assert client.get("/home/").url == "/fleet/", user
        assert client.get("/").url == "/fleet/", user  # `/` is their home too
        register = client.get("/models/")
        assert register.status_code == 200 and 'data-testid="model-table"' in register.content.decode()
    # The owner's `/` is still the register, the Fleet entry one click away in the navigation.
    page = client_for(people["owner"]).get("/")
    assert page.status_code == 200 and 'href="/fleet/"' in page.content.decode()
    assert client_for(people["owner"]).get("/home/").url == "/"
    # A rollback opens an incident whose root cause on-call files: the Inbox comes first.
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="users complain")
    assert client_for(oncall).get("/home/").url == "/inbox/"
    assert client_for(oncall).get("/").url == "/inbox/"
    fleet = client_for(oncall).get("/fleet/").content.decode()
    assert 'href="/fleet/" aria-current="page">Fleet</a>' in fleet


def test_a_login_lands_in_the_inbox_when_work_waits_and_the_inbox_names_it(people, role_user):
    governance = role_user(Role.AI_GOVERNANCE, username="gov")
    canary = start(people)
    assert client_for(governance).get("/home/").url == "/"  # nothing waits: the register
    Canary.objects.filter(pk=canary.pk).update(state=Canary.State.COMPLETED)
    client = client_for(governance)
    assert client.get("/home/").url == "/inbox/"
    body = client.get("/inbox/").content.decode()
    assert "Certificate to issue" in body and f"Canary #{canary.pk}" in body
    assert 'data-testid="inbox-count"' in body
