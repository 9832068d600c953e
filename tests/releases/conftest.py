"""Real parts for the routing tests: nginx with two version servers, and redis-server.

Session-scoped: starting nginx costs ~50 ms, but one nginx for the session also proves that
successive pushes reload a long-running server. Missing binaries fail these tests (pytest.fail),
they never skip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.nginx import NginxServer, NginxUnavailable, VersionServer
from tests.harness.redis import RedisServer, RedisUnavailable

PRODUCTION_VERSION = "1.0.0"
CANARY_VERSION = "1.1.0"


@pytest.fixture(scope="session")
def version_servers() -> Iterator[tuple[VersionServer, VersionServer]]:
    with VersionServer(PRODUCTION_VERSION) as production, VersionServer(CANARY_VERSION) as canary:
        yield production, canary


@pytest.fixture(scope="session")
def nginx_server() -> Iterator[NginxServer]:
    server = NginxServer()
    try:
        server.start()
    except NginxUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """Function-scoped: some tests kill it."""
    server = RedisServer()
    try:
        server.start()
    except RedisUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def upstreams(version_servers):
    production, canary = version_servers
    return {"scorer": {"production": [production.address], "canary": [canary.address], "location": "/scorer/"}}


@pytest.fixture
def nginx_router(nginx_server, upstreams):
    from releases.routing.routers.nginx import NginxRouter

    router = NginxRouter(**nginx_server.router_config(upstreams))
    yield router
    # Leave the session's nginx without this model for the next test.
    for path in (router.http_path("scorer"), router.server_path("scorer")):
        path.unlink(missing_ok=True)
    router._reload()
