"""The command line against a live CanaryHub (pytest-django's live server, Celery eager).

The CLI runs in this thread with its real argument parsing, HTTP layer and output; only its
`sleep` and clock are the test's. Each time the CLI sleeps between two looks at the canary, the
scenario's next step runs — an evaluation written as the evaluator would, a reconcile, a
signature given through the API by another user — so that the live server never serves a
request while this thread writes to the database, and a 72-hour timeout takes no time.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import Group

from canaryhub.cli.commands import main
from canaryhub.cli.http import Http
from governance.access.permissions import Role
from governance.tokens.services import token_create
from releases.register import services
from tests.factories import PASSWORD

# Stage residence: 24 h / 864,000 = 0.1 s (a test speed setting, as CANARYHUB_CLOCK_SPEED).
CLOCK_SPEED = 864_000
RESIDENCE_S = 24 * 3600 / CLOCK_SPEED
STATEMENT = "I reviewed the latest evaluation and approve this step."


@dataclass
class Hub:
    url: str
    people: dict[str, Any]
    tokens: dict[str, str]

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        """One API call as `who`, over HTTP with that user's own token. The connection is closed
        after it: a kept-alive one holds a live-server thread, and its database connection, open."""
        http = Http(self.url, token=self.tokens[who])
        try:
            return http.json(method, path, **kwargs)
        finally:
            http.close()

    def sign_next(self, canary_id: int) -> str:
        """The next outstanding signature of the canary's current step, by the person who may
        give it, through POST /approvals/ on the evaluation the API shows them."""
        detail = self.call("owner", "GET", f"/api/v1/canaries/{canary_id}/")
        role = detail["required_approvals"]["outstanding"][0]
        signer = "owner" if role == "owner" else "mrm"
        evaluation = detail["latest_evaluation"]
        self.call(signer, "POST", f"/api/v1/canaries/{canary_id}/approvals/", body={
            "role": role, "statement": STATEMENT, "password": PASSWORD,
            "evaluation_hash": evaluation["content_hash"] if evaluation else "",
        })
        return role


@pytest.fixture
def hub(live_server, settings, tmp_path, role_user) -> Hub:
    settings.CLOCK_SPEED = CLOCK_SPEED
    settings.PROMETHEUS_URL = ""  # metrics come from the push provider
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    # The flush that ends every live-server test deletes the role groups a migration wrote.
    for role in Role:
        Group.objects.get_or_create(name=role.value)
    people = {
        "owner": role_user(Role.MODEL_OWNER, username="olivia", first_name="Olivia", last_name="Owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "mrm": role_user(Role.MRM, username="mrm", first_name="Mira", last_name="Validator"),
        "auditor": role_user(Role.AUDITOR, username="auditor"),
        "ci": role_user(Role.SERVICE_ACCOUNT, username="ci-bot"),
    }
    platform = people["platform"]
    for name in ("scorer", "fraud"):
        services.model_register(actor=platform, name=name, display_name=name.title(), risk_tier="medium",
                                owner="olivia", on_call="oncall@example.test")
        services.version_register(actor=platform, model_name=name, version="1.0.0", artifact_uri=f"s3://{name}/1.0.0",
                                  status="production")
    services.version_register(actor=platform, model_name="fraud", version="1.1.0", artifact_uri="s3://fraud/1.1.0")
    tokens = {
        "ci": token_create(actor=platform, user=people["ci"], name="pipeline", scope=["scorer"])[1],
        # The model servers' token: pushes metric windows and nothing else.
        "pusher": token_create(actor=platform, user=people["ci"], name="metrics", scope=["scorer"],
                               purpose="observations")[1],
        **{who: token_create(actor=platform, user=people[who], name=f"{who} token")[1]
           for who in ("owner", "mrm", "auditor", "platform")},
    }
    return Hub(url=live_server.url, people=people, tokens=tokens)


class Driver:
    """The CLI's clock and sleep. `sleep(s)` moves the clock on by s and, in a scenario, lets a
    little real time pass (stage residence is real time on the server, 0.1 s here) and runs the
    scenario's next step."""

    def __init__(self, step: Callable[[], None] | None = None) -> None:
        self.now = 1000.0
        self.step = step
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.step is not None:
            time.sleep(RESIDENCE_S * 1.2)
            self.step()


@dataclass
class Run:
    code: int
    out: str
    err: str
    lines: list[str] = field(default_factory=list)


def run_cli(hub: Hub, argv: Sequence[str], *, token: str | None = None, driver: Driver | None = None,
            env: dict[str, str] | None = None) -> Run:
    """`canaryhub ARGV` with CANARYHUB_URL and CANARYHUB_TOKEN set (the CI token by default).
    Whatever it prints, the token must not be in it."""
    token = hub.tokens["ci"] if token is None else token
    stdout, stderr = io.StringIO(), io.StringIO()
    driver = driver or Driver()
    code = main(list(argv), env={"CANARYHUB_URL": hub.url, "CANARYHUB_TOKEN": token, **(env or {})},
                stdout=stdout, stderr=stderr, sleep=driver.sleep, clock=driver.clock)
    out, err = stdout.getvalue(), stderr.getvalue()
    for secret in hub.tokens.values():
        assert secret not in out and secret not in err, "a token was printed"
    if token:
        assert token not in out and token not in err, "the token was printed"
    return Run(code=code, out=out, err=err, lines=out.splitlines())


@pytest.fixture
def cli(hub: Hub) -> Iterator[Callable[..., Run]]:
    def run(*argv: str, **kwargs: Any) -> Run:
        return run_cli(hub, argv, **kwargs)

    yield run
