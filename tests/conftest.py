"""Shared fixtures. Runs on SQLite by default and on the real PostgreSQL server when the
harness (`python -m tests.harness`) sets DATABASE_URL; tests marked `postgres` run only there
(deselected, not skipped, on SQLite: the PostgreSQL pass of `make test` runs them).

A test that asks for no database (no `db`, `transactional_db` or `live_server` fixture and no
`django_db` mark) cannot reach one: pytest-django refuses it the connection. Its answer is the
same on either database, so it runs once, in the SQLite pass, and is deselected in the
PostgreSQL pass. A test that reaches a database some other way (a server process of its own)
says so with the `every_database` mark."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection

from governance.access.permissions import Role
from governance.audit.services import protection_install_sql, protection_remove_sql, protection_run
from tests.factories import UserFactory

# A speed setting only: real password hashing costs ~0.3 s per user and the matrix makes
# hundreds. Signing still re-checks passwords through the same API.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The tests' routers (webhook receivers, nginx) listen on loopback: allowed here explicitly, as a
# deployment would (tests/releases/routing/test_webhook_router.py proves the refusal without it).
settings.CANARYHUB_ROUTER_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
# No watchdog thread in the test process: tests call the checks it runs (releases.canaries.loop)
# themselves, at the moments they choose.
settings.WATCHDOG_INTERVAL_S = 0


def _serve_one_request_at_a_time_on_sqlite() -> None:
    """pytest-django's live server shares the test's in-memory SQLite connection with its request
    threads; two requests at once on that one connection (a page's htmx refresh beside a click)
    fail with "database table is locked". On SQLite the live server answers one request at a
    time; on PostgreSQL each thread has its own connection and requests stay concurrent."""
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        from django.core.servers.basehttp import WSGIServer
        from django.test.testcases import LiveServerThread

        class OneRequestAtATime(WSGIServer):
            def __init__(self, *args, connections_override=None, **kwargs):
                super().__init__(*args, **kwargs)  # the thread itself holds the shared connection

        LiveServerThread.server_class = OneRequestAtATime


_serve_one_request_at_a_time_on_sqlite()


def pytest_configure(config: pytest.Config) -> None:
    # Unit tests run tasks inline when their transaction commits; the integration tests that
    # need a real worker and broker start them themselves.
    from canaryhub.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


_DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}
)


def _needs_a_database(item: pytest.Item) -> bool:
    return bool(
        _DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
        or any(item.get_closest_marker(mark) for mark in ("django_db", "postgres", "faults", "every_database"))
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    keep, drop = [], []
    for item in items:
        if on_postgres:
            (keep if _needs_a_database(item) else drop).append(item)
        else:
            (drop if item.get_closest_marker("postgres") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _audit_protection(request: pytest.FixtureRequest):
    """Every test that touches the database sees the audit trail's append-only triggers.

    Transactional tests (and the live server) end with a flush that TRUNCATEs or DELETEs every
    table, which those triggers rightly refuse: lift them for that flush only. The next test
    puts them back (inside its own transaction, for ordinary tests)."""
    marker = request.node.get_closest_marker("django_db")
    transactional = (
        (marker is not None and marker.kwargs.get("transaction"))
        or "transactional_db" in request.fixturenames
        or "live_server" in request.fixturenames
    )
    uses_db = transactional or marker is not None or "db" in request.fixturenames
    if not uses_db:
        yield
        return
    request.getfixturevalue("transactional_db" if transactional else "db")
    protection_run(protection_install_sql(connection.vendor))
    yield
    if transactional:
        protection_run(protection_remove_sql(connection.vendor))


@pytest.fixture
def role_user(db):
    """Make a user in a role: `role_user(Role.MRM, username="mia")`."""

    def make(*roles: Role | str, **kwargs):
        user = UserFactory(**kwargs)
        for role in roles:
            # get_or_create: the flush after a transactional test also empties the groups that
            # the roles migration created.
            user.groups.add(Group.objects.get_or_create(name=str(role))[0])
        return user

    return make


@pytest.fixture
def owner(role_user):
    return role_user(Role.MODEL_OWNER, username="owner")


@pytest.fixture
def platform(role_user):
    return role_user(Role.PLATFORM, username="platform")


@pytest.fixture
def mrm(role_user):
    return role_user(Role.MRM, username="mrm")
