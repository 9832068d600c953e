"""PDF documents: the completion certificate and the post-canary report (reportlab).

Both are rendered with reportlab's `invariant` flag: no creation date or random document id,
so the same content gives the same bytes and a certificate's PDF hash can be re-derived."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from django.urls import reverse
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

_STYLES = getSampleStyleSheet()
_TABLE = TableStyle(
    [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 8),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef2f5")),
    ]
)


def _p(text: Any, style: str = "BodyText") -> Paragraph:
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Paragraph(escaped, _STYLES[style])


def _table(rows: Sequence[Sequence[Any]], widths: Sequence[float] | None = None) -> Table:
    cells = [[_p(c, "BodyText") if isinstance(c, str) and len(c) > 40 else c for c in row] for row in rows]
    table = Table(cells, colWidths=widths, repeatRows=1)
    table.setStyle(_TABLE)
    return table


def _build(story: list[Any], *, title: str) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=A4, title=title, author="CanaryHub", invariant=1,
        leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm, bottomMargin=15 * mm,
    )
    doc.build(story)
    return buffer.getvalue()


def certificate_pdf(*, certificate_id: str, body: dict[str, Any], evidence_hash: str, chain_head: dict[str, Any],
                    verify_url: str) -> bytes:
    story: list[Any] = [
        _p("Canary Completion Certificate", "Title"),
        _p(f"Certificate {certificate_id}"),
        _p(f"{body['model']} version {body['version']} (risk tier {body['risk_tier']}) replaced {body['baseline']} "
           f"in production through a staged canary ({body['schedule']} schedule)."),
        Spacer(1, 4 * mm),
        _table([
            ["Item", "Value"],
            ["Model", body["model"]], ["Version", body["version"]], ["Baseline", body["baseline"]],
            ["Schedule", f"{body['schedule']}: " + " > ".join(f"{s['percent']}%" for s in body["stages"])],
            ["Initiated", body["initiated_at"]], ["Completed", body["completed_at"] or ""],
            ["Issued by", f"{body['issued_by']} (AI Governance) at {body['issued_at']}"],
        ], [40 * mm, 140 * mm]),
        Spacer(1, 4 * mm),
        _p("Time at each stage and gate results", "Heading3"),
        _table(
            [["Stage", "Traffic", "Entered", "Time at stage", "Evaluations", "Gates at promotion"]]
            + [[str(s["index"]), f"{s['percent']}%", s["entered_at"] or "", s["duration"], str(s["evaluations"]),
                s["gates"]] for s in body["stages"]],
            [12 * mm, 15 * mm, 42 * mm, 25 * mm, 20 * mm, 66 * mm],
        ),
        Spacer(1, 4 * mm),
        _p("Signatories", "Heading3"),
        _table(
            [["Step", "Role", "Printed name", "Signed at", "Meaning"]]
            + [[a["step"], a["role"], a["printed_name"], a["signed_at"], a["meaning"]] for a in body["signatures"]],
            [28 * mm, 14 * mm, 32 * mm, 42 * mm, 64 * mm],
        ),
        Spacer(1, 4 * mm),
        _p("Checklist", "Heading3"),
        _table([["Check", "Result"]] + [[c["label"], ("passed: " if c["ok"] else "FAILED: ") + c["detail"]]
                                         for c in body["checklist"]], [60 * mm, 120 * mm]),
        Spacer(1, 4 * mm),
        *_slo_story(body.get("slo") or []),
        _p("Integrity", "Heading3"),
        _p(f"Evidence hash (SHA-256 of the sealed evidence records): {evidence_hash}", "Code"),
        _p(f"Audit chain head at issue: #{chain_head['seq']} {chain_head['hash']}", "Code"),
        _p(f"Verify this certificate at {verify_url}"),
    ]
    return _build(story, title=f"Canary completion certificate {certificate_id}")


def _slo_story(figures: list[dict[str, Any]]) -> list[Any]:
    """The SLOs measured on the canary's own rollbacks and promotions (certificates issued before
    they were measured carry none)."""
    if not figures:
        return []

    def secs(value: Any) -> str:
        return "—" if value is None else f"{value:g} s"

    rows = [[f["label"].split(":")[0], f"< {f['target_s']:g} s", str(f["count"]), secs(f["median_s"]),
             secs(f["max_s"]), str(f["breaches"])] for f in figures]
    return [_p("SLOs measured", "Heading3"),
            _table([["SLO", "Target", "Measured", "Median", "Worst", "Breaches"]] + rows,
                   [34 * mm, 24 * mm, 24 * mm, 30 * mm, 30 * mm, 24 * mm]),
            Spacer(1, 4 * mm)]


def _line_chart(points: list[tuple[float, float]], *, x_label: str) -> Drawing:
    drawing = Drawing(170 * mm, 60 * mm)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 30, 25, 170 * mm - 50, 60 * mm - 40
    plot.data = [points or [(0, 0)]]
    plot.lines[0].strokeColor = colors.HexColor("#1f6f8b")
    plot.lines[0].strokeWidth = 1.5
    plot.yValueAxis.valueMin, plot.yValueAxis.valueMax = 0, 100
    plot.xValueAxis.valueMin = 0
    drawing.add(plot)
    drawing.add(String(30, 5, x_label, fontSize=7))
    drawing.add(String(0, 60 * mm - 10, "traffic to canary (%)", fontSize=7))
    return drawing


def _bar_chart(*, title: str, labels: list[str], canary: list[float], limit: list[float]) -> Drawing:
    drawing = Drawing(85 * mm, 55 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 30, 20, 85 * mm - 45, 55 * mm - 40
    chart.data = [canary or [0], limit or [0]]
    chart.categoryAxis.categoryNames = labels or ["-"]
    chart.categoryAxis.labels.fontSize = 6
    chart.valueAxis.labels.fontSize = 6
    chart.bars[0].fillColor = colors.HexColor("#1f6f8b")
    chart.bars[1].fillColor = colors.HexColor("#c9a227")
    drawing.add(chart)
    drawing.add(String(30, 55 * mm - 12, title, fontSize=8))
    legend = Legend()
    legend.x, legend.y = 85 * mm - 40, 55 * mm - 14
    legend.fontSize = 6
    legend.colorNamePairs = [(colors.HexColor("#1f6f8b"), "canary"), (colors.HexColor("#c9a227"), "limit")]
    drawing.add(legend)
    return drawing


def report_pdf(report: dict[str, Any]) -> bytes:
    """The post-canary report: traffic split over time, metric comparison per stage (charts),
    anomalies, the decision and the time at each stage."""
    story: list[Any] = [
        _p(f"Post-canary report: {report['model']} {report['version']}", "Title"),
        _p(f"Canary #{report['canary_id']} against production {report['baseline']}; schedule {report['schedule']}; "
           f"risk tier {report['risk_tier']}."),
        _p(f"Decision: {report['decision']}", "Heading2"),
        _p(report["decision_detail"]),
        _p("Traffic split over time", "Heading3"),
        _line_chart(report["traffic_points"], x_label="hours since initiation"),
        _p("Metric comparison per stage (last evaluation of each stage: observed value against its limit)", "Heading3"),
    ]
    charts = [
        _bar_chart(title=m["name"], labels=m["labels"], canary=m["values"], limit=m["limits"])
        for m in report["metrics"]
    ]
    for i in range(0, len(charts), 2):
        story.append(Table([charts[i:i + 2]]))
    story += [
        _p("Time at each stage", "Heading3"),
        _table([["Stage", "Traffic", "Entered", "Time at stage", "Evaluations", "Last verdict"]]
               + [[str(s["index"]), f"{s['percent']}%", s["entered_at"] or "not reached", s["duration"],
                   str(s["evaluations"]), s["verdict"]] for s in report["stages"]]),
        _p("Anomalies and red gates", "Heading3"),
    ]
    if report["anomalies"]:
        story.append(_table([["Window end", "Stage", "Gate", "Status", "Detail"]]
                            + [[a["window_end"], str(a["stage"]), a["gate"], a["status"], a["detail"]]
                               for a in report["anomalies"]]))
    else:
        story.append(_p("No gate was red, stale or anomalous in any evaluation."))
    story += [_p("Incidents", "Heading3")]
    story.append(_table([["#", "Severity", "Kind", "Status", "Summary"]]
                        + [[str(i["id"]), i["severity"], i["kind"], i["status"], i["summary"]]
                           for i in report["incidents"]]) if report["incidents"] else _p("None."))
    return _build(story, title=f"Post-canary report, canary {report['canary_id']}")


def verify_url(certificate_id: Any) -> str:
    return reverse("evidence:certificate-verify-page", args=[certificate_id])


def render_pdf(cert: Any) -> bytes:
    """The PDF of a certificate (governance.certificates.models.Certificate), as issued."""
    return certificate_pdf(
        certificate_id=str(cert.pk), body=cert.body, evidence_hash=cert.evidence_hash,
        chain_head={"seq": cert.chain_head_seq, "hash": cert.chain_head_hash}, verify_url=verify_url(cert.pk),
    )
