"""How a canary reads to a person: the read models of the canary pages (its stage timeline, the
signatures its step still needs and whether this user may give one, the start form's preview,
the inbox). Every rule applied here is one of releases.canaries.selectors' readers or a pure
function of releases.canaries.approvals / .schedules / .states, never restated."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from governance.access.labels import role_label
from governance.access.permissions import Action, Role, decide, may_or_break_glass, roles_of
from governance.incidents import selectors as incident_selectors
from governance.incidents.models import Incident
from monitoring.custom import gate_label as custom_gate_label
from monitoring.evaluator import metric_gap, rollback_sensitivity
from monitoring.models import Evaluation
from monitoring.thresholds import DEFAULT_THRESHOLDS
from releases.canaries import approvals as rules
from releases.canaries import schedules, selectors, states
from releases.canaries.forms import STRATEGY_LABELS
from releases.canaries.models import Approval, Canary
from releases.register.forms import THRESHOLD_TEXT
from releases.register.models import AIModel

State = states.State

# The signing capacities in the words every page uses (governance.access.labels).
ROLE_LABELS = {role.value: role_label(role.value) for role in (rules.SignatureRole.OWNER, rules.SignatureRole.MRM)}
ROLE_ORDER = (rules.SignatureRole.OWNER.value, rules.SignatureRole.MRM.value)
GATE_LABELS = {
    "error_rate": "Error rate",
    "latency_p99": "Latency p99",
    "quality": "Quality score",
    "safety_violations": "Content-safety violations",
    "anomaly_alerts": "Anomaly alerts firing",
    "post_promotion": "After 100%: rollback rule against the previous version",
    "router_share": "Share of traffic on the canary",
    "tokens_per_request": "Tokens per request",
    "cost_per_request": "Cost per request",
    "guardrail_block_rate": "Guardrail block rate",
    "schema_failure_rate": "Output-schema failures",
    "availability": "Availability",
}


def gate_label(name: str) -> str:
    """A gate's name in words: the built-in gates', a custom metric's ("Tool calls (custom metric)")."""
    return GATE_LABELS.get(name) or custom_gate_label(name) or name.replace("_", " ").capitalize()


# Who can do something about a gate that holds the canary (role values of governance.access).
OWNER, PLATFORM, ON_CALL = "model_owner", "platform", "on_call"
ACTOR_WORDS = {role: role_label(role) for role in (OWNER, PLATFORM, ON_CALL)}
SAMPLE_WORDS = {"quality": "scored canary requests"}
STAGE_STATUS_LABELS = {
    State.ROLLED_BACK: "rolled back here",
    State.ABORTED: "aborted here",
}


def stage_label(stage: schedules.Stage) -> str:
    if stage.cohort is not None:
        return f"cohort {stage.cohort}"
    if stage.is_final:
        return "100% (everyone)"
    return f"{stage.percent}%"


def role_labels(roles: Iterable[str]) -> list[str]:
    return [ROLE_LABELS[role] for role in ROLE_ORDER if role in {str(r) for r in roles}]


def signature_label(roles: Iterable[str], *, start: bool, first_stage: schedules.Stage) -> str:
    """"Model owner", "Model owner + Model risk (MRM)", or for a start nobody signs: "none (starts
    at 1% immediately)"."""
    labels = role_labels(roles)
    if labels:
        return " + ".join(labels)
    return f"none (starts at {stage_label(first_stage)} immediately)" if start else "none"


def step_label(canary: Canary, step: rules.Step) -> str:
    stages = selectors.canary_stages(canary)
    if step.kind is rules.StepKind.START:
        return f"Start at {stage_label(stages[0])}"
    return f"Promote {stage_label(stages[step.to_index - 1])} → {stage_label(stages[step.to_index])}"


def start_preview(
    *, model: AIModel, change_type: str | None, schedule: str, strategy: str, values: list[str], now: datetime
) -> dict[str, Any]:
    """What a canary started with these inputs would look like: its stages and their minimum
    residence, the earliest timeline from now, who signs each step, and the pattern's advice."""
    cohort_first = schedule == schedules.ScheduleKind.COHORT_FIRST
    cohorts = tuple(values) if cohort_first and strategy == schedules.SegmentationStrategy.COHORT else ()
    stages = schedules.expand_schedule(
        schedule, risk_tier=model.risk_tier, clock_speed=settings.CLOCK_SPEED, cohorts=cohorts
    )
    rows = []
    for stage, earliest in schedules.expected_timeline(stages, start=now):
        start = stage.index == 0
        step = rules.Step.start() if start else rules.promotion_step(stages, from_index=stage.index - 1)
        roles = rules.required_signatures(step=step, risk_tier=model.risk_tier)
        rows.append({
            "stage": stage,
            "label": stage_label(stage),
            "earliest": earliest,
            "signatures": signature_label(roles, start=start, first_stage=stages[0]),
        })
    warnings: list[str] = []
    if change_type is not None:
        warnings = schedules.initiation_warnings(
            schedule=schedule, risk_tier=model.risk_tier, change_type=change_type,
            segmentation={"strategy": strategy, "values": values},
        )
    refused = [{"schedule": kind.label, "reason": reason} for kind in Canary.Schedule
               if (reason := schedules.schedule_refusal(kind.value, risk_tier=model.risk_tier))]
    return {
        "model": model,
        "schedule": schedule,
        "refusal": schedules.schedule_refusal(schedule, risk_tier=model.risk_tier),
        "refused": refused,
        "change_type": change_type,
        "rows": rows,
        "completes": rows[-1]["earliest"],
        "residence": stages[0].min_residence,
        "warnings": warnings,
        "clock_speed": settings.CLOCK_SPEED,
    }


@dataclass(frozen=True)
class InboxItem:
    canary: Canary
    step: str
    roles: list[dict[str, str]]  # {role, label}: the signatures this user may give on the step


def waiting_for_signature(user: Any, *, now: datetime) -> list[InboxItem]:
    """Canaries whose current step can be signed now and needs a signature this user may give
    and has not given: the owner's for models they own, MRM's for an MRM member."""
    if not selectors.may_sign_anything(user):
        return []
    canaries = selectors.canary_list(actor=user).filter(state__in=states.SIGNABLE)
    if not decide(user, Action.SIGN_MRM).allowed:
        # Only an owner signature is possible, and only on one's own models: skip the rest
        # before the readiness check, which reads each canary's latest evaluation.
        canaries = canaries.filter(owner=user)  # the owner frozen at initiation signs
    items = []
    for canary in canaries.prefetch_related("approvals"):
        facts = selectors.step_facts(canary, now=now)
        roles = [role for role in ROLE_ORDER
                 if selectors.signing_refusal(user, canary, role=role, facts=facts) is None]
        if facts.step is None or not roles:
            continue
        items.append(InboxItem(
            canary=canary, step=step_label(canary, facts.step),
            roles=[{"role": role, "label": ROLE_LABELS[role]} for role in roles],
        ))
    return items


REQUEST_GATES = ("error_rate", "latency_p99", "safety_violations")


def data_rate(evaluation: Evaluation | None) -> schedules.DataRate | None:
    """The evidence outlook of the latest evaluation of the current stage: the longest wait of a
    gate still short of data, the largest sample a request-counted gate needs, and the canary
    traffic per percent. None with no evaluation (or one without traffic numbers)."""
    if evaluation is None:
        return None
    inputs = evaluation.inputs or {}
    gates = inputs.get("gates") or {}
    if not gates:
        return None
    waits: list[float | None] = []
    for gate in evaluation.gate_list():
        if gate.status.value == "insufficient":
            waits.append((gates.get(gate.name) or {}).get("time_to_sufficiency_s"))
    current_wait: timedelta | None = timedelta(0)
    if waits:
        current_wait = None if any(w is None for w in waits) else timedelta(seconds=max(w or 0 for w in waits))
    required = max((float((gates.get(name) or {}).get("required") or 0) for name in REQUEST_GATES), default=0.0)
    elapsed = float(inputs.get("stage_elapsed_s") or 0)
    percent = float(inputs.get("traffic_percent") or 0)
    served = float(((inputs.get("stage") or {}).get("canary") or {}).get("requests") or 0)
    per_percent = served / elapsed / percent if elapsed > 0 and percent > 0 and served > 0 else None
    return schedules.DataRate(current_wait=current_wait, required=required, per_percent_s=per_percent)


def ready_estimate(canary: Canary, rate: schedules.DataRate | None, *, now: datetime) -> datetime | None:
    """When the current stage can earliest be promoted: its residence served and its gates on
    enough data (None: not known, e.g. the canary gets no traffic)."""
    until = selectors.residence_until(canary)
    if until is None:
        return None
    if rate is None:
        return max(until, now)
    if rate.current_wait is None:
        return None
    return max(until, now + rate.current_wait)


def about(seconds: float) -> str:
    """"about 40 s", "about 12 min", "about 5 h": how long a wait is, in round words."""
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.0f} h" if seconds >= 36000 else f"about {seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Explanation:
    """One reason a canary waits, in words: what it is, what happens next, and who (if anyone)
    can act. `actors` are role values; `yours` says the viewer is one of them."""

    label: str
    text: str
    action: str
    actors: tuple[str, ...] = ()
    yours: bool = False


def explain_gate(name: str, status: str, info: dict[str, Any] | None, detail: str = "", *,
                 viewer_roles: Iterable[str] = (), viewer_owns: bool = False) -> Explanation | None:
    """Why one gate holds the canary and what to do, in words (None: the gate does not hold it).
    The one place gate statuses become sentences on the pages."""
    info = info or {}
    label = gate_label(name)
    noun = SAMPLE_WORDS.get(name, "canary requests")
    actors: tuple[str, ...] = ()
    if status == "green":
        return None
    if status == "insufficient" and info.get("unmeasured"):
        # The canary serves but does not report what the gate reads: waiting will not fill it.
        text = detail or "the canary does not report what this gate reads"
        action = "check that the canary's model server exports it (the version's metric source)"
        actors = (PLATFORM,)
    elif status == "insufficient":
        required = float(info.get("required") or 0)
        sample = info.get("sample_size") or {}
        have = float(sample.get("canary") or 0)
        wait = info.get("time_to_sufficiency_s")
        more = max(required - have, 0)
        text = f"needs about {more:,.0f} more {noun} to judge it ({have:,.0f} of {required:,.0f} so far)"
        if wait is None:
            text = f"no {noun} measured yet ({required:,.0f} needed)"
            action = ("the canary gets no traffic: check that the router sends it its share "
                      "(Routers page)")
            actors = (PLATFORM,)
        else:
            text += f", {about(float(wait))} at current traffic"
            action = f"nothing to do but wait {about(float(wait))}"
    elif status == "stale":
        text = f"no fresh metrics ({detail})" if detail else "no fresh metrics"
        action = "check the model's metric source; the canary waits until it reports again"
        actors = (PLATFORM,)
    elif name == "router_share":
        text = detail or "the canary's share of requests is far from the configured percent"
        action = "check the router's configuration (Routers page); the stage waits until the split is right"
        actors = (PLATFORM,)
    elif name == "anomaly_alerts":
        text = detail or "anomaly alerts are firing"
        action = "look at the firing alerts; the stage waits until they stop"
        actors = (ON_CALL, PLATFORM)
    else:  # red: the canary is worse than the promotion gate allows
        text = f"worse than the promotion gate allows ({detail})" if detail else "worse than the promotion gate allows"
        action = "it cannot be promoted while this stays red: wait for more data, or roll the canary back"
        actors = (OWNER, PLATFORM)
    roles = set(viewer_roles)
    yours = any(a in roles and (a != OWNER or viewer_owns) for a in actors)
    if actors:
        who = " or ".join(ACTOR_WORDS[a] for a in actors)
        action = f"You can act ({who}): {action}" if yours else f"{who[0].upper()}{who[1:]}: {action}"
    else:
        action = action[0].upper() + action[1:]
    return Explanation(label=label, text=text, action=action + ".", actors=actors, yours=yours)


def hold_explanations(canary: Canary, evaluation: Evaluation | None, *, user: Any, now: datetime,
                      remaining: timedelta | None) -> list[Explanation]:
    """Everything the current stage waits for, in words: its minimum time, then each gate that
    is not green on the latest evaluation (or that there is none yet)."""
    out: list[Explanation] = []
    if canary.state not in states.ADVANCING or canary.stage_entered_at is None:
        return out
    if remaining:
        until = canary.stage_entered_at + selectors.canary_stages(canary)[canary.stage_index].min_residence
        out.append(Explanation(
            label="Minimum time in this stage",
            text=f"{about(remaining.total_seconds())} left (until {until:%H:%M} UTC)",
            action=f"Nothing to do but wait {about(remaining.total_seconds())}."))
    if evaluation is None:
        out.append(Explanation(
            label="Evaluation", text="the monitor has not judged this stage yet",
            action=f"Nothing to do but wait: it judges the canary every {settings.EVALUATION_CADENCE_S} s."))
        return out
    gates = (evaluation.inputs or {}).get("gates") or {}
    roles = {str(r) for r in roles_of(user)}
    for gate in evaluation.gate_list():
        line = explain_gate(gate.name, gate.status.value, gates.get(gate.name), gate.detail,
                            viewer_roles=roles, viewer_owns=canary.owner_id == getattr(user, "pk", None))
        if line is not None:
            out.append(line)
    return out


def after_rollback(canary: Canary, *, user: Any) -> dict[str, Any]:
    """For a rolled-back canary: its incident, the steps left before its version can be canaried
    again (who acts, which are done), and whether this user can start that canary now."""
    if canary.state != State.ROLLED_BACK:
        return {"incident": None, "next_steps": [], "can_start_again": False}
    incident = canary.incidents.filter(kind=Incident.Kind.ROLLBACK).order_by("-opened_at").first()
    if incident is None:
        return {"incident": None, "next_steps": [], "can_start_again": False}
    steps = incident_selectors.rollback_next_steps(incident)
    can_start = (incident_selectors.open_reinitiation(incident) is not None
                 and not selectors.canary_list(actor=user).filter(model=canary.model, state__in=states.ACTIVE).exists()
                 and decide(user, Action.START_CANARY, model=canary.model).allowed)
    return {"incident": incident, "next_steps": steps, "can_start_again": can_start}


def _stage_rows(canary: Canary, approvals: list[Approval], *, now: datetime,
                rate: schedules.DataRate | None = None) -> list[dict[str, Any]]:
    """Every stage: what it serves, when it was (or can earliest be) entered, its residence,
    and the signatures on the step that entered it."""
    stages = selectors.canary_stages(canary)
    by_stage: dict[int, list[Approval]] = defaultdict(list)
    for approval in approvals:
        by_stage[approval.stage_index].append(approval)
    active = canary.state in states.ACTIVE
    started = canary.stage_entered_at is not None
    earliest: dict[int, datetime] = {}
    if active:
        # The earliest the remaining stages can be entered, if every later step is signed the
        # moment it is ready: each stage sits out its residence *and* gathers the data its gates
        # need at its share of today's traffic. Approvals and holds only make it later.
        if not started:
            upcoming = schedules.projected_timeline(stages, start=now, rate=rate)
        else:
            ready = ready_estimate(canary, rate, now=now)
            upcoming = [] if ready is None else schedules.projected_timeline(
                stages[canary.stage_index + 1:], start=ready, rate=rate)
        earliest = {stage.index: at for stage, at in upcoming}
    rows = []
    for stage in stages:
        signatures = by_stage.get(stage.index, [])
        entered_at: datetime | None = None
        remaining: timedelta | None = None
        if started and stage.index < canary.stage_index:
            status = "passed"
            # The step's last signature took it; a stage 0 nobody had to sign started at initiation.
            entered_at = max((a.signed_at for a in signatures), default=canary.initiated_at)
        elif started and stage.index == canary.stage_index:
            entered_at = canary.stage_entered_at
            if active:
                status = "current"
                assert entered_at is not None
                remaining = schedules.residence_remaining(stage, entered_at=entered_at, now=now)
            elif canary.state in states.COMPLETE:
                status = "reached"
            else:
                status = canary.state  # rolled back / aborted here
        else:
            status = "upcoming" if active else "not reached"
        note = "—"
        if not signatures and entered_at is not None:
            note = "none needed: started on initiation"
        rows.append({
            "stage": stage,
            "number": stage.index + 1,
            "label": stage_label(stage),
            "status": status,
            "status_label": STAGE_STATUS_LABELS.get(status, status),
            "signature_note": note,
            "entered_at": entered_at,
            "earliest": earliest.get(stage.index) if status == "upcoming" else None,
            "remaining": remaining,
            "signatures": signatures,
        })
    return rows


def _gate_rows(evaluation: Evaluation | None) -> list[dict[str, Any]]:
    if evaluation is None:
        return []
    return [
        {"label": gate_label(gate.name), "gate": gate, "status": gate.status.value}
        for gate in evaluation.gate_list()
    ]


def _threshold_rows(thresholds: dict[str, Any]) -> list[dict[str, Any]]:
    """The canary's frozen thresholds in words, as the version page words them."""
    rows = []
    for key, text in THRESHOLD_TEXT.items():
        row: dict[str, Any] = {"label": text["label"]}
        for section in ("promote", "rollback"):
            value = thresholds.get(section, {}).get(key)
            if key not in DEFAULT_THRESHOLDS[section]:
                row[section] = ""
            else:
                row[section] = text[section].format(v=f"{value:g}" if value is not None else "?")
        rows.append(row)
    return rows


def canary_page_context(canary: Canary, *, user: Any, now: datetime) -> dict[str, Any]:
    approvals = list(canary.approvals.select_related("signer"))
    stages = selectors.canary_stages(canary)
    evaluation = selectors.latest_evaluation(canary)
    rate = data_rate(evaluation)
    facts = selectors.step_facts(canary, now=now, approvals=approvals, evaluation=evaluation)
    step = facts.step
    required = selectors.required_roles(canary, step) if step is not None else frozenset()
    readiness = selectors.SigningReadiness(*rules.step_readiness(facts))
    signable = [role for role in ROLE_ORDER
                if selectors.signing_refusal(user, canary, role=role, facts=facts) is None]
    step_signatures = [a for a in approvals if step is not None and a.step == step.key]
    remaining = None
    if canary.state in states.ACTIVE and canary.stage_entered_at is not None:
        remaining = schedules.residence_remaining(
            stages[canary.stage_index], entered_at=canary.stage_entered_at, now=now
        )
    return {
        "canary": canary,
        "model": canary.model,
        "stage": stages[canary.stage_index],
        "stage_count": len(stages),
        "stage_label": stage_label(stages[canary.stage_index]),
        "remaining": remaining,
        "residence_until": selectors.residence_until(canary),
        "live": canary.state in states.ACTIVE or canary.state == State.COMPLETED
        or states.watched(canary.state, canary.standby),
        "cadence_s": settings.EVALUATION_CADENCE_S,
        "step": step,
        "step_label": step_label(canary, step) if step is not None else "",
        "required": [
            {"role": role, "label": ROLE_LABELS[role],
             "signature": next((a for a in step_signatures if a.role == role and a.voided_at is None), None)}
            for role in ROLE_ORDER if role in required
        ],
        "readiness": readiness,
        "evaluation": evaluation,
        "gates": _gate_rows(evaluation),
        "rollback_sensitivity": rollback_sensitivity(evaluation.inputs, canary.thresholds["rollback"])
        if evaluation is not None else [],
        "stage_rows": _stage_rows(canary, approvals, now=now, rate=rate),
        "ready_at": ready_estimate(canary, rate, now=now) if canary.state in states.ACTIVE else None,
        **after_rollback(canary, user=user),
        "waits": hold_explanations(canary, evaluation, user=user, now=now, remaining=remaining),
        "signable": [{"role": role, "label": ROLE_LABELS[role]} for role in signable],
        "can_rollback": states.allows(canary.state, states.Act.ROLLBACK)
        and may_or_break_glass(user, Action.ROLLBACK_CANARY, model=canary.model),
        "can_abort": states.allows(canary.state, states.Act.ABORT)
        and decide(user, Action.ABORT_CANARY, model=canary.model).allowed,
        "can_revert": states.allows(canary.state, states.Act.REVERT, standby=canary.standby)
        and may_or_break_glass(user, Action.REVERT_CANARY, model=canary.model),
        "watched": states.watched(canary.state, canary.standby),
        "metric_gap": metric_gap(evaluation.inputs) if evaluation is not None and canary.state in states.SERVING
        else None,
        "watch_remaining": selectors.watch_remaining(canary, now=now),
        "threshold_rows": _threshold_rows(canary.thresholds),
        "strategy_label": STRATEGY_LABELS.get(canary.segmentation.get("strategy", ""), ""),
        "now": now,
    }


def sign_context(canary: Canary, *, user: Any, role: str, now: datetime) -> dict[str, Any]:
    """What the signing dialog shows: exactly what is approved, on which evaluation, and
    whether this signature can be given now (if not, why)."""
    facts = selectors.step_facts(canary, now=now)
    step = facts.step
    refusal = selectors.signing_refusal(user, canary, role=role, facts=facts)
    blocked = refusal.reason if refusal is not None else None
    evaluation = None
    if step is not None and step.kind is rules.StepKind.PROMOTE:
        evaluation = selectors.latest_evaluation(canary)
    # The meaning recorded with the signature, word for word: the signer reads what they sign.
    meaning = rules.signature_meaning(role=role, step=step, stages=selectors.canary_stages(canary),
                                      canary_id=canary.pk, version=str(canary.version)) if step is not None else ""
    return {
        "canary": canary,
        "role": role,
        "role_label": ROLE_LABELS[role],
        "step": step,
        "step_label": step_label(canary, step) if step is not None else "",
        "meaning": meaning,
        "evaluation": evaluation,
        "blocked": blocked,
        "others": [a for a in canary.approvals.select_related("signer")
                   if step is not None and a.step == step.key and a.voided_at is None],
        "action_url": reverse("releases:canary-sign", kwargs={"pk": canary.pk, "role": role}),
    }


@dataclass(frozen=True)
class WorkItem:
    """One act waiting for this user that is not a canary signature: a root cause to file or
    review, a re-initiation to sign, a canary to start again, a certificate to issue."""

    what: str
    subject: str
    url: str
    action: str


@dataclass(frozen=True)
class WorkSource:
    """A kind of act the Inbox lists, kept by the layer that owns it (e.g. governance.thresholds
    registers threshold reviews in its AppConfig.ready): `may_have(user)` says whether such an act
    can ever be this user's, `items(user)` lists those waiting now, oldest first."""

    name: str
    may_have: Callable[[Any], bool]
    items: Callable[[Any], list[WorkItem]]


WORK_SOURCES: dict[str, WorkSource] = {}


def work_source_register(source: WorkSource) -> None:
    """Add a kind of act to every user's Inbox (idempotent by name)."""
    WORK_SOURCES[source.name] = source


def may_have_work(user: Any) -> bool:
    """Whether any act of the work list can ever be this user's (else there is no Inbox)."""
    return selectors.may_sign_anything(user) or any(
        decide(user, action).allowed
        for action in (Action.FILE_ROOT_CAUSE, Action.ACCEPT_ROOT_CAUSE, Action.ISSUE_CERTIFICATE)) or any(
        source.may_have(user) for source in WORK_SOURCES.values())


def other_work(user: Any) -> list[WorkItem]:
    """Every act besides canary signatures that waits for this user, oldest first."""
    items: list[WorkItem] = []
    rollbacks = Incident.objects.filter(kind=Incident.Kind.ROLLBACK, canary__isnull=False).select_related(
        "canary__model", "canary__version").order_by("opened_at", "id")
    for incident in rollbacks.exclude(status=Incident.Status.RESOLVED):
        subject = f"Incident #{incident.pk} · {incident.canary.model.name} {incident.canary.version.version}"
        url = reverse("evidence:incident-detail", kwargs={"incident_id": incident.pk})
        # After a break-glass act the root cause is MRM's retrospective review of that act.
        break_glass = bool((incident.details or {}).get("break_glass"))
        if incident.status == Incident.Status.OPEN and decide(
                user, Action.FILE_ROOT_CAUSE, model=incident.canary.model).allowed:
            items.append(WorkItem("Root cause to file" + (" (break-glass act: retrospective review)"
                                                          if break_glass else ""), subject, url, "File the root cause"))
        elif incident.status == Incident.Status.ROOT_CAUSE_FILED and decide(user, Action.ACCEPT_ROOT_CAUSE).allowed:
            items.append(WorkItem("Retrospective review of a break-glass act" if break_glass
                                  else "Root cause to review", subject, url, "Accept or return it"))
    for incident in rollbacks.filter(status=Incident.Status.RESOLVED, canary__owner=user):
        subject = f"Incident #{incident.pk} · {incident.canary.model.name} {incident.canary.version.version}"
        if not decide(user, Action.APPROVE_REINITIATION, model=incident.canary.model).allowed:
            continue
        steps = {step["key"]: step["done"] for step in incident_selectors.rollback_next_steps(incident)}
        if not steps["reinitiate"]:
            items.append(WorkItem("Re-initiation to sign", subject,
                                  reverse("evidence:incident-detail", kwargs={"incident_id": incident.pk}),
                                  "Sign the re-initiation"))
        elif not steps["start"] and after_rollback(incident.canary, user=user)["can_start_again"]:
            items.append(WorkItem("Canary to start again", subject, reverse(
                "releases:canary-create",
                kwargs={"name": incident.canary.model.name, "version": incident.canary.version.version}),
                "Start a canary"))
    if decide(user, Action.ISSUE_CERTIFICATE).allowed:
        for canary in Canary.objects.filter(state=State.COMPLETED).select_related("model", "version").order_by(
                "ended_at", "id"):
            items.append(WorkItem("Certificate to issue", f"Canary #{canary.pk} · {canary.model.name} "
                                  f"{canary.version.version}", reverse("evidence:certificate-queue"),
                                  "Review the checklist and issue or return it"))
    for source in WORK_SOURCES.values():
        if source.may_have(user):
            items.extend(source.items(user))
    return items


def coming_next(user: Any, *, now: datetime) -> list[str]:
    """For an empty Inbox: when the active canaries this user may sign reach their next step."""
    if not selectors.may_sign_anything(user):
        return []
    lines = []
    for canary in selectors.canary_list(actor=user).filter(state__in=states.ADVANCING).order_by("id")[:10]:
        ready = ready_estimate(canary, data_rate(selectors.latest_evaluation(canary)), now=now)
        if ready is None:
            lines.append(f"Canary #{canary.pk} ({canary.model.name}): its next step is not known yet (no traffic "
                         "measured).")
        else:
            wait = max((ready - now).total_seconds(), 0)
            lines.append(f"Canary #{canary.pk} ({canary.model.name}) reaches its next step in {about(wait)}."
                         if wait > 0 else f"Canary #{canary.pk} ({canary.model.name}) is about to be ready "
                                          "(at the monitor's next evaluation).")
    return lines


FLEET_HOME_ROLES = frozenset({Role.PLATFORM, Role.ON_CALL})


def fleet_is_home(user: Any) -> bool:
    """Platform engineers and on-call watch every canary: the fleet page is their home."""
    return bool(roles_of(user) & FLEET_HOME_ROLES)


def landing(user: Any) -> str:
    """The page a login lands on (a URL name): the Inbox when something waits for this user,
    else the fleet page for platform engineers and on-call, else `/` (the register)."""
    if inbox_count(user):
        return "releases:inbox"
    return "releases:fleet" if fleet_is_home(user) else "releases:root"


def inbox_count(user: Any) -> int | None:
    """For the navigation: how many acts wait for this user — signatures and the rest of the work
    list (None: none of their roles ever has any, so there is no Inbox)."""
    if not may_have_work(user):
        return None
    signatures = len(waiting_for_signature(user, now=timezone.now())) if selectors.may_sign_anything(user) else 0
    return signatures + len(other_work(user))
