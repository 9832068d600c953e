"""The SLO page's chart builders (monitoring.charts): pure, the same numbers in the figure and
the table, breaches apart, the target drawn where it applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitoring import charts

T0 = datetime(2026, 5, 2, 10, 0, tzinfo=UTC)


def test_each_measured_event_is_a_point_and_breaches_are_their_own_series():
    points = [(T0 + timedelta(minutes=2), 150.0), (T0, 31.5), (T0 + timedelta(minutes=1), 119.9)]
    chart = charts.measured_chart(slo="rollback", label="Rollback", target_s=120, points=points)
    within, breach = chart.figure["data"]
    assert (within["name"], breach["name"]) == ("within target", "breach")
    assert within["y"] == [31.5, 119.9] and breach["y"] == [150.0]
    assert breach["x"] == [(T0 + timedelta(minutes=2)).isoformat()]
    target = chart.figure["layout"]["shapes"][0]
    assert (target["y0"], target["y1"]) == (120, 120)
    assert chart.rows == [["2026-05-02 10:00:00", "31.5", "within"], ["2026-05-02 10:01:00", "119.9", "within"],
                          ["2026-05-02 10:02:00", "150.0", "breach"]]
    assert "1 of 3 past it" in chart.description and chart.script_id == "slo-figure-rollback"


def test_nothing_measured_is_an_empty_chart_not_an_error():
    chart = charts.measured_chart(slo="promotion", label="Promotion", target_s=1800, points=[])
    assert [trace["y"] for trace in chart.figure["data"]] == [[], []] and chart.rows == []


def test_the_staleness_distribution_comes_from_cumulative_buckets_with_the_overflow_apart():
    chart = charts.staleness_chart(label="Staleness", target_s=300, cumulative={60.0: 10, 300.0: 14, 600.0: 15},
                                   count=17)
    (bars,) = chart.figure["data"]
    assert list(bars["x"]) == ["≤ 60 s", "≤ 300 s", "≤ 600 s", "> 600 s"]
    assert list(bars["y"]) == [10, 4, 1, 2]
    assert list(bars["marker"]["color"]) == [charts.WITHIN, charts.WITHIN, charts.BREACH, charts.BREACH]
    # The target sits on the boundary after the bucket that ends at it.
    assert chart.figure["layout"]["shapes"][0]["x0"] == 1.5
    assert chart.rows == [["≤ 60 s", "10"], ["≤ 300 s", "4"], ["≤ 600 s", "1"], ["> 600 s", "2"]]
