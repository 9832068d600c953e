"""The floor plan holds: imports go only down the layers (import-linter's contracts in
pyproject.toml), a wrong-way import fails them, canary states are grouped in one module only,
statuses change only in their transition functions, and a function-local import says why."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APPS = ("canaryhub", "governance", "releases", "monitoring")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CANARY_STATE_STRINGS = {"pending_approval", "awaiting_approval", "held", "suspended", "certified", "rolled_back",
                        "aborted"}  # "running" and "completed" are also other records' statuses


def _sources() -> list[Path]:
    return [p for app in APPS for p in (REPO / app).rglob("*.py") if "migrations" not in p.parts]


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_the_import_contracts_are_kept():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("monitoring/probe.py", "from releases.canaries import services\n", "Layers"),
    ("canaryhub/probe.py", "from governance.access import permissions\n", "Layers"),
    ("releases/register/probe.py", "from releases.canaries import selectors\n", "Releases"),
    ("monitoring/evaluator_probe.py", "", "The judge is pure"),
])
def test_a_wrong_way_import_breaks_a_contract(tmp_path, module, line, contract):
    """A throwaway module importing upward, in a copy of the tree: lint-imports refuses it."""
    for app in APPS:
        shutil.copytree(REPO / app, tmp_path / app, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    if not line:  # the pure evaluator reaching for a provider
        (tmp_path / "monitoring" / "evaluator.py").write_text(
            (REPO / "monitoring" / "evaluator.py").read_text() + "\nfrom monitoring import providers  # noqa\n")
    else:
        (tmp_path / module).write_text(line)
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout


def _is_state(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return isinstance(node.value, ast.Name | ast.Attribute) and (
            getattr(node.value, "id", None) == "State" or getattr(node.value, "attr", None) == "State")
    return isinstance(node, ast.Constant) and node.value in CANARY_STATE_STRINGS


def test_canary_state_groups_are_spelled_out_only_in_the_states_module():
    found = []
    for path in _sources():
        if path == REPO / "releases" / "canaries" / "states.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set) and sum(map(_is_state, node.elts)) >= 2:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []


def test_statuses_change_only_in_their_transition_functions():
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef) or function.name.endswith("_transition"):
                continue
            for call in ast.walk(function):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "update"
                        and any(k.arg in ("status", "state") for k in call.keywords)):
                    found.append(f"{path.relative_to(REPO)}:{call.lineno} in {function.name}")
    assert found == []


def test_every_function_local_import_says_why_it_is_local():
    found = []
    for path in _sources():
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                # The comment sits on the line, or above the block of imports the line belongs to.
                above = node.lineno - 2
                while above >= 0 and lines[above].strip().startswith(("from ", "import ")) or (
                        above >= 0 and not lines[above].strip()):
                    above -= 1
                if "#" not in lines[node.lineno - 1] and not (above >= 0 and lines[above].strip().startswith("#")):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []
