"""The canary page's charts: the numbers come from the Evaluation records, downsampled in the
database (queries and payload do not grow with the evaluations), plotly.min.js is served from
the installed package, and only those who may see the canary see its charts."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader
from rest_framework.test import APIClient

from governance.access.permissions import Role
from governance.reports.pdf import report_pdf
from governance.reports.selectors import report_data
from governance.tokens.services import token_create
from monitoring.buckets import span_for
from monitoring.series import stage_summaries
from releases.canaries import charts, dashboard
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from tests.factories import make_evaluation, window_inputs

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _router_dir(settings, tmp_path) -> None:
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}


@pytest.fixture
def people(role_user):
    return {
        "owner": role_user(Role.MODEL_OWNER, username="owner"),
        "platform": role_user(Role.PLATFORM, username="platform"),
        "governance": role_user(Role.AI_GOVERNANCE, username="gov"),
        "stranger": role_user(Role.MODEL_OWNER, username="stranger"),
        "bot": role_user(Role.SERVICE_ACCOUNT, username="ci"),  # a session without a token's scope
        "nobody": role_user(username="nobody"),
    }


@pytest.fixture
def canary(people) -> Canary:
    platform = people["platform"]
    services.model_register(actor=platform, name="scorer", display_name="Scorer", risk_tier="low", owner="owner",
                            on_call="oncall@example.test")
    services.version_register(actor=platform, model_name="scorer", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    services.version_register(actor=platform, model_name="scorer", version="1.1.0", artifact_uri="s3://2")
    canary = lifecycle.canary_initiate(actor=people["owner"], model_name="scorer", version="1.1.0", schedule="standard")
    assert canary.state == Canary.State.RUNNING
    # The stage began three hours ago: room for a few hundred windows.
    Canary.objects.filter(pk=canary.pk).update(stage_entered_at=timezone.now() - timedelta(hours=3),
                                               initiated_at=timezone.now() - timedelta(hours=3))
    canary.refresh_from_db()
    return canary


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def seed(target: Canary, count: int, *, step_s: int = 30, **overrides) -> list:
    now = timezone.now()
    return [make_evaluation(target, window_end=now - timedelta(seconds=step_s * i), inputs=window_inputs(**overrides))
            for i in range(count)]


def figure_series(figure: dict, name: str) -> dict:
    return next(trace for trace in figure["data"] if trace.get("name") == name)


def test_chart_numbers_are_the_evaluations_numbers(people, canary):
    now = timezone.now()
    make_evaluation(canary, window_end=now - timedelta(minutes=90),
                    inputs=window_inputs(canary=(2000, 10), production=(198000, 198), p99_s=(0.25, 0.2),
                                         quality=(0.8, 0.9), difference_pp=0.4, ci_pp=(0.1, 0.7)))
    make_evaluation(canary, window_end=now - timedelta(minutes=10),
                    inputs=window_inputs(canary=(1000, 1), production=(99000, 99)))
    body = client_for(people["owner"]).get(reverse("releases:canary-charts", kwargs={"pk": canary.pk})).json()
    error = body["charts"]["error_rate"]
    assert figure_series(error, "Canary")["y"] == [0.5, 0.1]  # 10 / 2000, 1 / 1000, in percent
    assert figure_series(error, "Production")["y"] == [0.1, 0.1]
    # The limits over production: + 0.1 pp (promotion) and + 0.5 pp (rollback), the frozen thresholds.
    assert figure_series(error, "Promotion limit (production + margin)")["y"] == [0.2, 0.2]
    assert figure_series(error, "Rollback threshold (production + margin)")["y"] == [0.6, 0.6]
    latency = body["charts"]["latency_p99"]
    assert figure_series(latency, "Canary p99 (worst window)")["y"] == [250.0, 200.0]
    assert figure_series(latency, "Promotion limit (production ×)")["y"] == [240.0, 240.0]
    diff = body["charts"]["difference"]
    assert figure_series(diff, "Difference (canary − production), stage so far")["y"] == [0.4, 0.0]
    assert figure_series(diff, "Confidence interval")["y"] == [0.1, -0.05]
    quality = body["charts"]["quality"]
    assert figure_series(quality, "Canary")["y"] == [0.8, 0.9]
    split = body["charts"]["router_split"]
    assert figure_series(split, "Configured percent")["y"] == [1.0, 1.0]
    assert figure_series(split, "Observed canary share")["y"] == [1.0, 1.0]
    # The stage band is labelled with its percent.
    assert any(a["text"] == "stage 1: 1%" for a in error["layout"]["annotations"])


def test_latency_tokens_cost_and_segment_panels_carry_the_records_numbers(people, canary):
    now = timezone.now()
    Canary.objects.filter(pk=canary.pk).update(thresholds={
        **canary.thresholds, "rollback": {**canary.thresholds["rollback"], "tokens_per_request_ratio": 1.5}})
    canary.refresh_from_db()
    make_evaluation(canary, window_end=now - timedelta(minutes=90), inputs=window_inputs(
        canary=(2000, 10), production=(198000, 198), p50_s=(0.05, 0.04), p95_s=(0.15, 0.12),
        tokens=((600000, 200000), (59400000, 19800000)), cost_usd=(4.0, 396.0),
        segments={"eu": ((1000, 2), (99000, 99)), "us": ((1000, 8), (99000, 99))}))
    make_evaluation(canary, window_end=now - timedelta(minutes=10), inputs=window_inputs(
        canary=(1000, 1), production=(99000, 99), p50_s=(0.06, 0.04), p95_s=(0.2, 0.12),
        tokens=((300000, 150000), (29700000, 9900000)), cost_usd=(3.0, 198.0),
        segments={"eu": ((500, 0), (49500, 50)), "us": ((500, 1), (49500, 49)), "apac": ((0, 0), (0, 0)),
                  "_red": ["eu"]}))
    client = client_for(people["owner"])
    body = client.get(reverse("releases:canary-charts", kwargs={"pk": canary.pk})).json()["charts"]
    assert figure_series(body["latency_p50"], "Canary p50")["y"] == [50.0, 60.0]
    assert figure_series(body["latency_p50"], "Production p50")["y"] == [40.0, 40.0]
    assert figure_series(body["latency_p95"], "Canary p95 (worst window)")["y"] == [150.0, 200.0]
    tokens = body["tokens_per_request"]
    assert figure_series(tokens, "Canary")["y"] == [400.0, 450.0]  # (in + out) / requests
    assert figure_series(tokens, "Production")["y"] == [400.0, 400.0]
    assert figure_series(tokens, "Rollback threshold (production ×)")["y"] == [600.0, 600.0]
    assert figure_series(tokens, "Promotion limit (production ×)")["y"] == [480.0, 480.0]  # the gate's ×1.2
    cost = body["cost_per_1000"]
    assert figure_series(cost, "Canary")["y"] == [2.0, 3.0]  # USD per 1,000 requests
    assert figure_series(cost, "Production")["y"] == [2.0, 2.0]
    assert figure_series(cost, "Promotion limit (production ×)")["y"] == [2.4, 2.4]
    # One panel per segment the latest evaluation judged, the red one first, then the worst gap.
    page = client.get(reverse("releases:canary-detail", kwargs={"pk": canary.pk}))
    board = page.context["dashboard"]
    segment_titles = [c.title for c in board.charts if c.key.startswith("segment_")]
    assert [t.split(":")[0] for t in segment_titles] == ["Segment eu", "Segment us", "Segment apac"]
    us = board.chart("segment_3")  # keys follow the names' order, so a refresh redraws the same panel
    assert us.title.startswith("Segment us")
    assert figure_series(us.figure, "Canary, us")["y"] == [0.8, 0.2]
    assert figure_series(us.figure, "Production, us")["y"] == [0.1, 0.0989899]
    assert us.rows[0][:4] == [us.rows[0][0], 1000, 8, 0.8]
    csv_rows = list(csv.DictReader(io.StringIO(client.get(
        reverse("releases:canary-chart-csv", kwargs={"pk": canary.pk, "key": "cost_per_1000"})).content.decode())))
    assert [r["canary_usd_per_1000"] for r in csv_rows] == ["2.0", "3.0"]
    html = page.content.decode()
    assert 'data-testid="table-segment_1"' in html and 'data-testid="table-tokens_per_request"' in html


def test_guardrail_schema_availability_and_response_length_panels_carry_the_records_numbers(people, canary):
    now = timezone.now()
    Canary.objects.filter(pk=canary.pk).update(thresholds={
        **canary.thresholds, "promote": {**canary.thresholds["promote"], "schema_failure_rate_pp": 0.05}})
    canary.refresh_from_db()
    make_evaluation(canary, window_end=now - timedelta(minutes=90), inputs=window_inputs(
        canary=(2000, 10), production=(198000, 198), tokens=((600000, 200000), (59400000, 19800000)),
        guardrail_blocks=(20, 990), schema_failures=(4, 198), unavailable=(2, 99),
        response_tokens=((300, 900), (280, 800))))
    make_evaluation(canary, window_end=now - timedelta(minutes=10), inputs=window_inputs(
        canary=(1000, 1), production=(99000, 99), tokens=((300000, 150000), (29700000, 9900000)),
        guardrail_blocks=(5, 495), schema_failures=(1, 99), unavailable=(1, 0),
        response_tokens=((320, 1000), (280, 800))))
    client = client_for(people["owner"])
    body = client.get(reverse("releases:canary-charts", kwargs={"pk": canary.pk})).json()["charts"]
    guard = body["guardrail_block_rate"]
    assert figure_series(guard, "Canary")["y"] == [1.0, 0.5]  # 20 / 2000, 5 / 1000, in percent
    assert figure_series(guard, "Production")["y"] == [0.5, 0.5]
    assert figure_series(guard, "Promotion limit (production + margin)")["y"] == [1.0, 1.0]  # + 0.5 pp
    # 10 blocks a minute over a 5-minute window: 50 blocks in 2,000 requests, then in 1,000.
    assert figure_series(guard, "Rollback threshold (10 blocks a minute at the canary's traffic)")["y"] == [2.5, 5.0]
    schema = body["schema_failure_rate"]
    assert figure_series(schema, "Canary")["y"] == [0.2, 0.1]
    assert figure_series(schema, "Production")["y"] == [0.1, 0.1]
    assert figure_series(schema, "Promotion limit (production + margin)")["y"] == [0.15, 0.15]  # tightened
    assert figure_series(schema, "Rollback threshold (production + margin)")["y"] == [0.6, 0.6]
    available = body["availability"]
    assert figure_series(available, "Canary")["y"] == [99.9, 99.9]
    assert figure_series(available, "Production")["y"] == [99.95, 100.0]
    assert figure_series(available, "Promotion limit (production − margin)")["y"] == [99.85, 99.9]
    assert available["layout"]["yaxis"]["rangemode"] == "normal"
    length = body["response_tokens"]
    assert figure_series(length, "Canary p50")["y"] == [300.0, 320.0]
    assert figure_series(length, "Canary p95")["y"] == [900.0, 1000.0]
    assert figure_series(length, "Production p95")["y"] == [800.0, 800.0]
    rows = list(csv.DictReader(io.StringIO(client.get(reverse(
        "releases:canary-chart-csv", kwargs={"pk": canary.pk, "key": "guardrail_block_rate"})).content.decode())))
    assert [(r["canary_guardrail_blocks"], r["canary_block_rate_pct"], r["canary_blocks_per_min"]) for r in rows] == [
        ("20", "1.0", "4.0"), ("5", "0.5", "1.0")]
    rows = list(csv.DictReader(io.StringIO(client.get(reverse(
        "releases:canary-chart-csv", kwargs={"pk": canary.pk, "key": "availability"})).content.decode())))
    assert [r["canary_unavailable"] for r in rows] == ["2", "1"]
    html = client.get(reverse("releases:canary-detail", kwargs={"pk": canary.pk})).content.decode()
    for key in ("guardrail_block_rate", "schema_failure_rate", "availability", "response_tokens"):
        assert f'data-testid="table-{key}"' in html


def test_llm_panels_appear_only_when_the_evaluations_carry_their_metric(people, canary):
    # A model that reports no tokens, no unavailable request and no response length: none of them.
    seed(canary, 2, guardrail_blocks=(0, 0), schema_failures=(0, 0), unavailable=(0, 0))
    keys = {c.key for c in dashboard.canary_dashboard(canary, key="all", now=timezone.now()).charts}
    assert not keys & {"guardrail_block_rate", "schema_failure_rate", "availability", "response_tokens"}
    # Schema failures reported without tokens draw that panel alone; an unavailable request, availability.
    seed(canary, 1, schema_failures=(2, 0), unavailable=(0, 3))
    keys = {c.key for c in dashboard.canary_dashboard(canary, key="all", now=timezone.now()).charts}
    assert {"schema_failure_rate", "availability"} <= keys
    assert not keys & {"guardrail_block_rate", "response_tokens"}


def test_buckets_pool_windows_and_keep_the_worst_one(people, canary):
    # 300 windows, 30 s apart: the stage's 3 h in 240 buckets of 45 s puts some windows together.
    seed(canary, 299)
    make_evaluation(canary, window_end=timezone.now() - timedelta(seconds=30 * 299 + 7),
                    inputs=window_inputs(canary=(1000, 30)))  # one bad window: 3 %
    board = dashboard.canary_dashboard(canary, key="stage", now=timezone.now())
    assert len(board.buckets) <= dashboard.BUCKETS
    assert sum(b.windows for b in board.buckets) == 300
    assert sum(b.canary_requests for b in board.buckets) == 300 * 1000
    assert max(b.canary_rate_max for b in board.buckets) == pytest.approx(0.03)
    error = board.chart("error_rate")
    assert max(v for v in figure_series(error.figure, "Canary, worst window")["y"] if v is not None) == 3.0


def test_queries_and_payload_do_not_grow_with_the_evaluations(people, canary):
    client = client_for(people["owner"])
    url = reverse("releases:canary-detail", kwargs={"pk": canary.pk})
    data_url = reverse("releases:canary-charts", kwargs={"pk": canary.pk})

    def measure() -> tuple[int, int, int]:
        client.get(url), client.get(data_url)  # the closed buckets cached: the steady state
        with CaptureQueriesContext(connection) as page:
            assert client.get(url).status_code == 200
        with CaptureQueriesContext(connection) as data:
            response = client.get(data_url)
        return len(page), len(data), len(response.content)

    segments = {"eu": ((500, 1), (49500, 50)), "us": ((500, 0), (49500, 49))}
    seed(canary, 20, step_s=600, segments=segments)
    few = measure()
    seed(canary, 400, step_s=20, canary=(500, 1), segments=segments)  # many more windows in the same range
    many = measure()
    assert few[0] == many[0] and few[1] == many[1]
    # At most one point per bucket, whatever the number of windows.
    board = dashboard.canary_dashboard(canary, key="stage", now=timezone.now())
    assert len(board.buckets) <= dashboard.BUCKETS < 420
    assert many[2] < 1_000_000


def test_csv_and_table_carry_the_chart_numbers(people, canary):
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=5),
                    inputs=window_inputs(canary=(4000, 8), production=(396000, 396)))
    client = client_for(people["owner"])
    response = client.get(reverse("releases:canary-chart-csv", kwargs={"pk": canary.pk, "key": "error_rate"}))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 1
    assert rows[0]["canary_requests"] == "4000" and rows[0]["canary_error_rate_pct"] == "0.2"
    page = client.get(reverse("releases:canary-detail", kwargs={"pk": canary.pk})).content.decode()
    assert 'data-testid="table-error_rate"' in page and "<td>0.2</td>" in page
    assert client.get(reverse("releases:canary-chart-csv", kwargs={"pk": canary.pk, "key": "nope"})).status_code == 404


@pytest.mark.parametrize("who, status", [("owner", 200), ("platform", 200), ("governance", 200), ("stranger", 200),
                                         ("bot", 404), ("nobody", 403)])
def test_each_role_sees_the_charts_it_may(people, canary, who, status):
    seed(canary, 3)
    client = client_for(people[who])
    for url in (reverse("releases:canary-detail", kwargs={"pk": canary.pk}),
                reverse("releases:canary-charts", kwargs={"pk": canary.pk}),
                reverse("releases:canary-chart-csv", kwargs={"pk": canary.pk, "key": "error_rate"})):
        response = client.get(url)
        assert response.status_code == status, url
        if status != 200:
            assert b"Canary against production" not in response.content and b"error_rate" not in response.content


def test_anonymous_sees_no_chart(canary):
    seed(canary, 3)
    for url in (reverse("releases:canary-charts", kwargs={"pk": canary.pk}),
                reverse("releases:canary-chart-csv", kwargs={"pk": canary.pk, "key": "error_rate"})):
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
        assert b"Canary" not in response.content


def test_plotly_js_comes_from_the_installed_package_and_only_on_chart_pages(people, canary):
    import plotly  # local: only this test needs to know where the package lives

    found = finders.find("vendor/plotly.min.js")
    assert found and found.startswith(str(plotly.__path__[0]))
    names = {path for finder in finders.get_finders() for path, _ in finder.list([])}
    assert "plotly.min.js" in names or "vendor/plotly.min.js" in names
    client = client_for(people["owner"])
    detail = client.get(reverse("releases:canary-detail", kwargs={"pk": canary.pk})).content.decode()
    assert "vendor/plotly.min.js" in detail and "js/charts.js" in detail
    listing = client.get(reverse("releases:canary-list")).content.decode()
    assert "plotly" not in listing


def test_distribution_and_markers(people, canary):
    buckets = ([[0.1, 50], [0.2, 90], ["+Inf", 100]], [[0.1, 800], [0.2, 990], ["+Inf", 1000]])
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=3),
                    inputs=window_inputs(latency_buckets=buckets, warnings=[{"metric": "error_rate"}]))
    board = dashboard.canary_dashboard(canary, key="stage", now=timezone.now())
    dist = board.chart("latency_distribution")
    assert dist is not None
    assert figure_series(dist.figure, "Canary")["y"] == [50.0, 40.0, 10.0]
    assert figure_series(dist.figure, "Production")["y"] == [80.0, 19.0, 1.0]
    assert figure_series(board.chart("error_rate").figure, "Warning")["text"] == ["1 window(s) with an early warning"]


def test_rollback_is_a_marker(people, canary):
    seed(canary, 2)
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="errors doubled")
    canary.refresh_from_db()
    board = dashboard.canary_dashboard(canary, key="all", now=timezone.now())
    marker = figure_series(board.chart("error_rate").figure, "Rollback")
    assert marker["text"] == ["Rolled back: errors doubled"]


def test_pure_builders_draw_nothing_without_data():
    built = charts.build_charts(charts.ChartInput(buckets=[], thresholds={"promote": {}, "rollback": {}}))
    assert [c.key for c in built] == ["error_rate", "difference", "latency_p99", "latency_p95", "latency_p50",
                                      "quality", "safety_violations", "tokens_per_request", "cost_per_1000",
                                      "router_split"]
    assert all(c.rows == [] for c in built)


def test_beside_each_gate_the_evidence_it_was_judged_on(people, canary):
    inputs = window_inputs()
    inputs["data_age_s"] = 12.0
    inputs["stage"] = {"canary": {"quality_mean": 0.88, "safety_violations": 0},
                       "production": {"quality_mean": 0.9, "safety_violations": 0}}
    inputs["gates"] = {
        "error_rate": {"test": "two-proportion, one-sided Agresti-Caffo bounds", "canary_rate": 0.0012,
                       "production_rate": 0.001, "difference": 0.0002, "p_worse": 0.31, "ci_pp": [-0.01, 0.05],
                       "confidence": 0.95, "sample_size": {"canary": 12000, "production": 1188000},
                       "required": 30000, "time_to_sufficiency_s": 5400},
        "latency_p99": {"test": "Mann-Whitney U on latency buckets (canary slower)", "canary_p99_s": 0.31,
                        "production_p99_s": 0.3, "rank_test": {"p_greater": 0.001}, "ci": {"interval": [0.5, 0.53]},
                        "sample_size": {"canary": 12000, "production": 1188000}, "required": 3000,
                        "time_to_sufficiency_s": 0},
    }
    evaluation = make_evaluation(canary, window_end=timezone.now() - timedelta(seconds=30), inputs=inputs,
                                 values={"error_rate": (0.02, 0.1), "latency_p99": (1.033, 1.2)})
    page = client_for(people["owner"]).get(reverse("releases:canary-detail", kwargs={"pk": canary.pk}))
    rows = {row.name: row for row in page.context["gate_evidence"]}
    error = rows["error_rate"]
    assert (error.canary, error.production, error.difference) == ("0.12%", "0.1%", "+0.02 pp")
    assert error.interval == "[-0.01, 0.05] pp at 95%"
    assert error.significance == "p = 0.31 (canary worse)"
    assert error.samples == "12,000 / 1,188,000 (needs 30,000)"
    assert error.sufficiency == "about 1:30:00 at current traffic"
    latency = rows["latency_p99"]
    assert (latency.canary, latency.production, latency.difference) == ("310 ms", "300 ms", "×1.033")
    assert latency.significance.startswith("p = 0.001 (canary slower) — significant")
    assert latency.sufficiency == "reached"
    html = page.content.decode()
    assert 'data-gate="error_rate"' in html and "12,000 / 1,188,000 (needs 30,000)" in html
    age = page.context["data_age"]
    assert age["at_evaluation_s"] == 12.0 and 30 <= age["since_window_s"] <= 60
    assert 'data-testid="data-age"' in html
    assert evaluation.pk


def test_cached_closed_buckets_give_the_same_series(people, canary):
    from monitoring.series import evaluation_buckets

    seed(canary, 200, step_s=45)
    now = timezone.now()
    span = dashboard.chart_span(canary, "stage", now=now)
    fresh = evaluation_buckets(canary.pk, span)
    key = f"test:{canary.pk}:{now.timestamp()}"
    first = evaluation_buckets(canary.pk, span, closed_before=now - timedelta(minutes=30), cache_key=key)
    with CaptureQueriesContext(connection) as queries:
        second = evaluation_buckets(canary.pk, span, closed_before=now - timedelta(minutes=30), cache_key=key)
    assert len(queries) == 1  # only the open buckets are read again
    assert first == second == fresh
    # Later, more buckets have closed: only those and the open ones are read, not the whole range.
    with CaptureQueriesContext(connection) as queries:
        third = evaluation_buckets(canary.pk, span, closed_before=now - timedelta(minutes=10), cache_key=key)
    assert len(queries) == 2 and third == fresh


def test_reading_each_evaluation_once_gives_the_same_buckets(people, canary, monkeypatch):
    """On PostgreSQL the bucket query reads each evaluation's JSON once in a subquery: the buckets
    are those of the query reading the table itself (on SQLite both are the same query)."""
    from monitoring import series

    now = timezone.now()
    for i in range(40):
        llm = dict(guardrail_blocks=(i % 3, 9), schema_failures=(i % 2, 3), unavailable=(i % 5 // 4, 0),
                   response_tokens=((300 + i, 900 + i), (280, 800))) if i % 4 else {}
        make_evaluation(canary, window_end=now - timedelta(seconds=90 * i), inputs=window_inputs(
            canary=(1000 + i, i % 7), production=(99000, 99 + i), p50_s=(0.05 + i / 1000, 0.05),
            p95_s=(0.15, 0.14), tokens=((300.0 * i, 120.0 * i), (3e7, 1e7)), cost_usd=(0.002 * i, 2.0),
            segments={"eu": ((500, i % 3), (49500, 50)), "us": ((500 + i, 1), (49500, 49))}, **llm))
    span = dashboard.chart_span(canary, "stage", now=now)
    with CaptureQueriesContext(connection) as queries:
        once = series.evaluation_buckets(canary.pk, span, segments=["eu", "us"])
    monkeypatch.setattr(series, "READ_ONCE", False)
    assert once == series.evaluation_buckets(canary.pk, span, segments=["eu", "us"])
    assert any(b.canary_guardrail_requests and b.canary_response_p95_max for b in once) and len(once) > 3
    assert ("OFFSET 0" in queries[-1]["sql"]) == (connection.vendor == "postgresql")


def test_a_growing_range_keeps_its_bucket_width():
    start = timezone.now() - timedelta(days=90)
    widths = {span_for(start, start + timedelta(days=90, minutes=m), buckets=240, min_width_s=60).width_s
              for m in range(0, 600, 7)}
    assert widths == {43200}  # 90 days in 180 buckets of 12 h, for the next ten hours and more
    span = span_for(start, start + timedelta(hours=3), buckets=240, min_width_s=60)
    assert span.width_s == 60 and (span.end - span.start).total_seconds() / span.width_s <= 240


def test_report_compares_each_stage_with_production(people, canary):
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=30),
                    inputs=window_inputs(canary=(1000, 5), production=(99000, 99), warnings=[{"metric": "error_rate"}]))
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=20), status="red",
                    inputs=window_inputs(canary=(1000, 3), production=(99000, 99)))
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="errors up")
    client = client_for(people["governance"])
    response = client.get(reverse("releases:canary-report", kwargs={"pk": canary.pk}))
    assert response.status_code == 200
    report = response.context["report"]
    assert report.outcome == "rolled back" and report.decided_by == "manual rollback: errors up"
    [stage] = report.stages
    assert stage.summary.canary_rate == pytest.approx(8 / 2000) and stage.summary.red == 1
    kinds = [m.kind for m in report.anomalies]
    assert kinds.count("warning") == 1 and "rolled_back" in kinds and "red" in kinds
    html = response.content.decode()
    assert "0.4% / 0.1%" in html and "vendor/plotly.min.js" in html
    assert client_for(people["bot"]).get(reverse("releases:canary-report", kwargs={"pk": canary.pk})).status_code == 404
    assert Client().get(reverse("releases:canary-report", kwargs={"pk": canary.pk})).status_code == 302


def _rolled_back_with_anomalies(people, canary) -> Canary:
    """A canary with an insufficient window (not an anomaly), a warning, a red window, then a rollback."""
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=40), status="insufficient",
                    inputs=window_inputs(canary=(10, 0), production=(990, 1)))
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=30),
                    inputs=window_inputs(canary=(1000, 5), production=(99000, 99), warnings=[{"metric": "error_rate"}]))
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=20), status="red",
                    inputs=window_inputs(canary=(1000, 3), production=(99000, 99)))
    lifecycle.canary_rollback(actor=people["owner"], canary_id=canary.pk, reason="errors up")
    canary.refresh_from_db()
    return canary


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_report_api_returns_the_report_pages_data(people, canary):
    _rolled_back_with_anomalies(people, canary)
    url = reverse("api-canary-report", kwargs={"id": canary.pk})
    response = api_for(people["governance"]).get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["canary"]["id"] == canary.pk and body["canary"]["state"] == "rolled_back"
    assert body["decision"] == {"outcome": "rolled back", "decided_by": "manual rollback: errors up"}
    [stage] = body["stages"]
    assert stage["number"] == 1 and stage["percent"] == canary.stages[0]["percent"] and stage["windows"] == 3
    assert stage["decision"] == "rolled back: errors up" and stage["time_s"] > 3 * 3600 - 60
    assert stage["canary"]["requests"] == 2010 and stage["canary"]["error_rate"] == pytest.approx(8 / 2010)
    assert stage["production"]["error_rate"] == pytest.approx(199 / 198990)
    assert stage["comparison"]["error_rate_difference_pp"] == pytest.approx((8 / 2010 - 199 / 198990) * 100, abs=1e-6)
    assert stage["red_evaluations"] == 1 and stage["warnings"] == 1
    # Anomalies: the warning, the red window and the rollback; the insufficient window is not one.
    assert sorted(a["kind"] for a in body["anomalies"]) == ["red", "rolled_back", "warning"]
    assert [p["observed_canary_share_pct"] for p in body["traffic_split"]] == pytest.approx(
        [10 / 1000 * 100, 1000 / 100000 * 100, 1000 / 100000 * 100], rel=1e-5)
    # The same builder as the page: the page's report, as data, is the API's answer.
    page = client_for(people["governance"]).get(reverse("releases:canary-report", kwargs={"pk": canary.pk}))
    data = page.context["report"].data()
    assert [s["decision"] for s in data["stages"]] == [s["decision"] for s in body["stages"]]
    assert [a["text"] for a in data["anomalies"]] == [a["text"] for a in body["anomalies"]]
    assert 'data-cell="decision">rolled back: errors up' in page.content.decode()


def test_report_api_refuses_who_may_not_see_the_canary(people, canary):
    seed(canary, 2)
    url = reverse("api-canary-report", kwargs={"id": canary.pk})
    for who in ("owner", "platform", "stranger"):  # every role reads canaries, as the canary page shows them
        assert api_for(people[who]).get(url).status_code == 200, who
    assert api_for(people["nobody"]).get(url).status_code == 403
    assert APIClient().get(url).status_code == 401
    unknown = api_for(people["owner"]).get(reverse("api-canary-report", kwargs={"id": canary.pk + 999}))
    assert unknown.status_code == 404
    services.model_register(actor=people["platform"], name="ranker", display_name="Ranker", risk_tier="low",
                            owner="stranger", on_call="oncall@example.test")
    for scope, status in ((["scorer"], 200), (["ranker"], 404)):
        _, secret = token_create(actor=people["platform"], user=people["bot"], name=f"ci-{scope[0]}", scope=scope)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        response = client.get(url)
        assert response.status_code == status, scope
        if status == 404:  # out of scope, the canary is unknown: nothing of it is told
            assert b"scorer" not in response.content and b"stages" not in response.content


def test_evidence_report_pdf_prints_the_report_data(people, canary):
    _rolled_back_with_anomalies(people, canary)
    now = timezone.now()
    data = report_data(canary, now=now)
    assert data["stages"] == dashboard.canary_report(canary, now=now).data()["stages"]
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(report_pdf(data))).pages)
    assert "Traffic split over time" in text and "Metric comparison per stage against production" in text
    assert "0.398% / 0.1%" in text  # stage 1's error rate, canary / production
    assert "rolled back: errors up" in text and "1 window(s) with an early warning" in text
    assert "1 evaluation(s) with a red gate" in text and "insufficient" not in text


def test_table_cells_escape_text_and_write_numbers_as_they_are():
    chart = charts.Chart("t", "T", "", {}, ["a", "b", "c", "d"], [["<b>&", 1.5, None, 3]])
    assert chart.table_body() == "<tr><td>&lt;b&gt;&amp;</td><td>1.5</td><td></td><td>3</td></tr>"


def test_report_reads_closed_stages_once(people, canary):
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=50), stage_index=0,
                    inputs=window_inputs(canary=(1000, 5), production=(99000, 99)))
    make_evaluation(canary, window_end=timezone.now() - timedelta(minutes=5), stage_index=1,
                    inputs=window_inputs(canary=(4000, 4), production=(96000, 96)))
    fresh = stage_summaries(canary.pk)
    key = "report-test"
    assert stage_summaries(canary.pk, closed_below=1, cache_key=key) == fresh
    with CaptureQueriesContext(connection) as queries:
        cached = stage_summaries(canary.pk, closed_below=1, cache_key=key)
    assert len(queries) == 1 and cached == fresh  # only the running stage is read again
    assert cached[0].canary_rate == pytest.approx(5 / 1000) and cached[1].canary_rate == pytest.approx(4 / 4000)
