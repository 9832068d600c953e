"""Downsampled evaluation series as plain values: a `Bucket` is the evaluation windows of one
time span pooled (monitoring.series reads them in one aggregate query), a `Span` the range and
bucket width asked for. Nothing here does I/O: the chart builders import these without
importing a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class CustomValue:
    """One custom metric's windows in a bucket (monitoring.custom): each side's value as the mean
    of its windows' values weighted by their counts (trials, requests or observations)."""

    name: str
    canary: float | None
    production: float | None
    canary_count: float
    production_count: float


@dataclass(frozen=True)
class SegmentCounts:
    """One segment's windows in a bucket: each side's requests and errors summed, p99 mean."""

    name: str
    canary_requests: float
    canary_errors: float
    production_requests: float
    production_errors: float
    canary_p99_mean: float | None = None
    production_p99_mean: float | None = None

    @property
    def canary_rate(self) -> float | None:
        return self.canary_errors / self.canary_requests if self.canary_requests > 0 else None

    @property
    def production_rate(self) -> float | None:
        return self.production_errors / self.production_requests if self.production_requests > 0 else None


@dataclass(frozen=True)
class Bucket:
    """One time bucket of evaluation windows (what each field keeps: monitoring.series). Counts are floats as
    the providers report them; a value is None where no window of the bucket recorded it."""

    start: datetime
    end: datetime  # the latest window end in the bucket
    windows: int
    stage_min: int
    stage_max: int
    canary_requests: float
    canary_errors: float
    production_requests: float
    production_errors: float
    canary_rate_max: float | None
    canary_rate_min: float | None
    production_rate_max: float | None
    canary_p99_max: float | None
    canary_p99_mean: float | None
    production_p99_max: float | None
    production_p99_mean: float | None
    canary_quality: float | None
    production_quality: float | None
    canary_scored: float
    production_scored: float
    safety_violations: float
    traffic_percent: float | None
    difference_pp: float | None
    ci_low_pp: float | None
    ci_high_pp: float | None
    warnings: int
    rollback_triggers: int
    red: int
    # p50/p95 latency (mean over the windows; p95's worst window too), tokens and cost summed with
    # the requests of the windows that recorded them (so a window without them does not dilute the
    # per-request figure), and each segment's counts (only those of the segments asked for).
    canary_p50_mean: float | None = None
    production_p50_mean: float | None = None
    canary_p95_mean: float | None = None
    canary_p95_max: float | None = None
    production_p95_mean: float | None = None
    canary_tokens: float = 0.0
    canary_token_requests: float = 0.0
    production_tokens: float = 0.0
    production_token_requests: float = 0.0
    canary_cost_usd: float = 0.0
    canary_cost_requests: float = 0.0
    production_cost_usd: float = 0.0
    production_cost_requests: float = 0.0
    # Guardrail blocks, output-schema failures and unavailable requests summed, each with the
    # requests of the windows that recorded it; the response length (output tokens per response)
    # p50 and p95, the mean over the windows that recorded it (p95's worst window too).
    canary_guardrail_blocks: float = 0.0
    canary_guardrail_requests: float = 0.0
    production_guardrail_blocks: float = 0.0
    production_guardrail_requests: float = 0.0
    canary_schema_failures: float = 0.0
    canary_schema_requests: float = 0.0
    production_schema_failures: float = 0.0
    production_schema_requests: float = 0.0
    canary_unavailable: float = 0.0
    canary_unavailable_requests: float = 0.0
    production_unavailable: float = 0.0
    production_unavailable_requests: float = 0.0
    canary_response_p50_mean: float | None = None
    canary_response_p95_mean: float | None = None
    canary_response_p95_max: float | None = None
    production_response_p50_mean: float | None = None
    production_response_p95_mean: float | None = None
    segments: tuple[SegmentCounts, ...] = ()
    custom: tuple[CustomValue, ...] = ()  # the declared custom metrics asked for

    def custom_metric(self, name: str) -> CustomValue | None:
        return next((c for c in self.custom if c.name == name), None)

    @property
    def canary_rate(self) -> float | None:
        return self.canary_errors / self.canary_requests if self.canary_requests > 0 else None

    @property
    def production_rate(self) -> float | None:
        return self.production_errors / self.production_requests if self.production_requests > 0 else None

    @property
    def canary_tokens_per_request(self) -> float | None:
        return self.canary_tokens / self.canary_token_requests if self.canary_token_requests > 0 else None

    @property
    def production_tokens_per_request(self) -> float | None:
        return self.production_tokens / self.production_token_requests if self.production_token_requests > 0 else None

    @property
    def canary_cost_per_1000(self) -> float | None:
        return self.canary_cost_usd / self.canary_cost_requests * 1000 if self.canary_cost_requests > 0 else None

    @property
    def production_cost_per_1000(self) -> float | None:
        return (self.production_cost_usd / self.production_cost_requests * 1000
                if self.production_cost_requests > 0 else None)

    def share(self, role: str, what: str) -> float | None:
        """One side's guardrail block, schema failure or unavailable share of the requests of the
        windows that recorded it (`what`: guardrail | schema | unavailable)."""
        count = getattr(self, f"{role}_{_COUNTS[what]}")
        requests = getattr(self, f"{role}_{what}_requests")
        return count / requests if requests > 0 else None

    def availability(self, role: str) -> float | None:
        share = self.share(role, "unavailable")
        return 1 - share if share is not None else None

    def segment(self, name: str) -> SegmentCounts | None:
        return next((s for s in self.segments if s.name == name), None)

    @property
    def observed_share(self) -> float | None:
        """The canary's share of the requests, in percent."""
        total = self.canary_requests + self.production_requests
        return self.canary_requests / total * 100 if total > 0 else None


_COUNTS = {"guardrail": "guardrail_blocks", "schema": "schema_failures", "unavailable": "unavailable"}


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    width_s: int


# Bucket widths: a range that grows with the clock keeps its width (and so its cached closed
# buckets) until it needs the next step of this ladder, instead of a new width every few minutes.
WIDTHS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
            172800, 345600, 604800)


def span_for(start: datetime, end: datetime, *, buckets: int, min_width_s: int) -> Span:
    """The bucket width that cuts [start, end] into at most `buckets` buckets, at least
    `min_width_s`, taken from WIDTHS_S (whole weeks past them); the start moved back to a
    multiple of the width (from the epoch), so a range that slides or grows with the clock keeps
    the same buckets from one request to the next."""
    if end <= start:
        end = start + timedelta(seconds=min_width_s)
    seconds = (end - start).total_seconds()
    needed = max(int(min_width_s), math.ceil(seconds / max(buckets - 1, 1)))
    width = next((w for w in WIDTHS_S if w >= needed), math.ceil(needed / WIDTHS_S[-1]) * WIDTHS_S[-1])
    aligned = datetime.fromtimestamp(start.timestamp() // width * width, tz=start.tzinfo)
    return Span(aligned, end, width)
