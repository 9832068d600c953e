"""Threshold changes in words: each threshold named for what it decides, stages numbered from 1
("stage 2 of 6") as on the canary page."""

from __future__ import annotations

from typing import Any

THRESHOLD_LABELS: dict[str, str] = {
    "promote.error_rate_pp": "Promote: error rate at most this many percentage points above production's",
    "promote.latency_p99_ratio": "Promote: p99 latency at most this many times production's",
    "promote.quality_ratio": "Promote: quality score at least this fraction of production's",
    "promote.safety_violations": "Promote: content-safety violations at most",
    "promote.anomaly_alerts": "Promote: anomaly alerts firing at most",
    "promote.tokens_per_request_ratio": "Promote: tokens per request at most this many times production's",
    "promote.cost_per_request_ratio": "Promote: cost per request at most this many times production's",
    "promote.guardrail_block_rate_pp":
        "Promote: guardrail block rate at most this many percentage points above production's",
    "promote.schema_failure_rate_pp":
        "Promote: output-schema failure rate at most this many percentage points above production's",
    "promote.availability_pp": "Promote: availability at most this many percentage points below production's",
    "rollback.schema_failure_rate_pp":
        "Roll back: output-schema failure rate more than this many percentage points above production's",
    "rollback.error_rate_pp": "Roll back: error rate more than this many percentage points above production's",
    "rollback.latency_p99_ratio": "Roll back: p99 latency more than this many times production's",
    "rollback.quality_ratio": "Roll back: quality score below this fraction of production's",
    "rollback.safety_violations": "Roll back: content-safety violations more than",
    "rollback.tokens_per_request_ratio": "Roll back: tokens per request more than this many times production's",
    "rollback.guardrail_blocks_per_min": "Roll back: guardrail blocks a minute more than",
}


def threshold_label(name: str) -> str:
    """`promote.error_rate_pp` in words; an unknown key reads as its words."""
    if name in THRESHOLD_LABELS:
        return THRESHOLD_LABELS[name]
    section, _, key = name.partition(".")
    return f"{section.capitalize()}: {key.replace('_', ' ')}"


def stage_of(index: Any, stages: Any) -> str:
    """"stage 2 of 6" for index 1 of six stages; "stage 2" when the stages are unknown."""
    if not isinstance(index, int):
        return "—"
    total = len(stages) if isinstance(stages, list | tuple) else 0
    return f"stage {index + 1} of {total}" if total else f"stage {index + 1}"
