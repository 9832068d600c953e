"""The numbers a metric provider reads and the evaluator judges, as plain values.

A `Sample` is one version's numbers over some span; a `Reading` is what a provider answers for one
canary (the canary's and production's samples over the window, the stage so far or cumulative
counters, or the error that made it unknown); a `Target` names what to read. Nothing here does I/O:
the pure evaluator and the statistics import these without importing a provider.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

Buckets = list[tuple[float, float]]  # cumulative (le, count), ascending, +Inf last


@dataclass
class Sample:
    """One version's numbers (in one segment set) over some span."""

    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: Buckets | None = None
    latency_p99_s: float | None = None  # only when there are no buckets (push, overrides)
    quality_sum: float = 0.0
    quality_count: float = 0.0
    quality_buckets: Buckets | None = None
    quality_mean_override: float | None = None
    safety_violations: float = 0.0
    anomaly_alerts: float = 0.0
    # LLM serving: tokens in and out, inference cost, requests blocked by a guardrail.
    tokens_in: float = 0.0
    tokens_out: float = 0.0
    cost_usd: float = 0.0
    guardrail_blocks: float = 0.0
    schema_failures: float = 0.0  # outputs that failed their output schema
    unavailable: float = 0.0  # requests the server could not serve (counted in `errors` too)
    response_tokens_buckets: Buckets | None = None  # output tokens per response (recorded, not judged)
    last_seen: datetime | None = None
    present: bool = False  # any series / observation at all
    # A version's custom metrics (monitoring.custom): {name: {"x": events, "n": trials} | {"buckets": ...}}.
    custom: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def tokens_per_request(self) -> float | None:
        return (self.tokens_in + self.tokens_out) / self.requests if self.requests > 0 else None

    @property
    def quality_mean(self) -> float | None:
        if self.quality_mean_override is not None:
            return self.quality_mean_override
        return self.quality_sum / self.quality_count if self.quality_count > 0 else None

    def minus(self, earlier: Sample) -> Sample:
        """This cumulative reading less an earlier one. A counter that went backwards (a model
        server restarted) cannot be subtracted: the later reading is taken whole, which undercounts
        the stage rather than inventing negative requests."""
        if self.requests < earlier.requests or self.errors < earlier.errors:
            return replace(self)
        return replace(
            self,
            requests=self.requests - earlier.requests,
            errors=self.errors - earlier.errors,
            latency_buckets=bucket_minus(self.latency_buckets, earlier.latency_buckets),
            quality_sum=max(0.0, self.quality_sum - earlier.quality_sum),
            quality_count=max(0.0, self.quality_count - earlier.quality_count),
            quality_buckets=bucket_minus(self.quality_buckets, earlier.quality_buckets),
            safety_violations=max(0.0, self.safety_violations - earlier.safety_violations),
            tokens_in=max(0.0, self.tokens_in - earlier.tokens_in),
            tokens_out=max(0.0, self.tokens_out - earlier.tokens_out),
            cost_usd=max(0.0, self.cost_usd - earlier.cost_usd),
            guardrail_blocks=max(0.0, self.guardrail_blocks - earlier.guardrail_blocks),
            schema_failures=max(0.0, self.schema_failures - earlier.schema_failures),
            custom=custom_minus(self.custom, earlier.custom),
            unavailable=max(0.0, self.unavailable - earlier.unavailable),
            response_tokens_buckets=bucket_minus(self.response_tokens_buckets, earlier.response_tokens_buckets),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "errors": self.errors,
            "latency_buckets": [[le_json(le), c] for le, c in self.latency_buckets] if self.latency_buckets else None,
            "latency_p99_s": self.latency_p99_s, "quality_sum": self.quality_sum, "quality_count": self.quality_count,
            "quality_buckets": [[le_json(le), c] for le, c in self.quality_buckets] if self.quality_buckets else None,
            "quality_mean_override": self.quality_mean_override,
            "safety_violations": self.safety_violations, "anomaly_alerts": self.anomaly_alerts,
            "tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "cost_usd": self.cost_usd,
            "guardrail_blocks": self.guardrail_blocks, "schema_failures": self.schema_failures,
            "unavailable": self.unavailable,
            "response_tokens_buckets": [[le_json(le), c] for le, c in self.response_tokens_buckets]
            if self.response_tokens_buckets else None,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None, "present": self.present,
            **({"custom": custom_json(self.custom)} if self.custom else {}),
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Sample:
        def buckets(raw: Any) -> Buckets | None:
            return [(le_parse(le), float(c)) for le, c in raw] if raw else None

        return cls(
            requests=value.get("requests", 0.0), errors=value.get("errors", 0.0),
            latency_buckets=buckets(value.get("latency_buckets")), latency_p99_s=value.get("latency_p99_s"),
            quality_sum=value.get("quality_sum", 0.0), quality_count=value.get("quality_count", 0.0),
            quality_buckets=buckets(value.get("quality_buckets")),
            quality_mean_override=value.get("quality_mean_override"),
            safety_violations=value.get("safety_violations", 0.0), anomaly_alerts=value.get("anomaly_alerts", 0.0),
            tokens_in=value.get("tokens_in", 0.0), tokens_out=value.get("tokens_out", 0.0),
            cost_usd=value.get("cost_usd", 0.0), guardrail_blocks=value.get("guardrail_blocks", 0.0),
            schema_failures=value.get("schema_failures", 0.0), unavailable=value.get("unavailable", 0.0),
            response_tokens_buckets=buckets(value.get("response_tokens_buckets")),
            last_seen=datetime.fromisoformat(value["last_seen"]) if value.get("last_seen") else None,
            present=value.get("present", False), custom=custom_parse(value.get("custom")),
        )


def samples_sum(samples: list[Sample]) -> Sample:
    """Several spans' numbers as one (e.g. a version's numbers over several stages): counts and
    histogram buckets add; the newest `last_seen` is kept."""
    total = Sample()
    for s in samples:
        total = Sample(
            requests=total.requests + s.requests, errors=total.errors + s.errors,
            latency_buckets=bucket_plus(total.latency_buckets, s.latency_buckets),
            latency_p99_s=s.latency_p99_s if total.latency_p99_s is None else max(total.latency_p99_s,
                                                                                 s.latency_p99_s or 0.0),
            quality_sum=total.quality_sum + s.quality_sum, quality_count=total.quality_count + s.quality_count,
            quality_buckets=bucket_plus(total.quality_buckets, s.quality_buckets),
            safety_violations=total.safety_violations + s.safety_violations,
            anomaly_alerts=total.anomaly_alerts + s.anomaly_alerts,
            tokens_in=total.tokens_in + s.tokens_in, tokens_out=total.tokens_out + s.tokens_out,
            cost_usd=total.cost_usd + s.cost_usd, guardrail_blocks=total.guardrail_blocks + s.guardrail_blocks,
            schema_failures=total.schema_failures + s.schema_failures,
            unavailable=total.unavailable + s.unavailable,
            response_tokens_buckets=bucket_plus(total.response_tokens_buckets, s.response_tokens_buckets),
            last_seen=max((t for t in (total.last_seen, s.last_seen) if t is not None), default=None),
            present=total.present or s.present, custom=custom_plus(total.custom, s.custom),
        )
    return total


@dataclass(frozen=True)
class Target:
    canary_id: int
    model: str
    version: str
    baseline: str
    segments: tuple[str, ...] | None  # None: every segment (random segmentation)
    stage_since: datetime
    queries: dict[str, str] = field(default_factory=dict)  # per-version PromQL overrides
    custom: dict[str, dict[str, Any]] = field(default_factory=dict)  # declared custom metrics (monitoring.custom)


@dataclass
class Reading:
    window: dict[str, Sample] | None = None  # {"canary": ..., "production": ...}
    stage: dict[str, Sample] | None = None  # stage so far, when the provider can say
    totals: dict[str, Sample] | None = None  # cumulative counters (Prometheus)
    error: str | None = None
    queries: list[str] = field(default_factory=list)
    source: str = ""
    # Stage-so-far values from per-version override queries, applied over the computed stage.
    stage_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    # The same numbers per segment label (cohort, region, tier, a declared subgroup), before they
    # are summed: {segment: {"canary": ..., "production": ...}}, for the window and for the stage
    # so far (push) or as cumulative counters (Prometheus).
    segments_window: dict[str, dict[str, Sample]] = field(default_factory=dict)
    segments_stage: dict[str, dict[str, Sample]] | None = None
    segments_totals: dict[str, dict[str, Sample]] | None = None
    # Where the window's numbers begin when the provider clips them to the stage (push: the
    # stage's start, if it began within the window). None: the whole evaluation window, as a
    # Prometheus `increase(...[window])` reads it.
    window_start: datetime | None = None


def le_parse(raw: Any) -> float:
    return math.inf if raw in ("+Inf", "Inf", "inf", None) else float(raw)


def le_json(le: float) -> Any:
    return "+Inf" if math.isinf(le) else le


def bucket_minus(later: Buckets | None, earlier: Buckets | None) -> Buckets | None:
    if later is None:
        return None
    if not earlier:
        return later
    before = dict(earlier)
    return [(le, max(0.0, c - before.get(le, 0.0))) for le, c in later]


def bucket_plus(a: Buckets | None, b: Buckets | None) -> Buckets | None:
    """Two cumulative histograms over the same bounds, added (a bound only one has counts once)."""
    if not a:
        return b
    if not b:
        return a
    counts = dict(a)
    for le, c in b:
        counts[le] = counts.get(le, 0.0) + c
    return sorted(counts.items())


def custom_plus(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Two spans' custom metric values (Sample.custom, monitoring.custom) added."""
    out = {name: dict(v) for name, v in a.items()}
    for name, v in b.items():
        have = out.setdefault(name, {})
        for key in ("x", "n"):
            if key in v:
                have[key] = have.get(key, 0.0) + v[key]
        if "buckets" in v:
            have["buckets"] = bucket_plus(have.get("buckets"), v["buckets"])
    return out


def custom_minus(later: dict[str, dict[str, Any]], earlier: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Cumulative values less earlier ones (a counter that went backwards is taken whole)."""
    out = {}
    for name, v in later.items():
        before = earlier.get(name) or {}
        if any(v.get(k, 0.0) < before.get(k, 0.0) for k in ("x", "n")):
            out[name] = dict(v)
            continue
        one = {k: v[k] - before.get(k, 0.0) for k in ("x", "n") if k in v}
        if "buckets" in v:
            one["buckets"] = bucket_minus(v["buckets"], before.get("buckets"))
        out[name] = one
    return out


def custom_json(values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Custom metric values as JSON (buckets with "+Inf"), and back (custom_parse)."""
    return {name: {k: ([[le_json(le), c] for le, c in v] if k == "buckets" and v else v) for k, v in one.items()}
            for name, one in values.items()}


def custom_parse(raw: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {name: {k: ([(le_parse(le), float(c)) for le, c in v] if k == "buckets" and v else v)
                   for k, v in one.items()} for name, one in (raw or {}).items()}
