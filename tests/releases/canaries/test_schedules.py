from datetime import UTC, datetime, timedelta, timezone

import pytest

from canaryhub.errors import ValidationFailed
from releases.canaries.schedules import (
    ScheduleKind,
    Stage,
    expand_schedule,
    expected_timeline,
    initiation_warnings,
    min_residence,
    parse_segmentation,
    residence_remaining,
    stage_segmentation,
    validate_initiation,
)

H = timedelta(hours=1)
RATIONALE = "Shadow run for 14 days on 2M requests showed no regressions."
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- expand_schedule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "percents"),
    [
        ("standard", [1, 5, 10, 25, 50, 100]),
        ("accelerated", [1, 10, 25, 100]),
        ("conservative", [1, 5, 10, 25, 50, 75, 100]),
        ("cohort_first", [100, 100, 100]),
    ],
)
def test_schedules_have_the_patterns_stages(kind, percents):
    stages = expand_schedule(kind, risk_tier="medium", clock_speed=1)
    assert [s.percent for s in stages] == percents
    assert [s.index for s in stages] == list(range(len(percents)))
    assert stages[-1].is_final and not any(s.is_final for s in stages[:-1])


@pytest.mark.parametrize(
    ("risk_tier", "clock_speed", "residence"),
    [
        ("low", 1, 24 * H),
        ("medium", 1, 24 * H),
        ("high", 1, 48 * H),
        ("low", 60, 24 * H / 60),
        ("high", 1440, 2 * timedelta(minutes=1)),
        ("medium", 2.5, timedelta(hours=9, minutes=36)),
    ],
)
def test_residence_is_24h_or_48h_for_high_risk_divided_by_clock_speed(risk_tier, clock_speed, residence):
    stages = expand_schedule("standard", risk_tier=risk_tier, clock_speed=clock_speed)
    assert [s.min_residence for s in stages[:-1]] == [residence] * 5
    assert min_residence(risk_tier=risk_tier, clock_speed=clock_speed) == residence


@pytest.mark.parametrize("kind", list(ScheduleKind))
def test_final_stage_has_no_residence(kind):
    stages = expand_schedule(kind, risk_tier="high", clock_speed=1)
    assert stages[-1].min_residence == timedelta(0)
    assert all(s.min_residence == 48 * H for s in stages[:-1])


def test_cohort_first_stages_are_the_cohorts_then_everyone():
    cohorts = ["staff", "beta-testers"]
    stages = expand_schedule("cohort_first", risk_tier="low", clock_speed=1, cohorts=cohorts)
    assert [(s.percent, s.cohort) for s in stages] == [(100, "staff"), (100, "beta-testers"), (100, None)]
    assert not stages[0].is_final and not stages[1].is_final and stages[2].is_final


def test_cohort_first_without_names_uses_internal_then_beta():
    stages = expand_schedule("cohort_first", risk_tier="low", clock_speed=1)
    assert [s.cohort for s in stages] == ["internal", "beta", None]


def test_cohorts_are_ignored_by_percent_schedules():
    stages = expand_schedule("standard", risk_tier="low", clock_speed=1, cohorts=["staff"])
    assert all(s.cohort is None for s in stages)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "turbo", "risk_tier": "low", "clock_speed": 1}, "unknown schedule"),
        ({"kind": "standard", "risk_tier": "extreme", "clock_speed": 1}, "unknown risk tier"),
        ({"kind": "standard", "risk_tier": "low", "clock_speed": 0.5}, "clock_speed"),
        ({"kind": "standard", "risk_tier": "low", "clock_speed": float("nan")}, "clock_speed"),
        ({"kind": "standard", "risk_tier": "low", "clock_speed": True}, "clock_speed"),
    ],
)
def test_expand_refuses_bad_arguments(kwargs, message):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=message):
        expand_schedule(kind, **kwargs)


def test_stage_round_trips_through_the_canary_json_form():
    stages = expand_schedule("conservative", risk_tier="high", clock_speed=7)
    stored = [s.to_dict() for s in stages]
    # timedelta keeps microseconds: 48 h / 7 is stored to the microsecond, and reads back exactly.
    assert stored[0] == {"index": 0, "percent": 1, "cohort": None, "min_residence_s": 24685.714286}
    assert tuple(Stage.from_dict(d) for d in stored) == stages


# --- router segmentation per stage ---------------------------------------------------------------


def test_stage_segmentation_is_cumulative_for_cohorts_and_everyone_at_the_end():
    seg = {"strategy": "cohort", "values": ["staff", "beta-testers"]}
    stages = expand_schedule("cohort_first", risk_tier="low", clock_speed=1, cohorts=seg["values"])
    assert stage_segmentation(stages, 0, segmentation=seg) == {"strategy": "cohort", "values": ["staff"]}
    assert stage_segmentation(stages, 1, segmentation=seg) == {
        "strategy": "cohort", "values": ["staff", "beta-testers"],
    }
    assert stage_segmentation(stages, 2, segmentation=seg) == {"strategy": "random", "values": []}


def test_stage_segmentation_keeps_the_canarys_own_until_the_final_stage():
    seg = {"strategy": "region", "values": ["eu-west"]}
    stages = expand_schedule("standard", risk_tier="low", clock_speed=1)
    assert stage_segmentation(stages, 3, segmentation=seg) == {"strategy": "region", "values": ["eu-west"]}
    assert stage_segmentation(stages, 5, segmentation=seg) == {"strategy": "random", "values": []}


# --- validate_initiation -------------------------------------------------------------------------

VALID = {
    "schedule": "standard",
    "risk_tier": "medium",
    "segmentation": {"strategy": "random", "values": []},
    "rationale": "",
    "shadow_evidence_ref": "",
    "change_type": "MINOR",
}


# An accelerated start that passes, and non-random segmentations with their fairness rationale.
ACCELERATED = {
    "schedule": "accelerated", "risk_tier": "low", "rationale": RATIONALE, "shadow_evidence_ref": "r",
}


def seg(strategy, *values, **changes):
    return {"segmentation": {"strategy": strategy, "values": list(values)}, "rationale": RATIONALE, **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"segmentation": None, "rationale": None, "shadow_evidence_ref": None},
        {"segmentation": {"strategy": "random"}},
        {"schedule": "conservative", "risk_tier": "high"},
        {"schedule": "standard", "risk_tier": "high", "change_type": "MAJOR"},  # advised against, allowed
        ACCELERATED,
        {**ACCELERATED, "shadow_evidence_ref": "mlflow:run/42", "change_type": "PATCH"},
        seg("region", "eu-west", "eu-north"),
        seg("account_tier", "internal"),
        seg("cohort", "beta"),
        seg("cohort", "internal", "beta", schedule="cohort_first"),
        seg("cohort", "staff", "beta-testers", "early-adopters", schedule="cohort_first", risk_tier="high"),
        seg("region", *[f"r{i}" for i in range(50)]),
        seg("region", "x" * 100),
        {"schedule": "standard", "rationale": "x" * 10_000},
        {"change_type": "PATCH"},
        {"change_type": "MAJOR"},
    ],
)
def test_valid_initiations_pass(changes):
    validate_initiation(**{**VALID, **changes})


SHORT = "too short, really     "  # 15 characters without spaces


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"schedule": "turbo"}, {"schedule"}),
        ({"schedule": ["standard"]}, {"schedule"}),
        ({"schedule": None}, {"schedule"}),
        # accelerated: low risk only, with rationale and shadow evidence
        ({**ACCELERATED, "risk_tier": "medium"}, {"schedule"}),
        ({**ACCELERATED, "risk_tier": "high"}, {"schedule"}),
        ({**ACCELERATED, "rationale": ""}, {"rationale"}),
        ({**ACCELERATED, "rationale": None}, {"rationale"}),
        ({**ACCELERATED, "rationale": SHORT}, {"rationale"}),
        ({**ACCELERATED, "rationale": " " * 40}, {"rationale"}),
        ({**ACCELERATED, "shadow_evidence_ref": ""}, {"shadow_evidence_ref"}),
        ({**ACCELERATED, "shadow_evidence_ref": "   "}, {"shadow_evidence_ref"}),
        ({"schedule": "accelerated", "risk_tier": "high"}, {"schedule", "rationale", "shadow_evidence_ref"}),
        # non-random segmentation: fairness rationale and values
        (seg("region", "eu-west", rationale=""), {"rationale"}),
        (seg("cohort", "beta", rationale=SHORT), {"rationale"}),
        (seg("account_tier"), {"segmentation.values"}),
        ({"segmentation": {"strategy": "region"}, "rationale": RATIONALE}, {"segmentation.values"}),
        # segmentation shape
        ({"segmentation": "random"}, {"segmentation"}),
        ({"segmentation": {"strategy": "random", "values": [], "extra": 1}}, {"segmentation"}),
        ({"segmentation": {"strategy": "geo", "values": ["x"]}}, {"segmentation.strategy"}),
        ({"segmentation": {"strategy": ["random"]}}, {"segmentation.strategy"}),
        ({"segmentation": {"strategy": "random", "values": ["a"]}}, {"segmentation.values"}),
        ({**seg("region"), "segmentation": {"strategy": "region", "values": "eu"}}, {"segmentation.values"}),
        (seg("region", "eu", ""), {"segmentation.values[1]"}),
        (seg("region", "eu", 7), {"segmentation.values[1]"}),
        (seg("region", " eu"), {"segmentation.values[0]"}),
        (seg("region", "eu", "us", "eu"), {"segmentation.values[2]"}),
        (seg("region", *[f"r{i}" for i in range(51)]), {"segmentation.values"}),
        (seg("region", "x" * 101), {"segmentation.values[0]"}),
        # cohort_first needs cohort segmentation with two or more cohorts
        ({"schedule": "cohort_first"}, {"segmentation.strategy"}),
        (seg("region", "eu", schedule="cohort_first"), {"segmentation.strategy"}),
        (seg("cohort", "internal", schedule="cohort_first"), {"segmentation.values"}),
        (seg("cohort", "internal", "beta", schedule="cohort_first", rationale=""), {"rationale"}),
        # text fields
        ({"rationale": 42}, {"rationale"}),
        ({"rationale": "x" * 10_001}, {"rationale"}),
        ({"shadow_evidence_ref": ["r"]}, {"shadow_evidence_ref"}),
        ({"shadow_evidence_ref": "r" * 501}, {"shadow_evidence_ref"}),
        # a first version has nothing to be compared with
        ({"change_type": "INITIAL"}, {"version"}),
    ],
)
def test_invalid_initiations_name_every_offending_field(changes, fields):
    with pytest.raises(ValidationFailed) as exc:
        validate_initiation(**{**VALID, **changes})
    assert set(exc.value.errors) == fields
    assert all(exc.value.errors[f] for f in fields)


def test_accelerated_for_high_risk_says_why():
    with pytest.raises(ValidationFailed) as exc:
        validate_initiation(**{**VALID, "schedule": "accelerated", "risk_tier": "high"})
    assert exc.value.errors["schedule"] == [
        "accelerated is allowed only for low-risk models; this model is high risk"
    ]


def test_rationale_of_exactly_20_non_space_characters_is_enough():
    twenty = "abcde fghij\tklmno\npqrst"
    seg = {"strategy": "region", "values": ["eu"]}
    validate_initiation(**{**VALID, "segmentation": seg, "rationale": twenty})
    with pytest.raises(ValidationFailed):
        validate_initiation(**{**VALID, "segmentation": seg, "rationale": twenty[:-1]})


@pytest.mark.parametrize(("field", "value"), [("risk_tier", "extreme"), ("change_type", "HUGE")])
def test_register_values_outside_their_choices_are_bugs(field, value):
    with pytest.raises(ValueError):
        validate_initiation(**{**VALID, field: value})


def test_parse_segmentation_defaults_to_random_and_returns_a_copy():
    assert parse_segmentation(None) == {"strategy": "random", "values": []}
    values = ["eu"]
    parsed = parse_segmentation({"strategy": "region", "values": values})
    values.append("us")
    assert parsed == {"strategy": "region", "values": ["eu"]}
    with pytest.raises(ValidationFailed) as exc:
        parse_segmentation({"strategy": "region", "values": ["eu", "eu"]})
    assert set(exc.value.errors) == {"segmentation.values[1]"}


# --- initiation_warnings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "risk_tier", "change_type", "expected"),
    [
        ("standard", "low", "MINOR", []),
        ("standard", "medium", "PATCH", []),
        ("accelerated", "low", "PATCH", []),
        ("cohort_first", "medium", "MINOR", []),
        ("conservative", "high", "MAJOR", []),
        ("conservative", "low", "MINOR", []),
        ("standard", "high", "MINOR", ["high-risk"]),
        ("cohort_first", "high", "PATCH", ["high-risk"]),
        ("standard", "low", "MAJOR", ["major"]),
        ("accelerated", "low", "MAJOR", ["major"]),
        ("standard", "high", "MAJOR", ["high-risk", "major"]),
    ],
)
def test_warnings_recommend_conservative_for_high_risk_or_a_new_major(
    schedule, risk_tier, change_type, expected
):
    warnings = initiation_warnings(schedule=schedule, risk_tier=risk_tier, change_type=change_type)
    assert len(warnings) == len(expected)
    for warning, word in zip(warnings, expected, strict=True):
        assert word in warning and "conservative" in warning


@pytest.mark.parametrize("strategy", ["cohort", "region", "account_tier"])
def test_warnings_remind_of_disclosure_for_non_random_segmentation(strategy):
    warnings = initiation_warnings(
        schedule="conservative", risk_tier="low", change_type="MINOR",
        segmentation={"strategy": strategy, "values": ["x"]},
    )
    assert len(warnings) == 1 and "consent" in warnings[0] and "vulnerable" in warnings[0]
    assert initiation_warnings(
        schedule="conservative", risk_tier="low", change_type="MINOR", segmentation={"strategy": "random"}
    ) == []


# --- timeline and residence ----------------------------------------------------------------------


def test_expected_timeline_adds_each_stages_residence():
    stages = expand_schedule("standard", risk_tier="low", clock_speed=1)
    timeline = expected_timeline(stages, start=START)
    assert [stage for stage, _ in timeline] == list(stages)
    assert [entry for _, entry in timeline] == [START + n * 24 * H for n in range(6)]


def test_expected_timeline_high_risk_conservative_takes_twelve_days_to_full_traffic():
    stages = expand_schedule("conservative", risk_tier="high", clock_speed=1)
    timeline = expected_timeline(stages, start=START)
    assert timeline[-1] == (stages[-1], START + 6 * 48 * H)


def test_expected_timeline_of_a_fast_clock():
    stages = expand_schedule("accelerated", risk_tier="low", clock_speed=1440)  # a day is a minute
    assert [entry for _, entry in expected_timeline(stages, start=START)] == [
        START + timedelta(minutes=n) for n in range(4)
    ]


@pytest.mark.parametrize(
    ("elapsed", "remaining"),
    [
        (timedelta(0), 24 * H),
        (timedelta(hours=23, minutes=59), timedelta(minutes=1)),
        (24 * H, timedelta(0)),
        (30 * H, timedelta(0)),
        (-H, 25 * H),  # entered "in the future" (clock skew): the full residence and then some
    ],
)
def test_residence_remaining(elapsed, remaining):
    stage = expand_schedule("standard", risk_tier="medium", clock_speed=1)[2]
    assert residence_remaining(stage, entered_at=START, now=START + elapsed) == remaining


def test_residence_remaining_compares_across_time_zones():
    stage = expand_schedule("standard", risk_tier="high", clock_speed=1)[0]
    now = (START + 47 * H).astimezone(timezone(timedelta(hours=-5)))
    assert residence_remaining(stage, entered_at=START, now=now) == H


def test_final_stage_has_nothing_remaining():
    stage = expand_schedule("standard", risk_tier="high", clock_speed=1)[-1]
    assert residence_remaining(stage, entered_at=START, now=START) == timedelta(0)


@pytest.mark.parametrize("naive", ["entered_at", "now"])
def test_naive_datetimes_are_refused(naive):
    stage = expand_schedule("standard", risk_tier="low", clock_speed=1)[0]
    kwargs = {"entered_at": START, "now": START}
    kwargs[naive] = kwargs[naive].replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        residence_remaining(stage, **kwargs)
    with pytest.raises(ValueError, match="timezone-aware"):
        expected_timeline([stage], start=START.replace(tzinfo=None))


@pytest.mark.parametrize(("tier", "refused"), [("low", False), ("medium", True), ("high", True)])
def test_only_a_low_risk_model_may_run_the_accelerated_schedule(tier, refused):
    from releases.canaries.schedules import schedule_refusal

    assert (schedule_refusal("accelerated", risk_tier=tier) is not None) is refused
    assert all(schedule_refusal(kind, risk_tier=tier) is None for kind in ("standard", "conservative", "cohort_first"))
