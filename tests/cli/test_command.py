"""The command itself: installed with the package, free of Django, and its pure parts (what it
says a canary waits for, the CI run behind the Idempotency-Key, durations)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from canaryhub.cli.commands import VERIFIER, ci_run, duration, idempotency_key, parse_segmentation
from canaryhub.cli.follow import Follower
from governance.evidence.selectors import VERIFY_SCRIPT

REPO = Path(__file__).resolve().parents[2]


def test_the_package_installs_the_canaryhub_command():
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="canaryhub")
    assert entry.value == "canaryhub.cli.commands:main"
    script = Path(sys.executable).parent / "canaryhub"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "exit status: 0 done" in " ".join(done.stdout.split())


def test_the_package_installs_the_bundle_verifier_command():
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="canaryhub-verify-bundle")
    assert entry.value == "governance.evidence.verify_bundle:main"
    script = Path(sys.executable).parent / "canaryhub-verify-bundle"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--fingerprint" in done.stdout
    unpinned = subprocess.run([str(script), "bundle.zip"], capture_output=True, text=True, timeout=60)
    assert unpinned.returncode == 2 and "pin the key you trust" in unpinned.stderr


def test_the_command_line_imports_neither_django_nor_celery_nor_any_app():
    probe = ("import json, sys; import canaryhub.cli.commands, canaryhub.client, canaryhub.cli.__main__; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert not loaded & {"django", "celery", "kombu", "rest_framework", "releases", "governance", "monitoring"}


def test_the_verifier_the_command_runs_is_the_one_every_bundle_ships():
    """The command finds the verifier by its path in the installed package (it may not import the
    app): when the verifier moves, this fails until VERIFIER follows it."""
    assert VERIFIER.is_file(), f"canaryhub.cli.commands.VERIFIER points at {VERIFIER}, which does not exist"
    assert VERIFIER == VERIFY_SCRIPT.resolve(), f"CanaryHub publishes {VERIFY_SCRIPT}; the command runs {VERIFIER}"


def test_a_usage_error_exits_1_not_2_which_means_rolled_back():
    done = subprocess.run([sys.executable, "-m", "canaryhub.cli", "canary", "start", "scorer"], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1 and "required: version" in done.stderr


# --- the Idempotency-Key's run ----------------------------------------------------------------


def test_the_run_is_the_ci_run_not_the_try():
    github = {"GITHUB_RUN_ID": "51", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_REPOSITORY": "acme/bot"}
    assert ci_run(github, None) == ci_run({**github, "GITHUB_RUN_ATTEMPT": "3"}, None)
    assert ci_run(github, None)[0] == "GitHub Actions run 51 of acme/bot"
    gitlab = {"CI_PIPELINE_ID": "77", "CI_JOB_ID": "1001", "CI_PROJECT_PATH": "acme/bot"}
    assert ci_run(gitlab, None) == ci_run({**gitlab, "CI_JOB_ID": "1002"}, None)
    assert ci_run({**github, **gitlab}, "nightly-3") == ("run id nightly-3", "run:nightly-3")
    assert ci_run({}, None) is None


def test_idempotency_keys_are_valid_header_values_whatever_the_names():
    key = idempotency_key("canary-start", "run:x y", "scorer", "1.1.0" + "é" * 300)
    assert key.isascii() and " " not in key and len(key) < 100
    assert key != idempotency_key("canary-start", "run:x y", "scorer", "1.1.1")
    assert key != idempotency_key("version-register", "run:x y", "scorer", "1.1.0" + "é" * 300)


@pytest.mark.parametrize(("text", "seconds"), [("72h", 259200), ("30m", 1800), ("45s", 45), ("2d", 172800),
                                               ("90", 90), ("0.5s", 0.5)])
def test_durations(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1h", "3 weeks", "h"])
def test_bad_durations(text):
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_segmentation_shorthand_and_json():
    assert parse_segmentation("region=eu-west, eu-north") == {"strategy": "region", "values": ["eu-west", "eu-north"]}
    assert parse_segmentation("random") == {"strategy": "random", "values": []}
    assert parse_segmentation('{"strategy": "cohort", "values": ["a"]}') == {"strategy": "cohort", "values": ["a"]}


# --- what a canary waits for, read from the API's fields -----------------------------------------


def canary(**overrides):
    base = {
        "id": 4, "model": "scorer", "version": "1.1.0", "baseline": "1.0.0", "schedule": "standard",
        "state": "running", "traffic_percent": 1, "hold_reason": "", "initiated_by": "ci", "ended_at": None,
        "initiated_at": "2025-05-01T12:00:00Z", "end_reason": "", "clock_speed": 1.0,
        "stages": [{"index": i, "percent": p, "cohort": None} for i, p in enumerate([1, 5, 100])],
        "segmentation": {"strategy": "random", "values": []},
        "stage": {"index": 0, "percent": 1, "cohort": None, "entered_at": "2025-05-01T12:00:00Z",
                  "min_residence_until": "2025-05-02T12:00:00Z"},
        "readiness": {"ready": False, "reason": "minimum residence: 23 h 59 min remaining"},
        "gates": [], "latest_evaluation": None, "approvals": [],
        "required_approvals": {"step": "promote:0->1", "roles": ["owner"], "outstanding": ["owner"]},
    }
    return {**base, **overrides}


def waits(events):
    return [line for e in events if e.kind == "waiting" for line in e.lines]


def test_held_without_data_waits_for_data_and_a_countdown_is_not_repeated():
    follower = Follower(owner="olivia")
    follower.update(canary())
    held = {"state": "held", "hold_reason": "latest evaluation is stale: its window ended 645 s ago (limit 600 s)"}
    assert waits(follower.update(canary(**held))) == [
        "waiting for data: latest evaluation is stale: its window ended 645 s ago (limit 600 s)"]
    later = {**held, "hold_reason": held["hold_reason"].replace("645", "705")}
    assert follower.update(canary(**later)) == []


def test_the_state_line_carries_the_hold_reason_only_while_the_canary_goes_on():
    def state_lines(**overrides):
        return [e.lines[0] for e in Follower().update(canary(**overrides)) if e.kind == "state"]

    assert state_lines(state="held", hold_reason="error_rate is red") == ["state: held (error_rate is red)"]
    assert state_lines(state="suspended", hold_reason="no metrics for 900 s") == [
        "state: suspended (no metrics for 900 s)"]
    # A hold reason left from before the end is not the end's story: the outcome line tells it.
    assert state_lines(state="rolled_back", hold_reason="error_rate is red", ended_at="2025-05-03T12:00:00Z",
                       end_reason="safety") == ["state: rolled_back"]


def test_red_gates_the_monitor_and_start_signatures():
    red = [{"name": "error_rate", "status": "red", "value": 0.4, "limit": 0.1, "detail": ""}]
    evaluation = {"id": 9, "verdict": "red", "window_start": "2025-05-02T12:00:00Z", "window_end": "2025-05-02T12:05:00Z"}
    follower = Follower(owner="olivia")
    events = follower.update(canary(state="held", hold_reason="error_rate is red", gates=red,
                                    latest_evaluation=evaluation))
    assert waits(events) == ["waiting for red gates to turn green: error_rate is red"]
    assert [e.lines[1] for e in events if e.kind == "gates"] == ["  error_rate  red         value 0.4, limit 0.1"]
    assert waits(Follower().update(canary(state="suspended", hold_reason="no metrics for 900 s"))) == [
        "waiting for the monitor: no metrics for 900 s"]
    pending = canary(state="pending_approval", readiness={"ready": True, "reason": "the start awaits its signatures"},
                     required_approvals={"step": "start", "roles": ["mrm", "owner"], "outstanding": ["mrm", "owner"]},
                     stage={"index": 0, "percent": 1, "cohort": None, "entered_at": None, "min_residence_until": None})
    events = Follower(owner="olivia").update(pending)
    assert waits(events) == ["waiting for signatures on step start: mrm (a member of model risk management), "
                             "owner (olivia, the model's owner)"]
    assert "stage 1 of 3: 1% of traffic (not entered yet)" in [line for e in events for line in e.lines]


@pytest.mark.parametrize(("state", "code"), [("completed", 0), ("certified", 0), ("rolled_back", 2), ("aborted", 3)])
def test_each_end_has_its_exit_code(state, code):
    events = Follower().update(canary(state=state, ended_at="2025-05-03T12:00:00Z", end_reason="why"))
    assert events[-1].kind == "outcome" and events[-1].data["exit_code"] == code
    assert not [e for e in events if e.kind == "waiting"]
