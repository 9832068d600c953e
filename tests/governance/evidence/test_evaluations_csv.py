"""The evidence bundle's evaluations.csv: a column group for every built-in gate (the pattern's
five, the LLM serving gates and availability) and the response length each version recorded,
empty where an evaluation did not judge or record them; the bundle's manifest still verifies."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from datetime import timedelta

import pytest
from django.utils import timezone

from canaryhub import keyring
from governance.access.permissions import Role
from governance.evidence.bundles import bundle_stream, canaries_for
from governance.evidence.selectors import VERIFY_SCRIPT
from releases.canaries import services as lifecycle
from tests.factories import make_evaluation, window_inputs
from tests.governance.helpers import make_model

pytestmark = pytest.mark.django_db


def test_the_csv_carries_the_llm_and_availability_gates_and_the_response_length(role_user, tmp_path):
    owner = role_user(Role.MODEL_OWNER, username="owner")
    make_model(role_user(Role.PLATFORM, username="platform"))
    canary = lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.1.0")
    now = timezone.now()
    plain = make_evaluation(canary, window_end=now - timedelta(minutes=2), inputs=window_inputs())
    llm = make_evaluation(
        canary, window_end=now - timedelta(minutes=1),
        inputs=window_inputs(tokens=((350, 120), (350, 110)), response_tokens=((105, 410), (100, 380))),
        extra_gates=("tokens_per_request", "cost_per_request", "guardrail_block_rate", "schema_failure_rate",
                     "availability"),
        values={"guardrail_block_rate": (0.2, 0.5), "schema_failure_rate": (0.3, 0.1), "availability": (0.05, 0.1)},
        schema_failure_rate="red", availability="insufficient")
    data = b"".join(bundle_stream(canaries_for(canary_id=canary.pk), scope={"kind": "canary"}))
    folder = f"canaries/{canary.pk}-scorer-1.1.0"
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(
        zipfile.ZipFile(io.BytesIO(data)).read(f"{folder}/evaluations.csv").decode()))}
    row = rows[llm.pk]
    assert (row["schema_failure_rate_status"], row["schema_failure_rate_value"],
            row["schema_failure_rate_limit"]) == ("red", "0.3", "0.1")
    assert (row["guardrail_block_rate_status"], row["guardrail_block_rate_value"]) == ("green", "0.2")
    assert row["availability_status"] == "insufficient" and row["tokens_per_request_status"] == "green"
    assert (row["canary_response_tokens_p50"], row["canary_response_tokens_p95"],
            row["production_response_tokens_p95"]) == ("105", "410", "380")
    # An evaluation of a model that reported none of them: those cells are empty, the pattern's are not.
    other = rows[plain.pk]
    assert other["error_rate_status"] == "green"
    assert other["guardrail_block_rate_status"] == other["availability_value"] == ""
    assert other["canary_response_tokens_p50"] == ""
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(data)
    ok = subprocess.run([sys.executable, "-I", str(VERIFY_SCRIPT), str(bundle),
                         "--fingerprint", keyring.active_key().fingerprint], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
