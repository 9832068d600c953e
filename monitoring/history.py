"""The window before this one, read back from the evaluations already stored: the rollback rule
pools error evidence over the last two windows (monitoring.statistics), and the earlier window's
numbers are those its own Evaluation recorded, so the pooled test can be traced to both records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitoring.models import Evaluation
from monitoring.samples import Sample

_COUNTS = {
    (role, name): f"inputs__window__{role}__{name}"
    for role in ("canary", "production") for name in ("requests", "errors")
}
# Recorded since the LLM rules: an older evaluation lacks them, and reads as zero tokens.
_OPTIONAL = {
    (role, name): f"inputs__window__{role}__{name}"
    for role in ("canary", "production") for name in ("tokens_in", "tokens_out")
}


@dataclass(frozen=True)
class EarlierWindow:
    evaluation_id: int
    window_start: datetime
    window_end: datetime
    samples: dict[str, Sample]

    def reference(self) -> dict[str, Any]:
        return {"evaluation_id": self.evaluation_id, "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat()}


def earlier_windows(canary_ids: Iterable[int], *, now: datetime, window_s: float,
                    cadence_s: float) -> dict[int, EarlierWindow]:
    """For each canary, the evaluated window that ends where the current one (ending `now`)
    starts, or up to one cadence before: never overlapping it, so no request counts twice. One
    query for all the canaries. Evaluations without window numbers (stale data, source errors)
    are passed over."""
    ids = list(canary_ids)
    if not ids:
        return {}
    start = now - timedelta(seconds=window_s)
    rows = (
        Evaluation.objects.filter(canary_id__in=ids, window_end__lte=start,
                                  window_end__gt=start - timedelta(seconds=cadence_s))
        .order_by("canary_id", "window_end", "id")
        .values_list("id", "canary_id", "window_start", "window_end", *_COUNTS.values(), *_OPTIONAL.values())
    )
    found: dict[int, EarlierWindow] = {}
    for pk, canary_id, w_start, w_end, *counts in rows:  # ascending: the last row per canary wins
        values = dict(zip(_COUNTS, counts[:len(_COUNTS)], strict=True))
        if any(not isinstance(v, int | float) for v in values.values()):
            continue
        extra = {k: float(v) if isinstance(v, int | float) else 0.0
                 for k, v in zip(_OPTIONAL, counts[len(_COUNTS):], strict=True)}
        samples = {role: Sample(requests=float(values[(role, "requests")]), errors=float(values[(role, "errors")]),
                                tokens_in=extra[(role, "tokens_in")], tokens_out=extra[(role, "tokens_out")],
                                present=True) for role in ("canary", "production")}
        found[canary_id] = EarlierWindow(pk, w_start, w_end, samples)
    return found
