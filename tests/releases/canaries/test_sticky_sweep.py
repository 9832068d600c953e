"""Sticky-session poisoning (pattern §13): assignments that disagree with the split in force are
detected and cleared, with a real Redis; the on-demand clear is a platform engineer's act."""

from __future__ import annotations

import redis
from django.test import Client
from rest_framework.test import APIClient

from canaryhub.api import REASON_MAX
from canaryhub.metrics import REGISTRY
from governance.access.permissions import Role
from governance.audit.models import AuditEvent
from governance.tokens.services import token_create
from releases.canaries import assign as api_assign
from releases.canaries import selectors, tasks
from releases.canaries import services as lifecycle
from releases.routing import assignment
from releases.routing.models import StickySweep
from releases.routing.routers import Split

# The canary fixtures of the assignment tests: a canary of "scorer" at 1 %, a scoped app token.
from tests.releases.canaries.test_assign import USERS as ALL_USERS
from tests.releases.canaries.test_assign import _fresh_caches, ask, canary, client, people, set_percent  # noqa: F401

USERS = ALL_USERS[:200]


def _split(c, percent):
    return Split(model="scorer", production_version="1.0.0", canary_version="1.1.0", percent=percent,
                 canary_id=c.pk, generation=c.split_generation)


def _redis(server):
    return redis.Redis.from_url(server.url)


# --- the pure rules ----------------------------------------------------------------------------------


def test_an_entry_agrees_only_when_genuine_and_of_the_canary_in_force_while_it_serves(settings):
    split = Split(model="m", production_version="1", canary_version="2", percent=5, canary_id=7, generation=3)
    key = f"{assignment.KEY_PREFIX}m:7:{'a' * 40}"
    genuine = assignment.store_value(key)
    assert assignment.sticky_clearance(key=key, value=genuine, in_force=split) is None
    assert assignment.sticky_clearance(key=key, value=b"1", in_force=split) == assignment.UNSIGNED
    assert assignment.sticky_clearance(key=key, value=None, in_force=split) == assignment.UNSIGNED
    assert assignment.sticky_clearance(key=f"{assignment.KEY_PREFIX}m:x", value=genuine,
                                       in_force=split) == assignment.UNSIGNED
    other = f"{assignment.KEY_PREFIX}m:6:{'a' * 40}"
    assert assignment.sticky_clearance(key=other, value=assignment.store_value(other),
                                       in_force=split) == assignment.NOT_SERVING
    stopped = Split(**{**split.__dict__, "percent": 0})
    assert assignment.sticky_clearance(key=key, value=genuine, in_force=stopped) == assignment.NOT_SERVING
    assert assignment.sticky_clearance(key=key, value=genuine, in_force=None) == assignment.NOT_SERVING
    settings.ASSIGNMENT_HASH_KEY = "another-deployment"  # a value made with another key is forged
    assert assignment.sticky_clearance(key=key, value=genuine, in_force=split) == assignment.UNSIGNED


def test_share_drift_needs_a_sample_and_more_than_tolerance_plus_noise():
    rule = dict(tolerance_pp=5.0, min_sample=200)
    assert not assignment.share_drifted(sticky=50, population=100, percent=5, **rule)  # too few users
    assert not assignment.share_drifted(sticky=52, population=1000, percent=5, **rule)
    assert not assignment.share_drifted(sticky=110, population=1000, percent=5, **rule)  # within 5 pp + noise
    assert assignment.share_drifted(sticky=150, population=1000, percent=5, **rule)
    assert assignment.share_drifted(sticky=0, population=1000, percent=25, **rule)
    assert not assignment.share_drifted(sticky=10, population=1000, percent=100, **rule)  # everyone is canary


# --- with a real Redis ----------------------------------------------------------------------------------


def test_a_forged_entry_is_not_honoured_and_the_sweep_clears_it_with_one_aggregated_audit_event(
    client, canary, redis_server, settings  # noqa: F811
):
    settings.REDIS_URL = redis_server.url
    set_percent(canary, 10)
    answers = {u: ask(client, u) for u in USERS}
    on_canary = [u for u, a in answers.items() if a["variant"] == "canary"]
    off = [u for u, a in answers.items() if a["variant"] == "production"][:5]
    store = _redis(redis_server)
    genuine = store.keys(f"{assignment.KEY_PREFIX}*")
    assert len(genuine) == len(on_canary)
    # Someone with access to the store pins five production users to the canary.
    for user in off:
        store.set(assignment.store_key(_split(canary, 10), user), b"1", ex=3600)
    assert all(ask(client, u)["variant"] == "production" for u in off), "a forged entry must not pin anyone"

    sweep = lifecycle.sticky_sweep()
    assert (sweep.scanned, sweep.cleared_unsigned, sweep.cleared_not_serving, sweep.cleared_share_drift) == (
        len(on_canary) + 5, 5, 0, 0)
    assert len(store.keys(f"{assignment.KEY_PREFIX}*")) == len(on_canary)  # the genuine ones stay
    event = AuditEvent.objects.get(action="sticky.cleared")
    assert event.actor is None and event.payload["cleared"]["unsigned"] == 5
    assert event.payload["by_canary"] == {str(canary.pk): {"unsigned": 5}}
    text = str(event.payload)
    assert not any(u in text for u in off) and assignment.KEY_PREFIX not in text  # counts, never ids or keys
    # Nothing more to clear: a quiet sweep leaves no audit event.
    assert lifecycle.sticky_sweep().cleared == 0
    assert AuditEvent.objects.filter(action="sticky.cleared").count() == 1


def test_after_a_rollback_the_periodic_sweep_clears_the_canarys_users_and_says_so_on_metrics(
    client, canary, people, redis_server, settings, django_capture_on_commit_callbacks  # noqa: F811
):
    settings.REDIS_URL = redis_server.url
    set_percent(canary, 10)
    on_canary = [u for u in USERS if ask(client, u)["variant"] == "canary"]
    assert on_canary
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="users complain", automatic=False)
    assert tasks.sticky_sweep() == len(on_canary)
    assert _redis(redis_server).keys(f"{assignment.KEY_PREFIX}*") == []
    sweep = StickySweep.objects.get(cleared_not_serving=len(on_canary))
    assert sweep.actor is None and sweep.by_canary == {str(canary.pk): {"not_serving": len(on_canary)}}
    selectors.metrics_refresh()
    assert REGISTRY.get_sample_value("canaryhub_sticky_cleared", {"reason": "not_serving"}) == len(on_canary)
    assert REGISTRY.get_sample_value("canaryhub_sticky_last_sweep_timestamp_seconds") > 0
    assert "sticky-sweep" in settings.CELERY_BEAT_SCHEDULE


def test_a_canary_share_drifting_from_the_percent_clears_its_entries_and_hashing_puts_users_back(
    client, canary, redis_server, settings  # noqa: F811
):
    settings.REDIS_URL = redis_server.url
    settings.STICKY_MIN_SAMPLE = 100
    set_percent(canary, 10)
    answers = {u: ask(client, u) for u in USERS}
    on_canary = {u for u, a in answers.items() if a["variant"] == "canary"}
    off = [u for u in USERS if u not in on_canary]
    # Genuine-looking entries for 80 production users (an insider with the key, or a bug): the
    # canary's share of the 200 eligible users asked becomes ~50 % at 10 %.
    store = _redis(redis_server)
    for user in off[:80]:
        key = assignment.store_key(_split(canary, 10), user)
        store.set(key, assignment.store_value(key), ex=3600)
    assert ask(client, off[0])["variant"] == "canary"  # pinned
    sweep = lifecycle.sticky_sweep()
    assert sweep.cleared_share_drift == len(on_canary) + 80
    assert sweep.drift[str(canary.pk)]["population"] >= 190 and sweep.drift[str(canary.pk)]["percent"] == 10
    # Cleared users are assigned again by the split: the canary's own users come back to it.
    again = {u: ask(client, u)["variant"] for u in USERS}
    assert {u for u, v in again.items() if v == "canary"} == on_canary


def test_the_embedded_memory_store_is_swept_too(client, canary, settings):  # noqa: F811
    settings.REDIS_URL = ""
    set_percent(canary, 10)
    on_canary = [u for u in USERS[:100] if ask(client, u)["variant"] == "canary"]
    store = api_assign._the_store()
    store.put(f"{assignment.KEY_PREFIX}scorer:{canary.pk}:{'f' * 40}", b"forged")
    assert lifecycle.sticky_sweep().cleared_unsigned == 1
    assert len(store.entries()) == len(on_canary)


def test_quiet_periodic_sweeps_share_one_row_and_a_sweep_that_clears_gets_its_own(client, canary,  # noqa: F811
                                                                                   settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.REDIS_URL = ""
    now = timezone.now()
    first = lifecycle.sticky_sweep(now=now)
    second = lifecycle.sticky_sweep(now=now + timedelta(minutes=5))
    assert second.pk == first.pk and StickySweep.objects.get().at == now + timedelta(minutes=5)
    api_assign._the_store().put(f"{assignment.KEY_PREFIX}scorer:{canary.pk}:{'e' * 40}", b"forged")
    third = lifecycle.sticky_sweep(now=now + timedelta(minutes=10))
    assert third.pk != first.pk and third.cleared_unsigned == 1
    # After a sweep that cleared something, a quiet one starts a new row: the clearing stays on record.
    fourth = lifecycle.sticky_sweep(now=now + timedelta(minutes=15))
    assert fourth.pk not in (first.pk, third.pk) and StickySweep.objects.count() == 3


# --- the on-demand clear: a platform engineer's act ---------------------------------------------------


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_only_a_platform_engineer_sweeps_on_demand_with_a_reason(canary, people, role_user, redis_server,  # noqa: F811
                                                                   settings):
    settings.REDIS_URL = redis_server.url
    body = {"reason": "users report switching versions"}
    url = "/api/v1/assignments/sweep/"
    # The model's owner, on-call, MRM and an auditor may not; their refusal comes before the body.
    for role in (Role.MODEL_OWNER, Role.ON_CALL, Role.MRM, Role.AUDITOR):
        user = people["owner"] if role is Role.MODEL_OWNER else role_user(role, username=f"r-{role.value}")
        assert _api(user).post(url, body, format="json").status_code == 403
    # A CI token scoped to the model, and anyone anonymous.
    _, ci = token_create(actor=people["platform"], user=people["app"], name="ci", scope=["scorer"])
    assert Client(HTTP_AUTHORIZATION=f"Bearer {ci}").post(url, body, content_type="application/json").status_code \
        == 403
    assert APIClient().post(url, body, format="json").status_code == 401
    platform = _api(people["platform"])
    # No reason, or a reason that says nothing.
    assert platform.post(url, {}, format="json").status_code == 400
    assert platform.post(url, {"reason": "x"}, format="json").status_code == 400
    # One character over the limit is refused as sent, even when trimming white space would fit it.
    too_long = platform.post(url, {"reason": "\r" + "x" * REASON_MAX}, format="json")
    assert too_long.status_code == 400 and "reason" in too_long.json()["errors"]
    assert not StickySweep.objects.exists() and not AuditEvent.objects.filter(action="sticky.cleared").exists()
    response = platform.post(url, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["cleared"] == {"not_serving": 0, "unsigned": 0, "share_drift": 0}
    event = AuditEvent.objects.get(action="sticky.cleared")  # asked for: audited even with nothing cleared
    assert event.actor == people["platform"] and event.payload["reason"] == body["reason"]


def test_an_on_demand_sweep_with_the_store_down_is_refused_and_clears_nothing(canary, people, redis_server,  # noqa: F811
                                                                            settings):
    settings.REDIS_URL = redis_server.url
    redis_server.kill()
    response = _api(people["platform"]).post("/api/v1/assignments/sweep/", {"reason": "users report switching"},
                                             format="json")
    assert response.status_code == 409 and "did not answer" in response.json()["detail"]
    assert not StickySweep.objects.exists()


def test_the_page_form_is_a_platform_act_too(canary, people, role_user, settings):  # noqa: F811
    settings.REDIS_URL = ""
    for user in (people["owner"], role_user(Role.ON_CALL, username="oc"), role_user(Role.AUDITOR, username="au")):
        browser = Client()
        browser.force_login(user)
        assert browser.get("/assignments/sticky/").status_code == 200  # everyone reads the counts
        assert browser.post("/assignments/sticky/", {"reason": "users report switching"}).status_code == 403
    assert not StickySweep.objects.exists()
    platform = Client()
    platform.force_login(people["platform"])
    assert platform.post("/assignments/sticky/", {"reason": "x"}).status_code == 400
    assert platform.post("/assignments/sticky/", {"reason": "users report switching"}).status_code == 302
    assert StickySweep.objects.get().actor == people["platform"]
