"""A client generated from the OpenAPI document, as a CI engineer would make one: the schema from
`manage.py spectacular`, then `openapi-python-client generate`. No warning, no operation left
out, and the generated code works against a live CanaryHub (the list operations with their
enum filters included, which generators used to drop).

The one setting the generator needs is the documented `content_type_overrides` for the evidence
bundle: it reads no zip media type, and the bundle is a zip (docs/ci/README.md says so)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
CONFIG = "content_type_overrides:\n  application/zip: application/octet-stream\n"
PACKAGE = "canaryhub_generated_api"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("generated")
    schema_file = folder / "openapi.yaml"
    # The generator runs ruff over what it wrote: the venv's, found on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    spectacular = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--file", str(schema_file), "--validate", "--fail-on-warn"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert spectacular.returncode == 0, spectacular.stderr
    (folder / "config.yaml").write_text(CONFIG)
    generate = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(schema_file), "--output-path",
         str(folder / PACKAGE), "--meta", "none", "--config", str(folder / "config.yaml"), "--fail-on-warning"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )
    output = generate.stdout + generate.stderr
    assert generate.returncode == 0, output
    assert "warning" not in output.lower() and "will not be generated" not in output and "omitted" not in output, output
    return folder, yaml.safe_load(schema_file.read_text())


def test_every_operation_is_generated(generated):
    folder, schema = generated
    expected = {
        (op["tags"][0].replace(" ", "_"), op["operationId"])
        for item in schema["paths"].values() for method, op in item.items() if method in ("get", "post", "patch")
    }
    made = {(p.parent.name, p.stem) for p in (folder / PACKAGE / "api").glob("*/*.py") if p.stem != "__init__"}
    assert len(expected) >= 30 and expected == made


def test_the_generated_client_drives_the_api(generated, hub):
    folder, _ = generated
    sys.path.insert(0, str(folder))
    try:
        client_module = importlib.import_module(f"{PACKAGE}.client")
        models_list = importlib.import_module(f"{PACKAGE}.api.models.models_list")
        canaries_create = importlib.import_module(f"{PACKAGE}.api.canaries.canaries_create")
        canaries_list = importlib.import_module(f"{PACKAGE}.api.canaries.canaries_list")
        evidence = importlib.import_module(f"{PACKAGE}.api.evidence.canaries_evidence_retrieve")
        models = importlib.import_module(f"{PACKAGE}.models")
        assert run_cli(hub, ["version", "register", "scorer", "1.1.0", "--artifact", "s3://scorer/1.1.0"]).code == 0
        # Each client closes its connections when the block ends (kept-alive ones hold live-server threads).
        with client_module.AuthenticatedClient(base_url=hub.url, token=hub.tokens["ci"]) as ci, \
                client_module.AuthenticatedClient(base_url=hub.url, token=hub.tokens["auditor"]) as auditor:
            bundle_id = drive(ci, auditor, models, models_list, canaries_create, canaries_list, evidence)
        assert bundle_id > 0
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
            del sys.modules[name]


def drive(ci, auditor, models, models_list, canaries_create, canaries_list, evidence) -> int:
    """What a pipeline does with the generated client: list, start, list by state, get refused, download."""
    page = models_list.sync(client=ci, risk_tier=models.ModelsListRiskTier.MEDIUM)
    assert [m.name for m in page.results] == ["scorer"]  # the token's scope
    started = canaries_create.sync_detailed(
        client=ci, body=models.CanaryInputRequest(model="scorer", version="1.1.0"), idempotency_key="gen-1")
    assert started.status_code == 201 and started.parsed.state == models.StateEnum.RUNNING
    listed = canaries_list.sync(client=ci, state=models.CanariesListState.RUNNING)
    assert [c.id for c in listed.results] == [started.parsed.id]
    refused = canaries_create.sync_detailed(client=ci, body=models.CanaryInputRequest(model="fraud", version="1.1.0"))
    assert refused.status_code == 404 and refused.parsed.detail == "no model named 'fraud'"
    bundle = evidence.sync_detailed(client=auditor, id=started.parsed.id)
    assert bundle.status_code == 200 and bundle.content[:2] == b"PK"
    return started.parsed.id
