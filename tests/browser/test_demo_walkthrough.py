"""A newcomer's visit of the demo, end to end in a real browser, on the demo settings
(`CANARYHUB_CLOCK_SPEED=1440`, the simulator's traffic scaled with it, the seeded users and
model): the owner starts a canary from the version page, MRM signs from the Inbox, the stages
advance on the simulator's healthy traffic with every signature given in the signing dialog, and
AI Governance issues the certificate. A screenshot of every page passed is kept
(CANARYHUB_SCREENSHOT_DIR, else the test's temporary folder).

The deployment's clock is in the test's hands: `django.utils.timezone.now` is replaced by a
clock the test moves (the live server runs in this process, so its pages read the same clock),
and each move plays the simulator's traffic, pushes its windows and runs the control loop, as
the simulator and Celery beat do in `make run`. Nothing waits for wall time."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from governance.access.permissions import TOKEN_OBSERVATIONS, Principal
from monitoring.simulator import Pusher, Simulator, inject
from releases.canaries import loop
from releases.canaries.models import Canary
from releases.register.models import AIModel
from releases.register.services import observation_push
from tests.browser.conftest import SCREENSHOT_DIR, TIMEOUT_MS

pytestmark = pytest.mark.browser

State = Canary.State
PASSWORD = "canaryhub-demo"
STATEMENT = "I reviewed the evaluation and the stage plan and approve this step."
PUSH_EVERY_S = 15
CADENCE_S = 60


class Clock:
    def __init__(self) -> None:
        self.now = timezone.now().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


class Deployment:
    """The demo's background processes, stepped by the test: simulator, pusher, control loop."""

    def __init__(self, clock: Clock, settings, router_dir: Path) -> None:
        self.clock = clock
        model_pk = AIModel.objects.get(name="support-assistant").pk
        bot = get_user_model().objects.create(username="simulator")
        bot.groups.add(Group.objects.get(name="service_account"))
        principal = Principal(user=bot, scope=frozenset({model_pk}), token_purpose=TOKEN_OBSERVATIONS)
        self.sim = Simulator("support-assistant", "1.4.2", "1.5.0",
                             rps=settings.SIMULATOR_RPS * settings.SIMULATOR_TRAFFIC_SCALE, router_dir=router_dir)
        self.pusher = Pusher(self.sim, lambda body: observation_push(actor=principal, data=body))
        self.pusher.window_start = clock.now
        self.started = clock.now
        self.spent = 0.0

    def run(self, seconds: float) -> None:
        t0 = time.perf_counter()
        self._run(seconds)
        self.spent += time.perf_counter() - t0

    def _run(self, seconds: float) -> None:
        end = self.clock.now + timedelta(seconds=seconds)
        while self.clock.now < end:
            self.sim.step(PUSH_EVERY_S)
            self.clock.now += timedelta(seconds=PUSH_EVERY_S)
            self.pusher.push(now=self.clock.now)
            if int((self.clock.now - self.started).total_seconds()) % CADENCE_S == 0:
                # As beat's evaluate-canaries task: the canaries, then the post-promotion watch.
                loop.evaluate_tick()
                loop.watch_tick()

    def run_until(self, canary: Canary, states: set[str], *, limit_s: float = 600) -> Canary:
        end = self.clock.now + timedelta(seconds=limit_s)
        while True:
            canary.refresh_from_db()
            if canary.state in states:
                return canary
            assert self.clock.now < end, (canary.state, canary.stage_index, canary.hold_reason)
            self.run(PUSH_EVERY_S)


@pytest.fixture
def demo(settings, tmp_path, monkeypatch, _role_groups) -> Deployment:
    settings.CLOCK_SPEED = 1440
    settings.SIMULATOR_TRAFFIC_SCALE = 1440
    settings.SIMULATOR_RPS = 50
    settings.EVALUATION_CADENCE_S = CADENCE_S
    router_dir = tmp_path / "router"
    router_dir.mkdir()
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(router_dir)}}
    call_command("seed_demo", password=PASSWORD, stdout=open("/dev/null", "w"))
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock)
    return Deployment(clock, settings, router_dir)


@pytest.fixture
def shots(tmp_path) -> Iterator:
    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []

    def take(page: Page, name: str) -> None:
        path = folder / f"demo-{len(taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)

    take.taken = taken  # type: ignore[attr-defined]
    yield take


def session(browser: Browser, live_server, username: str) -> Page:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("user-name")).to_be_visible()
    return page


def sign(page: Page, role_label: str) -> None:
    page.wait_for_load_state("load")  # htmx (a deferred script) opens the dialog once loaded
    page.get_by_role("link", name=f"Sign as {role_label}").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Statement").fill(STATEMENT)
    dialog.get_by_label("Your password").fill(PASSWORD)
    dialog.get_by_role("button", name=f"Sign as {role_label}").click()
    expect(page.get_by_role("status").filter(has_text="signature")).to_be_visible()


def test_a_newcomer_takes_a_demo_canary_from_start_to_certificate(browser: Browser, live_server, demo, shots):
    owner = session(browser, live_server, "owner")
    mrm = session(browser, live_server, "mrm")
    expect(owner.get_by_test_id("traffic-banner")).to_contain_text("72,000 requests/s")
    icon = owner.locator('link[rel="icon"]').get_attribute("href")
    assert owner.request.get(icon).status == 200  # a favicon, not a 404 per page view
    shots(owner, "home")

    # The owner starts a canary of the demo model's registered version from its page.
    owner.goto("/models/support-assistant/versions/1.5.0/")
    shots(owner, "version")
    owner.get_by_role("link", name="Start a canary").click()
    owner.get_by_label("Rationale").fill("New answer templates for billing tickets.")
    shots(owner, "start-form")
    owner.get_by_role("button", name="Start canary").click()
    expect(owner).to_have_url(re.compile(r"/canaries/\d+/$"))
    canary = Canary.objects.get()
    stage_count = len(canary.stages)
    shots(owner, "canary-started")

    sign(owner, "Model owner")
    mrm.goto("/inbox/")
    shots(mrm, "mrm-inbox")
    sign(mrm, "Model risk (MRM)")
    canary.refresh_from_db()
    assert canary.state == State.RUNNING

    # The first stage runs on the simulated traffic; the page says what it waits for, in words.
    demo.run(PUSH_EVERY_S * 4)
    owner.goto(f"/canaries/{canary.pk}/")
    expect(owner.get_by_test_id("hold-reason")).to_contain_text("Minimum time in this stage")
    expect(owner.get_by_test_id("ready-at")).to_be_visible()
    shots(owner, "canary-waiting")
    mrm.goto("/inbox/")  # nothing to sign yet: the Inbox says what is coming
    expect(mrm.get_by_test_id("coming-next")).to_contain_text(f"Canary #{canary.pk} (support-assistant) reaches its "
                                                              "next step in about")
    shots(mrm, "mrm-inbox-coming-next")
    for stage in range(1, stage_count):
        canary = demo.run_until(canary, {State.AWAITING_APPROVAL})
        owner.goto(f"/canaries/{canary.pk}/")
        expect(owner.get_by_test_id("readiness")).to_contain_text("Ready for signatures")
        expect(owner.get_by_test_id("current-stage")).to_have_text(f"{stage} of {stage_count}")
        if stage == 1:
            shots(owner, "canary-ready")
        sign(owner, "Model owner")
        mrm.goto("/inbox/")
        sign(mrm, "Model risk (MRM)")
    canary.refresh_from_db()
    assert canary.state == State.COMPLETED
    elapsed = demo.clock.now - demo.started
    assert elapsed < timedelta(minutes=15), elapsed
    owner.goto(f"/canaries/{canary.pk}/")
    expect(owner.get_by_test_id("canary-state")).to_have_text("Completed")
    shots(owner, "canary-completed")

    # AI Governance issues the certificate from the queue.
    governance = session(browser, live_server, "governance")
    expect(governance).to_have_url(re.compile(r"/inbox/$"))
    expect(governance.get_by_test_id("work-table")).to_contain_text(f"Canary #{canary.pk}")
    shots(governance, "governance-inbox")
    governance.get_by_role("link", name="Review the checklist and issue or return it").click()
    expect(governance).to_have_url(re.compile(reverse("evidence:certificate-queue") + "$"))
    review = governance.get_by_test_id(f"review-{canary.pk}")
    expect(review).to_be_visible()
    shots(governance, "certificate-queue")
    review.get_by_role("button", name="Issue certificate").click()
    expect(governance.get_by_role("status").filter(has_text="Certificate issued")).to_contain_text(f"#{canary.pk}")
    shots(governance, "certificate-issued")
    canary.refresh_from_db()
    assert canary.state == State.CERTIFIED

    # After 100 % the new version is watched against the old one, kept on hot standby (48 h, two
    # minutes on the demo clock); the owner reverts to it from the canary page within the watch.
    assert canary.watch_until - canary.ended_at == timedelta(hours=48) / 1440
    demo.run(CADENCE_S)
    owner.goto(f"/canaries/{canary.pk}/")
    watch = owner.get_by_test_id("watch-status")
    expect(watch).to_contain_text("Watched after 100%")
    expect(watch).to_contain_text("1.4.2 is on hot standby")
    assert canary.evaluations.filter(created_at__gt=canary.ended_at).exists(), "the watch judged the new version"
    shots(owner, "canary-watched")
    owner.wait_for_load_state("load")  # htmx (a deferred script) opens the dialog once loaded
    owner.get_by_test_id("revert-button").click()
    dialog = owner.get_by_role("dialog")
    dialog.get_by_label("Reason").fill("Billing answers regressed since the promotion.")
    dialog.get_by_role("button", name="Revert to the previous version now").click()
    expect(owner.get_by_test_id("canary-state")).to_have_text("Reverted after completion")
    expect(owner.get_by_test_id("traffic-percent")).to_have_text("0%")
    shots(owner, "canary-reverted")

    # The SLO page shows the demo's own measured promotions and the revert's 0 % push.
    promotions = canary.slo_measurements.filter(slo="promotion").count()
    assert promotions >= stage_count - 1
    owner.get_by_role("navigation", name="Main").get_by_role("link", name="SLOs").click()
    expect(owner.get_by_test_id("slo-promotion").locator("td").nth(1)).to_have_text(str(promotions))
    expect(owner.get_by_test_id("slo-rollback").locator("td").nth(1)).to_have_text("1")
    expect(owner.locator('[data-testid="slo-row"][data-slo="rollback"]')).to_contain_text(f"#{canary.pk}")
    for slo, count in (("promotion", promotions), ("rollback", 1)):
        chart = owner.get_by_test_id(f"slo-chart-{slo}")
        expect(chart.locator(f'[data-chart="slo-{slo}"]')).to_have_attribute("data-drawn", "true")
        expect(owner.get_by_test_id(f"slo-table-{slo}").locator("tbody tr")).to_have_count(count)
    shots(owner, "slo")
    print(f"deployment time {elapsed}, simulation and control loop {demo.spent:.1f} s")
    assert len(shots.taken) >= 10 and all(p.stat().st_size > 0 for p in shots.taken)


def test_a_fault_rolls_the_demo_canary_back_and_the_pages_lead_to_a_new_canary(
    browser: Browser, live_server, demo, shots
):
    owner = session(browser, live_server, "owner")
    mrm = session(browser, live_server, "mrm")
    owner.goto("/models/support-assistant/versions/1.5.0/")
    owner.get_by_role("link", name="Start a canary").click()
    owner.get_by_role("button", name="Start canary").click()
    expect(owner).to_have_url(re.compile(r"/canaries/\d+/$"))
    canary = Canary.objects.get()
    sign(owner, "Model owner")
    mrm.goto("/inbox/")
    sign(mrm, "Model risk (MRM)")

    # The simulator's fault: the canary's error rate jumps; the control loop rolls it back.
    demo.run(PUSH_EVERY_S * 4)
    inject(demo.sim.canary, "error_spike")
    canary = demo.run_until(canary, {State.ROLLED_BACK}, limit_s=300)
    owner.goto(f"/canaries/{canary.pk}/")
    expect(owner.get_by_test_id("canary-state")).to_have_text("Rolled back")
    steps = owner.get_by_test_id("next-steps")
    expect(steps).to_contain_text("File the root cause")
    expect(steps).to_contain_text("On-call or Platform")
    shots(owner, "rolled-back")

    # The canary links its incident; on-call files the root cause there.
    owner.get_by_test_id("canary-incident").click()
    expect(owner).to_have_url(re.compile(r"/governance/incidents/\d+/$"))
    expect(owner.get_by_test_id("incident-canary")).to_have_text(f"#{canary.pk}")
    shots(owner, "incident")
    incident_url = owner.url
    oncall = session(browser, live_server, "oncall")
    # With work waiting, the login lands in the Inbox, which names it with a way to act.
    expect(oncall).to_have_url(re.compile(r"/inbox/$"))
    expect(oncall.get_by_test_id("work-table")).to_contain_text("Root cause to file")
    shots(oncall, "oncall-inbox")
    oncall.get_by_role("link", name="File the root cause").click()
    expect(oncall).to_have_url(incident_url)
    form = oncall.get_by_test_id("root-cause-form")
    form.get_by_label("Cause").fill("A template change doubled the tokens sent to the upstream API, which timed out.")
    form.get_by_label("Fix").fill("Cap the prompt size; add a contract test on the request size.")
    form.get_by_role("button", name="File root cause").click()
    expect(oncall.get_by_test_id("incident-status")).to_have_text("Root cause filed")
    shots(oncall, "root-cause-filed")

    # MRM accepts it; the owner signs the re-initiation on the incident page.
    mrm.goto("/inbox/")
    expect(mrm.get_by_test_id("work-table")).to_contain_text("Root cause to review")
    mrm.get_by_role("link", name="Accept or return it").click()
    expect(mrm).to_have_url(incident_url)
    mrm.get_by_role("button", name="Accept root cause").click()
    expect(mrm.get_by_test_id("incident-status")).to_have_text("Resolved")
    shots(mrm, "root-cause-accepted")
    owner.goto("/inbox/")
    expect(owner.get_by_test_id("work-table")).to_contain_text("Re-initiation to sign")
    shots(owner, "owner-inbox-reinitiation")
    owner.get_by_role("link", name="Sign the re-initiation").click()
    expect(owner).to_have_url(incident_url)
    reinit = owner.get_by_test_id("reinitiation-form")
    reinit.get_by_label("Statement").fill("The fix is in 1.5.0's serving config; canary it again.")
    reinit.get_by_label("Password (re-authentication)").fill(PASSWORD)
    reinit.get_by_role("button", name="Sign re-initiation").click()
    expect(owner.get_by_test_id("reinitiation")).to_be_visible()
    shots(owner, "reinitiation-signed")

    # A button, not a typed address, starts the new canary: the Inbox offers it, as does the
    # old canary's page.
    owner.goto("/inbox/")
    expect(owner.get_by_test_id("work-table")).to_contain_text("Canary to start again")
    owner.goto(f"/canaries/{canary.pk}/")
    expect(owner.get_by_test_id("next-steps")).to_contain_text("Sign the re-initiation")
    owner.get_by_role("link", name="Start a canary").click()
    expect(owner).to_have_url(re.compile(r"/canary/new/$"))
    shots(owner, "start-again")
    owner.get_by_role("button", name="Start canary").click()
    expect(owner).to_have_url(re.compile(r"/canaries/\d+/$"))
    assert Canary.objects.count() == 2
    new = Canary.objects.exclude(pk=canary.pk).get()
    assert new.version_id == canary.version_id
    shots(owner, "new-canary")
    owner.goto(incident_url)
    expect(owner.get_by_test_id("reinitiation")).to_contain_text(f"used by canary #{new.pk}")
