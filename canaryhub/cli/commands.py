"""`canaryhub`: CanaryHub's command line for CI pipelines.

    canaryhub version register MODEL VERSION --artifact URI [--thresholds FILE]
    canaryhub canary start MODEL VERSION [--schedule S] [--segmentation STRATEGY=V1,V2] [--rationale TEXT]
                                         [--wait] [--timeout 72h] [--json]
    canaryhub canary wait ID [--timeout 72h] [--json]
    canaryhub canary status ID [--json]
    canaryhub evidence download ID [-o FILE] [--fingerprint SHA256]...
    canaryhub assign MODEL USER [--region R] [--tier T] [--cohort C]

Configured by CANARYHUB_URL and CANARYHUB_TOKEN (`--url`, `--token` override them; prefer the
environment, which does not show in the process list). Exit status: 0 done (a waited-for canary
completed or certified), 2 rolled back, 3 aborted, 4 timed out with the canary still going,
1 refused or failed (the problem document is printed).

Standard library only, and no Django: it talks to CanaryHub over its REST API, like any client.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import runpy
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from .client import CanaryHubClient
from .follow import EXIT_ERROR, EXIT_OK, EXIT_TIMED_OUT, Event, Follower, outcome_exit
from .http import DEFAULT_RETRY, ApiError, CanaryHubError, Http, Unreachable

# Where the evidence bundle's verifier is when CanaryHub is installed: it is read as a file and
# run in this process, never imported as part of the governance app.
VERIFIER = Path(__file__).resolve().parents[2] / "governance" / "evidence" / "verify_bundle.py"

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Exit status 1 for a usage error: 2 means "rolled back" here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def duration(text: str) -> float:
    """`72h`, `30m`, `45s`, `2d` or plain seconds."""
    match = DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 72h, 30m, 45s or 2d")
    return float(match.group(1)) * UNITS[match.group(2)]


# --- the CI run and the Idempotency-Key ---------------------------------------------------------


def ci_run(env: Mapping[str, str], explicit: str | None) -> tuple[str, str] | None:
    """Which CI run this is: (a description, an identifier), or None outside CI.

    The identifier names the run, not the try: GitHub's re-run of a job keeps GITHUB_RUN_ID (the
    attempt number changes) and GitLab's retry of a job keeps CI_PIPELINE_ID (the job id
    changes). So a job that is tried again derives the same key, and CanaryHub answers it with
    the canary the first try started instead of starting another."""
    if explicit:
        return f"run id {explicit}", f"run:{explicit}"
    if env.get("GITHUB_RUN_ID"):
        repo = env.get("GITHUB_REPOSITORY", "")
        return (f"GitHub Actions run {env['GITHUB_RUN_ID']}" + (f" of {repo}" if repo else ""),
                f"github:{repo}:{env['GITHUB_RUN_ID']}")
    if env.get("CI_PIPELINE_ID"):
        project = env.get("CI_PROJECT_PATH") or env.get("CI_PROJECT_ID", "")
        return (f"GitLab pipeline {env['CI_PIPELINE_ID']}" + (f" of {project}" if project else ""),
                f"gitlab:{project}:{env['CI_PIPELINE_ID']}")
    return None


def idempotency_key(operation: str, run: str, *parts: str) -> str:
    """Visible ASCII without spaces and well under 255 characters, whatever the names hold."""
    digest = hashlib.sha256(json.dumps([run, *parts]).encode("utf-8")).hexdigest()[:40]
    return f"canaryhub-cli:{operation}:{digest}"


# --- output -------------------------------------------------------------------------------------


class Output:
    """Lines for a person (stdout; notes and errors on stderr) or, with --json, one JSON object
    per line on stdout. Whatever is written, the token is not: it is masked should any text
    ever carry it."""

    def __init__(self, *, json_mode: bool, stdout: TextIO, stderr: TextIO, secrets: Sequence[str] = ()) -> None:
        self.json_mode = json_mode
        self.stdout = stdout
        self.stderr = stderr
        # A secret too short to be a real token would mask ordinary words; CanaryHub's are ~55 characters.
        self._secrets = [s for s in secrets if len(s) >= 8]

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _write(self, stream: TextIO, text: str) -> None:
        stream.write(self._clean(text) + "\n")
        stream.flush()

    def event(self, event: Event, canary_id: int | None) -> None:
        if self.json_mode:
            self._write(self.stdout, json.dumps(event.as_json(canary_id), ensure_ascii=False))
        else:
            for line in event.lines:
                self._write(self.stdout, line)

    def note(self, text: str, **data: Any) -> None:
        """Something a person should know that is not the command's answer."""
        if self.json_mode:
            self._write(self.stdout, json.dumps({"event": "note", "text": text, **data}, ensure_ascii=False))
        else:
            self._write(self.stderr, text)

    def result(self, text: str, data: dict[str, Any]) -> None:
        if self.json_mode:
            self._write(self.stdout, json.dumps(data, ensure_ascii=False))
        else:
            self._write(self.stdout, text)

    def error(self, exc: BaseException) -> int:
        text = str(exc)
        if self.json_mode:
            body: dict[str, Any] = {"event": "error", "message": text}
            if isinstance(exc, ApiError):
                body |= {"status": exc.status, "problem": exc.problem.raw if exc.problem else None,
                         "replayed": exc.replayed}
            self._write(self.stdout, json.dumps(body, ensure_ascii=False))
            return EXIT_ERROR
        self._write(self.stderr, f"canaryhub: {text}")
        if isinstance(exc, ApiError) and exc.problem is not None:
            self._write(self.stderr, "problem document: " + json.dumps(exc.problem.raw, ensure_ascii=False))
        return EXIT_ERROR


# --- commands -----------------------------------------------------------------------------------


class Context:
    def __init__(self, args: argparse.Namespace, env: Mapping[str, str], out: Output,
                 sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self.args = args
        self.env = env
        self.out = out
        self.sleep = sleep
        self.clock = clock
        url = args.url or env.get("CANARYHUB_URL", "")
        token = args.token or env.get("CANARYHUB_TOKEN", "")
        if not url:
            raise UsageError("no CanaryHub URL: set CANARYHUB_URL (or give --url)")
        if not token:
            raise UsageError("no token: set CANARYHUB_TOKEN (or give --token); make one with "
                             "`manage.py create_token USER --service-account --models MODEL`")
        try:
            http = Http(url, token=token, timeout_s=args.request_timeout, retry=DEFAULT_RETRY, sleep=sleep,
                        on_retry=self._retrying)
            self.client = CanaryHubClient(url, token=token, ttl_s=0, http=http)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc

    def _retrying(self, what: str, wait_s: float) -> None:
        self.out.note(f"retrying in {wait_s:.1f} s: {what}", retry_in_s=round(wait_s, 3), failure=what)


def _read_json_file(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UsageError(f"the {what} file {path} is not JSON: {exc}") from exc


def cmd_version_register(ctx: Context) -> int:
    a = ctx.args
    thresholds = _read_json_file(a.thresholds, "thresholds") if a.thresholds else None
    metrics = _read_json_file(a.metrics, "metrics") if a.metrics else None
    run = ci_run(ctx.env, a.run_id)
    key = idempotency_key("version-register", run[1], a.model, a.version) if run else None
    version, replayed = ctx.client.register_version(
        a.model, version=a.version, artifact_uri=a.artifact, thresholds=thresholds, metrics=metrics,
        idempotency_key=key,
    )
    baseline = f" against {version['baseline']}" if version.get("baseline") else ""
    again = " (by an earlier try of this run)" if replayed else ""
    ctx.out.result(
        f"registered {version['model']} {version['version']}{again}: {version['status']}, "
        f"{version['change_type']} change{baseline}, artifact {version['artifact_uri']}",
        {"event": "registered", "replayed": replayed, **version},
    )
    return EXIT_OK


def parse_segmentation(text: str) -> dict[str, Any]:
    """`random`, `region=eu-west,eu-north`, or the JSON object the API takes."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--segmentation is not a JSON object: {exc}") from exc
        if not isinstance(value, dict):
            raise UsageError("--segmentation must be a JSON object")
        return value
    strategy, _, values = text.partition("=")
    return {"strategy": strategy.strip(), "values": [v.strip() for v in values.split(",") if v.strip()]}


def cmd_canary_start(ctx: Context) -> int:
    a = ctx.args
    body: dict[str, Any] = {"model": a.model, "version": a.version}
    for name, value in (("schedule", a.schedule), ("rationale", a.rationale), ("router", a.router),
                        ("shadow_evidence_ref", a.shadow_evidence), ("rollback_contact", a.rollback_contact)):
        if value is not None:
            body[name] = value
    if a.segmentation is not None:
        body["segmentation"] = parse_segmentation(a.segmentation)
    run = ci_run(ctx.env, a.run_id)
    if run is None:
        key = None
        ctx.out.note("no CI run found (GITHUB_RUN_ID, CI_PIPELINE_ID or --run-id): a restart of this command "
                     "would not find the canary it started")
    else:
        key = idempotency_key("canary-start", run[1], a.model, a.version)
        ctx.out.note(f"Idempotency-Key {key} (from {run[0]})", idempotency_key=key, run=run[0])
    canary, replayed = ctx.client.start_canary(body, idempotency_key=key)
    if replayed:
        ctx.out.note(f"canary #{canary['id']} was started by an earlier try of this run; nothing new was started",
                     replayed=True)
        canary = ctx.client.canary(canary["id"])  # the replayed answer is the canary as it was then
    _write_id(a.id_file, canary["id"])
    if not a.wait:
        return show(ctx, canary)
    return follow(ctx, canary)


def _write_id(path: str | None, canary_id: int) -> None:
    if path:
        Path(path).write_text(f"{canary_id}\n", encoding="utf-8")


def _owner(ctx: Context, model: str) -> str | None:
    try:
        return ctx.client.model(model).get("owner")
    except CanaryHubError:
        return None  # only a nicer "whose signature"; never a reason to stop following


def show(ctx: Context, canary: dict[str, Any]) -> int:
    follower = Follower(owner=_owner(ctx, canary["model"]))
    for event in follower.update(canary):
        ctx.out.event(event, canary["id"])
    return EXIT_OK


def follow(ctx: Context, canary: dict[str, Any]) -> int:
    """Poll the canary until it ends or the timeout passes, printing each change."""
    a = ctx.args
    deadline = ctx.clock() + a.timeout
    follower = Follower(owner=_owner(ctx, canary["model"]))
    outage: str | None = None
    while True:
        for event in follower.update(canary):
            ctx.out.event(event, canary["id"])
        code = outcome_exit(canary.get("state", ""))
        if code is not None:
            return code
        if ctx.clock() >= deadline:
            stage = canary.get("stage") or {}
            ctx.out.event(Event("timeout", {
                "state": canary.get("state"), "stage_index": stage.get("index"), "percent": stage.get("percent"),
                "timeout_s": a.timeout, "exit_code": EXIT_TIMED_OUT,
            }, [f"timed out after {_human(a.timeout)}: canary #{canary['id']} is still {canary.get('state')} at "
                f"stage {int(stage.get('index', 0)) + 1} ({stage.get('percent')}%); it goes on without this job "
                f"(exit {EXIT_TIMED_OUT})"]), canary["id"])
            return EXIT_TIMED_OUT
        ctx.sleep(min(a.poll, max(deadline - ctx.clock(), 0.0)))
        try:
            canary = ctx.client.canary(canary["id"])
        except Unreachable as exc:
            # A long wait outlives a CanaryHub restart: keep following until the timeout.
            if outage is None:
                ctx.out.note(f"CanaryHub unreachable, still following: {exc}")
            outage = str(exc)
            continue
        if outage is not None:
            ctx.out.note("CanaryHub answers again")
            outage = None


def _human(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def cmd_canary_wait(ctx: Context) -> int:
    return follow(ctx, ctx.client.canary(ctx.args.id))


def cmd_canary_status(ctx: Context) -> int:
    return show(ctx, ctx.client.canary(ctx.args.id))


def verify_bundle(path: Path, *, fingerprints: Iterable[str]) -> tuple[list[str], int, int]:
    """Run the stand-alone bundle verifier (governance/evidence/verify_bundle.py, standard library
    only) on the downloaded file, in this process, against the signing keys with these SHA-256
    fingerprints: (problems, files, audit events)."""
    if not VERIFIER.is_file():
        raise CanaryHubError(f"the bundle verifier is not installed at {VERIFIER}; the bundle was not verified")
    verifier = runpy.run_path(str(VERIFIER), run_name="canaryhub_verify_bundle")
    try:
        return verifier["verify"](str(path), (), {f.strip().lower() for f in fingerprints})
    except Exception as exc:  # a damaged archive or manifest is a failed verification
        return [f"the bundle cannot be read: {exc}"], 0, 0


def cmd_evidence_download(ctx: Context) -> int:
    a = ctx.args
    pinned = list(a.fingerprint or []) or [
        f for f in os.environ.get("CANARYHUB_SIGNING_KEY_FINGERPRINTS", "").replace(",", " ").split() if f
    ]
    # Without a pinned key, the keys the server publishes: that proves the bundle is the server's
    # and intact, not that the server is the one you trust (say so).
    fingerprints = pinned or [k["fingerprint"] for k in ctx.client.signing_keys()]
    against = "the pinned key" if pinned else "the keys this server publishes (pin one with --fingerprint)"
    path = ctx.client.download_evidence(a.id, output=a.output)
    size = path.stat().st_size
    problems, files, events = verify_bundle(path, fingerprints=fingerprints)
    data = {"event": "evidence", "canary": a.id, "path": str(path), "bytes": size, "verified": not problems,
            "pinned": bool(pinned), "files": files, "audit_events": events, "problems": problems}
    if problems:
        ctx.out.result("\n".join([f"downloaded the evidence of canary #{a.id} to {path} ({size} bytes)"]
                                 + [f"FAILED: {p}" for p in problems]
                                 + ["the bundle does not verify: do not rely on it (the file is kept to inspect)"]),
                       data)
        return EXIT_ERROR
    ctx.out.result(f"downloaded the evidence of canary #{a.id} to {path} ({size} bytes)\n"
                   f"verified: {files} files match the manifest; {events} audit events verify against the chain\n"
                   f"signed by {against}",
                   data)
    return EXIT_OK


def cmd_assign(ctx: Context) -> int:
    a = ctx.args
    answer = ctx.client.assign(a.model, a.user, region=a.region, tier=a.tier, cohort=a.cohort)
    where = f" (canary #{answer.canary_id} at {answer.percent}%)" if answer.canary_id else ""
    flags = ", ".join(f for f, on in (("sticky", answer.sticky), ("fallback", answer.fallback)) if on)
    ctx.out.result(
        f"{answer.model} for user {answer.user}: {answer.variant} version {answer.version}{where}"
        + (f" [{flags}]" if flags else "") + (f": {answer.detail}" if answer.detail else ""),
        {"event": "assignment", **{k: v for k, v in answer.__dict__.items() if k != "cached"}},
    )
    return EXIT_OK


# --- the parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # The connection options are accepted before and after the command; after it they override
    # (SUPPRESS keeps an absent one from resetting what was given before).
    def connection(parser: argparse.ArgumentParser, default: Any) -> None:
        group = parser.add_argument_group("connection")
        group.add_argument("--url", default=default, help="CanaryHub's address (default: $CANARYHUB_URL)")
        group.add_argument("--token", default=default,
                           help="API token (default: $CANARYHUB_TOKEN; the environment keeps it out of the "
                                "process list)")
        group.add_argument("--request-timeout", type=duration, default=default if default is not None else 30.0,
                           metavar="DURATION", help="timeout of one request (default 30s)")

    def common(parser: argparse.ArgumentParser) -> None:
        connection(parser, argparse.SUPPRESS)
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="one JSON object per line, for machines")

    def following(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--timeout", type=duration, default=duration("72h"), metavar="DURATION",
                            help="stop waiting after this long, with exit 4 (default 72h)")
        parser.add_argument("--poll", type=duration, default=duration("20s"), metavar="DURATION",
                            help="how often to look at the canary (default 20s)")

    parser = _Parser(prog="canaryhub", description=__doc__.split("\n\n")[0],
                     epilog="exit status: 0 done (completed or certified), 2 rolled back, 3 aborted, "
                            "4 timed out (the canary still going), 1 refused or failed")
    connection(parser, None)
    parser.add_argument("--json", action="store_true", default=False, help="one JSON object per line, for machines")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    version = commands.add_parser("version", help="model versions").add_subparsers(dest="action", required=True,
                                                                                     parser_class=_Parser)
    register = version.add_parser("register", help="register a version of a model")
    register.add_argument("model")
    register.add_argument("version", help="semver MAJOR.MINOR.PATCH")
    register.add_argument("--artifact", required=True, metavar="URI", help="where the model artifact is")
    register.add_argument("--thresholds", metavar="FILE", help='JSON file: {"promote": {…}, "rollback": {…}}')
    register.add_argument("--metrics", metavar="FILE", help='JSON file: {"provider": …, "queries": {…}}')
    register.add_argument("--run-id", help="the CI run, when not GitHub Actions or GitLab CI (Idempotency-Key)")
    common(register)
    register.set_defaults(handler=cmd_version_register)

    canary = commands.add_parser("canary", help="canaries").add_subparsers(dest="action", required=True,
                                                                             parser_class=_Parser)
    start = canary.add_parser("start", help="start a canary of a registered version (and --wait for its outcome)")
    start.add_argument("model")
    start.add_argument("version")
    start.add_argument("--schedule", choices=["standard", "accelerated", "conservative", "cohort_first"])
    start.add_argument("--segmentation", metavar="STRATEGY[=V1,V2]",
                       help="random (default), cohort=…, region=…, account_tier=…, or the API's JSON object")
    start.add_argument("--rationale", help="why (20+ characters; needed for accelerated and segmented canaries)")
    start.add_argument("--shadow-evidence", metavar="REF", help="shadow-deployment evidence (accelerated schedule)")
    start.add_argument("--rollback-contact", help="who to call about a rollback (default: the model's on-call)")
    start.add_argument("--router", help="router kind (default: CanaryHub's)")
    start.add_argument("--run-id", help="the CI run, when not GitHub Actions or GitLab CI: a restart with the "
                                        "same run id starts nothing new")
    start.add_argument("--wait", action="store_true",
                       help="follow the canary until it ends, then exit with its outcome")
    start.add_argument("--id-file", metavar="FILE", help="write the canary's id to FILE once it is known")
    following(start)
    common(start)
    start.set_defaults(handler=cmd_canary_start)

    wait = canary.add_parser("wait", help="follow a canary until it ends; exit with its outcome")
    wait.add_argument("id", type=int)
    following(wait)
    common(wait)
    wait.set_defaults(handler=cmd_canary_wait)

    status = canary.add_parser("status", help="where a canary stands")
    status.add_argument("id", type=int)
    common(status)
    status.set_defaults(handler=cmd_canary_status)

    evidence = commands.add_parser("evidence", help="evidence bundles").add_subparsers(dest="action", required=True,
                                                                                         parser_class=_Parser)
    download = evidence.add_parser("download", help="download a canary's evidence bundle and verify it")
    download.add_argument("id", type=int)
    download.add_argument("-o", "--output", metavar="FILE", help="where to write the zip (default: its own name)")
    download.add_argument("--fingerprint", action="append", metavar="SHA256",
                          help="the SHA-256 fingerprint of a signing key you trust (repeatable; default: "
                          "CANARYHUB_SIGNING_KEY_FINGERPRINTS, else the keys the server publishes)")
    common(download)
    download.set_defaults(handler=cmd_evidence_download)

    assign = commands.add_parser("assign", help="which version a user is served")
    assign.add_argument("model")
    assign.add_argument("user")
    assign.add_argument("--region")
    assign.add_argument("--tier")
    assign.add_argument("--cohort")
    common(assign)
    assign.set_defaults(handler=cmd_assign)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    env = os.environ if env is None else env
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (1)
        return int(exc.code or 0)
    token = args.token or env.get("CANARYHUB_TOKEN", "")
    out = Output(json_mode=args.json, stdout=stdout, stderr=stderr, secrets=[token])
    ctx: Context | None = None
    try:
        ctx = Context(args, env, out, sleep, clock)
        return args.handler(ctx)
    except (UsageError, CanaryHubError) as exc:
        return out.error(exc)
    except KeyboardInterrupt:
        out.note("interrupted")
        return EXIT_ERROR
    finally:
        if ctx is not None:
            ctx.client.close()
