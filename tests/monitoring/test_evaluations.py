import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from canaryhub.canonical import canonical_json, normalise_json
from monitoring.evaluations import (
    PROMOTION_GATES,
    Gate,
    GateStatus,
    evaluation_hash,
    is_ready,
    overall_verdict,
    readiness,
)

G, R, IN, S = GateStatus.GREEN, GateStatus.RED, GateStatus.INSUFFICIENT, GateStatus.STALE
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WINDOW_START = NOW - timedelta(minutes=6)
WINDOW_END = NOW - timedelta(minutes=1)


def gates(*statuses):
    return [Gate(name=f"gate{n}", status=s) for n, s in enumerate(statuses)]


def all_green(**overrides):
    out = [Gate(name=name, status=G, value=0.0, limit=1.0) for name in PROMOTION_GATES]
    for name, status in overrides.items():
        out = [Gate(name=g.name, status=status) if g.name == name else g for g in out]
    return out


# --- overall_verdict -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "verdict"),
    [
        ((G,), G),
        ((G, G, G, G, G), G),
        ((R,), R),
        ((S,), S),
        ((IN,), IN),
        ((G, R), R),
        ((G, S), S),
        ((G, IN), IN),
        ((R, S), R),
        ((R, IN), R),
        ((S, IN), S),
        ((IN, S), S),
        ((G, IN, S, R), R),
        ((G, IN, S), S),
        ((G, G, IN), IN),
        ((), IN),  # nothing checked is not green
    ],
)
def test_overall_verdict_is_the_worst_gate(statuses, verdict):
    assert overall_verdict(gates(*statuses)) == verdict
    # the stored JSON form gives the same answer
    assert overall_verdict([g.to_dict() for g in gates(*statuses)]) == verdict


# --- Gate ----------------------------------------------------------------------------------------


def test_gate_round_trips_through_json():
    detail = "canary p99 512.5 ms > 480 ms"
    gate = Gate(name="latency_p99", status="red", value=512.5, limit=480, detail=detail)
    assert gate.status is GateStatus.RED
    data = json.loads(json.dumps(gate.to_dict()))
    assert data == {
        "name": "latency_p99", "status": "red", "value": 512.5, "limit": 480, "detail": detail,
    }
    assert Gate.from_dict(data) == gate


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "q", "status": "amber"},
        {"name": "", "status": "green"},
        {"name": "q", "status": "green", "value": math.nan},
        {"name": "q", "status": "green", "limit": math.inf},
        {"name": "q", "status": "green", "value": "0.1"},
        {"name": "q", "status": "green", "value": True},
    ],
)
def test_invalid_gates_are_refused(kwargs):
    with pytest.raises(ValueError):
        Gate(**kwargs)


# --- evaluation_hash -----------------------------------------------------------------------------

INPUTS = {
    "queries": {"errors": 'sum(increase(model_requests_total{outcome="error"}[5m]))'},
    "canary": {"requests": 1200, "errors": 3, "latency_p99_ms": 410.0},
    "production": {"requests": 118000, "errors": 250, "latency_p99_ms": 395.5},
    "sample_sizes": [1200, 118000],
}


def hash_of(**overrides):
    kwargs = {
        "canary_id": 7,
        "stage_index": 2,
        "window_start": WINDOW_START,
        "window_end": WINDOW_END,
        "gates": all_green(),
        "verdict": "green",
        "inputs": INPUTS,
    }
    kwargs.update(overrides)
    return evaluation_hash(**kwargs)


def test_hash_is_sha256_of_the_canonical_json():
    expected_body = canonical_json(
        {
            "canary_id": 7,
            "stage_index": 2,
            "window_start": "2026-03-02T11:54:00.000000+00:00",
            "window_end": "2026-03-02T11:59:00.000000+00:00",
            "gates": [g.to_dict() for g in all_green()],
            "verdict": "green",
            "inputs": INPUTS,
        }
    )
    assert hash_of() == hashlib.sha256(expected_body.encode()).hexdigest()
    assert len(hash_of()) == 64


def test_hash_is_the_same_after_a_database_round_trip():
    stored_gates = json.loads(json.dumps([g.to_dict() for g in all_green()]))
    stored_inputs = json.loads(json.dumps(INPUTS))
    other_zone = timezone(timedelta(hours=2))
    assert hash_of(
        gates=stored_gates,
        inputs=stored_inputs,
        window_start=WINDOW_START.astimezone(other_zone),
        window_end=WINDOW_END.astimezone(other_zone),
        verdict=GateStatus.GREEN,
    ) == hash_of()


def test_hash_ignores_key_order_of_inputs():
    reordered = {k: INPUTS[k] for k in reversed(list(INPUTS))}
    assert hash_of(inputs=reordered) == hash_of()


@pytest.mark.parametrize(
    "overrides",
    [
        {"canary_id": 8},
        {"stage_index": 3},
        {"window_start": WINDOW_START - timedelta(microseconds=1)},
        {"window_end": WINDOW_END + timedelta(seconds=1)},
        {"gates": all_green(quality=R)},
        {"gates": list(reversed(all_green()))},
        {"verdict": "red"},
        {"inputs": {**INPUTS, "canary": {**INPUTS["canary"], "errors": 4}}},
        {"inputs": {}},
    ],
)
def test_hash_changes_with_any_field(overrides):
    assert hash_of(**overrides) != hash_of()


@pytest.mark.parametrize(
    "overrides",
    [
        {"inputs": {"value": math.nan}},
        {"inputs": {"values": [1.0, math.inf]}},
        {"window_end": WINDOW_END.replace(tzinfo=None)},
        {"verdict": "amber"},
    ],
)
def test_hash_refuses_what_cannot_be_stored_or_compared(overrides):
    with pytest.raises(ValueError):
        hash_of(**overrides)


def test_normalise_json_is_what_a_json_column_gives_back():
    assert normalise_json({"b": (1, 2), "a": {"x": 1.5}}) == {"a": {"x": 1.5}, "b": [1, 2]}
    with pytest.raises(ValueError):
        normalise_json([{"x": -math.inf}])


# --- readiness -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    window_end: datetime
    verdict: str
    gates: list[Any] = field(default_factory=all_green)


def fresh(**kwargs):
    kwargs.setdefault("window_end", NOW - timedelta(seconds=60))
    kwargs.setdefault("verdict", "green")
    return Snapshot(**kwargs)


@pytest.mark.parametrize(
    ("evaluation", "ready", "reason"),
    [
        (None, False, "no evaluation yet"),
        (fresh(), True, "every promotion gate is green"),
        (fresh(gates=[g.to_dict() for g in all_green()]), True, "green"),  # as stored
        (fresh(window_end=NOW - timedelta(seconds=300)), True, "green"),  # exactly at the limit
        (fresh(window_end=NOW + timedelta(seconds=5)), True, "green"),  # slight clock skew
        (fresh(window_end=NOW - timedelta(seconds=301)), False, "stale"),
        (fresh(window_end=NOW - timedelta(hours=3)), False, "stale"),
        (fresh(gates=all_green(quality=R), verdict="red"), False, "quality is red"),
        (fresh(gates=all_green(error_rate=IN), verdict="insufficient"), False, "error_rate is insufficient"),
        (fresh(gates=all_green(latency_p99=S), verdict="stale"), False, "latency_p99 is stale"),
        (fresh(gates=all_green()[:4]), False, "not evaluated: anomaly_alerts"),
        (fresh(gates=[]), False, "not evaluated"),
        # any gate the evaluator recorded counts, not only the promotion gates
        (fresh(gates=[*all_green(), Gate(name="rollback.quality", status=R)], verdict="red"), False, "red"),
        (fresh(verdict="red"), False, "verdict is red although every gate is green"),
    ],
)
def test_readiness(evaluation, ready, reason):
    result = readiness(evaluation, now=NOW, staleness_limit_s=300)
    assert result.ready is ready and bool(result) is ready
    assert reason in result.reason
    assert is_ready(evaluation, now=NOW, staleness_limit_s=300) is ready


def test_required_gates_can_be_narrowed():
    evaluation = fresh(gates=[Gate(name="error_rate", status=G)])
    assert not is_ready(evaluation, now=NOW, staleness_limit_s=300)
    assert is_ready(evaluation, now=NOW, staleness_limit_s=300, required_gates=["error_rate"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"now": NOW, "staleness_limit_s": 0},
        {"now": NOW, "staleness_limit_s": -1},
        {"now": NOW.replace(tzinfo=None), "staleness_limit_s": 300},
    ],
)
def test_readiness_refuses_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        readiness(fresh(), **kwargs)


def test_the_pattern_has_five_promotion_gates():
    assert PROMOTION_GATES == ("error_rate", "latency_p99", "quality", "safety_violations", "anomaly_alerts")
