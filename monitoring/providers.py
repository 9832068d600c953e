"""Metric providers: one interface, two implementations.

`fetch(targets, now=..., window_s=...)` returns, for every canary, a `Reading`: the canary's and
the production version's numbers over the last window, and either over the stage so far (push)
or as cumulative counters (Prometheus; the evaluator subtracts the readings it took at stage
entry). A provider never raises for a source failure: the reading carries `error`, and the
evaluator treats it as unknown data (stale gates, and after a run of errors, fail closed).

The Prometheus provider costs a fixed number of PromQL queries per tick, whatever the number of
canaries: each default query aggregates `by (model, version, segment)` over every series and the
provider picks each canary's rows out of the answer. Only versions with their own query
templates (per-model overrides) cost extra queries, two per overridden metric; a version's custom
metrics (monitoring.custom) one per distinct declared metric, for every canary that declares it.

`fetch_counts(targets, now=..., window_s=...)` reads only what the error-rate sequential test
needs (requests and errors, by version and segment), for the rollback watch that looks every
10 s between evaluations: one PromQL query (or one database aggregate) for all canaries, plus
the overrides of `requests` and `errors` where a version has them.
"""

from __future__ import annotations

import logging
import math
import re
import string
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from django.conf import settings
from django.db.models import Q, Sum
from prometheus_api_client import PrometheusConnect
from requests.exceptions import ConnectionError as SourceUnreachable

from monitoring.custom import (
    prometheus_queries,
    prometheus_segment_values,
    prometheus_values,
    promql_for,
    values_from_push,
)
from monitoring.models import Observation
from monitoring.samples import Reading, Sample, Target, custom_plus, le_parse

logger = logging.getLogger(__name__)

Index = dict[tuple[str, str], list[tuple[str, dict[str, Any]]]]  # (model, version) -> [(segment, numbers)]


class Provider(Protocol):
    name: str
    query_count: int

    def fetch(self, targets: Sequence[Target], *, now: datetime, window_s: int) -> dict[int, Reading]: ...


# --- Prometheus -----------------------------------------------------------------------------------

_BY = "model, version, segment"
# The LLM counters read as totals by one query, and the stage number each feeds.
LLM_TOTALS = {"model_tokens_total": "tokens", "model_cost_usd_total": "cost",
              "model_guardrail_blocks_total": "guardrail", "model_output_schema_failures_total": "schema"}
# The defaults follow the metric convention (DESIGN.md). `$w` is the window in seconds.
DEFAULT_QUERIES: dict[str, str] = {
    "requests_window": f"sum by ({_BY}, outcome) (increase(model_requests_total[$w]))",
    "latency_window": f"sum by ({_BY}, le) (increase(model_request_duration_seconds_bucket[$w]))",
    "quality_window": f"sum by ({_BY}, le) (increase(model_quality_score_bucket[$w]))",
    "quality_sum_window": f"sum by ({_BY}) (increase(model_quality_score_sum[$w]))",
    "safety_window": f"sum by ({_BY}) (increase(model_safety_violations_total[$w]))",
    # LLM serving, over the window only (what the rollback rules read): tokens by direction,
    # inference cost, guardrail blocks.
    "tokens_window": f"sum by ({_BY}, direction) (increase(model_tokens_total[$w]))",
    "cost_window": f"sum by ({_BY}) (increase(model_cost_usd_total[$w]))",
    "guardrail_window": f"sum by ({_BY}) (increase(model_guardrail_blocks_total[$w]))",
    "schema_window": f"sum by ({_BY}) (increase(model_output_schema_failures_total[$w]))",
    # Output tokens per response, a histogram recorded (its p50 and p95), not judged.
    "response_tokens_window": f"sum by ({_BY}, le) (increase(model_response_tokens_bucket[$w]))",
    "requests_total": f"sum by ({_BY}, outcome) (model_requests_total)",
    "latency_total": f"sum by ({_BY}, le) (model_request_duration_seconds_bucket)",
    "quality_total": f"sum by ({_BY}, le) (model_quality_score_bucket)",
    "quality_sum_total": f"sum by ({_BY}) (model_quality_score_sum)",
    "safety_total": f"sum by ({_BY}) (model_safety_violations_total)",
    # The LLM counters' totals in one query (grouped by metric name: no function drops it), from
    # which the stage's tokens, cost and guardrail blocks are counted for the promotion gates.
    "llm_total": f"sum by (__name__, {_BY}, direction) ({{__name__=~\"{'|'.join(LLM_TOTALS)}\"}})",
    # Alerts firing at any moment of the window, not only now: one that fired and cleared between
    # two ticks is still seen (windows overlap from one tick to the next).
    "anomaly": 'count by (model, version) (max_over_time(ALERTS{alertstate="firing"}[$w]))',
    "last_seen": "max by (model, version) (timestamp(model_requests_total))",
}

# What a per-version override of each metric (monitoring.thresholds.METRIC_NAMES) sets.
_OVERRIDE_FIELDS = {
    "requests": "requests", "errors": "errors", "latency_p99": "latency_p99_s",
    "quality": "quality_mean_override", "safety_violations": "safety_violations", "anomaly_alerts": "anomaly_alerts",
}


def prometheus_tls_verify() -> bool | str:
    """How the Prometheus client checks the server's certificate: on by default against the
    system's CAs, against PROMETHEUS_CA_BUNDLE when set, and off only by the explicit opt-out
    PROMETHEUS_TLS_INSECURE (a deployment decision, never a default)."""
    if settings.PROMETHEUS_TLS_INSECURE:
        return False
    return settings.PROMETHEUS_CA_BUNDLE or True


class PrometheusProvider:
    name = "prometheus"

    def __init__(self, url: str | None = None, *, timeout_s: float | None = None, max_in_flight: int = 4,
                 client: Any = None) -> None:
        self.url = url or settings.PROMETHEUS_URL
        # The client has no timeout by default: a hung Prometheus would hang the tick.
        self.timeout_s = timeout_s if timeout_s is not None else settings.PROMETHEUS_TIMEOUT_S
        # A handful in flight, well under Prometheus' default query concurrency of 20.
        self.max_in_flight = max_in_flight
        self.client = client or PrometheusConnect(url=self.url, timeout=self.timeout_s)
        if client is None:
            self.client._session.verify = prometheus_tls_verify()
        self.query_count = 0

    def _query(self, promql: str, at: datetime) -> list[dict[str, Any]]:
        self.query_count += 1
        return self.client.custom_query(promql, params={"time": at.timestamp()}, timeout=self.timeout_s)

    def _run(self, queries: dict[str, str], at: datetime,
             parse: Callable[[str, list[dict[str, Any]]], Any] | None = None) -> dict[str, Any]:
        """Every query's answer (or its exception), `parse(key, answer)` of it if given: parsed in
        the thread that fetched it, while Prometheus still computes the others.

        A Prometheus that cannot be reached (refused, unresolvable, no connection within the
        timeout: after the client's own retries) fails the queries not yet sent with the same
        error instead of sending each through those retries: a stopped Prometheus costs a round
        one query's retries, not fifteen (about 25 s, longer than a short cadence)."""
        results: dict[str, Any] = {}
        unreachable: list[Exception] = []
        lock = threading.Lock()

        def one(item: tuple[str, str]) -> tuple[str, Any]:
            key, promql = item
            with lock:
                if unreachable:
                    return key, SourceUnreachable(f"not sent: the source is unreachable ({unreachable[0]})")
            try:
                answer = self._query(promql, at)
                return key, parse(key, answer) if parse else answer
            except SourceUnreachable as exc:
                with lock:
                    unreachable.append(exc)
                return key, exc
            except Exception as exc:  # noqa: BLE001 - an unreachable, failing or garbled source is data
                return key, exc

        with ThreadPoolExecutor(max_workers=self.max_in_flight) as pool:
            for key, result in pool.map(one, queries.items()):
                results[key] = result
        return results

    def fetch(self, targets: Sequence[Target], *, now: datetime, window_s: int) -> dict[int, Reading]:
        if not targets:
            return {}
        queries = {k: string.Template(v).substitute(w=f"{int(window_s)}s") for k, v in DEFAULT_QUERIES.items()}
        results = self._run(queries, now, parse=_parse)
        failures = {k: v for k, v in results.items() if isinstance(v, Exception)}
        error = None
        if failures:
            key, exc = next(iter(failures.items()))
            error = f"{len(failures)} of {len(queries)} queries failed; {key}: {type(exc).__name__}: {exc}"[:500]
        parsed = {k: v for k, v in results.items() if not isinstance(v, Exception)}
        index_window = _index(parsed, "window")
        index_total = _index(parsed, "total")
        anomalies = parsed.get("anomaly", {})
        last_seen = parsed.get("last_seen", {})
        out: dict[int, Reading] = {}
        for t in targets:
            reading = Reading(queries=list(queries.values()), source=self.name, error=error)
            if error is None:
                reading.window, reading.totals = {}, {}
                reading.segments_totals = {}
                for role, version in (("canary", t.version), ("production", t.baseline)):
                    w, w_parts = _pick(index_window, t.model, version, t.segments)
                    tot, tot_parts = _pick(index_total, t.model, version, t.segments)
                    seen = last_seen.get((t.model, version))
                    for s in (w, tot):
                        s.anomaly_alerts = anomalies.get((t.model, version), 0.0)
                        s.last_seen = datetime.fromtimestamp(seen, UTC) if seen else None
                    reading.window[role], reading.totals[role] = w, tot
                    for seg, part in w_parts.items():
                        reading.segments_window.setdefault(seg, {})[role] = part
                    for seg, part in tot_parts.items():
                        reading.segments_totals.setdefault(seg, {})[role] = part
                if t.queries:
                    self._apply_overrides(t, reading, now=now, window_s=window_s)
            out[t.canary_id] = reading
        if error is None and any(t.custom for t in targets):
            self._apply_custom(targets, out, now=now, window_s=window_s)
        return out

    def _apply_custom(self, targets: Sequence[Target], out: dict[int, Reading], *, now: datetime,
                      window_s: int) -> None:
        """The declared custom metrics (monitoring.custom): one query per distinct declared
        metric, for every canary that declares it; its answer keeps the segment label, so each
        segment's numbers get their values from it too."""
        jobs = prometheus_queries({t.canary_id: t.custom for t in targets}, window_s)
        results = self._run(jobs, now)
        for t in targets:
            reading = out[t.canary_id]
            for name, decl in t.custom.items():
                query = promql_for(decl, window_s) if decl.get("promql") else None
                if query is None:
                    continue
                reading.queries.append(query)
                answer = results.get(query)
                if isinstance(answer, Exception):
                    reading.error = f"custom metric {name}: {type(answer).__name__}: {answer}"[:500]
                    break
                for role, version in (("canary", t.version), ("production", t.baseline)):
                    spans = prometheus_values(decl, answer or [], model=t.model, version=version,
                                              segments=t.segments)
                    if "window" in spans:
                        reading.window[role].custom[name] = spans["window"]  # type: ignore[index]
                    if "total" in spans:
                        reading.totals[role].custom[name] = spans["total"]  # type: ignore[index]
                    for seg, seg_spans in prometheus_segment_values(decl, answer or [], model=t.model, version=version,
                                                                    segments=t.segments).items():
                        for span, parts in (("window", reading.segments_window),
                                            ("total", reading.segments_totals or {})):
                            if span in seg_spans and role in parts.get(seg, {}):
                                parts[seg][role].custom[name] = seg_spans[span]

    def _apply_overrides(self, t: Target, reading: Reading, *, now: datetime, window_s: int) -> None:
        """Per-version templates ($model, $version, $segment, $window), one scalar each, for the
        window and for the stage so far."""
        stage_s = max(int((now - t.stage_since).total_seconds()), window_s)
        jobs: dict[str, str] = {}
        for metric, template in t.queries.items():
            if metric not in _OVERRIDE_FIELDS:
                continue
            for role, version in (("canary", t.version), ("production", t.baseline)):
                for span, seconds in (("window", window_s), ("stage", stage_s)):
                    jobs[f"{metric}|{role}|{span}"] = string.Template(template).safe_substitute(
                        model=t.model, version=version, segment=segment_regex(t.segments),
                        window=f"{seconds}s",
                    )
        results = self._run(jobs, now)
        reading.queries.extend(jobs.values())
        for key, result in results.items():
            if isinstance(result, Exception):
                reading.error = f"override {key}: {type(result).__name__}: {result}"[:500]
                return
            metric, role, span = key.split("|")
            value = sum(float(r["value"][1]) for r in result if _finite(r["value"][1]))
            name = _OVERRIDE_FIELDS[metric]
            if span == "window":
                setattr(reading.window[role], name, value)  # type: ignore[index]
                if metric == "latency_p99":
                    reading.window[role].latency_buckets = None  # type: ignore[index]
            else:
                reading.stage_overrides.setdefault(role, {})[name] = value

    def fetch_counts(self, targets: Sequence[Target], *, now: datetime, window_s: int) -> dict[int, Reading]:
        """What the error-rate sequential test needs and nothing more, for the rollback watch:
        every canary's and production's cumulative requests and errors, as a whole and per
        segment (`Reading.totals` and `segments_totals`, requests and errors only), read by ONE
        query for all canaries (`COUNTS_QUERY`). A version that overrides `requests` or `errors`
        costs its override queries for the stage so far too (two per overridden metric, as in
        `fetch`), since its evaluations judged those numbers (`Reading.stage_overrides`); its
        segments keep the default counts, as the evaluator's do. An error is the reading's, as in
        `fetch`: a failed count query fails every canary, a failed override only its own."""
        if not targets:
            return {}
        jobs = {"requests_total": COUNTS_QUERY}
        for t in targets:
            jobs.update(_count_override_jobs(t, now=now, window_s=window_s))
        results = self._run(jobs, now, parse=lambda key, answer: _parse(key, answer) if key == "requests_total"
                            else answer)
        counts = results.pop("requests_total")
        out: dict[int, Reading] = {}
        if isinstance(counts, Exception):
            error = f"{COUNTS_QUERY}: {type(counts).__name__}: {counts}"[:500]
            return {t.canary_id: Reading(queries=[COUNTS_QUERY], source=self.name, error=error) for t in targets}
        index = _index({"requests_total": counts}, "total")
        for t in targets:
            reading = Reading(queries=[COUNTS_QUERY], source=self.name, totals={}, segments_totals={})
            for role, version in (("canary", t.version), ("production", t.baseline)):
                total, parts = _pick(index, t.model, version, t.segments)
                reading.totals[role] = Sample(present=total.present, requests=total.requests,  # type: ignore[index]
                                              errors=total.errors)
                for seg, part in parts.items():
                    reading.segments_totals.setdefault(seg, {})[role] = Sample(  # type: ignore[union-attr]
                        present=True, requests=part.requests, errors=part.errors)
            for key, promql in jobs.items():
                mine, _, rest = key.partition("|")
                if mine != str(t.canary_id):
                    continue
                reading.queries.append(promql)
                result = results[key]
                if isinstance(result, Exception):
                    reading.error = f"override {rest}: {type(result).__name__}: {result}"[:500]
                    break
                metric, role = rest.split("|")
                value = sum(float(r["value"][1]) for r in result if _finite(r["value"][1]))
                reading.stage_overrides.setdefault(role, {})[_OVERRIDE_FIELDS[metric]] = value
            out[t.canary_id] = reading
        return out


# The rollback watch's one query: cumulative requests by outcome, by model, version and segment.
COUNTS_QUERY = DEFAULT_QUERIES["requests_total"]
_COUNT_METRICS = ("requests", "errors")


def _count_override_jobs(t: Target, *, now: datetime, window_s: int) -> dict[str, str]:
    """A target's override queries of `requests` and `errors` over the stage so far (the span the
    evaluator reads them over: at least one window), keyed "canary_id|metric|role"."""
    stage_s = max(int((now - t.stage_since).total_seconds()), window_s)
    jobs: dict[str, str] = {}
    for metric in _COUNT_METRICS:
        template = (t.queries or {}).get(metric)
        if not template:
            continue
        for role, version in (("canary", t.version), ("production", t.baseline)):
            jobs[f"{t.canary_id}|{metric}|{role}"] = string.Template(template).safe_substitute(
                model=t.model, version=version, segment=segment_regex(t.segments), window=f"{stage_s}s")
    return jobs


def segment_regex(segments: tuple[str, ...] | None) -> str:
    """$segment for a `segment=~"$segment"` matcher: the segment values as one regular expression
    that matches exactly them (regex characters escaped), then escaped for a double-quoted PromQL
    string, so a value with quotes, braces or `|` cannot change the query."""
    if not segments:
        return ".*"
    pattern = "|".join(re.escape(value) for value in segments)
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


def _finite(raw: Any) -> bool:
    try:
        return math.isfinite(float(raw))
    except (TypeError, ValueError):
        return False






def _parse(key: str, answer: list[dict[str, Any]]) -> dict[tuple[str, ...], Any]:
    """One default query's answer, once, as {(model, version, segment): numbers}: a number, or
    [requests, errors, unavailable] for the requests queries (an unavailable request is an error
    too), or {le: count} for the bucket queries. The per-version queries (anomaly, last_seen) as
    {(model, version): number}. Values that are not finite are left out of the per-segment
    numbers."""
    out: dict[tuple[str, ...], Any] = {}
    if key in ("anomaly", "last_seen"):
        for r in answer:
            m = r.get("metric", {})
            out[(m.get("model", ""), m.get("version", ""))] = float(r["value"][1])
        return out
    metric = key.rsplit("_", 1)[0]  # requests_window -> requests, quality_sum_total -> quality_sum
    if metric == "llm":
        return _parse_llm(answer)
    for r in answer:
        value = float(r["value"][1])
        if not math.isfinite(value):
            continue
        m = r.get("metric", {})
        series = (m.get("model", ""), m.get("version", ""), m.get("segment", ""))
        if metric == "requests":
            counts = out.get(series)
            if counts is None:
                counts = out[series] = [0.0, 0.0, 0.0]
            counts[0] += value
            # An unavailable request (not served at all) is a failed request too.
            if m.get("outcome") in ("error", "unavailable"):
                counts[1] += value
            if m.get("outcome") == "unavailable":
                counts[2] += value
        elif metric == "tokens":
            counts = out.get(series)
            if counts is None:
                counts = out[series] = [0.0, 0.0]
            counts[0 if m.get("direction") in ("in", "input", "prompt") else 1] += value
        elif metric in ("latency", "quality", "response_tokens"):
            buckets = out.get(series)
            if buckets is None:
                buckets = out[series] = {}
            le = le_parse(m.get("le"))
            buckets[le] = buckets.get(le, 0.0) + value
        else:
            out[series] = out.get(series, 0.0) + value
    return out


def _parse_llm(answer: list[dict[str, Any]]) -> dict[tuple[str, ...], Any]:
    """The LLM totals query's answer as {(model, version, segment): {"tokens": [in, out], "cost": x,
    "guardrail": x, "schema": x}}, each row's number under its metric's name (LLM_TOTALS)."""
    out: dict[tuple[str, ...], Any] = {}
    for r in answer:
        value = float(r["value"][1])
        m = r.get("metric", {})
        field = LLM_TOTALS.get(m.get("__name__", ""))
        if field is None or not math.isfinite(value):
            continue
        series = (m.get("model", ""), m.get("version", ""), m.get("segment", ""))
        numbers = out.setdefault(series, {"tokens": [0.0, 0.0]})
        if field == "tokens":
            numbers["tokens"][0 if m.get("direction") in ("in", "input", "prompt") else 1] += value
        else:
            numbers[field] = numbers.get(field, 0.0) + value
    return out


def _index(parsed: dict[str, dict[tuple[str, ...], Any]], span: str) -> Index:
    """{(model, version): [(segment, numbers)]} from the parsed default queries of one span:
    each canary looks up its own rows instead of scanning every series."""
    index: dict[tuple[str, ...], dict[str, Any]] = defaultdict(
        lambda: {"requests": 0.0, "errors": 0.0, "unavailable": 0.0, "lat": {}, "qual": {}, "resp": {}, "qsum": 0.0,
                 "safety": 0.0, "tokens": (0.0, 0.0), "cost": 0.0, "guardrail": 0.0, "schema": 0.0}
    )
    for series, (requests, errors, unavailable) in parsed.get(f"requests_{span}", {}).items():
        index[series]["requests"], index[series]["errors"] = requests, errors
        index[series]["unavailable"] = unavailable
    for series, buckets in parsed.get(f"latency_{span}", {}).items():
        index[series]["lat"] = buckets
    for series, buckets in parsed.get(f"quality_{span}", {}).items():
        index[series]["qual"] = buckets
    for series, buckets in parsed.get(f"response_tokens_{span}", {}).items():
        index[series]["resp"] = buckets
    for series, value in parsed.get(f"quality_sum_{span}", {}).items():
        index[series]["qsum"] = value
    for series, value in parsed.get(f"safety_{span}", {}).items():
        index[series]["safety"] = value
    for series, value in parsed.get(f"tokens_{span}", {}).items():
        index[series]["tokens"] = tuple(value)
    for series, value in parsed.get(f"cost_{span}", {}).items():
        index[series]["cost"] = value
    for series, value in parsed.get(f"guardrail_{span}", {}).items():
        index[series]["guardrail"] = value
    for series, value in parsed.get(f"schema_{span}", {}).items():
        index[series]["schema"] = value
    for series, numbers in parsed.get(f"llm_{span}", {}).items():
        index[series]["tokens"] = tuple(numbers["tokens"])
        for name in ("cost", "guardrail", "schema"):
            if name in numbers:
                index[series][name] = numbers[name]
    by_version: Index = defaultdict(list)
    for (model, version, segment), part in index.items():
        by_version[(model, version)].append((segment, part))
    return by_version


def _pick(index: Index, model: str, version: str,
          segments: tuple[str, ...] | None) -> tuple[Sample, dict[str, Sample]]:
    """One version's numbers summed over its segments (those of `segments`, or all), and each
    segment's own numbers, kept for judging segment against segment."""
    s = Sample()
    lat: dict[float, float] = defaultdict(float)
    qual: dict[float, float] = defaultdict(float)
    resp: dict[float, float] = defaultdict(float)
    parts: dict[str, Sample] = {}
    for seg, part in index.get((model, version), ()):
        if segments is not None and seg not in segments:
            continue
        s.present = True
        s.requests += part["requests"]
        s.errors += part["errors"]
        s.unavailable += part["unavailable"]
        s.quality_sum += part["qsum"]
        s.safety_violations += part["safety"]
        s.tokens_in += part["tokens"][0]
        s.tokens_out += part["tokens"][1]
        s.cost_usd += part["cost"]
        s.guardrail_blocks += part["guardrail"]
        s.schema_failures += part["schema"]
        for le, c in part["lat"].items():
            lat[le] += c
        for le, c in part["qual"].items():
            qual[le] += c
        for le, c in part["resp"].items():
            resp[le] += c
        one = parts[seg] = Sample(present=True, requests=round(part["requests"]), errors=round(part["errors"]),
                                  unavailable=round(part["unavailable"]),
                                  quality_sum=part["qsum"], safety_violations=round(part["safety"]),
                                  latency_buckets=sorted(part["lat"].items()) or None,
                                  quality_buckets=sorted(part["qual"].items()) or None,
                                  tokens_in=part["tokens"][0], tokens_out=part["tokens"][1], cost_usd=part["cost"],
                                  guardrail_blocks=round(part["guardrail"]), schema_failures=round(part["schema"]),
                                  response_tokens_buckets=sorted(part["resp"].items()) or None)
        one.quality_count = one.quality_buckets[-1][1] if one.quality_buckets else 0.0
    s.requests, s.errors = round(s.requests), round(s.errors)  # increase() extrapolates fractions
    s.unavailable = round(s.unavailable)
    s.safety_violations = round(s.safety_violations)
    s.guardrail_blocks = round(s.guardrail_blocks)
    s.schema_failures = round(s.schema_failures)
    s.latency_buckets = sorted(lat.items()) or None
    s.quality_buckets = sorted(qual.items()) or None
    s.quality_count = s.quality_buckets[-1][1] if s.quality_buckets else 0.0
    s.response_tokens_buckets = sorted(resp.items()) or None
    return s, parts




# --- push -----------------------------------------------------------------------------------------


class PushProvider:
    """Reads the windows posted to /api/v1/observations/: one database query per tick for every
    canary on this provider."""

    name = "push"

    def __init__(self) -> None:
        self.query_count = 0

    def fetch(self, targets: Sequence[Target], *, now: datetime, window_s: int) -> dict[int, Reading]:
        if not targets:
            return {}
        since = min(t.stage_since for t in targets)
        versions = Q()
        for t in targets:
            versions |= Q(model=t.model, version__in=[t.version, t.baseline])
        self.query_count += 1
        try:
            rows = list(Observation.objects.filter(versions, window_end__gt=since))
        except Exception as exc:  # noqa: BLE001 - a database hiccup is data too
            return {t.canary_id: Reading(error=f"{type(exc).__name__}: {exc}", source=self.name) for t in targets}
        by_version: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for row in rows:
            by_version[(row.model, row.version)].append(row)
        window_from = now.timestamp() - window_s
        out: dict[int, Reading] = {}
        for t in targets:
            reading = Reading(window={}, stage={}, source=self.name, segments_stage={},
                              window_start=max(datetime.fromtimestamp(window_from, UTC), t.stage_since),
                              queries=[f"observations of {t.model} {t.version},{t.baseline} since {since.isoformat()}"])
            for role, version in (("canary", t.version), ("production", t.baseline)):
                mine = [r for r in by_version[(t.model, version)] if t.segments is None or r.segment in t.segments]
                stage_rows = [r for r in mine if r.window_end > t.stage_since]
                window_rows = [r for r in stage_rows if r.window_end.timestamp() > window_from]
                reading.stage[role] = _sum_observations(stage_rows)  # type: ignore[index]
                reading.window[role] = _sum_observations(window_rows)  # type: ignore[index]
                last = max((r.window_end for r in mine), default=None)
                reading.stage[role].last_seen = reading.window[role].last_seen = last  # type: ignore[index]
                for seg in {r.segment for r in stage_rows}:
                    reading.segments_stage.setdefault(seg, {})[role] = _sum_observations(  # type: ignore[union-attr]
                        [r for r in stage_rows if r.segment == seg])
                    reading.segments_window.setdefault(seg, {})[role] = _sum_observations(
                        [r for r in window_rows if r.segment == seg])
            out[t.canary_id] = reading
        return out


    def fetch_counts(self, targets: Sequence[Target], *, now: datetime, window_s: int) -> dict[int, Reading]:
        """What the error-rate sequential test needs, for the rollback watch: each canary's and
        production's requests and errors over the stage so far, as a whole and per segment
        (`Reading.stage` and `segments_stage`, requests and errors only), summed by the database
        in ONE aggregate query for all canaries (one more per extra canary of a model already in
        the query, which the one-active-canary-per-model rule leaves for none)."""
        out: dict[int, Reading] = {}
        pending = list(targets)
        while pending:
            batch: dict[str, Target] = {}
            for t in pending:
                batch.setdefault(t.model, t)
            pending = [t for t in pending if batch[t.model] is not t]
            out.update(self._counts(list(batch.values())))
        return out

    def _counts(self, targets: list[Target]) -> dict[int, Reading]:
        """One aggregate query for targets of distinct models."""
        rows_of = Q()
        for t in targets:
            rows_of |= Q(model=t.model, version__in=[t.version, t.baseline], window_end__gt=t.stage_since)
        self.query_count += 1
        query = "sum of observations' requests and errors by model, version and segment over each stage"
        try:
            rows = list(Observation.objects.filter(rows_of).values("model", "version", "segment")
                        .annotate(n=Sum("requests"), x=Sum("errors")).order_by())
        except Exception as exc:  # noqa: BLE001 - a database hiccup is data too
            return {t.canary_id: Reading(error=f"{type(exc).__name__}: {exc}", source=self.name, queries=[query])
                    for t in targets}
        by_version: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_version[(row["model"], row["version"])].append(row)
        out: dict[int, Reading] = {}
        for t in targets:
            reading = Reading(stage={}, segments_stage={}, source=self.name, queries=[query])
            for role, version in (("canary", t.version), ("production", t.baseline)):
                mine = [r for r in by_version[(t.model, version)] if t.segments is None or r["segment"] in t.segments]
                reading.stage[role] = Sample(present=bool(mine), requests=float(sum(r["n"] for r in mine)),  # type: ignore[index]
                                             errors=float(sum(r["x"] for r in mine)))
                for r in mine:
                    reading.segments_stage.setdefault(r["segment"], {})[role] = Sample(  # type: ignore[union-attr]
                        present=True, requests=float(r["n"]), errors=float(r["x"]))
            out[t.canary_id] = reading
        return out


def _sum_observations(rows: list[Any]) -> Sample:
    s = Sample(present=bool(rows))
    p99_weighted, p99_requests = 0.0, 0.0
    lat: dict[float, float] | None = defaultdict(float)
    qual: dict[float, float] | None = defaultdict(float)
    resp: dict[float, float] | None = defaultdict(float)
    for r in rows:
        s.requests += r.requests
        s.errors += r.errors
        s.unavailable += r.unavailable
        s.quality_sum += r.quality_sum
        s.quality_count += r.quality_count
        s.safety_violations += r.safety_violations
        s.anomaly_alerts += r.anomaly_alerts
        s.tokens_in += r.tokens_in
        s.tokens_out += r.tokens_out
        s.cost_usd += r.cost_usd
        s.guardrail_blocks += r.guardrail_blocks
        s.schema_failures += r.schema_failures
        if r.custom:
            s.custom = custom_plus(s.custom, values_from_push(r.custom))
        if r.latency_buckets and lat is not None:
            for le, c in r.latency_buckets:
                lat[le_parse(le)] += float(c)
        else:
            lat = None  # windows without buckets: the rank test is not possible over this span
            if r.latency_p99_ms is not None:
                # A p99 of several windows is not computable from their p99s; the request-weighted
                # mean is the documented approximation for windows pushed without buckets.
                p99_weighted += r.latency_p99_ms / 1000.0 * r.requests
                p99_requests += r.requests
        if r.quality_buckets and qual is not None:
            for le, c in r.quality_buckets:
                qual[le_parse(le)] += float(c)
        else:
            qual = None
        if r.response_tokens_buckets and resp is not None:
            for le, c in r.response_tokens_buckets:
                resp[le_parse(le)] += float(c)
        else:
            resp = None  # a window without them: the span's distribution is not known
    s.response_tokens_buckets = sorted(resp.items()) if resp else None
    s.latency_buckets = sorted(lat.items()) if lat else None
    s.quality_buckets = sorted(qual.items()) if qual else None
    if s.latency_buckets is None and p99_requests > 0:
        s.latency_p99_s = p99_weighted / p99_requests
    return s


def provider_for(name: str) -> Provider:
    if name == "prometheus":
        return PrometheusProvider()
    return PushProvider()


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    return fn(), (time.perf_counter() - started) * 1000
