"""The fleet page's read model: every active canary in one row — model, version, stage and
percent, state and why, each gate's status, a sparkline of the error-rate difference, time in
stage and to the next possible step, and who must act.

A fixed set of queries whatever the number of canaries: the canaries (with their model,
version and the newest evaluation's id as a subquery), their signatures (one prefetch), the
newest evaluations (one query by id) and the recent error-rate differences for the sparklines
(one query bounded in time, served by the (canary, window_end) index). Every active canary is
read (the sort and the filters run over all of them) but only with the columns a row shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import FloatField, OuterRef, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from governance.access.labels import role_label
from monitoring.models import Evaluation
from releases.canaries import presenters, schedules, selectors, states
from releases.canaries.models import Approval, Canary

SPARK_POINTS = 30  # evaluations on a sparkline: the last half hour at the default cadence
SORTS = {
    "model": "model", "state": "state", "stage": "stage percent", "in_stage": "time in stage",
    "next": "time to next step", "act": "who must act",
}
# Who must act, by state (the signers are named from the step's outstanding signatures).
_ACTOR = {
    states.State.PENDING_APPROVAL: "signers", states.State.AWAITING_APPROVAL: "signers",
    states.State.HELD: role_label("model_owner"), states.State.SUSPENDED: role_label("on_call"),
}


@dataclass
class FleetRow:
    canary: FleetCanary
    stage_label: str
    stage_number: int
    stage_count: int
    why: str
    gates: list[dict[str, str]]
    spark: str  # SVG polyline points, "" without data
    spark_last: str | None  # the newest difference in pp, formatted
    in_stage: timedelta | None
    to_next: timedelta | None
    who: str
    verdict: str

    @property
    def sort_keys(self) -> dict[str, Any]:
        big = timedelta(days=36500)
        return {
            "model": self.canary.model.name, "state": self.canary.state, "stage": self.canary.traffic_percent,
            "in_stage": self.in_stage or timedelta(0), "next": self.to_next if self.to_next is not None else big,
            "act": (self.who == "—", self.who),
        }


ROW_FIELDS = ("id", "state", "stage_index", "stages", "stage_entered_at", "traffic_percent", "hold_reason",
              "risk_tier", "model__name", "version__version")


@dataclass(frozen=True)
class _Named:
    name: str


@dataclass(frozen=True)
class _Versioned:
    version: str


@dataclass(frozen=True)
class _Signature:
    """A standing signature, as releases.canaries.selectors.required_approvals reads one."""

    step: str
    role: str
    voided_at: None = None


@dataclass(frozen=True)
class FleetCanary:
    """The columns of a canary that a fleet row shows and its rules read (the state, the stages,
    the risk tier), with the same names as on Canary."""

    pk: int
    state: str
    stage_index: int
    stages: list[dict[str, Any]]
    stage_entered_at: datetime | None
    traffic_percent: int
    hold_reason: str
    risk_tier: str
    model: _Named
    version: _Versioned
    latest_id: int | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> FleetCanary:
        return cls(row["id"], row["state"], row["stage_index"], row["stages"], row["stage_entered_at"],
                   row["traffic_percent"], row["hold_reason"], row["risk_tier"], _Named(row["model__name"]),
                   _Versioned(row["version__version"]), row["latest_id"])

    def get_state_display(self) -> str:
        return str(Canary.State(self.state).label)
PAGE_SIZE = 50  # rows per page: the template's cost grows with them, the queries do not


@dataclass
class FleetPage:
    rows: list[FleetRow]
    total: int
    page: int
    pages: int

    @property
    def first(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1 if self.total else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def fleet_rows(*, actor: Any, now: datetime, state: str = "", who: str = "", query: str = "",
               sort: str = "act", descending: bool = False, page: int = 1) -> FleetPage:
    """One page of the fleet, sorted and filtered over every active canary the actor may see;
    the gates and sparklines are read for that page's canaries only."""
    latest = (Evaluation.objects.filter(canary=OuterRef("pk"), stage_index=OuterRef("stage_index"))
              .order_by("-window_end", "-id").values("id")[:1])
    # Plain values, only the columns a row reads: a thousand canaries as model instances, with
    # their thresholds, timelines and versions decoded for nothing, would cost more than the query.
    canaries = (
        selectors.canary_list(actor=actor).filter(state__in=states.ACTIVE)
        .annotate(latest_id=Subquery(latest))
    )
    if state:
        canaries = canaries.filter(state=state)
    if query:
        canaries = canaries.filter(model__name__icontains=query)
    found = list(canaries.values(*ROW_FIELDS, "latest_id"))
    # The standing signatures of the canaries waiting for some (what "who must act" names).
    signed: dict[int, list[_Signature]] = {}
    waiting = canaries.filter(state__in=[s for s, actor in _ACTOR.items() if actor == "signers"]).values("id")
    for canary_id, step, role in (Approval.objects.filter(canary_id__in=waiting, voided_at__isnull=True)
                                  .order_by().values_list("canary_id", "step", "role")):
        signed.setdefault(canary_id, []).append(_Signature(step, role))
    rows = [_row(FleetCanary.of(c), signed.get(c["id"], []), now=now) for c in found]
    if who:
        rows = [r for r in rows if who in r.who]
    key = sort if sort in SORTS else "act"
    rows.sort(key=lambda r: r.sort_keys[key], reverse=descending)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    latest_rows = {
        row["canary_id"]: row for row in
        Evaluation.objects.filter(id__in=[r.canary.latest_id for r in shown if r.canary.latest_id]).order_by()
        .values("canary_id", "gates", "verdict")
    }
    sparks = _sparklines([r.canary.pk for r in shown], now=now)
    for row in shown:
        found = latest_rows.get(row.canary.pk)
        if found is not None:
            row.gates = [{"name": g.get("name", ""), "status": g.get("status", "")} for g in found["gates"] or []]
            row.verdict = found["verdict"]
        diffs = sparks.get(row.canary.pk, [])
        row.spark, row.spark_last = _points(diffs), (f"{diffs[-1]:.3f}" if diffs else None)
    return FleetPage(shown, len(rows), page, pages)


def _sparklines(ids: list[int], *, now: datetime) -> dict[int, list[float]]:
    if not ids:
        return {}
    since = now - timedelta(seconds=SPARK_POINTS * max(int(settings.EVALUATION_CADENCE_S), 1))
    found: dict[int, list[float]] = {}
    for canary_id, diff in (
        Evaluation.objects.filter(canary_id__in=ids, window_end__gte=since).order_by("canary_id", "window_end")
        .values_list("canary_id", Cast(KT("inputs__gates__error_rate__difference"), FloatField()))
    ):
        if diff is not None:
            found.setdefault(canary_id, []).append(diff * 100)
    return found


def _row(canary: FleetCanary, signed: list[_Signature], *, now: datetime) -> FleetRow:
    stages = selectors.canary_stages(canary)  # type: ignore[arg-type]
    stage = stages[canary.stage_index]
    who = _ACTOR.get(canary.state, "—")
    if who == "signers":
        required = selectors.required_approvals(canary, signed)  # type: ignore[arg-type]
        who = " + ".join(presenters.role_labels(required.outstanding)) or "—"
    to_next = None
    if canary.stage_entered_at is not None and not stage.is_final:
        to_next = schedules.residence_remaining(stage, entered_at=canary.stage_entered_at, now=now)
    return FleetRow(
        canary=canary, stage_label=presenters.stage_label(stage), stage_number=canary.stage_index + 1,
        stage_count=len(stages), why=canary.hold_reason, gates=[], spark="", spark_last=None,
        in_stage=now - canary.stage_entered_at if canary.stage_entered_at else None, to_next=to_next, who=who,
        verdict="",
    )


def _points(values: list[float], *, width: int = 100, height: int = 24) -> str:
    """An SVG polyline's points for the values (zero included in the scale, so the sign shows)."""
    if not values:
        return ""
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in enumerate(values))
