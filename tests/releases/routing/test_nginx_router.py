"""The nginx router against a real nginx: proportions, stickiness, rollback, refused configs."""

from __future__ import annotations

import http.client
import json
from datetime import timedelta

import pytest

from releases.routing.assignment import CANARY, canary_boundary, decide, murmur2
from releases.routing.routers import PermanentRouterError, Split, StaleSplitError
from releases.routing.routers.nginx import NginxRouter, render
from tests.releases.conftest import CANARY_VERSION, PRODUCTION_VERSION

USERS = [f"user-{i:05d}" for i in range(2000)]
DAY = timedelta(hours=24)


def split(**overrides) -> Split:
    fields = {"model": "scorer", "production_version": PRODUCTION_VERSION, "canary_version": CANARY_VERSION,
              "percent": 5, "canary_id": 7, "generation": 1}
    return Split(**{**fields, **overrides})


def traffic(nginx, users, *, path="/scorer/predict", headers=None) -> dict[str, str]:
    """The version nginx serves each user, over one fresh keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
    served = {}
    try:
        for user in users:
            conn.request("GET", path, headers={"X-User-Id": user, **(headers or {})})
            response = conn.getresponse()
            assert response.status == 200, response.read()
            served[user] = json.loads(response.read())["version"]
    finally:
        conn.close()
    return served


@pytest.fixture
def router(nginx_router):
    return nginx_router


# --- rendering (pure) -------------------------------------------------------------------------------


def test_render_puts_the_canary_part_first_so_buckets_grow_from_the_start_of_the_hash_space():
    http_conf, _ = render(split(percent=5), production=["127.0.0.1:1"], canary=["127.0.0.1:2"])
    body = http_conf.split("$canaryhub_scorer_bucket {", 1)[1].split("}", 1)[0]
    assert body.index("5% canary;") < body.index("* production;")
    assert '"c7:${http_x_user_id}"' in http_conf


@pytest.mark.parametrize(("percent", "line"), [(0, "* production;"), (100, "* canary;")])
def test_zero_and_hundred_percent_have_no_split_because_nginx_reads_0_percent_as_catch_all(percent, line):
    http_conf, _ = render(split(percent=percent), production=["127.0.0.1:1"], canary=["127.0.0.1:2"])
    body = http_conf.split("$canaryhub_scorer_bucket {", 1)[1].split("}", 1)[0]
    assert line in body and "%" not in body


def test_render_maps_segments_case_insensitively_and_refuses_unsafe_values():
    http_conf, _ = render(split(strategy="region", values=("EU-West", "default")), production=["a:1"], canary=["b:2"])
    assert "map $http_x_region $canaryhub_scorer_segment" in http_conf
    assert '"eu-west" 1;' in http_conf and '"\\default" 1;' in http_conf
    with pytest.raises(PermanentRouterError, match="cannot be routed"):
        render(split(strategy="cohort", values=('beta"; }',)), production=["a:1"], canary=["b:2"])


def test_assignment_hash_is_nginx_split_clients_arithmetic():
    # Reference values of MurmurHash2 as nginx computes it (checked against nginx below too).
    assert murmur2(b"") == 0
    assert canary_boundary(100) == 0xFFFFFFFF and canary_boundary(0) == 0


# --- real nginx -------------------------------------------------------------------------------------


def test_traffic_follows_each_stage_within_a_few_points_and_users_stay_sticky(router, nginx_server):
    in_canary: set[str] = set()
    for generation, percent in enumerate([1, 5, 10, 25, 50, 100], start=1):
        s = split(percent=percent, generation=generation)
        router.apply(s)
        assert router.read_back("scorer") == s
        served = traffic(nginx_server, USERS)
        now_canary = {u for u, v in served.items() if v == CANARY_VERSION}
        share = 100 * len(now_canary) / len(USERS)
        assert abs(share - percent) <= 3, f"{share:.1f}% on the canary at {percent}%"
        assert in_canary <= now_canary, "a canary user went back to production as the percent grew"
        # The assignment API's arithmetic predicts nginx exactly.
        assert now_canary == {u for u in USERS if decide(s, user=u, attributes={}) == CANARY}
        in_canary = now_canary


def test_rollback_sends_every_request_to_production_within_one_reload(router, nginx_server):
    router.apply(split(percent=50, generation=1))
    assert CANARY_VERSION in traffic(nginx_server, USERS[:400]).values()
    router.apply(split(percent=0, generation=2))  # one push: write, nginx -t, one reload, read back
    assert set(traffic(nginx_server, USERS).values()) == {PRODUCTION_VERSION}


def test_segmentation_sends_only_eligible_users_to_the_canary(router, nginx_server):
    router.apply(split(percent=100, generation=1, strategy="region", values=("eu-west",)))
    assert set(traffic(nginx_server, USERS[:200], headers={"X-Region": "EU-WEST"}).values()) == {CANARY_VERSION}
    assert set(traffic(nginx_server, USERS[:200], headers={"X-Region": "us-east"}).values()) == {PRODUCTION_VERSION}
    assert set(traffic(nginx_server, USERS[:200]).values()) == {PRODUCTION_VERSION}


def test_users_without_an_id_get_production(router, nginx_server):
    router.apply(split(percent=100, generation=1))
    conn = http.client.HTTPConnection("127.0.0.1", nginx_server.port, timeout=5)
    conn.request("GET", "/scorer/x")
    assert json.loads(conn.getresponse().read())["version"] == PRODUCTION_VERSION


def test_a_config_nginx_refuses_leaves_the_previous_one_serving(router, nginx_server, upstreams):
    good = split(percent=10, generation=1)
    router.apply(good)
    before = router.http_path("scorer").read_text()
    broken = NginxRouter(**nginx_server.router_config(
        {"scorer": {**upstreams["scorer"], "canary": ["127.0.0.1:99999"]}}  # port out of range: nginx -t fails
    ))
    with pytest.raises(PermanentRouterError, match="nginx -t refused") as info:
        broken.apply(split(percent=50, generation=2))
    assert "invalid port" in str(info.value) or "99999" in str(info.value)
    assert router.http_path("scorer").read_text() == before
    assert router.read_back("scorer") == good
    served = traffic(nginx_server, USERS[:500])
    assert {u for u, v in served.items() if v == CANARY_VERSION} == {
        u for u in USERS[:500] if decide(good, user=u, attributes={}) == CANARY
    }


def test_stale_and_conflicting_splits_are_refused_and_a_reapply_is_unchanged(router):
    router.apply(split(percent=10, generation=3))
    with pytest.raises(StaleSplitError):
        router.apply(split(percent=5, generation=2))
    with pytest.raises(PermanentRouterError, match="different split"):
        router.apply(split(percent=25, generation=3))
    assert router.apply(split(percent=10, generation=3)).changed is False


def test_unknown_model_is_a_permanent_error(router):
    with pytest.raises(PermanentRouterError, match="no upstreams"):
        router.apply(split(model="other"))
