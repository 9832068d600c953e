"""The SLO page's charts: pure builders from measured SLO events to Plotly figures (JSON-ready
dicts), each with the same numbers as a table (the screen-reader alternative and the view
without JavaScript).

No database and no clock here: monitoring.selectors reads the measurements and passes them in.

- rollback, promotion and notification delivery: every measured event as a point (when it was
  confirmed or delivered, how long it took), breaches in red, against the target drawn as a line;
- metric staleness: kept as a histogram over every evaluation (not per event), so its chart is
  the distribution: how many evaluations fell in each staleness bucket, against the target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

WITHIN = "#2b8a3e"
BREACH = "#c92a2a"
TARGET = "#495057"


@dataclass(frozen=True)
class SloChart:
    key: str  # the SLO
    title: str
    description: str
    figure: dict[str, Any]
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    @property
    def script_id(self) -> str:
        return f"slo-figure-{self.key}"


def _layout(*, x_title: str, y_title: str, target_s: float, horizontal: bool) -> dict[str, Any]:
    line = {"type": "line", "line": {"color": TARGET, "dash": "dash", "width": 2}}
    if horizontal:  # the target as a level on the seconds axis
        shape = {**line, "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": target_s, "y1": target_s}
        note = {"xref": "paper", "x": 1, "yref": "y", "y": target_s, "xanchor": "right", "yanchor": "bottom"}
    else:  # the target as a bound on the seconds axis of a distribution
        shape = {**line, "yref": "paper", "y0": 0, "y1": 1, "xref": "x", "x0": target_s, "x1": target_s}
        note = {"yref": "paper", "y": 1, "xref": "x", "x": target_s, "xanchor": "left", "yanchor": "top"}
    return {
        "margin": {"l": 56, "r": 16, "t": 28, "b": 48}, "height": 300, "showlegend": True,
        "legend": {"orientation": "h", "y": -0.25},
        "xaxis": {"title": {"text": x_title}}, "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "shapes": [shape],
        "annotations": [{**note, "text": f"target {target_s:g} s", "showarrow": False, "font": {"color": TARGET}}],
    }


def measured_chart(*, slo: str, label: str, target_s: float,
                   points: Sequence[tuple[datetime, float]]) -> SloChart:
    """Each measured event of an SLO (confirmed or delivered at, seconds it took) against the
    target. Points past the target are drawn as breaches."""
    ordered = sorted(points)
    within = [(at, s) for at, s in ordered if s <= target_s]
    breached = [(at, s) for at, s in ordered if s > target_s]
    traces = [
        go.Scatter(name="within target", mode="markers", marker={"color": WITHIN, "size": 8},
                   x=[at.isoformat() for at, _ in within], y=[round(s, 3) for _, s in within]),
        go.Scatter(name="breach", mode="markers", marker={"color": BREACH, "size": 10, "symbol": "x"},
                   x=[at.isoformat() for at, _ in breached], y=[round(s, 3) for _, s in breached]),
    ]
    layout = _layout(x_title="when (UTC)", y_title="seconds", target_s=target_s, horizontal=True)
    figure = go.Figure(data=traces, layout=layout).to_plotly_json()
    rows = [[at.strftime("%Y-%m-%d %H:%M:%S"), f"{s:.1f}", "breach" if s > target_s else "within"]
            for at, s in ordered]
    return SloChart(key=slo, title=label, figure=figure, columns=["When (UTC)", "Seconds", "Against the target"],
                    rows=rows, description=f"Each measured event: how long it took, against the target of "
                    f"{target_s:g} s (dashed line). {len(breached)} of {len(ordered)} past it.")


def staleness_chart(*, label: str, target_s: float, cumulative: Mapping[float, int], count: int) -> SloChart:
    """The distribution of metric staleness at each evaluation, from the histogram's cumulative
    bucket counts ({upper bound in seconds: evaluations at or below it}); evaluations beyond the
    largest bound are their own bar."""
    bounds = sorted(cumulative.items())
    labels, counts, previous = [], [], 0
    for le, n in bounds:
        labels.append(f"≤ {le:g} s")
        counts.append(max(n - previous, 0))
        previous = n
    if count > previous:
        labels.append(f"> {bounds[-1][0]:g} s" if bounds else "all")
        counts.append(count - previous)
    colours = [BREACH if (label_.startswith(">") or float(label_.split()[1]) > target_s) else WITHIN
               for label_ in labels]
    trace = go.Bar(name="evaluations", x=labels, y=counts, marker={"color": colours})
    layout = _layout(x_title="staleness of the newest sample at the evaluation", y_title="evaluations",
                     target_s=target_s, horizontal=False)
    # The bucket axis is categorical: the target is drawn as the boundary after its own bucket.
    at_target = next((i for i, (le, _) in enumerate(bounds) if le >= target_s), len(labels) - 1)
    layout["shapes"][0].update({"x0": at_target + 0.5, "x1": at_target + 0.5})
    layout["annotations"][0]["x"] = at_target + 0.5
    figure = go.Figure(data=[trace], layout=layout).to_plotly_json()
    rows = [[lab, str(n)] for lab, n in zip(labels, counts, strict=True)]
    return SloChart(key="staleness", title=label, figure=figure, columns=["Staleness", "Evaluations"], rows=rows,
                    description=f"How stale the metrics were at each of {count} evaluations, by bucket, against "
                    f"the target of {target_s:g} s (dashed line).")
