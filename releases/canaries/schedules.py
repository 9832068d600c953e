"""Canary schedules: the stages a canary walks through, and the rules for starting one.

Pure functions of their inputs: no database, no clock read (callers pass `now` / `start`).
The numbers are the canary pattern's (seed 000, §4.1 and §12.1):

| schedule     | stages                           | allowed when                                         |
|--------------|----------------------------------|------------------------------------------------------|
| standard     | 1 → 5 → 10 → 25 → 50 → 100       | default                                              |
| accelerated  | 1 → 10 → 25 → 100                | low-risk models only, with a written rationale and a |
|              |                                  | shadow-evidence reference                            |
| conservative | 1 → 5 → 10 → 25 → 50 → 75 → 100  | any; recommended for high risk or a first MAJOR      |
| cohort_first | internal → beta → all            | cohort segmentation                                  |

Minimum residence per stage: 24 h, or 48 h for high-risk models, divided by the clock speed
(a demo setting, never below 1, so it only ever shortens).

What `percent` means to a router: the share of the *eligible* users, chosen by sticky user-id
hash bucket (bucket < percent), that the canary serves. Eligible users are those matching the
stage's segmentation (everyone under `random`); users outside it always get production. Only
this reading can be implemented by a router that does not know how big each segment is.

Decisions where the pattern is silent:

- The final stage (100 %, everyone) is the end state, not a stage to sit in: its
  `min_residence` is zero. Reaching it completes the canary; the new version becomes production.
- Final means *all users*, whatever the segmentation: the router is told `random` with no values
  at the final stage (`stage_segmentation`), so a region- or cohort-segmented canary ends with
  every user on the new version.
- cohort_first: the canary's segmentation is `{strategy: cohort, values: [c1, c2, ...]}`, the
  cohorts in ramp order (at least two: the internal group, then the beta group, as in the
  pattern's internal → beta → all). There is one stage per cohort, at 100 % of the cohorts
  admitted so far (cumulative, so a user already on the canary stays on it: §4.4 stickiness),
  then the final stage for everyone. Without cohort names the stages are labelled with the
  pattern's own "internal" and "beta".
- The share-of-traffic check of the monitor (observed canary share vs configured percent) can
  only compare against `percent` when the segmentation is `random`; for a segmented stage the
  expected overall share depends on the segment's size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypedDict

from canaryhub.errors import ValidationFailed


class ScheduleKind(StrEnum):
    STANDARD = "standard"
    ACCELERATED = "accelerated"
    CONSERVATIVE = "conservative"
    COHORT_FIRST = "cohort_first"


class SegmentationStrategy(StrEnum):
    RANDOM = "random"
    COHORT = "cohort"
    REGION = "region"
    ACCOUNT_TIER = "account_tier"


# The register's values (releases.models.RiskTier, ModelVersion.ChangeType), repeated here so that
# this module stays importable without Django's app registry.
RISK_TIERS = ("low", "medium", "high")
CHANGE_TYPES = ("INITIAL", "MAJOR", "MINOR", "PATCH")

PERCENT_SCHEDULES: dict[ScheduleKind, tuple[int, ...]] = {
    ScheduleKind.STANDARD: (1, 5, 10, 25, 50, 100),
    ScheduleKind.ACCELERATED: (1, 10, 25, 100),
    ScheduleKind.CONSERVATIVE: (1, 5, 10, 25, 50, 75, 100),
}
DEFAULT_COHORTS = ("internal", "beta")
MIN_COHORTS = 2

MIN_RESIDENCE = timedelta(hours=24)
MIN_RESIDENCE_HIGH_RISK = timedelta(hours=48)

RATIONALE_MIN_CHARS = 20  # counted without whitespace: "                    " is not a rationale
RATIONALE_MAX_CHARS = 10_000
SHADOW_EVIDENCE_REF_MAX_CHARS = 500  # Canary.shadow_evidence_ref's column
SEGMENTATION_MAX_VALUES = 50
SEGMENTATION_VALUE_MAX_CHARS = 100


@dataclass(frozen=True)
class Stage:
    """One stage of a canary. `cohort` is the cohort admitted at this stage (cohort_first only)."""

    index: int
    percent: int
    cohort: str | None
    min_residence: timedelta

    @property
    def is_final(self) -> bool:
        """All users on the canary: reaching this stage completes it. A cohort stage at 100 %
        serves all of its cohorts, not everyone, so it is not final."""
        return self.percent == 100 and self.cohort is None

    def to_dict(self) -> dict[str, Any]:
        """The frozen form kept on the canary (`Canary.stages`)."""
        return {
            "index": self.index,
            "percent": self.percent,
            "cohort": self.cohort,
            "min_residence_s": self.min_residence.total_seconds(),
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Stage:
        return cls(
            index=int(value["index"]),
            percent=int(value["percent"]),
            cohort=value.get("cohort"),
            min_residence=timedelta(seconds=float(value["min_residence_s"])),
        )


class Segmentation(TypedDict):
    strategy: str
    values: list[str]


def min_residence(*, risk_tier: str, clock_speed: float) -> timedelta:
    """The pattern's minimum time in a stage for a model of this tier, shortened by clock speed."""
    _check_risk_tier(risk_tier)
    if isinstance(clock_speed, bool) or not isinstance(clock_speed, (int, float)) or not clock_speed >= 1:
        # Below 1 would lengthen durations, NaN would compare false everywhere: both are bugs.
        raise ValueError(f"clock_speed must be a number >= 1, not {clock_speed!r}")
    base = MIN_RESIDENCE_HIGH_RISK if risk_tier == "high" else MIN_RESIDENCE
    return base / clock_speed


def urgent_patch_stages(*, residence: timedelta, clock_speed: float) -> tuple[Stage, ...]:
    """The stages of an urgent PATCH (pattern §3.2, the platform engineer's emergency path): the
    standard percents, each held for `residence` (the deployment's urgent residence, shortened by
    the clock speed like every residence) instead of 24 h or 48 h. Only the wait is shorter:
    the signatures, the promotion gates, the staleness limit and the rollback rule are those of
    any canary."""
    if not clock_speed >= 1:
        raise ValueError(f"clock_speed must be a number >= 1, not {clock_speed!r}")
    percents = PERCENT_SCHEDULES[ScheduleKind.STANDARD]
    last = len(percents) - 1
    return tuple(
        Stage(index=i, percent=p, cohort=None, min_residence=timedelta(0) if i == last else residence / clock_speed)
        for i, p in enumerate(percents)
    )


def expand_schedule(
    kind: str,
    *,
    risk_tier: str,
    clock_speed: float,
    cohorts: Sequence[str] = (),
) -> tuple[Stage, ...]:
    """The stages of a schedule. `cohorts` (the segmentation values, in ramp order) names the
    stages of cohort_first and is ignored by the other schedules. Raises ValueError for an
    unknown schedule or tier: those are checked by `validate_initiation` before we get here."""
    try:
        schedule = ScheduleKind(kind)
    except ValueError:
        raise ValueError(f"unknown schedule {kind!r}") from None
    residence = min_residence(risk_tier=risk_tier, clock_speed=clock_speed)
    if schedule is ScheduleKind.COHORT_FIRST:
        names = tuple(cohorts) or DEFAULT_COHORTS
        steps: list[tuple[int, str | None]] = [(100, name) for name in names] + [(100, None)]
    else:
        steps = [(percent, None) for percent in PERCENT_SCHEDULES[schedule]]
    last = len(steps) - 1
    return tuple(
        Stage(
            index=index,
            percent=percent,
            cohort=cohort,
            min_residence=timedelta(0) if index == last else residence,
        )
        for index, (percent, cohort) in enumerate(steps)
    )


def stage_segmentation(
    stages: Sequence[Stage], index: int, *, segmentation: Mapping[str, Any]
) -> Segmentation:
    """The segmentation the router is told at a stage (see the module docstring): everyone at
    the final stage, the cohorts admitted so far under cohort_first, the canary's own otherwise."""
    stage = stages[index]
    if stage.is_final:
        return {"strategy": SegmentationStrategy.RANDOM.value, "values": []}
    if stage.cohort is not None:
        admitted = [s.cohort for s in stages[: index + 1] if s.cohort is not None]
        return {"strategy": SegmentationStrategy.COHORT.value, "values": admitted}
    return {"strategy": str(segmentation["strategy"]), "values": list(segmentation.get("values") or [])}


def parse_segmentation(value: Any) -> Segmentation:
    """Validate `{strategy: random|cohort|region|account_tier, values: [str, ...]}`; None means
    the default, random. Raises ValidationFailed with field paths under `segmentation`."""
    if value is None:
        return {"strategy": SegmentationStrategy.RANDOM.value, "values": []}
    errors: dict[str, list[str]] = {}
    _segmentation_errors(value, errors)
    if errors:
        raise ValidationFailed("invalid segmentation", errors=errors)
    return {"strategy": value["strategy"], "values": list(value.get("values") or [])}


def _segmentation_errors(value: Any, errors: dict[str, list[str]]) -> Segmentation | None:
    """Add the segmentation's problems to `errors`; return it when it is well formed."""
    if not isinstance(value, Mapping):
        errors.setdefault("segmentation", []).append("must be an object {strategy, values}")
        return None
    ok = True
    unknown = sorted(str(k) for k in set(value) - {"strategy", "values"})
    if unknown:
        errors.setdefault("segmentation", []).append(f"unknown field(s): {', '.join(unknown)}")
        ok = False
    strategy = value.get("strategy")
    if not _is_member(strategy, SegmentationStrategy):
        choices = ", ".join(s.value for s in SegmentationStrategy)
        errors.setdefault("segmentation.strategy", []).append(f"must be one of {choices}")
        ok = False
    values = value.get("values", [])
    if values is None:
        values = []
    if not isinstance(values, list):
        errors.setdefault("segmentation.values", []).append("must be a list of strings")
        return None
    if strategy == SegmentationStrategy.RANDOM:
        if values:
            errors.setdefault("segmentation.values", []).append(
                "random segmentation takes no values: every user is eligible"
            )
            ok = False
    elif _is_member(strategy, SegmentationStrategy) and not values:
        errors.setdefault("segmentation.values", []).append(
            f"{strategy} segmentation needs at least one value"
        )
        ok = False
    if len(values) > SEGMENTATION_MAX_VALUES:
        errors.setdefault("segmentation.values", []).append(f"at most {SEGMENTATION_MAX_VALUES} values")
        ok = False
    seen: set[str] = set()
    for position, item in enumerate(values):
        path = f"segmentation.values[{position}]"
        if not isinstance(item, str) or not item.strip():
            errors.setdefault(path, []).append("must be a non-empty string")
            ok = False
            continue
        if item != item.strip():
            errors.setdefault(path, []).append("must not start or end with whitespace")
            ok = False
        if len(item) > SEGMENTATION_VALUE_MAX_CHARS:
            errors.setdefault(path, []).append(f"at most {SEGMENTATION_VALUE_MAX_CHARS} characters")
            ok = False
        if item in seen:
            errors.setdefault(path, []).append(f"duplicate value {item!r}")
            ok = False
        seen.add(item)
    if not ok:
        return None
    return {"strategy": strategy, "values": list(values)}


def schedule_refusal(schedule: str, *, risk_tier: str) -> str | None:
    """Why a model of `risk_tier` may not run `schedule` at all, or None when it may. The start
    form disables such a schedule with this reason; `validate_initiation` refuses it with it."""
    _check_risk_tier(risk_tier)
    if schedule == ScheduleKind.ACCELERATED and risk_tier != "low":
        return f"accelerated is allowed only for low-risk models; this model is {risk_tier} risk"
    return None


def validate_initiation(
    *,
    schedule: Any,
    risk_tier: str,
    segmentation: Any,
    rationale: Any,
    shadow_evidence_ref: Any,
    change_type: str,
) -> None:
    """Refuse a canary the pattern does not allow, naming every offending field at once.

    - accelerated: low-risk models only, with a written rationale (at least 20 non-space
      characters) and a shadow-evidence reference (§4.1, §12.1);
    - non-random segmentation: a rationale (the fairness review, §4.5, §9.1) and at least one value;
    - cohort_first: cohort segmentation naming at least two cohorts in ramp order;
    - a model's first version (change type INITIAL) has no production version to compare with.

    `risk_tier` and `change_type` come from the register, so unknown values are bugs (ValueError).
    The schedule the pattern merely recommends is advice: see `initiation_warnings`.
    """
    _check_risk_tier(risk_tier)
    _check_change_type(change_type)
    errors: dict[str, list[str]] = {}

    kind: ScheduleKind | None = None
    if _is_member(schedule, ScheduleKind):
        kind = ScheduleKind(schedule)
    else:
        errors.setdefault("schedule", []).append(f"must be one of {', '.join(s.value for s in ScheduleKind)}")

    seg = _segmentation_errors(
        segmentation if segmentation is not None else {"strategy": SegmentationStrategy.RANDOM.value},
        errors,
    )

    text = rationale if isinstance(rationale, str) else ""
    if rationale is not None and not isinstance(rationale, str):
        errors.setdefault("rationale", []).append("must be text")
    elif len(text) > RATIONALE_MAX_CHARS:
        errors.setdefault("rationale", []).append(f"at most {RATIONALE_MAX_CHARS} characters")
    has_rationale = _non_space_chars(text) >= RATIONALE_MIN_CHARS
    too_short = f"a written rationale of at least {RATIONALE_MIN_CHARS} characters (not counting spaces)"

    ref = shadow_evidence_ref if isinstance(shadow_evidence_ref, str) else ""
    if shadow_evidence_ref is not None and not isinstance(shadow_evidence_ref, str):
        errors.setdefault("shadow_evidence_ref", []).append("must be text")
    elif len(ref) > SHADOW_EVIDENCE_REF_MAX_CHARS:
        errors.setdefault("shadow_evidence_ref", []).append(
            f"at most {SHADOW_EVIDENCE_REF_MAX_CHARS} characters"
        )

    if kind is not None and (refusal := schedule_refusal(kind, risk_tier=risk_tier)):
        errors.setdefault("schedule", []).append(refusal)
    if kind is ScheduleKind.ACCELERATED:
        if not has_rationale:
            errors.setdefault("rationale", []).append(f"the accelerated schedule needs {too_short}")
        if not ref.strip():
            errors.setdefault("shadow_evidence_ref", []).append(
                "the accelerated schedule needs a reference to the shadow-deployment evidence"
            )

    if seg is not None and seg["strategy"] != SegmentationStrategy.RANDOM and not has_rationale:
        errors.setdefault("rationale", []).append(
            f"{seg['strategy']} segmentation needs {too_short}: the fairness review of who gets the "
            "new version first"
        )

    if kind is ScheduleKind.COHORT_FIRST and seg is not None:
        if seg["strategy"] != SegmentationStrategy.COHORT:
            errors.setdefault("segmentation.strategy", []).append(
                "the cohort_first schedule needs cohort segmentation"
            )
        elif len(seg["values"]) < MIN_COHORTS:
            errors.setdefault("segmentation.values", []).append(
                f"the cohort_first schedule needs at least {MIN_COHORTS} cohorts in ramp order "
                "(the internal group, then the beta group)"
            )

    if change_type == "INITIAL":
        errors.setdefault("version", []).append(
            "is the model's first version: there is no production version to compare a canary with "
            "(register the incumbent as production first)"
        )

    if errors:
        raise ValidationFailed("the canary cannot start as requested", errors=errors)


def initiation_warnings(
    *,
    schedule: str,
    risk_tier: str,
    change_type: str,
    segmentation: Mapping[str, Any] | None = None,
) -> list[str]:
    """Advice shown (and recorded) at initiation; never a refusal."""
    _check_risk_tier(risk_tier)
    _check_change_type(change_type)
    warnings: list[str] = []
    if schedule != ScheduleKind.CONSERVATIVE:
        if risk_tier == "high":
            warnings.append(
                "high-risk model: the pattern recommends the conservative schedule "
                "(1→5→10→25→50→75→100) for regulated high-risk models"
            )
        if change_type == "MAJOR":
            warnings.append(
                "new major version: the pattern recommends the conservative schedule "
                "(1→5→10→25→50→75→100) for a first major version"
            )
    strategy = (segmentation or {}).get("strategy", SegmentationStrategy.RANDOM)
    if strategy != SegmentationStrategy.RANDOM:
        warnings.append(
            f"{strategy} segmentation: users on the canary may get materially different service; "
            "disclose it and obtain consent where privacy regulation requires, and make sure the "
            "segment does not expose vulnerable users to the untested version first"
        )
    return warnings


def expected_timeline(stages: Sequence[Stage], *, start: datetime) -> list[tuple[Stage, datetime]]:
    """Each stage with the earliest time it can be entered: every earlier stage sits out its
    minimum residence. Approvals and held stages only make the real timeline later."""
    _check_aware(start, "start")
    timeline: list[tuple[Stage, datetime]] = []
    entry = start
    for stage in stages:
        timeline.append((stage, entry))
        entry = entry + stage.min_residence
    return timeline


@dataclass(frozen=True)
class DataRate:
    """What the latest evaluation says about evidence: how long the current stage still needs
    for its gates to have enough data (`current_wait`; None: unknown, e.g. no traffic yet), how
    many canary requests a stage's gates need (`required`), and the canary requests per second
    for each percent of traffic (`per_percent_s`; None: unknown)."""

    current_wait: timedelta | None
    required: float
    per_percent_s: float | None


def data_wait(stage: Stage, rate: DataRate | None) -> timedelta:
    """How long an upcoming stage needs to gather `rate.required` canary requests at its
    percent (zero for the final stage, a cohort stage, or when the rate is unknown)."""
    if rate is None or stage.is_final or stage.cohort is not None or not rate.per_percent_s or stage.percent <= 0:
        return timedelta(0)
    return timedelta(seconds=rate.required / (rate.per_percent_s * stage.percent))


def projected_timeline(
    stages: Sequence[Stage], *, start: datetime, rate: DataRate | None
) -> list[tuple[Stage, datetime]]:
    """Like `expected_timeline`, but each stage lasts the longer of its minimum residence and the
    time its gates need to gather enough data at its percent of the current traffic."""
    _check_aware(start, "start")
    timeline: list[tuple[Stage, datetime]] = []
    entry = start
    for stage in stages:
        timeline.append((stage, entry))
        entry = entry + max(stage.min_residence, data_wait(stage, rate))
    return timeline


def residence_remaining(stage: Stage, *, entered_at: datetime, now: datetime) -> timedelta:
    """How long the stage must still run before it may be promoted (zero once served)."""
    _check_aware(entered_at, "entered_at")
    _check_aware(now, "now")
    return max(entered_at + stage.min_residence - now, timedelta(0))


def _is_member(value: Any, enum: type[StrEnum]) -> bool:
    # Input may be any JSON value, including unhashable lists and objects.
    return isinstance(value, str) and value in {member.value for member in enum}


def _non_space_chars(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def _check_risk_tier(risk_tier: str) -> None:
    if risk_tier not in RISK_TIERS:
        raise ValueError(f"unknown risk tier {risk_tier!r}")


def _check_change_type(change_type: str) -> None:
    if change_type not in CHANGE_TYPES:
        raise ValueError(f"unknown change type {change_type!r}")


def _check_aware(value: datetime, name: str) -> None:
    # Naive and aware datetimes cannot be compared; a naive one here is a bug upstream.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
