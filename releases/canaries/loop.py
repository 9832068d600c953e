"""The control loop: what the system itself does to canaries, every cadence, in a fixed order.

One round (`evaluate_tick`, enqueued by beat every CANARYHUB_EVALUATION_CADENCE_S):

1. claim the due canaries (`claim_due`): serving canaries whose `next_eval_at` has come, under
   `SELECT ... FOR UPDATE SKIP LOCKED` and a conditional update, so two beats or two workers split
   the canaries instead of both acting;
2. read their metrics through monitoring (`monitoring.services.read_metrics`): one fetch per
   provider for all its canaries, whatever their number;
3. decide, purely (`monitoring.services.judge` → `monitoring.evaluator.decide`): gates, rollback
   triggers, early warnings, staleness, fail-closed;
4. store the evaluations (one per canary and window), the monitor's watch rows and the early
   warnings (`monitoring.services`), all in one transaction for the round;
5. act: a decision that rolls back (`Decision.rolls_back`) announces "canary.rollback_decided",
   run on the "rollbacks" queue by `canary_rollback`; every other canary whose state or hold
   reason its new evaluation changes goes through `canary_reconcile` (running, awaiting approval
   or held);
6. push: each transition that changes a split announces it; `push` carries it to the canary's
   router through releases.routing, after the commit.

The round ends with the heartbeat. After it, the post-promotion watch (`watch_tick`): completed
canaries whose previous version is still on hot standby are judged with the rollback rule against
that version's numbers from their last stages; a breach announces the same "canary.rollback_decided",
carried out as a revert (`canary_revert`); a watch whose period is over releases the standby.
Around it: the dead-man's switch (`deadman_check`) and the
rollback sweeper (`rollbacks_sweep`: decided rollbacks and 0 % pushes whose messages were lost),
both run by the watchdog thread of every worker and web process (canaryhub.watch) as well as by
beat, so neither a dead beat nor a stuck queue silences the checks that watch them; the
periodic refresh of every serving canary's displayed state (`reconcile_all`), and the periodic
check that every router holds its canary's split (`routers_reconcile`). Rules are pure
functions elsewhere; this module orders the steps and owns no rule of its own.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from canaryhub import events
from canaryhub.errors import Conflict
from governance.audit.services import audit_append
from governance.incidents.models import Incident
from monitoring import services as monitor
from monitoring.models import CanaryWatch, Evaluation, Heartbeat, RollbackDecision
from monitoring.notifications.services import notifications_store
from monitoring.providers import Provider
from monitoring.samples import Reading, Target
from releases.canaries import selectors, services, states
from releases.canaries.models import Approval, Canary
from releases.routing.models import RouterPush
from releases.routing.routers.base import RouterError
from releases.routing.services import (
    PushOrder,
    push_and_record,
    push_superseded,
    pushes_mark_lost,
    router_for,
    router_reconcile,
)

logger = logging.getLogger(__name__)

State = states.State
PUSH_HARD_LIMIT_S = 170  # a push task's hard time limit (releases.canaries.tasks): older unfinished ones died


@dataclass
class CanaryOutcome:
    canary_id: int
    verdict: str
    rollback: str = ""
    evaluation_id: int | None = None
    duplicate: bool = False
    evaluation: Any = field(default=None, repr=False, compare=False)


@dataclass
class TickResult:
    started_at: datetime
    duration_ms: float = 0.0
    fetch_ms: float = 0.0  # claiming and reading the metrics, of duration_ms
    queries: int = 0
    outcomes: list[CanaryOutcome] = field(default_factory=list)


# --- 1. claim ---------------------------------------------------------------------------------------


WATCHED = Q(state__in=states.COMPLETE, standby=states.Standby.WATCHING)  # states.watched, as a filter


def claim_due(*, now: datetime, limit: int | None = None, watched: bool = False) -> list[int]:
    """Claim every serving canary (`watched`: every canary in its post-promotion watch) whose next
    evaluation is due, for this round only. Two rounds at once (two beats, two workers) split the
    canaries between them instead of both acting."""
    due = Q(next_eval_at__isnull=True) | Q(next_eval_at__lte=now)
    # Not the full cadence: a beat firing a little early must not skip a canary for a whole round.
    next_at = now + timedelta(seconds=settings.EVALUATION_CADENCE_S * 0.8)
    which = WATCHED if watched else Q(state__in=states.SERVING)
    with transaction.atomic():
        qs = Canary.objects.filter(due, which).order_by("next_eval_at", "pk")
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        ids = list(qs.values_list("pk", flat=True)[:limit] if limit else qs.values_list("pk", flat=True))
        if not ids:
            return []
        # The conditional update is the claim on databases without row locks (SQLite serialises
        # writers): only rows still due are taken.
        Canary.objects.filter(due, pk__in=ids).update(next_eval_at=next_at)
    return ids


def subject_of(canary: Canary) -> monitor.Subject:
    """What the monitor needs to judge this canary: plain values, no canary."""
    seg = canary.segmentation or {}
    random_split = seg.get("strategy", "random") == "random"
    metrics = canary.metrics or {}  # frozen at initiation
    stage_since = canary.stage_entered_at or canary.initiated_at
    return monitor.Subject(
        canary_id=canary.pk, stage_index=canary.stage_index, thresholds=canary.thresholds,
        traffic_percent=canary.traffic_percent, random_split=random_split, stage_since=stage_since,
        provider=metrics.get("provider") or monitor.default_provider(),
        target=Target(
            canary_id=canary.pk, model=canary.model.name, version=canary.version.version,
            baseline=canary.baseline.version,
            segments=None if random_split else tuple(str(v) for v in seg.get("values", [])),
            stage_since=stage_since, queries=dict(metrics.get("queries") or {}),
            custom=dict(metrics.get("custom") or {}),
        ),
    )


# --- the round --------------------------------------------------------------------------------------


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a round. A round at 1,000 canaries allocates a
    million objects that live until its end (the metric answers, every canary's inputs): each
    few hundred thousand set off a full collection that walks the whole heap, seconds in all.
    Nothing in a round waits on a cycle being collected; the collector resumes after it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@_collector_paused()
def evaluate_tick(*, now: datetime | None = None, providers: dict[str, Provider] | None = None,
                  canary_ids: list[int] | None = None) -> TickResult:
    """One round of the loop (the order: module docstring). `canary_ids` skips the claim (tests
    and `evaluate --once` of given canaries); otherwise the due canaries are claimed."""
    started = time.perf_counter()
    now = (now or timezone.now()).replace(microsecond=0)  # one record per canary and second: a repeat finds it
    result = TickResult(started_at=now)
    # 1. claim
    ids = canary_ids if canary_ids is not None else claim_due(now=now)
    canaries = list(
        Canary.objects.filter(pk__in=ids, state__in=states.SERVING).select_related("model", "version", "baseline")
        .annotate(latest_evaluation_id=Subquery(
            Evaluation.objects.filter(canary_id=OuterRef("pk"), stage_index=OuterRef("stage_index"))
            .order_by("-window_end", "-id").values("id")[:1]))
    )
    subjects = {c.pk: subject_of(c) for c in canaries}
    # 2. read
    readings, result.queries = monitor.read_metrics(list(subjects.values()), now=now, providers=providers)
    fetched = time.perf_counter()
    # One transaction for the round: on SQLite every commit is a sync to disk, and a thousand of
    # them would make the tick miss its cadence. Rollbacks are announced when it commits, a few
    # seconds at most after their decision. Every step is a few queries for the whole round.
    with transaction.atomic():
        watches = monitor.watches_lock(list(subjects))
        latest = {e.canary_id: e for e in Evaluation.objects.filter(
            pk__in=[c.latest_evaluation_id for c in canaries if c.latest_evaluation_id]
        ).only("id", "canary_id", "stage_index", "window_end", "verdict", "gates")}
        earlier = monitor.earlier(list(subjects), now=now)
        # 3. decide
        judged: list[monitor.Judged] = []
        for canary in canaries:
            try:
                judged.append(monitor.judge(subjects[canary.pk], readings[canary.pk], now=now,
                                            watch=watches[canary.pk], earlier=earlier.get(canary.pk)))
            except Exception:  # one bad canary must not stop the others being watched
                logger.exception("evaluation of canary %s failed", canary.pk)
        # 4. store
        inserted, duplicates = ({e.canary_id for e in part} for part in monitor.evaluations_store(
            [j.evaluation for j in judged]))
        by_id = {c.pk: c for c in canaries}
        to_reconcile, changed, rebased, notices = [], [], [], []
        for j in judged:
            canary_id = j.subject.canary_id
            if canary_id in duplicates:
                # This window was judged already (a second worker, a retried tick): nothing more.
                result.outcomes.append(CanaryOutcome(canary_id, j.evaluation.verdict, duplicate=True))
                continue
            if canary_id not in inserted:
                continue  # refused by the database, and logged
            monitor.judged_recorded(j, now=now)
            changed.append(j.watch)
            if j.rebased:
                rebased.append(j.watch)
            notices += monitor.warnings_for(j, now=now)
            # 5. act
            outcome = _act(j)
            result.outcomes.append(outcome)
            if not outcome.rollback:
                to_reconcile.append((by_id[canary_id], j.evaluation))
        monitor.watches_save(changed, rebased=rebased)
        notifications_store(notices, now=now)
        _reconcile(to_reconcile, latest, now=now)
    result.fetch_ms = (fetched - started) * 1000
    result.duration_ms = (time.perf_counter() - started) * 1000
    monitor.heartbeat_beat(now=now, duration_ms=result.duration_ms, canaries=len(canaries), queries=result.queries)
    # The metric-staleness SLO: the age of the data each new evaluation judged.
    monitor.staleness_observe([o.evaluation.inputs["data_age_s"] for o in result.outcomes
                               if o.evaluation is not None and o.evaluation.inputs.get("data_age_s") is not None])
    return result


def _act(judged: monitor.Judged) -> CanaryOutcome:
    """Step 5 for one newly stored evaluation: a decision that rolls back is announced for the
    rollbacks queue (after the round commits: the evaluation it names exists by then)."""
    decision, evaluation = judged.decision, judged.evaluation
    canary_id = judged.subject.canary_id
    rollback = decision.rollback_reason if decision.rolls_back else ""
    if rollback:
        # The decision itself is a row of this transaction; the announcement is only its prompt.
        monitor.rollback_decision_record(canary_id=canary_id, evaluation_id=evaluation.pk,
                                         reason=f"automatic: {rollback}", now=evaluation.window_end)
        events.announce("canary.rollback_decided", canary_id=canary_id, evaluation_id=evaluation.pk,
                        reason=f"automatic: {rollback}"[:1000])
    return CanaryOutcome(canary_id, decision.verdict.value, rollback=rollback, evaluation_id=evaluation.pk,
                         evaluation=evaluation)


def _reconcile(evaluated: list[tuple[Canary, Evaluation]], latest: dict[int, Evaluation], *, now: datetime) -> None:
    """canary_reconcile for the evaluated canaries whose state or hold reason it would change:
    decided on their rows as they are now (read and locked in one query) and the latest
    evaluation of their stage; only those go through the locked service."""
    if not evaluated:
        return
    fresh = {c.pk: c for c in Canary.objects.select_for_update().select_related("model").filter(
        pk__in=[c.pk for c, _ in evaluated]).order_by("pk")}
    for canary, evaluation in evaluated:
        current = fresh.get(canary.pk)
        if current is None:
            continue
        if current.stage_index == canary.stage_index:
            previous = latest.get(canary.pk)
            newest = evaluation
            if previous is not None and (previous.window_end, previous.pk) > (evaluation.window_end, evaluation.pk):
                newest = previous
            if not selectors.reconcile_needed(current, now=now, evaluation=newest):
                continue
        try:
            with transaction.atomic():
                services.canary_reconcile(canary_id=canary.pk, now=now)
        except Exception:
            logger.exception("reconciliation of canary %s failed", canary.pk)


def evaluate_canary(canary: Canary, reading: Reading, *, now: datetime) -> CanaryOutcome:
    """One round for one canary whose reading the caller has (tests). Safe to repeat for the
    same `now`: the evaluation is unique per window and a rollback is announced only with a new
    record."""
    now = now.replace(microsecond=0)
    subject = subject_of(canary)
    with transaction.atomic():
        watch = monitor.watches_lock([canary.pk])[canary.pk]
        judged = monitor.judge(subject, reading, now=now, watch=watch,
                               earlier=monitor.earlier([canary.pk], now=now).get(canary.pk))
        if not monitor.evaluation_insert(judged.evaluation):
            # This window was judged already (a second worker, a retried task): nothing more to do.
            return CanaryOutcome(canary.pk, judged.evaluation.verdict, duplicate=True)
        monitor.judged_recorded(judged, now=now)
        notifications_store(monitor.warnings_for(judged, now=now), now=now)
        watch.save()
        outcome = _act(judged)
    if not outcome.rollback:
        services.canary_reconcile(canary_id=canary.pk, now=now)
    return outcome


def rollback_watch_tick(*, now: datetime | None = None, providers: dict[str, Provider] | None = None,
                        canary_ids: list[int] | None = None) -> list[int]:
    """The rollback watch, between two evaluations (every CANARYHUB_ROLLBACK_WATCH_S): each serving
    canary's error-rate tests, of the canary as a whole and of each segment its evaluations judge,
    on its counts now, continuing from its last evaluation (monitoring.services.watch_look). It
    reads only requests and errors (monitoring.services.read_counts: one Prometheus query for every
    canary) and stores no evaluation: the 5-minute window stays what evaluations record. A
    rejection is recorded as a RollbackDecision (the durable path the sweeper re-drives) and
    announced, as an evaluation's would be. Returns the canaries decided."""
    now = (now or timezone.now()).replace(microsecond=0)
    qs = Canary.objects.filter(state__in=states.SERVING).select_related("model", "version", "baseline")
    if canary_ids is not None:
        qs = qs.filter(pk__in=canary_ids)
    canaries = list(qs)
    watches = {w.canary_id: w for w in CanaryWatch.objects.filter(canary_id__in=[c.pk for c in canaries])}
    canaries = [c for c in canaries if c.pk in watches and watches[c.pk].sequential]
    if not canaries:
        return []
    subjects = {c.pk: subject_of(c) for c in canaries}
    readings, _ = monitor.read_counts(list(subjects.values()), now=now, providers=providers)
    decided = []
    for canary in canaries:
        try:
            trigger = monitor.watch_look(subjects[canary.pk], readings[canary.pk], now=now, watch=watches[canary.pk])
        except Exception:  # one bad canary must not stop the others being watched
            logger.exception("rollback watch of canary %s failed", canary.pk)
            continue
        if trigger is None:
            continue
        reason = f"automatic (rollback watch): {trigger.detail}"
        with transaction.atomic():
            monitor.rollback_decision_record(canary_id=canary.pk, evaluation_id=None, reason=reason, now=now)
            events.announce("canary.rollback_decided", canary_id=canary.pk, evaluation_id=None, reason=reason[:1000])
        decided.append(canary.pk)
    return decided


def watch_tick(*, now: datetime | None = None, providers: dict[str, Provider] | None = None,
               canary_ids: list[int] | None = None) -> list[CanaryOutcome]:
    """One round of the post-promotion watch: release the standbys whose watch is over, then judge
    the due watched canaries' new production version against the previous version's numbers from
    their last stages (monitoring.services.judge_watch). A breach is announced as
    "canary.rollback_decided", which reverts a watched canary (`rollback_decided`)."""
    now = (now or timezone.now()).replace(microsecond=0)
    for canary_id in Canary.objects.filter(WATCHED, watch_until__lte=now).values_list("pk", flat=True):
        services.standby_release(canary_id=canary_id, now=now)
    ids = canary_ids if canary_ids is not None else claim_due(now=now, watched=True)
    canaries = list(Canary.objects.filter(WATCHED, pk__in=ids).select_related("model", "version", "baseline"))
    if not canaries:
        return []
    subjects = {c.pk: subject_of(c) for c in canaries}
    readings, _ = monitor.read_metrics(list(subjects.values()), now=now, providers=providers)
    outcomes = []
    with transaction.atomic():
        watches = monitor.watches_lock(list(subjects))
        for canary in canaries:
            if not canary.watch_baseline:
                continue  # no stage measured the previous version: nothing to compare with
            judged = monitor.judge_watch(subjects[canary.pk], readings[canary.pk], now=now,
                                         watch=watches[canary.pk], baseline=canary.watch_baseline)
            if not monitor.evaluation_insert(judged.evaluation):
                outcomes.append(CanaryOutcome(canary.pk, judged.evaluation.verdict, duplicate=True))
                continue
            monitor.judged_recorded(judged, now=now)
            judged.watch.save()
            outcomes.append(_act(judged))
    return outcomes


def rollback_decided(*, canary_id: int, evaluation_id: int | None, reason: str, executed_by: str = "task") -> str:
    """Carry out an automatic rollback the loop decided, and close its recorded decision in the
    same transaction: of a serving canary, a rollback; of a canary in its post-promotion watch, a
    revert to the previous version. A canary that is neither any more (rolled back or reverted by
    an earlier run, aborted) is left alone: however many run this (the queued task, sweepers), the
    canary rolls back (or reverts) once."""
    now = timezone.now()
    with transaction.atomic():
        row = Canary.objects.filter(pk=canary_id).values_list("state", "standby").first()
        state = row[0] if row else None
        if row is not None and states.watched(*row):
            try:
                with transaction.atomic():
                    services.canary_revert(actor=None, canary_id=canary_id, reason=reason, automatic=True,
                                           evaluation_id=evaluation_id)
                outcome = "reverted"
            except Conflict as exc:  # raced with a manual revert, or a newer canary is active
                outcome = f"skipped: {exc}"
        elif state not in states.SERVING:
            outcome = f"skipped: canary {canary_id} is {state}"
        else:
            try:
                with transaction.atomic():
                    services.canary_rollback(actor=None, canary_id=canary_id, reason=reason, automatic=True,
                                             evaluation_id=evaluation_id)
                outcome = "rolled back"
            except Conflict as exc:  # raced with another rollback or an abort
                outcome = f"skipped: {exc}"
        monitor.rollback_decisions_close(canary_id=canary_id, outcome=outcome, executed_by=executed_by, now=now)
    if outcome in ("rolled back", "reverted"):
        logger.warning("canary %s %s automatically (%s): %s", canary_id, outcome, executed_by, reason)
    return outcome


def rollbacks_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-drive every decided rollback still pending CANARYHUB_ROLLBACK_SWEEP_AFTER_S after its
    decision (its message lost, its worker dead or hung), and raise the P1 for any still pending
    past the rollback SLO. Runs in every worker and web process (releases.canaries.tasks,
    canaryhub.watch), never through the queue it backs up."""
    now = now or timezone.now()
    slo_s = settings.ROLLBACK_SLO_S
    alarmed = 0
    # Overdue first: a P1 for every decision past its SLO, even one this sweep then carries out.
    for decision in monitor.rollback_decisions_pending(decided_before=now - timedelta(seconds=slo_s)):
        if decision.alarmed_at is None:
            alarmed += monitor.rollback_overdue_alarm(decision, now=now, slo_s=slo_s) is not None
    done: list[int] = []
    for decision in monitor.rollback_decisions_pending(
            decided_before=now - timedelta(seconds=settings.ROLLBACK_SWEEP_AFTER_S)):
        try:
            outcome = rollback_decided(canary_id=decision.canary_id, evaluation_id=decision.evaluation_id,
                                       reason=decision.reason, executed_by="sweeper")
            if outcome in ("rolled back", "reverted"):
                done.append(decision.canary_id)
        except Exception:  # one canary's failure must not stop the others' rollbacks
            logger.exception("sweeper: rollback of canary %s failed", decision.canary_id)
    # The canaries this sweep rolled back have their push announced already.
    return {"rolled_back": len(done), "alarmed": alarmed, "pushed": _stop_pushes_sweep(now=now, skip=done)}


def _stop_pushes_sweep(*, now: datetime, skip: list[int]) -> int:
    """The 0 % push of a canary stopped (or reverted) within the last hour that no push has
    confirmed (its message lost or its worker stuck), carried here rather than waiting for the
    reconciler. A push of that generation still under way (started within the push deadline) is
    left to finish."""
    settle = now - timedelta(seconds=settings.ROLLBACK_SWEEP_AFTER_S)
    since = now - timedelta(hours=1)
    stopped = Canary.objects.filter(
        Q(state__in=states.STOPPED, ended_at__gte=since, ended_at__lte=settle)
        | Q(state=State.REVERTED, reverted_at__gte=since, reverted_at__lte=settle),
        traffic_percent=0, split_generation__gt=0,
    ).exclude(pk__in=skip)
    pushed = 0
    for canary_id, generation in stopped.values_list("pk", "split_generation"):
        attempts = RouterPush.objects.filter(canary_id=canary_id, generation=generation)
        if attempts.filter(Q(ok=True) | Q(error__startswith="stale:")).exists():
            continue
        under_way = now - timedelta(seconds=PUSH_HARD_LIMIT_S)
        if attempts.filter(finished_at__isnull=True, started_at__gte=under_way).exists():
            continue
        try:
            push(canary_id=canary_id, generation=generation)
            pushed += 1
        except Exception:
            logger.exception("sweeper: 0 %% push of canary %s failed", canary_id)
    return pushed


def pushes_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Every push is recorded, including the lost ones: mark `lost` the pushes queued longer than
    ROUTER_PUSH_LOST_AFTER_S that no worker took (a message dropped by the broker, a process
    killed between commit and enqueue) and those whose worker died mid-push, then queue again the
    push of the split in force of each canary whose current generation was lost (a new queued row
    with reason "retry", services.split_push_again). Queued, not pushed here: a router that does
    not answer must not hold up the watchdog's rollback sweep for a push's whole deadline (a 0 %
    push is carried by the rollback sweep itself, `_stop_pushes_sweep`). A lost push of an older
    generation needs nothing more: a newer split replaced it. Runs in the watchdog of every
    process and in beat's router reconciliation."""
    now = now or timezone.now()
    lost = pushes_mark_lost(now=now, queued_limit_s=settings.ROUTER_PUSH_LOST_AFTER_S,
                            running_limit_s=PUSH_HARD_LIMIT_S)
    redriven = 0
    for canary_id, generation in sorted({(p.canary_id, p.generation) for p in lost}):
        if not Canary.objects.filter(pk=canary_id, split_generation=generation).exists():
            continue
        if RouterPush.objects.filter(canary_id=canary_id, generation=generation).filter(
                Q(ok=True) | Q(status__in=[RouterPush.Status.QUEUED, RouterPush.Status.PUSHING])).exists():
            continue  # carried meanwhile, or under way again
        services.split_push_again(canary_id=canary_id)
        redriven += 1
    return {"lost": len(lost), "queued": redriven}


# --- 6. push ----------------------------------------------------------------------------------------


def push_order(canary: Canary) -> PushOrder:
    return PushOrder(
        canary_id=canary.pk, router=canary.router, split=selectors.split_of(canary),
        stopping=canary.state in states.AT_ZERO and canary.traffic_percent == 0,
        ended_at=canary.reverted_at or canary.ended_at,
        label=f"canary #{canary.pk} ({canary.version})",
    )


def push(*, canary_id: int, generation: int, reason: str = "transition") -> str:
    """Carry the canary's current split to its router. A push for an older generation than the
    canary's current one does nothing: the newer push carries the newer split."""
    canary = Canary.objects.select_related("model", "version", "baseline").get(pk=canary_id)
    if canary.split_generation != generation:
        push_superseded(canary_id=canary_id, generation=generation)
        return f"skipped: generation {generation} superseded by {canary.split_generation}"
    order = push_order(canary)
    record = push_and_record(order, reason=reason)
    state = "confirmed" if record.ok else f"failed after {record.attempts} attempt(s): {record.error[:200]}"
    if not record.ok:
        _router_failed(order, record)
    else:
        slo_measure(canary, confirmed_at=record.finished_at or timezone.now())
    return f"generation {generation} ({canary.traffic_percent}%): {state}"


def slo_measure(canary: Canary, *, confirmed_at: datetime) -> None:
    """The router confirmed the canary's current split: measure the SLO it closes. At 0 % after a
    rollback or a revert, the rollback SLO from the first window past the threshold (the deciding
    evaluation's window end) or from the decision by hand; at a signed stage's percent, the
    promotion SLO from the step's last signature. Recorded once per split generation."""
    generation = canary.split_generation
    if canary.state in states.AT_ZERO and canary.traffic_percent == 0:
        if canary.state == State.ABORTED:
            return  # an abort is no rollback
        decision = (RollbackDecision.objects.filter(canary=canary, evaluation__isnull=False)
                    .select_related("evaluation").order_by("decided_at").first())
        start = decision.evaluation.window_end if decision else (canary.reverted_at or canary.ended_at)
        if start is not None:
            monitor.slo_record(slo="rollback", canary_id=canary.pk, generation=generation, started_at=start,
                               finished_at=confirmed_at,
                               detail={"state": canary.state, "automatic": decision is not None,
                                       "evaluation": decision.evaluation_id if decision else None})
        return
    signed = Approval.objects.filter(canary=canary, stage_index=canary.stage_index).order_by("-signed_at").first()
    if signed is not None and canary.traffic_percent > 0:
        monitor.slo_record(slo="promotion", canary_id=canary.pk, generation=generation, started_at=signed.signed_at,
                           finished_at=confirmed_at,
                           detail={"stage_index": canary.stage_index, "percent": canary.traffic_percent})


def _router_failed(order: PushOrder, record: RouterPush) -> None:
    """A canary's split did not reach its router within the deadline: unless it is stopping (the
    rollback SLO's own incident covers that) or a newer split owns the router, the canary falls
    back to production and is suspended (services.canary_router_failed)."""
    if order.stopping or record.error.startswith("stale:"):
        return
    services.canary_router_failed(canary_id=order.canary_id, push_id=record.pk,
                                  error=f"push of generation {order.split.generation} ({order.split.percent}%) "
                                        f"failed after {record.attempts} attempt(s): {record.error[:500]}")


def routers_recover(*, now: datetime | None = None) -> int:
    """Canaries suspended for a router failure whose router answers again get the split in force
    back (services.canary_router_recovered). Runs in the watchdog of every process, so a router's
    return is acted on within seconds. Returns how many recovered."""
    recovered = 0
    for canary in Canary.objects.filter(state=State.SUSPENDED, hold_reason__startswith=services.ROUTER_FAILURE):
        try:
            router_for(canary.router).read_back(canary.model.name)
        except RouterError as exc:
            logger.info("router %s of canary %s still failing: %s", canary.router, canary.pk, exc)
            continue
        if services.canary_router_recovered(canary_id=canary.pk, now=now) is not None:
            logger.warning("router %s answers again: canary %s resumes at its stage's split", canary.router, canary.pk)
            recovered += 1
    return recovered


def routers_reconcile(*, sleep: Any = time.sleep) -> dict[str, int]:
    """Every router holds its canary's intended split: the newest pushed canary of each model is
    the one whose split the router should hold. Safe to run twice at once: pushes are idempotent."""
    newest: dict[int, Canary] = {}
    for canary in (
        Canary.objects.filter(split_generation__gt=0).select_related("model", "version", "baseline").order_by("-pk")
    ):
        newest.setdefault(canary.model_id, canary)
    outcome: dict[str, int] = {}
    for canary in newest.values():
        order = push_order(canary)
        result = router_reconcile(order, sleep=sleep)
        outcome[result] = outcome.get(result, 0) + 1
        if result == "drift" and canary.state in states.ADVANCING:
            # The router stopped answering (or holds a split it will not give up) while serving.
            last = RouterPush.objects.filter(canary=canary).order_by("-queued_at", "-id").first()
            if last is not None:
                _router_failed(order, last)
    return outcome


# --- around the round -------------------------------------------------------------------------------


def reconcile_all() -> int:
    """Refresh the displayed state (running / awaiting approval / held) of every serving canary."""
    ids = list(Canary.objects.filter(state__in=states.ADVANCING).values_list("pk", flat=True))
    for canary_id in ids:
        services.canary_reconcile(canary_id=canary_id)
    return len(ids)


def deadman_check(*, now: datetime | None = None) -> str:
    """The dead-man's switch: with a serving canary and no heartbeat for DEADMAN_LIMIT_S, raise a
    P1 incident (once) and suspend every serving canary's advancement; when ticks return, lift
    the suspension. Rollback stays possible throughout (a suspended canary can be rolled back)."""
    now = now or timezone.now()
    limit = timedelta(seconds=settings.DEADMAN_LIMIT_S)
    with transaction.atomic():
        beat, _ = Heartbeat.objects.select_for_update().get_or_create(pk=1)
        serving = Canary.objects.filter(state__in=states.SERVING)
        oldest = serving.order_by("initiated_at").values_list("initiated_at", flat=True).first()
        if oldest is None and beat.tripped_at is None:
            return "idle"
        # Never beaten: silent since the oldest serving canary began (it was never watched).
        reference = beat.last_tick_at or oldest
        silent = oldest is not None and reference is not None and now - reference > limit
        if silent:
            if beat.tripped_at is None:
                beat.tripped_at = now
                beat.incident = monitor.incident_raise(
                    severity=Incident.Severity.P1, kind=Incident.Kind.MONITOR_SILENT,
                    summary=f"Evaluator heartbeat missing for {(now - reference).total_seconds():.0f} s "
                            f"(limit {settings.DEADMAN_LIMIT_S} s) with canaries serving: advancement suspended",
                    details={"last_tick_at": beat.last_tick_at.isoformat() if beat.last_tick_at else None,
                             "limit_s": settings.DEADMAN_LIMIT_S}, now=now,
                )
                beat.save(update_fields=["tripped_at", "incident"])
            for canary_id in serving.exclude(state=State.SUSPENDED).values_list("pk", flat=True):
                services.canary_suspend(canary_id=canary_id, reason="evaluator heartbeat missing (dead-man's switch)")
            return "tripped"
        if beat.tripped_at is not None:
            for canary_id in serving.filter(state=State.SUSPENDED).values_list("pk", flat=True):
                services.canary_resume(canary_id=canary_id, reason="evaluator heartbeat back", now=now)
            audit_append(actor=None, action="monitor.recovered", object_type="heartbeat", object_id=1,
                         payload={"tripped_at": beat.tripped_at.isoformat(), "recovered_at": now.isoformat(),
                                  "incident": beat.incident_id})
            beat.tripped_at = None
            beat.save(update_fields=["tripped_at"])
            return "lifted"
    return "ok"
