"""The demo reaches promotion: on the demo settings (`CANARYHUB_CLOCK_SPEED=1440`, simulator
traffic scaled with it), the seeded high-risk model's canary goes from start to certificate on
the built-in simulator's healthy traffic within 15 minutes of the deployment's time, with the
pattern's gates unchanged. The clock is driven here: the simulator plays each 15 s of traffic in
one step, pushes the window, and the control loop runs every 60 s, all at an explicit `now`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from governance.access.permissions import TOKEN_OBSERVATIONS, Principal
from governance.certificates.services import certificate_decide
from monitoring.llm import LLM_GATES
from monitoring.simulator import Pusher, Simulator
from releases.canaries import loop
from releases.canaries import selectors as canary_selectors
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.canaries.presenters import canary_page_context, data_rate
from releases.register.models import AIModel
from releases.register.services import observation_push

State = Canary.State
PASSWORD = "canaryhub-demo"
STATEMENT = "I reviewed the evaluation and approve this step."
PUSH_EVERY_S = 15
CADENCE_S = 60


class Demo:
    """The embedded demo with its clock in the test's hands."""

    def __init__(self, settings, tmp_path: Path, capture) -> None:
        self.capture = capture
        router_dir = tmp_path / "router"
        router_dir.mkdir()
        settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(router_dir)}}
        call_command("seed_demo", password=PASSWORD, stdout=open("/dev/null", "w"))
        users = get_user_model().objects
        self.people = {name: users.get(username=name) for name in ("owner", "mrm", "governance", "platform")}
        model_pk = AIModel.objects.get(name="support-assistant").pk
        bot = users.create(username="simulator")
        bot.groups.add(Group.objects.get(name="service_account"))
        principal = Principal(user=bot, scope=frozenset({model_pk}), token_purpose=TOKEN_OBSERVATIONS)
        self.sim = Simulator("support-assistant", "1.4.2", "1.5.0",
                             rps=settings.SIMULATOR_RPS * settings.SIMULATOR_TRAFFIC_SCALE, router_dir=router_dir)
        # The test drives the clock: each window is judged plausible at the time it is pushed.
        self.pusher = Pusher(self.sim, lambda body: observation_push(actor=principal, data=body,
                                                                     now=body["window_end"]))
        self.now = timezone.now().replace(microsecond=0)
        self.pusher.window_start = self.now
        self.started = self.now

    def run(self, seconds: float) -> None:
        """Let `seconds` of the deployment's time pass: traffic, pushes and control-loop rounds."""
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.sim.step(PUSH_EVERY_S)
            self.now += timedelta(seconds=PUSH_EVERY_S)
            self.pusher.push(now=self.now)
            if int((self.now - self.started).total_seconds()) % CADENCE_S == 0:
                with self.capture(execute=True):
                    loop.evaluate_tick(now=self.now)

    def sign(self, canary: Canary, who: str, role: str) -> None:
        evaluation = canary_selectors.latest_evaluation(canary)
        with self.capture(execute=True):
            lifecycle.canary_sign(actor=self.people[who], canary_id=canary.pk, role=role, statement=STATEMENT,
                                  password=PASSWORD, now=self.now,
                                  evaluation_hash=evaluation.content_hash if evaluation and canary.stage_entered_at
                                  else "")


@pytest.fixture
def demo(db, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.CLOCK_SPEED = 1440
    settings.SIMULATOR_TRAFFIC_SCALE = 1440
    settings.SIMULATOR_RPS = 50
    return Demo(settings, tmp_path, django_capture_on_commit_callbacks)


def test_the_demo_canary_goes_from_start_to_certificate_within_15_minutes(demo):
    with demo.capture(execute=True):
        canary = lifecycle.canary_initiate(actor=demo.people["owner"], model_name="support-assistant",
                                           version="1.5.0", now=demo.now)
    assert canary.model.risk_tier == "high"
    projections = []
    while canary.state not in (State.COMPLETED, State.ROLLED_BACK):
        waiting = canary_selectors.required_roles(canary) if canary.state in (
            State.PENDING_APPROVAL, State.AWAITING_APPROVAL) else set()
        for role in ("owner", "mrm"):
            if role in waiting and not canary.approvals.filter(step=canary_selectors.step_facts(
                    canary, now=demo.now).step.key, role=role).exists():
                demo.sign(canary, "owner" if role == "owner" else "mrm", role)
                canary.refresh_from_db()
        if canary.state in (State.COMPLETED, State.ROLLED_BACK):
            break
        demo.run(PUSH_EVERY_S)
        canary.refresh_from_db()
        if canary.stage_index == 0 and canary.state == State.RUNNING and not projections:
            context = canary_page_context(canary, user=demo.people["owner"], now=demo.now)
            if data_rate(context["evaluation"]) is not None:
                projections.append(context)
        assert demo.now - demo.started < timedelta(minutes=15), (canary.state, canary.stage_index, canary.hold_reason)
    assert canary.state == State.COMPLETED, canary.end_reason
    elapsed = demo.now - demo.started
    print(f"demo canary completed after {elapsed} of the deployment's time")
    assert elapsed < timedelta(minutes=15)
    # Every stage was passed on the gates' evidence, none by a shortcut: five promotions, each
    # signed by the owner and MRM (a high-risk model), each on a green evaluation.
    assert canary.approvals.filter(role="mrm").count() >= 5
    # The pushed windows carry tokens, cost, guardrail blocks and schema failures: the LLM gates
    # were judged, and green on the simulator's healthy traffic.
    last = {g["name"]: g["status"] for g in canary.evaluations.order_by("-window_end", "-id").first().gates}
    assert {name: last.get(name) for name in LLM_GATES} == dict.fromkeys(LLM_GATES, "green")
    # The page projected the end within the run, using time to enough data, not residence only.
    assert projections
    final = projections[0]["stage_rows"][-1]["earliest"]
    assert final is not None and final <= demo.started + timedelta(minutes=15)
    with demo.capture(execute=True):
        certificate_decide(actor=demo.people["governance"], canary_id=canary.pk, issue=True, now=demo.now)
    canary.refresh_from_db()
    assert canary.state == State.CERTIFIED


def test_unscaled_traffic_cannot_promote_in_the_demo_and_the_timeline_says_so(demo, settings):
    """The same demo without the scale: the stage needs hours of data, and the timeline's
    projection of the next stage says hours, not the 2-minute residence."""
    demo.sim.rps = settings.SIMULATOR_RPS  # 50 requests/s, as before the scale
    with demo.capture(execute=True):
        canary = lifecycle.canary_initiate(actor=demo.people["owner"], model_name="support-assistant",
                                           version="1.5.0", now=demo.now)
    for role in ("owner", "mrm"):
        demo.sign(canary, role, role)
    canary.refresh_from_db()
    assert canary.state == State.RUNNING
    demo.run(5 * 60)
    canary.refresh_from_db()
    assert canary.state == State.HELD
    context = canary_page_context(canary, user=demo.people["owner"], now=demo.now)
    next_row = context["stage_rows"][1]
    assert next_row["earliest"] is not None
    assert next_row["earliest"] - demo.now > timedelta(hours=1)
    residence_only = canary_selectors.residence_until(canary)
    assert residence_only < demo.now  # the residence alone would have promised "now"


def test_the_scale_is_said_in_the_banner_and_recorded_in_the_audit_trail(demo, client, settings):
    from governance.audit.models import AuditEvent  # noqa: PLC0415 - only this test reads the chain

    call_command("simulate", "support-assistant", "--production", "1.4.2", "--canary", "1.5.0",
                 "--production-port", "0", "--canary-port", "0", "--seconds", "0.6", "--push-every", "0.5",
                 stdout=open("/dev/null", "w"))
    started = AuditEvent.objects.get(action="simulator.started")
    assert (started.payload["traffic_scale"], started.payload["requests_per_s"]) == (1440, 72000)
    with demo.capture(execute=True):
        canary = lifecycle.canary_initiate(actor=demo.people["owner"], model_name="support-assistant",
                                           version="1.5.0", now=demo.now)
    initiated = AuditEvent.objects.get(action="canary.initiated", object_id=str(canary.pk))
    assert initiated.payload["simulator_traffic_scale"] == 1440
    client.force_login(demo.people["owner"])
    banner = client.get(f"/canaries/{canary.pk}/").content.decode()
    assert "scaled 1440× (72,000 requests/s)" in banner
    settings.SIMULATOR_TRAFFIC_SCALE = 1
    assert "data-testid=\"traffic-banner\"" not in client.get(f"/canaries/{canary.pk}/").content.decode()
