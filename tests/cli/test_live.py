"""`canaryhub` driving canaries on a live CanaryHub: each outcome's exit code, what a person
reads in the CI log, restarts that start nothing new, and what a CI token may not do."""

from __future__ import annotations

import json
import re
import zipfile
from datetime import timedelta

from django.utils import timezone

from canaryhub import keyring
from canaryhub.cli.commands import verify_bundle
from releases.canaries import loop, services, states
from releases.canaries.models import Canary
from releases.register.models import ModelVersion
from tests.cli.conftest import Driver, run_cli
from tests.factories import make_evaluation
from tests.harness.nginx import free_port

State = Canary.State
# Plausible gate readings: (value, limit) per promotion gate.
GREEN_VALUES = {"error_rate": (0.02, 0.1), "latency_p99": (1.04, 1.2), "quality": (0.995, 0.98),
                "safety_violations": (0, 0), "anomaly_alerts": (0, 0)}


def the_canary(model: str = "scorer") -> Canary | None:
    return Canary.objects.filter(model__name=model).order_by("-pk").first()


def healthy(hub):
    """The scenario of a healthy canary: a green evaluation for each look, the reconcile the
    evaluator's tick runs, and the owner's (and at the end MRM's) signature once the stage waits
    for it."""

    def step() -> None:
        canary = the_canary()
        if canary is None:
            return
        if canary.state in (State.RUNNING, State.HELD):
            make_evaluation(canary, window_end=timezone.now(), values=GREEN_VALUES)
            services.canary_reconcile(canary_id=canary.pk)
        elif canary.state == State.AWAITING_APPROVAL:
            hub.sign_next(canary.pk)

    return step


def start_healthy(hub, cli, *extra: str):
    assert cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0", "--run-id", "build-41").code == 0
    return cli("canary", "start", "scorer", "1.1.0", "--wait", "--poll", "30s", "--run-id", "build-41", *extra,
               driver=Driver(healthy(hub)))


def test_a_healthy_canary_is_followed_to_completion_with_exit_0(hub, cli):
    run = start_healthy(hub, cli)
    assert run.code == 0, run.out + run.err
    canary = the_canary()
    assert canary.state == State.COMPLETED and canary.traffic_percent == 100
    assert ModelVersion.objects.get(model__name="scorer", version="1.1.0").status == "production"
    # Every signature came from a person through the API, none from the CI token.
    assert {(a.role, a.signer.username) for a in canary.approvals.all()} == {("owner", "olivia"), ("mrm", "mrm")}
    assert canary.approvals.count() == 6


def test_the_lines_a_person_sees(hub, cli):
    run = start_healthy(hub, cli)
    lines, canary = run.lines, the_canary()
    assert lines[0] == (f"canary #{canary.pk}: scorer 1.1.0 against production 1.0.0, standard schedule: "
                        "1% → 5% → 10% → 25% → 50% → 100%")
    assert lines[1].startswith("  segmentation random; initiated by ci-bot at ")
    assert re.fullmatch(r"stage 1 of 6: 1% of traffic since \S+ \S+Z, minimum residence until \S+ \S+Z", lines[2])
    assert lines[3] == "state: running"
    assert lines[4].startswith("waiting for the minimum residence of stage 1: until ")
    # Each stage: its traffic once, the residence it waits for once, however often it was polled.
    for number, percent in enumerate([1, 5, 10, 25, 50], start=1):
        assert sum(re.fullmatch(rf"stage {number} of 6: {percent}% of traffic since \S+ \S+Z, minimum residence until "
                                r"\S+ \S+Z", line) is not None for line in lines) == 1
    # The final stage is the end, not a stage to sit in: no residence.
    assert sum(re.fullmatch(r"stage 6 of 6: 100% of traffic since \S+ \S+Z", line) is not None for line in lines) == 1
    assert sum(line.startswith("waiting for the minimum residence of stage") for line in lines) == 5
    gates = [i for i, line in enumerate(lines) if line.startswith("gates at evaluation #")]
    assert len(gates) == 5 and all(lines[i].endswith("): green") for i in gates)  # once per stage, not per look
    assert lines[gates[0] + 1] == "  error_rate         green       value 0.02, limit 0.1"
    assert lines[gates[0] + 2] == "  latency_p99        green       value 1.04, limit 1.2"
    assert lines[gates[0] + 4] == "  safety_violations  green       value 0, limit 0"
    assert lines[gates[0] + 6 : gates[0] + 8] == [
        "state: awaiting_approval", "waiting for signature on step promote:0->1: owner (olivia, the model's owner)"]
    assert ("waiting for signatures on step promote:4->5: mrm (a member of model risk management), "
            "owner (olivia, the model's owner)") in lines
    signed = [line for line in lines if line.startswith("signed by ")]
    assert len(signed) == 6
    assert re.fullmatch(rf"signed by Olivia Owner \(olivia\) as owner at \S+ \S+Z: Model owner: approves promoting "
                        rf"canary #{canary.pk} of scorer@1\.1\.0 from 1% to 5%", signed[0])
    assert signed[-2].startswith("signed by Mira Validator (mrm) as mrm at ")
    assert lines[-2:] == ["state: completed", lines[-1]]
    assert re.fullmatch(r"completed at \S+ \S+Z: scorer 1\.1\.0 is in production \(exit 0\)", lines[-1])
    # No line twice in a row: a change is told once.
    assert all(a != b for a, b in zip(lines, lines[1:], strict=False))
    # Notes (the Idempotency-Key and where it comes from) go to stderr, not among the changes.
    assert "Idempotency-Key canaryhub-cli:canary-start:" in run.err and "(from run id build-41)" in run.err


def test_json_lines_for_machines(hub, cli):
    run = start_healthy(hub, cli, "--json")
    assert run.code == 0
    events = [json.loads(line) for line in run.lines]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "note" and kinds[1] == "canary" and kinds[-1] == "outcome"
    assert events[-1] == {**events[-1], "state": "completed", "exit_code": 0, "canary": the_canary().pk}
    stages = [e for e in events if e["event"] == "stage"]
    assert [e["percent"] for e in stages] == [1, 5, 10, 25, 50, 100]
    waits = {e["for"] for e in events if e["event"] == "waiting"}
    assert {"residence", "signature"} <= waits
    gates = next(e for e in events if e["event"] == "gates")
    assert gates["gates"][0] == {"name": "error_rate", "status": "green", "value": 0.02, "limit": 0.1, "detail": ""}


def test_a_rollback_exits_2_with_the_reason(hub, cli):
    """The canary's metrics are pushed through the API and judged by the real evaluator's tick,
    which rolls it back (on the rollbacks queue, Celery eager here)."""

    def step() -> None:
        canary = the_canary()
        if canary is None or canary.state not in states.ACTIVE:
            return
        end = timezone.now().replace(microsecond=0)
        for version, requests, errors, safety in (("1.0.0", 100_000, 100, 0), ("1.1.0", 1000, 1, 1)):
            hub.call("pusher", "POST", "/api/v1/observations/", body={
                "model": "scorer", "version": version, "window_start": (end - timedelta(seconds=60)).isoformat(),
                "window_end": end.isoformat(), "requests": requests, "errors": errors, "latency_p99_ms": 200.0,
                "quality_sum": 0.8 * requests, "quality_count": requests, "safety_violations": safety,
            })
        loop.evaluate_tick(canary_ids=[canary.pk])

    assert cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0").code == 0
    run = cli("canary", "start", "scorer", "1.1.0", "--wait", "--run-id", "build-7", driver=Driver(step))
    assert run.code == 2, run.out + run.err
    canary = the_canary()
    assert canary.state == State.ROLLED_BACK and "safety" in canary.end_reason
    assert "state: rolled_back" in run.lines
    assert any(line.startswith("  safety_violations") and "red" in line for line in run.lines)
    assert re.fullmatch(r"rolled back at \S+ \S+Z: .*safety.*; every user is on 1\.0\.0 \(exit 2\)", run.lines[-1])


def test_an_abort_exits_3(hub, cli):
    def step() -> None:
        canary = the_canary()
        if canary.state in states.ACTIVE:
            hub.call("ci", "POST", f"/api/v1/canaries/{canary.pk}/abort/", body={"reason": "release train cancelled"},
                     headers={"Idempotency-Key": "abort-1"})

    cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0")
    run = cli("canary", "start", "scorer", "1.1.0", "--wait", "--run-id", "b", driver=Driver(step))
    assert run.code == 3
    assert re.fullmatch(r"aborted at \S+ \S+Z: release train cancelled \(exit 3\)", run.lines[-1])


def test_a_timeout_exits_4_and_leaves_the_canary_running(hub, cli):
    cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0")
    driver = Driver()
    run = cli("canary", "start", "scorer", "1.1.0", "--wait", "--timeout", "72h", "--poll", "1h", "--run-id", "b",
              driver=driver)
    assert run.code == 4, run.out + run.err
    assert len(driver.sleeps) == 72 and driver.now - 1000.0 == 72 * 3600
    canary = the_canary()
    assert canary.state == State.RUNNING
    assert run.lines[-1] == (f"timed out after 72h: canary #{canary.pk} is still running at stage 1 (1%); it goes on "
                             "without this job (exit 4)")


def test_a_restarted_job_with_the_same_run_id_starts_nothing_new(hub, cli):
    cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0")
    github = {"GITHUB_RUN_ID": "9001", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_REPOSITORY": "acme/scorer"}
    first = cli("canary", "start", "scorer", "1.1.0", "--wait", "--timeout", "1m", "--poll", "30s", env=github)
    assert first.code == 4  # the job died waiting; its re-run comes with the next attempt number
    again = cli("canary", "start", "scorer", "1.1.0", "--wait", "--poll", "30s",
                env={**github, "GITHUB_RUN_ATTEMPT": "2"}, driver=Driver(healthy(hub)))
    assert again.code == 0, again.out + again.err
    assert Canary.objects.filter(model__name="scorer").count() == 1
    canary = the_canary()
    assert first.lines[0].startswith(f"canary #{canary.pk}:") and again.lines[0].startswith(f"canary #{canary.pk}:")
    assert (f"canary #{canary.pk} was started by an earlier try of this run; nothing new was started") in again.err
    assert "(from GitHub Actions run 9001 of acme/scorer)" in again.err
    # A different run is a new request: CanaryHub refuses it (the version is in production now).
    other = cli("canary", "start", "scorer", "1.1.0", env={**github, "GITHUB_RUN_ID": "9002"})
    assert other.code == 1 and "409" in other.err
    assert Canary.objects.filter(model__name="scorer").count() == 1


def test_status_prints_where_the_canary_stands(hub, cli, tmp_path):
    cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0")
    started = cli("canary", "start", "scorer", "1.1.0", "--run-id", "r1", "--id-file", str(tmp_path / "canary-id"))
    assert started.code == 0
    canary = the_canary()
    assert (tmp_path / "canary-id").read_text() == f"{canary.pk}\n"
    make_evaluation(canary, window_end=timezone.now(), values=GREEN_VALUES, quality="insufficient")
    run = cli("canary", "status", str(canary.pk))
    assert run.code == 0
    assert run.lines[0].startswith(f"canary #{canary.pk}: scorer 1.1.0 against production 1.0.0")
    assert "state: running" in run.lines
    assert any(line.startswith("  quality ") and "insufficient" in line for line in run.lines)


def test_version_register_sends_thresholds_from_a_file(hub, cli, tmp_path):
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"promote": {"error_rate_pp": 0.05}}))
    run = cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0", "--thresholds",
              str(thresholds), "--json")
    assert run.code == 0
    answer = json.loads(run.lines[-1])
    assert answer["event"] == "registered" and answer["thresholds"]["promote"]["error_rate_pp"] == 0.05
    assert ModelVersion.objects.get(model__name="scorer", version="1.1.0").thresholds["promote"]["error_rate_pp"] == 0.05
    refused = cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://other")
    assert refused.code == 1 and "409" in refused.err and "problem document: {" in refused.err


def test_evidence_download_verifies_the_bundle(hub, cli, tmp_path):
    cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0")
    cli("canary", "start", "scorer", "1.1.0", "--run-id", "r1")
    canary = the_canary()
    target = tmp_path / "evidence.zip"
    # Service accounts may not export evidence: the pipeline uses a reader's token for it.
    refused = cli("evidence", "download", str(canary.pk), "-o", str(target))
    assert refused.code == 1 and "403" in refused.err and not target.exists()
    run = cli("evidence", "download", str(canary.pk), "-o", str(target), token=hub.tokens["auditor"])
    assert run.code == 0, run.out + run.err
    assert zipfile.is_zipfile(target) and "manifest.json" in zipfile.ZipFile(target).namelist()
    assert run.lines[0] == f"downloaded the evidence of canary #{canary.pk} to {target} ({target.stat().st_size} bytes)"
    assert re.fullmatch(r"verified: \d+ files match the manifest; \d+ audit events verify against the chain",
                        run.lines[1])
    assert run.lines[2].startswith("signed by the keys this server publishes")
    # The verification is the bundle verifier's: a changed file in the bundle fails it.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(target) as source, zipfile.ZipFile(tampered, "w") as copy:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "audit/events.jsonl":
                data = data.replace(b"canary.initiated", b"canary.initiatex")
            copy.writestr(item, data)
    fingerprint = keyring.active_key().fingerprint
    problems, _, _ = verify_bundle(tampered, fingerprints=[fingerprint])
    assert "audit/events.jsonl: SHA-256 does not match the manifest" in problems
    # A key the caller pinned that did not sign it: refused, and said so.
    pinned = cli("evidence", "download", str(canary.pk), "-o", str(tmp_path / "again.zip"), "--fingerprint", "0" * 64,
                 token=hub.tokens["auditor"])
    assert pinned.code == 1 and "not signed by a key you pinned" in pinned.out
    assert cli("evidence", "download", str(canary.pk), "-o", str(tmp_path / "pinned.zip"), "--fingerprint",
               fingerprint, token=hub.tokens["auditor"]).code == 0


def test_assign_answers_which_version_a_user_gets(hub, cli):
    cli("version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0")
    cli("canary", "start", "scorer", "1.1.0", "--run-id", "r1")
    run = cli("assign", "scorer", "user-42", "--json")
    assert run.code == 0
    answer = json.loads(run.lines[0])
    assert answer["variant"] in ("canary", "production") and answer["canary_id"] == the_canary().pk
    assert answer["version"] == ("1.1.0" if answer["variant"] == "canary" else "1.0.0")


# --- attacks ----------------------------------------------------------------------------------


def test_a_scoped_ci_token_cannot_start_a_canary_of_another_model(hub, cli):
    run = cli("canary", "start", "fraud", "1.1.0", "--wait", "--run-id", "evil")
    assert run.code == 1
    assert not Canary.objects.filter(model__name="fraud").exists()
    # The problem is printed; the token learns no more than that the model is not there for it.
    assert "POST /api/v1/canaries/ answered 404 Not found: no model named 'fraud'" in run.err
    assert "a service-account token sees only the models it is scoped to" in run.err
    problem = json.loads(run.err.split("problem document: ", 1)[1].splitlines()[0])
    assert problem["status"] == 404 and problem["type"].endswith("not-found")
    assert cli("version", "register", "fraud", "1.2.0", "--artifact", "s3://x").code == 1


def test_the_token_is_never_printed(hub, cli):
    """Not when it is refused, not when given on the command line, not in JSON, not when the
    server cannot be reached (run_cli fails the test if any token appears in any output)."""
    bad = hub.tokens["ci"][:-4] + "XXXX"
    refused = cli("canary", "status", "1", token=bad)
    assert refused.code == 1 and "401" in refused.err and bad not in refused.err
    flagged = cli("canary", "status", "1", "--token", bad, "--json", token="")
    assert flagged.code == 1 and bad not in flagged.out and json.loads(flagged.lines[-1])["status"] == 401
    unreachable = run_unreachable(hub)
    assert unreachable.code == 1 and "connection refused" in unreachable.err


def run_unreachable(hub):
    closed = f"http://127.0.0.1:{free_port()}"
    return run_cli(hub, ["canary", "status", "1", "--url", closed])
