"""The monitor's writes: the evaluation tick, the dead-man's switch, observations and retention.

The tick claims due canaries (a conditional update of `Canary.next_eval_at`, under
`select_for_update(skip_locked=True)` where the database has it), reads every canary's metrics
with one provider fetch per provider, decides with monitoring.evaluator, stores one Evaluation
per canary and window, queues rollbacks on the "rollbacks" queue, and writes the heartbeat.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import OuterRef, Q, Subquery, Value
from django.utils import timezone

from governance.audit import audit_append
from monitoring import evaluator
from monitoring.evaluations import evaluation_hash, normalise_json
from monitoring.history import EarlierWindow, earlier_windows
from monitoring.models import CanaryWatch, Evaluation, Heartbeat, NotificationEvent, Observation
from monitoring.providers import Provider, provider_for
from monitoring.samples import Reading, Sample, Target

logger = logging.getLogger(__name__)

WARNING_REPEAT = timedelta(hours=1)  # an early warning per metric per canary at most hourly


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


@dataclass
class _Judged:
    """One canary's decision and its evaluation, built but not yet stored."""

    canary: Any
    watch: CanaryWatch
    reading: Reading
    decision: evaluator.Decision
    errors: int  # consecutive source errors, this one included
    evaluation: Evaluation
    rebased: bool  # the stage's counters were re-taken (a new stage): the watch's stage fields changed


def _serving_states() -> list[str]:
    from releases.lifecycle import SERVING_STATES

    return [str(s) for s in SERVING_STATES]


def claim_due(*, now: datetime, limit: int | None = None) -> list[int]:
    """Claim every serving canary whose next evaluation is due, for this tick only. Two ticks at
    once (two beats, two workers) split the canaries between them instead of both acting."""
    from releases.models import Canary

    due = Q(next_eval_at__isnull=True) | Q(next_eval_at__lte=now)
    # Not the full cadence: a beat firing a little early must not skip a canary for a whole round.
    next_at = now + timedelta(seconds=settings.EVALUATION_CADENCE_S * 0.8)
    with transaction.atomic():
        qs = Canary.objects.filter(due, state__in=_serving_states()).order_by("next_eval_at", "pk")
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        ids = list(qs.values_list("pk", flat=True)[:limit] if limit else qs.values_list("pk", flat=True))
        if not ids:
            return []
        # The conditional update is the claim on databases without row locks (SQLite serialises
        # writers): only rows still due are taken.
        Canary.objects.filter(due, pk__in=ids).update(next_eval_at=next_at)
    return ids


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
    """One evaluation round. `canary_ids` skips the claim (tests and `evaluate --once` of given
    canaries); otherwise the due canaries are claimed."""
    from releases.models import Canary

    started = time.perf_counter()
    now = now or timezone.now()
    now = now.replace(microsecond=0)  # one record per canary and second: a repeat finds it
    result = TickResult(started_at=now)
    ids = canary_ids if canary_ids is not None else claim_due(now=now)
    canaries = list(
        Canary.objects.filter(pk__in=ids, state__in=_serving_states()).select_related("model", "version", "baseline")
        .annotate(latest_evaluation_id=Subquery(
            Evaluation.objects.filter(canary_id=OuterRef("pk"), stage_index=OuterRef("stage_index"))
            .order_by("-window_end", "-id").values("id")[:1]))
    )
    groups: dict[str, list[Target]] = {}
    for canary in canaries:
        name = (canary.version.metrics or {}).get("provider") or ("prometheus" if settings.PROMETHEUS_URL else "push")
        groups.setdefault(name, []).append(_target(canary))
    providers = dict(providers or {})
    readings: dict[int, Reading] = {}
    for name, targets in groups.items():
        if name == "prometheus" and "prometheus" not in providers and not settings.PROMETHEUS_URL:
            for t in targets:
                readings[t.canary_id] = Reading(error="provider prometheus: PROMETHEUS_URL is not configured")
            continue
        provider = providers.setdefault(name, provider_for(name))
        before = provider.query_count
        readings.update(provider.fetch(targets, now=now, window_s=settings.EVALUATION_WINDOW_S))
        result.queries += provider.query_count - before
    fetched = time.perf_counter()
    # One transaction for the round: on SQLite every commit is a sync to disk, and a thousand of
    # them would make the tick miss its cadence. Rollbacks are queued when it commits, a few
    # seconds at most after their decision.
    # Every step is a few queries for the whole round, whatever the number of canaries: the watch
    # rows locked and created, the previous latest evaluations read, the evaluations inserted
    # together, the changed watch rows written, the early warnings stored.
    with transaction.atomic():
        watches = _lock_watches([c.pk for c in canaries])
        latest = {e.canary_id: e for e in Evaluation.objects.filter(
            pk__in=[c.latest_evaluation_id for c in canaries if c.latest_evaluation_id]
        ).only("id", "canary_id", "stage_index", "window_end", "verdict", "gates")}
        earlier = _earlier([c.pk for c in canaries], now=now)
        judged: list[_Judged] = []
        for canary in canaries:
            try:
                judged.append(_judge(canary, readings[canary.pk], now=now, watch=watches[canary.pk],
                                     earlier=earlier.get(canary.pk)))
            except Exception:  # one bad canary must not stop the others being watched
                logger.exception("evaluation of canary %s failed", canary.pk)
        inserted, duplicates = ({e.canary_id for e in part} for part in _evaluations_insert(
            [j.evaluation for j in judged]))
        evaluated, changed, rebased, notices = [], [], [], []
        for j in judged:
            if j.canary.pk in duplicates:
                # This window was judged already (a second worker, a retried tick): nothing more.
                result.outcomes.append(CanaryOutcome(j.canary.pk, j.evaluation.verdict, duplicate=True))
                continue
            if j.canary.pk not in inserted:
                continue  # refused by the database, and logged
            outcome = _judged_recorded(j, now=now)
            result.outcomes.append(outcome)
            changed.append(j.watch)
            if j.rebased:
                rebased.append(j.watch)
            notices += _warn(j.watch, j.canary, j.decision, j.evaluation, now=now)
            if not outcome.rollback:
                evaluated.append((j.canary, j.evaluation))
        _save_watches(changed, rebased=rebased)
        NotificationEvent.objects.bulk_create(notices)
        _reconcile(evaluated, latest, now=now)
    result.fetch_ms = (fetched - started) * 1000
    result.duration_ms = (time.perf_counter() - started) * 1000
    heartbeat_beat(now=now, duration_ms=result.duration_ms, canaries=len(canaries), queries=result.queries)
    return result


_window_key = attrgetter("canary_id", "stage_index", "window_start", "window_end")  # evaluation_once_per_window


def _windows_stored(evaluations: list[Evaluation]) -> set[tuple[int, int, datetime, datetime]]:
    """The windows of these evaluations that are stored already (one query)."""
    return set(Evaluation.objects.filter(
        canary_id__in=[e.canary_id for e in evaluations], window_end__in={e.window_end for e in evaluations},
    ).values_list("canary_id", "stage_index", "window_start", "window_end"))


def _evaluations_insert(evaluations: list[Evaluation]) -> tuple[list[Evaluation], list[Evaluation]]:
    """Store a round's evaluations together: (those this call inserted, the duplicates). A
    duplicate judges a window judged already (the unique constraint `evaluation_once_per_window`);
    an evaluation the database refuses for another reason is in neither list (and logged).

    The windows stored already are read first and left out, the rest inserted in one statement
    (a few on SQLite). If that insert still fails (another worker committed some of the windows
    after the read), the round falls back to one insert per evaluation, each in its own savepoint:
    either way each window is stored once, and only its inserter queues its rollback."""
    if not evaluations:
        return [], []
    stored = _windows_stored(evaluations)
    duplicates = [e for e in evaluations if _window_key(e) in stored]
    new = [e for e in evaluations if _window_key(e) not in stored]
    # Without RETURNING (SQLite before 3.35) a bulk insert gives no ids, and a rollback needs the
    # id of the evaluation that decided it.
    if new and connection.features.can_return_rows_from_bulk_insert:
        try:
            with transaction.atomic():
                _bulk_create(new)
            return new, duplicates
        except DatabaseError as exc:
            logger.info("the round's evaluations could not be inserted together (%s): inserting one by one", exc)
            for e in new:  # a batch inserted before the failing one was rolled back with it
                e.pk = None
    inserted = []
    for e in new:
        try:
            (inserted if _evaluation_insert(e) else duplicates).append(e)
        except DatabaseError:
            logger.exception("storing the evaluation of canary %s failed", e.canary_id)
    return inserted, duplicates


def _bulk_create(evaluations: list[Evaluation]) -> None:
    """Evaluation.objects.bulk_create, as one INSERT ... VALUES list on PostgreSQL too."""
    if connection.vendor != "postgresql":
        Evaluation.objects.bulk_create(evaluations)
        return
    # Django sends many rows to PostgreSQL as one array per column (INSERT ... SELECT FROM UNNEST),
    # and psycopg escapes each element of a jsonb array in Python: 1.1-1.5 s for a round of 1,000
    # evaluations, against 0.6 s as a VALUES list, whose literals are escaped in C. Django keeps
    # the VALUES list when a value is an expression: the verdict goes in as one.
    verdicts = [e.verdict for e in evaluations]
    for e in evaluations:
        e.verdict = Value(e.verdict)
    try:
        Evaluation.objects.bulk_create(evaluations)
    finally:
        for e, verdict in zip(evaluations, verdicts, strict=True):
            e.verdict = verdict


def _evaluation_insert(evaluation: Evaluation) -> bool:
    """Insert one evaluation in its own savepoint; False if its window was judged already."""
    try:
        with transaction.atomic():
            evaluation.save(force_insert=True)
    except IntegrityError:
        evaluation.pk = None
        return False
    return True


# Written for every watch row of the round; the stage's fields only when its counters were re-taken
# (the baseline is the row's bulk, and it changes once a stage).
_WATCH_FIELDS = ["consecutive_errors", "last_error", "last_evaluated_at", "warned"]
_WATCH_STAGE_FIELDS = ["stage_index", "stage_baseline"]


def _lock_watches(canary_ids: list[int]) -> dict[int, CanaryWatch]:
    """Every canary's watch row, locked (one query), the missing ones created (one more)."""
    watches = {w.canary_id: w for w in CanaryWatch.objects.select_for_update().filter(canary_id__in=canary_ids)}
    missing = [pk for pk in canary_ids if pk not in watches]
    if missing:
        CanaryWatch.objects.bulk_create([CanaryWatch(canary_id=pk) for pk in missing], ignore_conflicts=True)
        watches.update({w.canary_id: w for w in CanaryWatch.objects.select_for_update().filter(canary_id__in=missing)})
    return watches


def _save_watches(watches: list[CanaryWatch], *, rebased: list[CanaryWatch]) -> None:
    """Write the watch rows' fields, and the stage's fields of those `rebased`, each set with one
    prepared UPDATE run for every row (executemany): what `save()` per row writes, without
    building a statement per row."""
    _update_each(watches, _WATCH_FIELDS)
    _update_each(rebased, _WATCH_STAGE_FIELDS)


def _update_each(watches: list[CanaryWatch], names: list[str]) -> None:
    if not watches:
        return
    meta = CanaryWatch._meta
    fields = [meta.get_field(name) for name in names]
    qn = connection.ops.quote_name
    sql = (f"UPDATE {qn(meta.db_table)} SET {', '.join(f'{qn(f.column)} = %s' for f in fields)} "
           f"WHERE {qn(meta.pk.column)} = %s")
    rows = [[f.get_db_prep_save(f.pre_save(w, False), connection) for f in fields] + [w.pk] for w in watches]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _reconcile(evaluated: list[tuple[Any, Evaluation]], latest: dict[int, Evaluation], *, now: datetime) -> None:
    """canary_reconcile for the evaluated canaries whose state or hold reason it would change:
    decided on their rows as they are now (read and locked in one query) and the latest
    evaluation of their stage; only those go through the locked service."""
    from releases.lifecycle import canary_reconcile, reconcile_needed
    from releases.models import Canary

    if not evaluated:
        return
    fresh = {c.pk: c for c in Canary.objects.select_for_update().filter(
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
            if not reconcile_needed(current, now=now, evaluation=newest):
                continue
        try:
            with transaction.atomic():
                canary_reconcile(canary_id=canary.pk, now=now)
        except Exception:
            logger.exception("reconciliation of canary %s failed", canary.pk)


def _target(canary: Any) -> Target:
    seg = canary.segmentation or {}
    segments = None if seg.get("strategy", "random") == "random" else tuple(str(v) for v in seg.get("values", []))
    return Target(
        canary_id=canary.pk, model=canary.model.name, version=canary.version.version,
        baseline=canary.baseline.version, segments=segments,
        stage_since=canary.stage_entered_at or canary.initiated_at,
        queries=dict((canary.version.metrics or {}).get("queries") or {}),
    )


def evaluate_canary(canary: Any, reading: Reading, *, now: datetime) -> CanaryOutcome:
    """Decide for one canary and store the outcome. Safe to repeat for the same `now`: the
    evaluation is unique per window and a rollback is queued only with a new record. (The tick
    does the same for every canary of a round, with the writes of the round together.)"""
    from releases.lifecycle import canary_reconcile

    now = now.replace(microsecond=0)
    with transaction.atomic():
        watch = CanaryWatch.objects.select_for_update().filter(canary_id=canary.pk).first() or \
            CanaryWatch.objects.create(canary_id=canary.pk)
        judged = _judge(canary, reading, now=now, watch=watch, earlier=_earlier([canary.pk], now=now).get(canary.pk))
        if not _evaluation_insert(judged.evaluation):
            # This window was judged already (a second worker, a retried task): nothing more to do.
            return CanaryOutcome(canary.pk, judged.evaluation.verdict, duplicate=True)
        outcome = _judged_recorded(judged, now=now)
        NotificationEvent.objects.bulk_create(_warn(watch, canary, judged.decision, judged.evaluation, now=now))
        watch.save()
    if not outcome.rollback:
        canary_reconcile(canary_id=canary.pk, now=now)
    return outcome


def _earlier(canary_ids: list[int], *, now: datetime) -> dict[int, EarlierWindow]:
    return earlier_windows(canary_ids, now=now, window_s=settings.EVALUATION_WINDOW_S,
                           cadence_s=settings.EVALUATION_CADENCE_S)


def _judge(canary: Any, reading: Reading, *, now: datetime, watch: CanaryWatch,
           earlier: EarlierWindow | None = None) -> _Judged:
    """The decision for one canary and its evaluation record, unsaved. Reads no database; sets
    the watch's stage baseline on the first look at a stage (saved only with a new record).
    `earlier` is the window before this one, whose errors the rollback rule pools with these."""
    window_s = settings.EVALUATION_WINDOW_S
    baseline = watch.stage_baseline
    stage = _stage_numbers(watch, canary, reading)
    errors = watch.consecutive_errors + 1 if reading.error else 0
    stage_since = canary.stage_entered_at or canary.initiated_at
    decision = evaluator.decide(
        thresholds=canary.thresholds, window=reading.window, stage=stage, now=now,
        staleness_limit_s=settings.STALENESS_LIMIT_S, traffic_percent=canary.traffic_percent,
        random_split=(canary.segmentation or {}).get("strategy", "random") == "random",
        stage_elapsed_s=max((now - stage_since).total_seconds(), 1.0),
        source_error=reading.error, consecutive_errors=errors,
        earlier=earlier.samples if earlier else None,
    )
    pooled = {"pooled_with": earlier.reference()} if earlier and "rollback_window" in decision.inputs else {}
    inputs = normalise_json({
        "source": reading.source, "queries": reading.queries, "window_s": window_s,
        "raw": {"window": _dump(reading.window), "stage": _dump(stage)},
        **decision.inputs, "rollback_triggers": [t.to_dict() for t in decision.rollback],
        "warnings": [t.to_dict() for t in decision.warnings], **pooled,
    })
    gates = normalise_json([g.to_dict() for g in decision.gates])
    window_start = now - timedelta(seconds=window_s)
    evaluation = Evaluation(
        canary_id=canary.pk, stage_index=canary.stage_index, window_start=window_start, window_end=now,
        gates=gates, verdict=decision.verdict.value, inputs=inputs,
        content_hash=evaluation_hash(
            canary_id=canary.pk, stage_index=canary.stage_index, window_start=window_start,
            window_end=now, gates=gates, verdict=decision.verdict.value, inputs=inputs, normalised=True,
        ),
    )
    return _Judged(canary, watch, reading, decision, errors, evaluation, rebased=watch.stage_baseline is not baseline)


def _judged_recorded(judged: _Judged, *, now: datetime) -> CanaryOutcome:
    """What follows a newly stored evaluation: the watch row's fields (the caller saves it) and,
    when the decision is a rollback, the rollback queued for when the transaction commits."""
    watch, decision, evaluation = judged.watch, judged.decision, judged.evaluation
    watch.consecutive_errors = judged.errors
    watch.last_error = (judged.reading.error or "")[:1000]
    watch.last_evaluated_at = now
    rollback = decision.rollback_reason if (decision.rollback or decision.fail_closed) else ""
    if rollback:
        from monitoring.tasks import rollback_canary

        canary_id, evaluation_id = judged.canary.pk, evaluation.pk
        reason = f"automatic: {rollback}"[:1000]
        # Its own queue: a backlog of evaluations never delays a rollback.
        transaction.on_commit(lambda: rollback_canary.apply_async(
            args=[canary_id, evaluation_id, reason], queue="rollbacks"))
    return CanaryOutcome(judged.canary.pk, decision.verdict.value, rollback=rollback, evaluation_id=evaluation.pk,
                         evaluation=evaluation)


def _stage_numbers(watch: CanaryWatch, canary: Any, reading: Reading) -> dict[str, Sample] | None:
    """Stage-so-far numbers: given by the provider, or cumulative counters less the readings
    taken when the stage began (stored on the watch; re-taken when the stage changes)."""
    if reading.error or reading.window is None:
        return None
    if reading.stage is not None:
        stage = reading.stage
    elif reading.totals is not None:
        if watch.stage_index != canary.stage_index or not watch.stage_baseline:
            # First look at this stage: its counters start here (the stage is undercounted by at
            # most one cadence, rather than charged with the previous stage's traffic).
            base = reading.totals
            watch.stage_index = canary.stage_index
            watch.stage_baseline = normalise_json({role: s.to_dict() for role, s in base.items()})
        base_samples = {role: Sample.from_dict(v) for role, v in watch.stage_baseline.items()}
        stage = {role: reading.totals[role].minus(base_samples[role]) for role in reading.totals}
    else:
        stage = dict(reading.window)
    for role, values in reading.stage_overrides.items():
        for name, value in values.items():
            setattr(stage[role], name, value)
            if name == "latency_p99_s":
                stage[role].latency_buckets = None
    return stage


def _dump(pair: dict[str, Sample] | None) -> dict[str, Any] | None:
    return {role: s.to_dict() for role, s in pair.items()} if pair else None


def _warn(watch: CanaryWatch, canary: Any, decision: evaluator.Decision, evaluation: Evaluation, *,
          now: datetime) -> list[NotificationEvent]:
    """The early warnings of a new evaluation, at most one per metric per WARNING_REPEAT, as
    outbox events for the caller to store; noted on the watch row."""
    events = []
    for warning in decision.warnings:
        last = watch.warned.get(warning.metric)
        if last and now - datetime.fromisoformat(last) < WARNING_REPEAT:
            continue
        events.append(NotificationEvent(
            kind="early_warning", canary=canary, audience=["owner", "on_call"],
            payload={"metric": warning.metric, "value": warning.value, "rollback_threshold": warning.limit,
                     "detail": warning.detail, "evaluation": evaluation.pk, "stage_index": canary.stage_index},
        ))
        watch.warned = {**watch.warned, warning.metric: now.isoformat()}
    return events


# --- heartbeat and the dead-man's switch -----------------------------------------------------------


def heartbeat_beat(*, now: datetime, duration_ms: float, canaries: int, queries: int) -> None:
    Heartbeat.objects.get_or_create(pk=1)
    from django.db.models import F

    Heartbeat.objects.filter(pk=1).update(
        last_tick_at=now, last_tick_ms=duration_ms, last_tick_canaries=canaries, last_tick_queries=queries,
        ticks=F("ticks") + 1,
    )


def deadman_check(*, now: datetime | None = None) -> str:
    """The independent check: with a serving canary and no heartbeat for DEADMAN_LIMIT_S, raise a
    P1 incident (once) and suspend every serving canary's advancement; when ticks return, lift
    the suspension. Rollback stays possible throughout (a suspended canary can be rolled back)."""
    from governance.incidents import incident_open
    from governance.models import Incident
    from releases import lifecycle
    from releases.models import Canary

    now = now or timezone.now()
    limit = timedelta(seconds=settings.DEADMAN_LIMIT_S)
    with transaction.atomic():
        beat, _ = Heartbeat.objects.select_for_update().get_or_create(pk=1)
        serving = Canary.objects.filter(state__in=_serving_states())
        oldest = serving.order_by("initiated_at").values_list("initiated_at", flat=True).first()
        if oldest is None and beat.tripped_at is None:
            return "idle"
        # Never beaten: silent since the oldest serving canary began (it was never watched).
        reference = beat.last_tick_at or oldest
        silent = oldest is not None and reference is not None and now - reference > limit
        if silent:
            if beat.tripped_at is None:
                beat.tripped_at = now
                beat.incident = incident_open(
                    severity=Incident.Severity.P1, kind=Incident.Kind.MONITOR_SILENT,
                    summary=f"Evaluator heartbeat missing for {(now - reference).total_seconds():.0f} s "
                            f"(limit {settings.DEADMAN_LIMIT_S} s) with canaries serving: advancement suspended",
                    details={"last_tick_at": beat.last_tick_at.isoformat() if beat.last_tick_at else None,
                             "limit_s": settings.DEADMAN_LIMIT_S}, now=now,
                )
                beat.save(update_fields=["tripped_at", "incident"])
            for canary_id in serving.exclude(state=Canary.State.SUSPENDED).values_list("pk", flat=True):
                lifecycle.canary_suspend(canary_id=canary_id, reason="evaluator heartbeat missing (dead-man's switch)")
            return "tripped"
        if beat.tripped_at is not None:
            for canary_id in serving.filter(state=Canary.State.SUSPENDED).values_list("pk", flat=True):
                lifecycle.canary_resume(canary_id=canary_id, reason="evaluator heartbeat back", now=now)
            audit_append(actor=None, action="monitor.recovered", object_type="heartbeat", object_id=1,
                         payload={"tripped_at": beat.tripped_at.isoformat(), "recovered_at": now.isoformat(),
                                  "incident": beat.incident_id})
            beat.tripped_at = None
            beat.save(update_fields=["tripped_at"])
            return "lifted"
    return "ok"


# --- observations and retention -------------------------------------------------------------------


def observation_record(*, actor: Any, data: dict[str, Any]) -> Observation:
    """Store one pushed window. The caller must be allowed to push for the model."""
    from canaryhub.errors import NotFound, ValidationFailed
    from governance.permissions import Action, require
    from releases.models import AIModel

    model = AIModel.objects.filter(name=data["model"]).first()
    if model is None:
        raise NotFound(f"no model named {data['model']!r}")
    require(actor, Action.PUSH_OBSERVATIONS, model=model)
    if not model.versions.filter(version=data["version"]).exists():
        raise ValidationFailed.field("version", f"{model.name} has no version {data['version']!r}")
    if data["window_end"] <= data["window_start"]:
        raise ValidationFailed.field("window_end", "must be after window_start")
    if data.get("errors", 0) > data["requests"]:
        raise ValidationFailed.field("errors", "must not exceed requests")
    if data.get("quality_count", 0) and data.get("quality_sum", 0) > data["quality_count"]:
        raise ValidationFailed.field("quality_sum", "scores are in [0, 1]: the sum cannot exceed the count")
    return Observation.objects.create(**data)


def evaluations_prune(*, now: datetime | None = None) -> int:
    """Delete evaluations older than the retention period after their canary ended. Never of a
    canary still active (ended_at is only set when it ends), and never one an approval or an
    incident points at (those are evidence with their own retention)."""
    from governance.models import Approval, Incident
    from releases.models import Canary

    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.EVALUATION_RETENTION_DAYS)
    qs = (
        Evaluation.objects.filter(canary__ended_at__lt=cutoff)
        .exclude(canary__state__in=Canary.ACTIVE_STATES)
        .exclude(pk__in=Approval.objects.filter(evaluation__isnull=False).values("evaluation"))
        .exclude(pk__in=Incident.objects.filter(evaluation__isnull=False).values("evaluation"))
    )
    deleted, _ = qs.delete()
    return deleted
