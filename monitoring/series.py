"""A canary's evaluations as time series, downsampled in the database.

A canary that ran 90 days keeps ~130,000 evaluation windows; a chart on a screen shows a few
hundred points. `evaluation_buckets` groups the windows of a time range into equal time buckets
in ONE aggregate query (its cost does not depend on how many rows a Python loop would have had to
read, and the answer has at most `buckets` rows). Each bucket keeps what a chart needs and what
lets a spike survive the downsampling:

- the canary's and production's request and error counts summed (the bucket's pooled error rate)
  and the highest and lowest single-window error rates (spikes and dips);
- the p99 latency of each side, highest and mean over the bucket's windows;
- quality as the score-weighted mean, and the scored counts;
- content-safety violations summed; warnings, rollback triggers and red verdicts counted;
- the configured traffic percent (mean) and the stage's error-rate difference with its interval,
  as recorded by the error-rate gate (its widest interval in the bucket);
- p50 and p95 latency (mean; p95's highest too), tokens and cost summed with the requests of the
  windows that recorded them (tokens per request, cost per 1,000 requests);
- guardrail blocks, output-schema failures and unavailable requests summed, each with the
  requests of the windows that recorded it (their rates and availability), and the response
  length's p50 and p95 (output tokens per response: mean over the windows that recorded it;
  p95's highest too);
- for the segments asked for (those the latest evaluation judged), each segment's requests and
  errors on both sides and its p99, from `inputs.segments`;
- for the custom metrics asked for (those the canary declares), each side's value weighted by
  its count, from `inputs.custom` (monitoring.custom).

The numbers are read from what the evaluator stored (`Evaluation.inputs`, see
monitoring.evaluator): nothing is recomputed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connections
from django.db.models import Avg, Count, F, FloatField, Func, IntegerField, Max, Min, Q, Sum
from django.db.models.fields.json import KT, KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, NullIf
from django.db.models.sql.datastructures import BaseTable

from monitoring.buckets import Bucket, CustomValue, SegmentCounts, Span
from monitoring.models import Evaluation


class _Bucket(Func):
    """The time bucket of a datetime column: floor((epoch seconds − t0) / width), per vendor."""

    output_field = IntegerField()

    def __init__(self, expression: Any, *, t0: int, width: int) -> None:
        super().__init__(expression)
        self.t0, self.width = int(t0), int(width)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:  # pragma: no cover
        raise NotImplementedError(f"time buckets are written for SQLite and PostgreSQL, not {connection.vendor}")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.source_expressions[0])
        # Integer epoch seconds less an integer t0, divided by an integer width: SQLite's integer
        # division truncates, which is the floor for the non-negative offsets the query selects.
        return (f"((CAST(strftime('%%s', {column}) AS INTEGER) - %s) / %s)",
                [*params, self.t0, self.width])

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.source_expressions[0])
        return (f"CAST(FLOOR((EXTRACT(EPOCH FROM {column}) - %s) / %s) AS INTEGER)",
                [*params, self.t0, self.width])


def _num(path: str) -> Cast:
    return Cast(KT(f"inputs__{path}"), FloatField())


def _ratio(top: str, bottom: str) -> Any:
    return _num(top) / NullIf(_num(bottom), 0.0)


CACHE_TIMEOUT_S = 86400
CACHE_VERSION = 5  # what a cached entry holds: raised when it (or Bucket) changes
SEGMENTS_MAX = 12
CUSTOM_MAX = 10  # a version's custom metrics (monitoring.custom.MAX_CUSTOM)
READ_ONCE = True  # PostgreSQL: the bucket query decompresses each evaluation's JSON once (_ReadOnce)


def evaluation_buckets(canary_id: int, span: Span, *, closed_before: datetime | None = None,
                       cache_key: str = "", segments: Sequence[str] = (), custom: Sequence[str] = ()) -> list[Bucket]:
    """The canary's evaluation windows ending in `span`, grouped into time buckets.

    Evaluations are written once, with a window ending at the time they are judged: a bucket
    that ended before `closed_before` never changes again. With a `cache_key` (naming the
    canary's identity), the closed buckets are kept in the cache and only the open ones are read:
    one query per request, plus one for the buckets closed since the cached ones. `segments`: the
    segments whose counts each bucket also keeps (at most SEGMENTS_MAX, the first ones); `custom`:
    the custom metrics whose values it keeps."""
    segments = tuple(segments)[:SEGMENTS_MAX]
    custom = tuple(custom)[:CUSTOM_MAX]
    if closed_before is None or not cache_key:
        return _buckets(canary_id, span, span.start, span.end, segments=segments, custom=custom)
    closed_count = max(0, int((closed_before - span.start).total_seconds() // span.width_s))
    boundary = span.start + timedelta(seconds=closed_count * span.width_s)
    if boundary > span.end:
        boundary = span.end
    named = hashlib.sha256("\0".join(segments).encode()).hexdigest()[:16] if segments else "-"
    if custom:
        named += ":" + hashlib.sha256("\0".join(custom).encode()).hexdigest()[:16]
    key = f"canaryhub:buckets:{CACHE_VERSION}:{cache_key}:{span.start.timestamp():.6f}:{span.width_s}:{named}"
    stored = cache.get(key)  # (boundary, the buckets closed before it)
    if stored is not None and stored[0] == boundary:
        closed = stored[1]
    else:
        # Only the buckets closed since the cached boundary are read (all of them when none is).
        since, closed = (stored[0], list(stored[1])) if stored is not None and stored[0] < boundary else (
            span.start, [])
        closed += _buckets(canary_id, span, since, boundary, end_inclusive=False, segments=segments, custom=custom)
        cache.set(key, (boundary, closed), CACHE_TIMEOUT_S)
    return closed + _buckets(canary_id, span, boundary, span.end, segments=segments, custom=custom)


def _buckets(canary_id: int, span: Span, start: datetime, end: datetime, *,
             end_inclusive: bool = True, segments: tuple[str, ...] = (), custom: tuple[str, ...] = ()
             ) -> list[Bucket]:
    """One aggregate query: the windows ending in [start, end] (or [start, end)) in `span`'s buckets."""
    t0 = int(span.start.timestamp())
    until = {"window_end__lte" if end_inclusive else "window_end__lt": end}
    rows = (
        Evaluation.objects.filter(canary_id=canary_id, window_end__gte=start, **until)
        .order_by()
        .annotate(bucket=_Bucket(F("window_end"), t0=t0, width=span.width_s))
        .values("bucket")
        .annotate(**_aggregates(segments), **_custom_aggregates(custom))
        .order_by("bucket")
    )
    if connections[rows.db].vendor == "postgresql" and READ_ONCE:
        table = Evaluation._meta.db_table
        rows.query.alias_map[table] = _ReadOnce(table, table, canary_id=canary_id, start=start, end=end,
                                                end_inclusive=end_inclusive)
    return [_bucket(row, span.start + timedelta(seconds=row["bucket"] * span.width_s), segments, custom)
            for row in rows]


class _ReadOnce(BaseTable):
    """PostgreSQL: the canary's evaluations ending in [start, end] (or [start, end)), each row's
    `inputs` decompressed once. An evaluation's JSON is large enough to be stored compressed
    (TOAST), and PostgreSQL decompresses it again for every key path read out of it (some eighty
    per row in a bucket query). In this subquery `'{}' || inputs` hands back the stored object
    itself, decompressed (for a value that is not an object every key path reads NULL either
    way); OFFSET 0 keeps the planner from folding the subquery back into each key path. The
    aggregate outside reads the same columns under the same name, and its own WHERE still
    applies."""

    def __init__(self, table_name: str, alias: str, *, canary_id: int, start: datetime, end: datetime,
                 end_inclusive: bool) -> None:
        super().__init__(table_name, alias)
        self.canary_id, self.start, self.end, self.end_inclusive = canary_id, start, end, end_inclusive

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        qn = connection.ops.quote_name
        until = "<=" if self.end_inclusive else "<"
        return (f"(SELECT \"id\", \"canary_id\", \"stage_index\", \"window_end\", \"verdict\", "
                f"('{{}}'::jsonb || \"inputs\") AS \"inputs\" FROM {qn(self.table_name)} "
                f"WHERE \"canary_id\" = %s AND \"window_end\" >= %s AND \"window_end\" {until} %s OFFSET 0) "
                f"{qn(self.table_alias)}", [self.canary_id, self.start, self.end])

    def relabeled_clone(self, change_map: dict[str, str]) -> _ReadOnce:
        return _ReadOnce(self.table_name, change_map.get(self.table_alias, self.table_alias),
                         canary_id=self.canary_id, start=self.start, end=self.end, end_inclusive=self.end_inclusive)

    @property
    def identity(self) -> tuple[Any, ...]:
        return *super().identity, self.canary_id, self.start, self.end, self.end_inclusive


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite hands back an aggregate over a datetime column as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def stage_summaries(canary_id: int, *, closed_below: int = 0, cache_key: str = "") -> dict[int, Bucket]:
    """Every stage of the canary pooled into one bucket: the per-stage comparison of the
    post-canary report (its numbers only: requests, errors, latency p99, quality, safety,
    warnings and red verdicts). The stages below `closed_below` take no more evaluations: with a
    `cache_key` (naming the canary's identity) they are read once and kept in the cache, and a
    request reads only the stages still running (one query, two when the cache is cold)."""
    def read(**where: Any) -> dict[int, Bucket]:
        rows = (Evaluation.objects.filter(canary_id=canary_id, **where).order_by().values("stage_index")
                .annotate(**_aggregates(lean=True)).order_by("stage_index"))
        return {row["stage_index"]: _bucket(row, _aware(row["first"])) for row in rows}

    if not cache_key or closed_below <= 0:
        return read()
    key = f"canaryhub:stages:{CACHE_VERSION}:{cache_key}:{closed_below}"
    closed = cache.get(key)
    if closed is None:
        closed = read(stage_index__lt=closed_below)
        cache.set(key, closed, CACHE_TIMEOUT_S)
    return {**closed, **read(stage_index__gte=closed_below)}


def _segment_num(name: str, role: str, field: str) -> Cast:
    """A segment's number: key transforms (the name is a parameter, never part of a lookup path)."""
    path: Any = KeyTransform("segments", "inputs")
    for key in ("by_segment", name, "window", role):
        path = KeyTransform(key, path)
    return Cast(KeyTextTransform(field, path), FloatField())


def _segment_aggregates(segments: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, name in enumerate(segments):
        for role, r in (("canary", "c"), ("production", "p")):
            out[f"s{i}_{r}_req"] = Sum(_segment_num(name, role, "requests"))
            out[f"s{i}_{r}_err"] = Sum(_segment_num(name, role, "errors"))
            out[f"s{i}_{r}_p99"] = Avg(_segment_num(name, role, "p99_s"))
    return out


def _custom_num(name: str, role: str, field: str) -> Cast:
    """A custom metric's number: key transforms (the name is a parameter, never part of a lookup path)."""
    path: Any = KeyTransform("custom", "inputs")
    for key in (name, "window", role):
        path = KeyTransform(key, path)
    return Cast(KeyTextTransform(field, path), FloatField())


def _custom_aggregates(names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        for role, r in (("canary", "c"), ("production", "p")):
            out[f"k{i}_{r}_sum"] = Sum(_custom_num(name, role, "value") * _custom_num(name, role, "count"))
            out[f"k{i}_{r}_n"] = Sum(_custom_num(name, role, "count"))
    return out


_COUNTED = (("guardrail_blocks", "guard"), ("schema_failures", "schema"), ("unavailable", "unavail"))


def _llm_aggregates() -> dict[str, Any]:
    """Guardrail blocks, schema failures and unavailable requests with the requests of the
    windows that recorded them; the response length's quantiles."""
    out: dict[str, Any] = {}
    for role, r in (("canary", "c"), ("production", "p")):
        side = f"window__{role}__"
        for field, short in _COUNTED:
            out[f"{r}_{short}"] = Sum(_num(side + field))
            out[f"{r}_{short}_req"] = Sum(_num(side + "requests"),
                                          filter=Q(**{f"inputs__window__{role}__{field}__isnull": False}))
        out[f"{r}_rt50"] = Avg(_num(side + "response_tokens_p50"))
        out[f"{r}_rt95"] = Avg(_num(side + "response_tokens_p95"))
    out["c_rt95_max"] = Max(_num("window__canary__response_tokens_p95"))
    return out


def _aggregates(segments: tuple[str, ...] = (), *, lean: bool = False) -> dict[str, Any]:
    """What each bucket keeps; `lean`: only what a stage's summary in the report shows (each
    number is read out of every row's JSON: over a whole canary the extra ones cost seconds)."""
    c, p = "window__canary__", "window__production__"
    if lean:
        return dict(
            first=Min("window_end"), last=Max("window_end"), windows=Count("id"),
            stage_min=Min("stage_index"), stage_max=Max("stage_index"),
            c_req=Sum(_num(c + "requests")), c_err=Sum(_num(c + "errors")),
            p_req=Sum(_num(p + "requests")), p_err=Sum(_num(p + "errors")),
            c_p99_max=Max(_num(c + "p99_s")), c_p99_mean=Avg(_num(c + "p99_s")),
            p_p99_max=Max(_num(p + "p99_s")), p_p99_mean=Avg(_num(p + "p99_s")),
            c_q_sum=Sum(_num(c + "quality_mean") * _num(c + "quality_count")),
            c_q_n=Sum(_num(c + "quality_count")),
            p_q_sum=Sum(_num(p + "quality_mean") * _num(p + "quality_count")),
            p_q_n=Sum(_num(p + "quality_count")),
            safety=Sum(_num(c + "safety_violations")),
            warnings=Count("id", filter=Q(inputs__warnings__0__metric__isnull=False)),
            red=Count("id", filter=Q(verdict=Evaluation.Verdict.RED)),
        )
    return dict(
        c_p50=Avg(_num(c + "p50_s")), p_p50=Avg(_num(p + "p50_s")),
        c_p95=Avg(_num(c + "p95_s")), c_p95_max=Max(_num(c + "p95_s")), p_p95=Avg(_num(p + "p95_s")),
        c_tok=Sum(_num(c + "tokens_in") + _num(c + "tokens_out")),
        c_tok_req=Sum(_num(c + "requests"), filter=Q(inputs__window__canary__tokens_out__isnull=False)),
        p_tok=Sum(_num(p + "tokens_in") + _num(p + "tokens_out")),
        p_tok_req=Sum(_num(p + "requests"), filter=Q(inputs__window__production__tokens_out__isnull=False)),
        c_cost=Sum(_num(c + "cost_usd")),
        c_cost_req=Sum(_num(c + "requests"), filter=Q(inputs__window__canary__cost_usd__isnull=False)),
        p_cost=Sum(_num(p + "cost_usd")),
        p_cost_req=Sum(_num(p + "requests"), filter=Q(inputs__window__production__cost_usd__isnull=False)),
        **_llm_aggregates(),
        **_segment_aggregates(segments),
        first=Min("window_end"), last=Max("window_end"), windows=Count("id"),
        stage_min=Min("stage_index"), stage_max=Max("stage_index"),
        c_req=Sum(_num(c + "requests")), c_err=Sum(_num(c + "errors")),
        p_req=Sum(_num(p + "requests")), p_err=Sum(_num(p + "errors")),
        c_rate_max=Max(_ratio(c + "errors", c + "requests")),
        c_rate_min=Min(_ratio(c + "errors", c + "requests")),
        p_rate_max=Max(_ratio(p + "errors", p + "requests")),
        c_p99_max=Max(_num(c + "p99_s")), c_p99_mean=Avg(_num(c + "p99_s")),
        p_p99_max=Max(_num(p + "p99_s")), p_p99_mean=Avg(_num(p + "p99_s")),
        c_q_sum=Sum(_num(c + "quality_mean") * _num(c + "quality_count")), c_q_n=Sum(_num(c + "quality_count")),
        p_q_sum=Sum(_num(p + "quality_mean") * _num(p + "quality_count")), p_q_n=Sum(_num(p + "quality_count")),
        safety=Sum(_num(c + "safety_violations")),
        percent=Avg(_num("traffic_percent")),
        diff=Avg(_num("gates__error_rate__difference")),
        ci_low=Min(_num("gates__error_rate__ci_pp__0")), ci_high=Max(_num("gates__error_rate__ci_pp__1")),
        warnings=Count("id", filter=Q(inputs__warnings__0__metric__isnull=False)),
        triggers=Count("id", filter=Q(inputs__rollback_triggers__0__metric__isnull=False)),
        red=Count("id", filter=Q(verdict=Evaluation.Verdict.RED)),
    )


def _bucket(row: dict[str, Any], start: datetime, segments: tuple[str, ...] = (),
            custom: tuple[str, ...] = ()) -> Bucket:
    return Bucket(
        start=start, end=_aware(row["last"]), windows=row["windows"],
        stage_min=row["stage_min"], stage_max=row["stage_max"],
        canary_requests=row["c_req"] or 0.0, canary_errors=row["c_err"] or 0.0,
        production_requests=row["p_req"] or 0.0, production_errors=row["p_err"] or 0.0,
        canary_rate_max=row.get("c_rate_max"), canary_rate_min=row.get("c_rate_min"),
        production_rate_max=row.get("p_rate_max"),
        canary_p99_max=row["c_p99_max"], canary_p99_mean=row["c_p99_mean"],
        production_p99_max=row["p_p99_max"], production_p99_mean=row["p_p99_mean"],
        canary_quality=row["c_q_sum"] / row["c_q_n"] if row["c_q_n"] else None,
        production_quality=row["p_q_sum"] / row["p_q_n"] if row["p_q_n"] else None,
        canary_scored=row["c_q_n"] or 0.0, production_scored=row["p_q_n"] or 0.0,
        safety_violations=row["safety"] or 0.0, traffic_percent=row.get("percent"),
        difference_pp=row["diff"] * 100 if row.get("diff") is not None else None,
        ci_low_pp=row.get("ci_low"), ci_high_pp=row.get("ci_high"),
        warnings=row["warnings"], rollback_triggers=row.get("triggers") or 0, red=row["red"],
        canary_p50_mean=row.get("c_p50"), production_p50_mean=row.get("p_p50"),
        canary_p95_mean=row.get("c_p95"), canary_p95_max=row.get("c_p95_max"), production_p95_mean=row.get("p_p95"),
        canary_tokens=row.get("c_tok") or 0.0, canary_token_requests=row.get("c_tok_req") or 0.0,
        production_tokens=row.get("p_tok") or 0.0, production_token_requests=row.get("p_tok_req") or 0.0,
        canary_cost_usd=row.get("c_cost") or 0.0, canary_cost_requests=row.get("c_cost_req") or 0.0,
        production_cost_usd=row.get("p_cost") or 0.0, production_cost_requests=row.get("p_cost_req") or 0.0,
        **{f"{role}_{field}": row.get(f"{r}_{short}") or 0.0 for role, r in (("canary", "c"), ("production", "p"))
           for field, short in (("guardrail_blocks", "guard"), ("guardrail_requests", "guard_req"),
                                ("schema_failures", "schema"), ("schema_requests", "schema_req"),
                                ("unavailable", "unavail"), ("unavailable_requests", "unavail_req"))},
        canary_response_p50_mean=row.get("c_rt50"), canary_response_p95_mean=row.get("c_rt95"),
        canary_response_p95_max=row.get("c_rt95_max"), production_response_p50_mean=row.get("p_rt50"),
        production_response_p95_mean=row.get("p_rt95"),
        segments=tuple(
            SegmentCounts(name, row[f"s{i}_c_req"] or 0.0, row[f"s{i}_c_err"] or 0.0, row[f"s{i}_p_req"] or 0.0,
                          row[f"s{i}_p_err"] or 0.0, row[f"s{i}_c_p99"], row[f"s{i}_p_p99"])
            for i, name in enumerate(segments) if row[f"s{i}_c_req"] is not None or row[f"s{i}_p_req"] is not None
        ),
        custom=tuple(
            CustomValue(name, _mean(row[f"k{i}_c_sum"], row[f"k{i}_c_n"]), _mean(row[f"k{i}_p_sum"], row[f"k{i}_p_n"]),
                        row[f"k{i}_c_n"] or 0.0, row[f"k{i}_p_n"] or 0.0)
            for i, name in enumerate(custom) if row[f"k{i}_c_n"] is not None or row[f"k{i}_p_n"] is not None
        ),
    )


def _mean(total: float | None, count: float | None) -> float | None:
    return total / count if total is not None and count else None
