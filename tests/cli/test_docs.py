"""The pipeline examples in docs/ci/ are valid YAML whose `canaryhub` commands the command line
accepts, and they keep the evidence bundle and fail the job as their comments say."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from canaryhub.cli.commands import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci"


def commands(node) -> list[str]:
    if isinstance(node, dict):
        return [c for value in node.values() for c in commands(value)]
    if isinstance(node, list):
        return [c for value in node for c in commands(value)]
    if isinstance(node, str):
        return [m.group(0) for m in re.finditer(r"canaryhub (?:version|canary|evidence|assign)[^\n;&|]*", node)]
    return []


def parsed(command: str):
    command = command.replace('"$(cat canary-id)"', "7")
    command = re.sub(r"\$\{?\w+\}?|\$\{\{[^}]*\}\}", "x", command)
    return build_parser().parse_args(shlex.split(command)[1:])


def test_github_actions_example():
    workflow = yaml.safe_load((DOCS / "github-actions.yml").read_text())
    steps = workflow["jobs"]["canary"]["steps"]
    found = commands(steps)
    assert [c.split()[1:3] for c in found] == [["version", "register"], ["canary", "start"], ["evidence", "download"]]
    start = parsed(found[1])
    assert start.wait and start.timeout == 72 * 3600 and start.id_file == "canary-id"
    evidence = next(s for s in steps if "evidence download" in s.get("run", ""))
    assert evidence["if"].startswith("always()") and "EVIDENCE_TOKEN" in evidence["env"]["CANARYHUB_TOKEN"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"].startswith("always()") and upload["with"]["path"] == "evidence.zip"
    for command in found:
        parsed(command)


def test_gitlab_ci_example():
    job = yaml.safe_load((DOCS / "gitlab-ci.yml").read_text())["canary"]
    found = commands(job)
    assert [c.split()[1:3] for c in found] == [["version", "register"], ["canary", "start"], ["evidence", "download"]]
    assert all(parsed(c) for c in found)
    assert parsed(found[1]).wait
    assert "evidence download" in " ".join(job["after_script"]) and job["artifacts"]["when"] == "always"
