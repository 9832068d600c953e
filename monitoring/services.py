"""The monitor's writes: judging windows and storing the verdicts, its own memory of each watched
canary, the heartbeat, pushed observations, and the notification outbox.

Monitoring judges and stores; it never changes a canary. The control loop
(releases.canaries.loop) hands it what to judge as `Subject` values — the canary's frozen
thresholds and where it stands, plain data — and acts on the decisions it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Value
from django.utils import timezone
from prometheus_client import Counter

from canaryhub.canonical import normalise_json
from canaryhub.errors import ValidationFailed
from canaryhub.metrics import REGISTRY
from governance.audit.services import audit_append
from governance.incidents.models import Incident
from governance.incidents.services import incident_open
from monitoring import evaluator
from monitoring.custom import observation_custom_problem
from monitoring.evaluations import evaluation_hash
from monitoring.history import EarlierWindow, earlier_windows
from monitoring.models import (
    CanaryWatch,
    Evaluation,
    Heartbeat,
    NotificationEvent,
    Observation,
    RollbackDecision,
    SloHistogram,
    SloMeasurement,
)
from monitoring.notifications.services import notification_record
from monitoring.providers import Provider, provider_for
from monitoring.samples import Reading, Sample, Target

logger = logging.getLogger(__name__)

WARNING_REPEAT = timedelta(hours=1)  # an early warning per metric per canary at most hourly
SEGMENTS_KEY = "segments"  # the segments' counters in a watch's stage baseline, beside the roles'
NO_SEGMENT = "(none)"  # series without a segment label, when others have one


@dataclass(frozen=True)
class Subject:
    """One canary as the monitor judges it: what to read (`target`, through `provider`) and the
    frozen rules and position the verdict depends on."""

    canary_id: int
    stage_index: int
    thresholds: dict[str, Any]
    traffic_percent: int
    random_split: bool
    stage_since: datetime
    provider: str
    target: Target


@dataclass
class Judged:
    """One canary's decision and its evaluation, built but not yet stored."""

    subject: Subject
    watch: CanaryWatch
    reading: Reading
    decision: evaluator.Decision
    errors: int  # consecutive source errors, this one included
    evaluation: Evaluation
    rebased: bool  # the stage's counters were re-taken (a new stage): the watch's stage fields changed


# --- reading ----------------------------------------------------------------------------------------


def default_provider() -> str:
    return "prometheus" if settings.PROMETHEUS_URL else "push"


def read_metrics(subjects: list[Subject], *, now: datetime,
                 providers: dict[str, Provider] | None = None) -> tuple[dict[int, Reading], int]:
    """Every subject's reading, with one fetch per provider for all its subjects; and the number
    of queries that cost. `providers` lends provider objects (tests, the bench)."""
    groups: dict[str, list[Target]] = {}
    for subject in subjects:
        groups.setdefault(subject.provider, []).append(subject.target)
    providers = dict(providers or {})
    readings: dict[int, Reading] = {}
    queries = 0
    for name, targets in groups.items():
        if name == "prometheus" and "prometheus" not in providers and not settings.PROMETHEUS_URL:
            for t in targets:
                readings[t.canary_id] = Reading(error="provider prometheus: PROMETHEUS_URL is not configured")
            continue
        provider = providers.setdefault(name, provider_for(name))
        before = provider.query_count
        readings.update(provider.fetch(targets, now=now, window_s=settings.EVALUATION_WINDOW_S))
        queries += provider.query_count - before
    return readings, queries


def read_counts(subjects: list[Subject], *, now: datetime,
                providers: dict[str, Provider] | None = None) -> tuple[dict[int, Reading], int]:
    """The rollback watch's read: every subject's requests and errors only, with one count read
    per provider for all its subjects (`fetch_counts`: on Prometheus one query, whatever the
    number of canaries and segments); and the number of queries that cost. A provider without a
    count read is read in full."""
    groups: dict[str, list[Target]] = {}
    for subject in subjects:
        groups.setdefault(subject.provider, []).append(subject.target)
    providers = dict(providers or {})
    readings: dict[int, Reading] = {}
    queries = 0
    for name, targets in groups.items():
        if name == "prometheus" and "prometheus" not in providers and not settings.PROMETHEUS_URL:
            for t in targets:
                readings[t.canary_id] = Reading(error="provider prometheus: PROMETHEUS_URL is not configured")
            continue
        provider = providers.setdefault(name, provider_for(name))
        before = provider.query_count
        read = getattr(provider, "fetch_counts", provider.fetch)
        readings.update(read(targets, now=now, window_s=settings.EVALUATION_WINDOW_S))
        queries += provider.query_count - before
    return readings, queries


def earlier(canary_ids: list[int], *, now: datetime) -> dict[int, EarlierWindow]:
    """Each canary's window before the one ending `now`, read back from its stored evaluation."""
    return earlier_windows(canary_ids, now=now, window_s=settings.EVALUATION_WINDOW_S,
                           cadence_s=settings.EVALUATION_CADENCE_S)


# --- judging ----------------------------------------------------------------------------------------


def judge(subject: Subject, reading: Reading, *, now: datetime, watch: CanaryWatch,
          earlier: EarlierWindow | None = None) -> Judged:
    """The decision for one canary and its evaluation record, unsaved. Reads no database; sets
    the watch's stage baseline on the first look at a stage (saved only with a new record).
    `earlier` is the window before this one, whose errors the rollback rule pools with these."""
    window_s = settings.EVALUATION_WINDOW_S
    baseline = watch.stage_baseline
    stage = _stage_numbers(watch, subject, reading)
    segments = _segment_numbers(watch, reading)
    errors = watch.consecutive_errors + 1 if reading.error else 0
    decision = evaluator.decide(
        thresholds=subject.thresholds, window=reading.window, stage=stage, now=now,
        staleness_limit_s=settings.STALENESS_LIMIT_S, traffic_percent=subject.traffic_percent,
        random_split=subject.random_split,
        stage_elapsed_s=max((now - subject.stage_since).total_seconds(), 1.0),
        source_error=reading.error, consecutive_errors=errors,
        earlier=earlier.samples if earlier else None, segments=segments,
        stage_index=subject.stage_index, sequential=watch.sequential, custom=subject.target.custom,
    )
    if decision.sequential is not None:
        watch.sequential = decision.sequential
    pooled = {"pooled_with": earlier.reference()} if earlier and "rollback_window" in decision.inputs else {}
    inputs = normalise_json({
        "source": reading.source, "queries": reading.queries, "window_s": window_s,
        "raw": {"window": _dump(reading.window), "stage": _dump(stage)},
        **decision.inputs, "rollback_triggers": [t.to_dict() for t in decision.rollback],
        "warnings": [t.to_dict() for t in decision.warnings], **pooled,
    })
    gates = normalise_json([g.to_dict() for g in decision.gates])
    window_start = _window_start(reading, now=now, window_s=window_s)
    evaluation = Evaluation(
        canary_id=subject.canary_id, stage_index=subject.stage_index, window_start=window_start, window_end=now,
        gates=gates, verdict=decision.verdict.value, inputs=inputs,
        content_hash=evaluation_hash(
            canary_id=subject.canary_id, stage_index=subject.stage_index, window_start=window_start,
            window_end=now, gates=gates, verdict=decision.verdict.value, inputs=inputs, normalised=True,
        ),
    )
    return Judged(subject, watch, reading, decision, errors, evaluation, rebased=watch.stage_baseline is not baseline)


def watch_look(subject: Subject, reading: Reading, *, now: datetime, watch: CanaryWatch) -> evaluator.Trigger | None:
    """The rollback watch's look at one canary between two evaluations
    (monitoring.evaluator.watch_trigger): the error-rate test of the canary as a whole and, when
    its evaluations judge two or more segments, of each segment, on the stage's counts now (the
    provider's stage numbers, or its cumulative counters less the stage's baseline on the watch
    row), from the memory the stage's last evaluation left there. Reads and writes nothing else;
    None when there is nothing to judge (no evaluation of this stage yet, a source error).

    The counts may be of any age: a rejection on them is a rejection on requests really served,
    and Ville's inequality holds at every moment, so no staleness limit applies here (a source
    that stopped reporting brings no new evidence; evaluations judge staleness). Counts that went
    backwards (a model server restarted: below the stage's baseline, or below the memory's) are
    not judged: the next evaluation reads the stage again."""
    memory = watch.sequential or {}
    if reading.error or memory.get("stage_index") != subject.stage_index:
        return None
    stage: dict[str, Sample] | None
    segments: dict[str, dict[str, Sample]] = {}
    if reading.stage is not None:
        stage = dict(reading.stage)
        for seg, pair in (reading.segments_stage or {}).items():
            segments[seg or NO_SEGMENT] = pair
    elif reading.totals is not None and watch.stage_index == subject.stage_index and watch.stage_baseline:
        baseline = watch.stage_baseline
        stage = {}
        for role, total in reading.totals.items():
            since = _counted_since(total, baseline.get(role))
            if since is None:
                stage = None
                break
            stage[role] = since
        base_segments = baseline.get(SEGMENTS_KEY) or {}
        for seg, pair in (reading.segments_totals or {}).items():
            counted = {role: _counted_since(total, (base_segments.get(seg) or {}).get(role, {}))
                       for role, total in pair.items()}
            if all(v is not None for v in counted.values()):
                segments[seg or NO_SEGMENT] = counted  # type: ignore[assignment]
    else:
        return None
    if stage is not None:
        for role, values in reading.stage_overrides.items():
            for name, value in values.items():
                if role in stage and name in ("requests", "errors"):
                    setattr(stage[role], name, value)
    return evaluator.watch_trigger(subject.thresholds, stage, memory, subject.stage_index, segments=segments)


def _counted_since(total: Sample, base: dict[str, Any] | None) -> Sample | None:
    """Requests and errors since the stage's baseline (a segment with none started at zero);
    None when either went backwards."""
    if base is None:
        return None
    earlier = Sample.from_dict(base) if base else Sample()
    if total.requests < earlier.requests or total.errors < earlier.errors:
        return None
    return Sample(present=total.present, requests=total.requests - earlier.requests,
                  errors=total.errors - earlier.errors)


def judge_watch(subject: Subject, reading: Reading, *, now: datetime, watch: CanaryWatch,
                baseline: dict[str, Any]) -> Judged:
    """After 100 %: the decision of the post-promotion watch for one completed canary and its
    evaluation record, unsaved (monitoring.evaluator.decide_watch). `baseline` is the previous
    version's numbers from the canary's last stages (a Sample as a dict)."""
    window_s = settings.EVALUATION_WINDOW_S
    errors = watch.consecutive_errors + 1 if reading.error else 0
    decision = evaluator.decide_watch(
        thresholds=subject.thresholds, window=reading.window, baseline=Sample.from_dict(baseline), now=now,
        staleness_limit_s=settings.STALENESS_LIMIT_S, source_error=reading.error,
    )
    inputs = normalise_json({
        "source": reading.source, "queries": reading.queries, "window_s": window_s,
        "raw": {"window": _dump(reading.window)}, **decision.inputs,
        "rollback_triggers": [t.to_dict() for t in decision.rollback],
    })
    gates = normalise_json([g.to_dict() for g in decision.gates])
    window_start = _window_start(reading, now=now, window_s=window_s)
    evaluation = Evaluation(
        canary_id=subject.canary_id, stage_index=subject.stage_index, window_start=window_start, window_end=now,
        gates=gates, verdict=decision.verdict.value, inputs=inputs,
        content_hash=evaluation_hash(
            canary_id=subject.canary_id, stage_index=subject.stage_index, window_start=window_start,
            window_end=now, gates=gates, verdict=decision.verdict.value, inputs=inputs, normalised=True,
        ),
    )
    return Judged(subject, watch, reading, decision, errors, evaluation, rebased=False)


def _window_start(reading: Reading, *, now: datetime, window_s: int) -> datetime:
    """Where the evaluated window begins: the evaluation window before `now`, or the stage's start
    when the provider counted only the stage's part of it (a stage's first windows)."""
    full = now - timedelta(seconds=window_s)
    if reading.error is None and reading.window_start is not None:
        return max(full, reading.window_start)
    return full


def judged_recorded(judged: Judged, *, now: datetime) -> None:
    """The watch row's fields after its new evaluation was stored (the caller saves the row)."""
    watch = judged.watch
    watch.consecutive_errors = judged.errors
    watch.last_error = (judged.reading.error or "")[:1000]
    watch.last_evaluated_at = now


def _stage_numbers(watch: CanaryWatch, subject: Subject, reading: Reading) -> dict[str, Sample] | None:
    """Stage-so-far numbers: given by the provider, or cumulative counters less the readings
    taken when the stage began (stored on the watch; re-taken when the stage changes)."""
    if reading.error or reading.window is None:
        return None
    if reading.stage is not None:
        stage = reading.stage
    elif reading.totals is not None:
        if watch.stage_index != subject.stage_index or not watch.stage_baseline:
            # First look at this stage: its counters start here (the stage is undercounted by at
            # most one cadence, rather than charged with the previous stage's traffic).
            base = reading.totals
            watch.stage_index = subject.stage_index
            watch.stage_baseline = normalise_json({
                **{role: s.to_dict() for role, s in base.items()},
                SEGMENTS_KEY: {seg: {role: s.to_dict() for role, s in pair.items()}
                               for seg, pair in (reading.segments_totals or {}).items()},
            })
        base_samples = {role: Sample.from_dict(v) for role, v in watch.stage_baseline.items() if role != SEGMENTS_KEY}
        stage = {role: reading.totals[role].minus(base_samples[role]) for role in reading.totals}
    else:
        stage = dict(reading.window)
    for role, values in reading.stage_overrides.items():
        for name, value in values.items():
            setattr(stage[role], name, value)
            if name == "latency_p99_s":
                stage[role].latency_buckets = None
    _stage_alerts(watch, subject, stage, reading.window)
    return stage


def _segment_numbers(watch: CanaryWatch, reading: Reading) -> dict[str, dict[str, dict[str, Sample]]] | None:
    """Each segment's window and stage-so-far numbers, canary and production, for the segments
    both versions carry: {segment: {"window": {...}, "stage": {...}}}. Cumulative counters less
    those taken at the stage's first look (a segment first seen since then started at zero)."""
    if reading.error or not reading.segments_window:
        return None
    if reading.segments_stage is not None:
        stages = reading.segments_stage
    elif reading.segments_totals is not None:
        base = (watch.stage_baseline or {}).get(SEGMENTS_KEY) or {}
        stages = {seg: {role: s.minus(Sample.from_dict(base[seg][role])) if role in base.get(seg, {}) else s
                        for role, s in pair.items()} for seg, pair in reading.segments_totals.items()}
    else:
        stages = reading.segments_window
    out = {}
    for seg, window in reading.segments_window.items():
        stage = stages.get(seg, {})
        if {"canary", "production"} <= window.keys() and {"canary", "production"} <= stage.keys():
            out[seg or NO_SEGMENT] = {"window": window, "stage": stage}
    return out


def _stage_alerts(watch: CanaryWatch, subject: Subject, stage: dict[str, Sample], window: dict[str, Sample]) -> None:
    """The canary's anomaly alerts over the stage: the most seen at once at any look since the
    stage began (remembered on the watch), not only those firing now. Each look covers the whole
    window behind it (the Prometheus query takes the alerts firing at any time in the window), and
    windows overlap from one look to the next: an alert that fired and cleared in between counts."""
    seen = watch.stage_alerts if (watch.stage_alerts or {}).get("stage_index") == subject.stage_index else {}
    now_firing = max(window["canary"].anomaly_alerts, stage["canary"].anomaly_alerts)
    before = float(seen.get("alerts", 0))
    if now_firing > before or not seen:
        watch.stage_alerts = {"stage_index": subject.stage_index, "alerts": max(now_firing, before),
                              "first_seen": seen.get("first_seen") or (
                                  window["canary"].last_seen.isoformat()
                                  if now_firing and window["canary"].last_seen else None)}
    stage["canary"].anomaly_alerts = max(now_firing, before)


def _dump(pair: dict[str, Sample] | None) -> dict[str, Any] | None:
    return {role: s.to_dict() for role, s in pair.items()} if pair else None


def warnings_for(judged: Judged, *, now: datetime) -> list[NotificationEvent]:
    """The early warnings of a new evaluation, at most one per metric per WARNING_REPEAT, and the
    owner's notice of a quality metric gap (monitoring.evaluator.metric_gap), as often, as outbox
    rows for the caller to store; noted on the watch row."""
    watch, decision, evaluation = judged.watch, judged.decision, judged.evaluation
    events = []
    for warning in decision.warnings:
        last = watch.warned.get(warning.metric)
        if last and now - datetime.fromisoformat(last) < WARNING_REPEAT:
            continue
        events.append(NotificationEvent(
            kind="early_warning", canary_id=judged.subject.canary_id,
            payload={"metric": warning.metric, "value": warning.value, "rollback_threshold": warning.limit,
                     "detail": warning.detail, "evaluation": evaluation.pk, "stage_index": judged.subject.stage_index},
        ))
        watch.warned = {**watch.warned, warning.metric: now.isoformat()}
    gap = evaluator.metric_gap(decision.inputs)
    last = watch.warned.get("metric_gap")
    if gap and not (last and now - datetime.fromisoformat(last) < WARNING_REPEAT):
        events.append(NotificationEvent(
            kind="metric_gap", canary_id=judged.subject.canary_id,
            payload={"metric": "quality", "detail": gap, "evaluation": evaluation.pk,
                     "stage_index": judged.subject.stage_index},
        ))
        watch.warned = {**watch.warned, "metric_gap": now.isoformat()}
    return events


# --- storing ----------------------------------------------------------------------------------------

_window_key = attrgetter("canary_id", "stage_index", "window_start", "window_end")  # evaluation_once_per_window


def _windows_stored(evaluations: list[Evaluation]) -> set[tuple[int, int, datetime, datetime]]:
    """The windows of these evaluations that are stored already (one query)."""
    return set(Evaluation.objects.filter(
        canary_id__in=[e.canary_id for e in evaluations], window_end__in={e.window_end for e in evaluations},
    ).values_list("canary_id", "stage_index", "window_start", "window_end"))


def evaluations_store(evaluations: list[Evaluation]) -> tuple[list[Evaluation], list[Evaluation]]:
    """Store a round's evaluations together: (those this call inserted, the duplicates). A
    duplicate judges a window judged already (the unique constraint `evaluation_once_per_window`);
    an evaluation the database refuses for another reason is in neither list (and logged).

    The windows stored already are read first and left out, the rest inserted in one statement
    (a few on SQLite). If that insert still fails (another worker committed some of the windows
    after the read), the round falls back to one insert per evaluation, each in its own savepoint:
    either way each window is stored once, and only its inserter acts on its decision."""
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
            (inserted if evaluation_insert(e) else duplicates).append(e)
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


def evaluation_insert(evaluation: Evaluation) -> bool:
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
_WATCH_FIELDS = ["consecutive_errors", "last_error", "last_evaluated_at", "warned", "stage_alerts", "sequential"]
_WATCH_STAGE_FIELDS = ["stage_index", "stage_baseline"]


def watches_lock(canary_ids: list[int]) -> dict[int, CanaryWatch]:
    """Every canary's watch row, locked (one query), the missing ones created (one more)."""
    watches = {w.canary_id: w for w in CanaryWatch.objects.select_for_update().filter(canary_id__in=canary_ids)}
    missing = [pk for pk in canary_ids if pk not in watches]
    if missing:
        CanaryWatch.objects.bulk_create([CanaryWatch(canary_id=pk) for pk in missing], ignore_conflicts=True)
        watches.update({w.canary_id: w for w in CanaryWatch.objects.select_for_update().filter(canary_id__in=missing)})
    return watches


def watches_save(watches: list[CanaryWatch], *, rebased: list[CanaryWatch]) -> None:
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


# --- heartbeat --------------------------------------------------------------------------------------


def heartbeat_beat(*, now: datetime, duration_ms: float, canaries: int, queries: int) -> None:
    """Record a completed round. A round that ends a silence longer than the dead-man's limit
    records the outage (`monitor.outage` in the audit trail), whether or not a check saw it
    while it lasted: a gap never leaves no trace."""
    beat, _ = Heartbeat.objects.get_or_create(pk=1)
    silent_s = (now - beat.last_tick_at).total_seconds() if beat.last_tick_at else 0.0
    if silent_s > settings.DEADMAN_LIMIT_S:
        logger.warning("evaluator silent for %.0f s (limit %s s) until %s", silent_s, settings.DEADMAN_LIMIT_S, now)
        audit_append(actor=None, action="monitor.outage", object_type="heartbeat", object_id=1, payload={
            "silent_from": beat.last_tick_at.isoformat(), "silent_until": now.isoformat(),
            "silent_s": round(silent_s, 1), "limit_s": settings.DEADMAN_LIMIT_S,
            "switch_tripped_at": beat.tripped_at.isoformat() if beat.tripped_at else None,
            "incident": beat.incident_id if beat.tripped_at else None,
        })
    Heartbeat.objects.filter(pk=1).update(
        last_tick_at=now, last_tick_ms=duration_ms, last_tick_canaries=canaries, last_tick_queries=queries,
        ticks=F("ticks") + 1,
    )


# --- rollback decisions -----------------------------------------------------------------------------


def rollback_decision_record(*, canary_id: int, evaluation_id: int | None, reason: str,
                             now: datetime) -> RollbackDecision:
    """Record a decided rollback in the caller's (the evaluation's) transaction: the durable
    decision a sweeper re-drives if its queued message is lost. A decision still pending for the
    canary is kept (the first decision is the one the rollback SLO runs from)."""
    pending = RollbackDecision.objects.filter(canary_id=canary_id, done_at__isnull=True).first()
    if pending is not None:
        return pending
    try:
        with transaction.atomic():
            return RollbackDecision.objects.create(canary_id=canary_id, evaluation_id=evaluation_id,
                                                   reason=reason[:1000], decided_at=now)
    except IntegrityError:  # another round recorded it meanwhile
        return RollbackDecision.objects.get(canary_id=canary_id, done_at__isnull=True)


def rollback_decisions_close(*, canary_id: int, outcome: str, executed_by: str, now: datetime) -> int:
    """Close the canary's pending decisions, in the transaction of the rollback that carried them
    out (or found nothing left to do). Locked first: two executors serialise on the rows."""
    pending = list(RollbackDecision.objects.select_for_update().filter(canary_id=canary_id, done_at__isnull=True))
    for decision in pending:
        decision.done_at, decision.outcome, decision.executed_by = now, outcome[:300], executed_by
        decision.save(update_fields=["done_at", "outcome", "executed_by"])
    return len(pending)


def rollback_decisions_pending(*, decided_before: datetime) -> list[RollbackDecision]:
    """Pending decisions made before `decided_before`, oldest first (the sweeper's work)."""
    return list(RollbackDecision.objects.filter(done_at__isnull=True, decided_at__lte=decided_before)
                .order_by("decided_at", "pk"))


@dataclass(frozen=True)
class PendingRollbacks:
    count: int
    oldest_age_s: float  # 0 with none pending


def rollbacks_pending_summary(*, now: datetime) -> PendingRollbacks:
    """How many decided rollbacks are not carried out yet, and the age of the oldest (/metrics, /readyz)."""
    qs = RollbackDecision.objects.filter(done_at__isnull=True)
    oldest = qs.order_by("decided_at").values_list("decided_at", flat=True).first()
    return PendingRollbacks(qs.count(), max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)


def rollback_overdue_alarm(decision: RollbackDecision, *, now: datetime, slo_s: float) -> Incident | None:
    """A decided rollback still pending past its SLO: the P1 that pages on-call (once per decision)."""
    with transaction.atomic():
        locked = RollbackDecision.objects.select_for_update().filter(pk=decision.pk, alarmed_at__isnull=True).first()
        if locked is None:
            return None
        age = (now - locked.decided_at).total_seconds()
        incident = incident_raise(
            severity=Incident.Severity.P1, kind=Incident.Kind.ROLLBACK_UNCONFIRMED, canary_id=locked.canary_id,
            summary=f"Rollback of canary #{locked.canary_id} decided {age:.0f} s ago is not carried out "
                    f"(SLO {slo_s:.0f} s): {locked.reason[:300]}",
            details={"decision": locked.pk, "evaluation": locked.evaluation_id,
                     "decided_at": locked.decided_at.isoformat(), "slo_s": slo_s}, now=now,
        )
        locked.alarmed_at = now
        locked.save(update_fields=["alarmed_at"])
    return incident


# --- observations -----------------------------------------------------------------------------------


# Bounds of one pushed window (the API's fields carry them too).
MAX_COUNT = 10**12  # requests, errors, scored requests, violations, alerts, bucket counts
MAX_TOKENS = 10**15
MAX_LATENCY_MS = 3_600_000.0  # an hour
MAX_COST_USD = 1e9
MAX_BUCKETS = 64

OBSERVATIONS_REFUSED = Counter(
    "canaryhub_observations_refused_total", "Pushed metric windows refused as invalid or implausible, by field",
    ["field"], registry=REGISTRY,
)


def count_refused(field: str) -> None:
    OBSERVATIONS_REFUSED.labels(field=str(field)[:40]).inc()


def observation_problem(data: dict[str, Any], *, now: datetime) -> tuple[str, str] | None:
    """Why a pushed window is not believable, as (field, message), or None. A window counts in
    every evaluation it overlaps and is never stale while it "ends" in the future, so its times
    must be near now; its counts must fit inside its requests."""
    start, end = data["window_start"], data["window_end"]
    skew = timedelta(seconds=settings.OBSERVATION_CLOCK_SKEW_S)
    if end <= start:
        return "window_end", "must be after window_start"
    if end > now + skew:
        return "window_end", f"is in the future (more than {settings.OBSERVATION_CLOCK_SKEW_S} s of clock skew)"
    if end < now - timedelta(seconds=settings.STALENESS_LIMIT_S):
        return "window_end", f"is older than the staleness limit ({settings.STALENESS_LIMIT_S} s)"
    if (end - start).total_seconds() > settings.EVALUATION_WINDOW_S:
        return "window_start", f"a window lasts at most the evaluation window ({settings.EVALUATION_WINDOW_S} s)"
    requests = data["requests"]
    for field in ("errors", "quality_count", "safety_violations", "anomaly_alerts", "guardrail_blocks",
                  "schema_failures"):
        if data.get(field, 0) > requests:
            return field, "must not exceed requests"
    if data.get("unavailable", 0) > data.get("errors", 0):
        return "unavailable", "unavailable requests are failed requests: must not exceed errors"
    if data.get("quality_count", 0) and data.get("quality_sum", 0) > data["quality_count"]:
        return "quality_sum", "scores are in [0, 1]: the sum cannot exceed the count"
    for field in ("latency_buckets", "quality_buckets", "response_tokens_buckets"):
        buckets = data.get(field) or []
        if len(buckets) > MAX_BUCKETS:
            return field, f"at most {MAX_BUCKETS} buckets"
        if buckets and buckets[-1][1] > requests:
            return field, "the bucket total (the +Inf count) must not exceed requests"
    return observation_custom_problem(data.get("custom"), requests, max_count=MAX_COUNT, max_buckets=MAX_BUCKETS)


def observation_record(*, data: dict[str, Any], now: datetime | None = None) -> Observation:
    """Store one pushed window of a version the caller has checked exists and may be pushed for,
    if it is plausible at `now` (observation_problem); otherwise ValidationFailed naming the field."""
    problem = observation_problem(data, now=now or timezone.now())
    if problem is not None:
        raise ValidationFailed.field(*problem)
    return Observation.objects.create(**data)


def logs_prune(*, now: datetime) -> dict[str, int]:
    """Delete pushed observations (by the end of their window) and notification outbox rows (by
    when they were written) older than their retention (settings: at least 184 days)."""
    observations, _ = Observation.objects.filter(
        window_end__lt=now - timedelta(days=settings.OBSERVATION_RETENTION_DAYS)).delete()
    notifications, _ = NotificationEvent.objects.filter(
        created_at__lt=now - timedelta(days=settings.NOTIFICATION_RETENTION_DAYS)).delete()
    return {"observations": observations, "notifications": notifications}


# --- the notification outbox (monitoring.notifications.services) -----------------------------------

def incident_raise(
    *, severity: str, kind: str, summary: str, canary_id: int | None = None, details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Incident:
    """Open a control-plane (P1) incident and, in the same transaction, the outbox row that pages
    on-call and tells platform engineers."""
    with transaction.atomic():
        incident = incident_open(severity=severity, kind=kind, summary=summary, canary_id=canary_id,
                                 details=details, now=now)
        notification_record(
            kind=f"incident.{kind}", canary_id=canary_id,
            payload={"incident": incident.pk, "severity": severity, "summary": summary, "details": details or {}},
        )
    return incident


# --- SLOs measured (pattern §10.1) -------------------------------------------------------------------

SLO_TARGETS_S = {"rollback": 120.0, "promotion": 1800.0, "staleness": 300.0, "notification": 300.0}
SLO_BUCKETS_S = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def slo_record(*, slo: str, canary_id: int, generation: int, started_at: datetime, finished_at: datetime,
               detail: dict[str, Any] | None = None) -> SloMeasurement | None:
    """Record one measured event (once per canary and generation: None if it was already). A
    breach of the target is audited and told (on-call, platform) in the same transaction."""
    seconds = max((finished_at - started_at).total_seconds(), 0.0)
    target = SLO_TARGETS_S[slo]
    try:
        with transaction.atomic():
            measurement = SloMeasurement.objects.create(
                slo=slo, canary_id=canary_id, generation=generation, started_at=started_at,
                finished_at=finished_at, seconds=seconds, target_s=target, breached=seconds > target,
                detail=normalise_json(detail or {}),
            )
            if measurement.breached:
                record = {"slo": slo, "seconds": round(seconds, 1), "target_s": target, "generation": generation,
                          "started_at": started_at.isoformat(), "finished_at": finished_at.isoformat(),
                          **(detail or {})}
                audit_append(actor=None, action="slo.breached", object_type="canary", object_id=canary_id,
                             payload=record)
                notification_record(kind="slo.breached", canary_id=canary_id, payload=record)
    except IntegrityError:
        return None
    return measurement


def staleness_observe(ages_s: list[float]) -> None:
    """Add a round's data ages (one per evaluation that had data) to the staleness histogram."""
    if not ages_s:
        return
    with transaction.atomic():
        hist, _ = SloHistogram.objects.select_for_update().get_or_create(
            slo="staleness", defaults={"target_s": SLO_TARGETS_S["staleness"]})
        buckets = dict(hist.buckets)
        for le in SLO_BUCKETS_S:
            buckets[str(le)] = buckets.get(str(le), 0) + sum(1 for a in ages_s if a <= le)
        hist.buckets = buckets
        hist.count += len(ages_s)
        hist.total += float(sum(ages_s))
        hist.over_target += sum(1 for a in ages_s if a > hist.target_s)
        hist.save(update_fields=["buckets", "count", "total", "over_target"])
