"""PDF documents: the completion certificate and the post-canary report (reportlab).

Both are rendered with reportlab's `invariant` flag: no creation date or random document id,
so the same content gives the same bytes and a certificate's PDF hash can be re-derived."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
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
                    verify_url: str, signing_key: dict[str, Any] | None = None) -> bytes:
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
        *([_p(f"Signed by CanaryHub with {signing_key.get('algorithm', 'Ed25519')} key {signing_key['key_id']}, "
              f"public-key fingerprint (SHA-256):", "BodyText"), _p(signing_key["fingerprint"], "Code")]
          if signing_key and signing_key.get("key_id") else []),
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


_CANARY, _PRODUCTION = colors.HexColor("#d9480f"), colors.HexColor("#1c7ed6")


def _line_chart(series: list[tuple[str, list[tuple[float, float]], Any]], *, x_label: str) -> Drawing:
    drawing = Drawing(170 * mm, 60 * mm)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 30, 25, 170 * mm - 50, 60 * mm - 40
    plot.data = [points or [(0, 0)] for _, points, _ in series]
    for i, (_, _, colour) in enumerate(series):
        plot.lines[i].strokeColor = colour
        plot.lines[i].strokeWidth = 1.5
    plot.yValueAxis.valueMin, plot.yValueAxis.valueMax = 0, 100
    plot.xValueAxis.valueMin = 0
    drawing.add(plot)
    drawing.add(String(30, 5, x_label, fontSize=7))
    drawing.add(String(0, 60 * mm - 10, "traffic to canary (%)", fontSize=7))
    legend = Legend()
    legend.x, legend.y = 170 * mm - 70, 60 * mm - 6
    legend.fontSize = 6
    legend.colorNamePairs = [(colour, name) for name, _, colour in series]
    drawing.add(legend)
    return drawing


def _bar_chart(*, title: str, labels: list[str], canary: list[float], production: list[float]) -> Drawing:
    drawing = Drawing(85 * mm, 55 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 30, 20, 85 * mm - 45, 55 * mm - 40
    chart.data = [canary or [0], production or [0]]
    chart.categoryAxis.categoryNames = labels or ["-"]
    chart.categoryAxis.labels.fontSize = 6
    chart.valueAxis.labels.fontSize = 6
    chart.bars[0].fillColor = _CANARY
    chart.bars[1].fillColor = _PRODUCTION
    drawing.add(chart)
    drawing.add(String(30, 55 * mm - 12, title, fontSize=8))
    legend = Legend()
    legend.x, legend.y = 85 * mm - 40, 55 * mm - 14
    legend.fontSize = 6
    legend.colorNamePairs = [(_CANARY, "canary"), (_PRODUCTION, "production")]
    drawing.add(legend)
    return drawing


# (title, value of one side's summary scaled for the chart, how a cell prints it)
_COMPARED = (
    ("error rate (%)", lambda side: side["error_rate"] * 100 if side["error_rate"] is not None else None, "{:.3g}%"),
    ("p99 latency, mean (ms)", lambda side: side["p99_s_mean"] * 1000 if side["p99_s_mean"] is not None else None,
     "{:.0f} ms"),
    ("quality score", lambda side: side["quality_mean"], "{:.3f}"),
)


def _cell(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def report_pdf(report: dict[str, Any]) -> bytes:
    """The post-canary report (the data of releases.canaries.dashboard.canary_report, as
    governance.reports.selectors.report_data gives it): traffic split over time, each stage's
    metrics against production's, anomalies, the decision and the time and end of each stage."""
    canary, decision = report["canary"], report["decision"]
    start = datetime.fromisoformat(canary["initiated_at"])

    def hours(at: str) -> float:
        return round((datetime.fromisoformat(at) - start).total_seconds() / 3600, 3)

    split = report["traffic_split"]
    story: list[Any] = [
        _p(f"Post-canary report: {canary['model']} {canary['version']}", "Title"),
        _p(f"Canary #{canary['id']} against production {canary['baseline']}; schedule {canary['schedule']}; "
           f"risk tier {canary['risk_tier']}; state {canary['state']}."),
        _p(f"Decision: {report['headline']}", "Heading2"),
        _p(f"Outcome: {decision['outcome']}" + (f"; decided by {decision['decided_by']}" if decision["decided_by"]
                                                else "") + "."),
        _p("Traffic split over time", "Heading3"),
        _line_chart([
            ("configured percent", [(hours(p["window_end"]), p["configured_percent"]) for p in split
                                    if p["configured_percent"] is not None], _PRODUCTION),
            ("observed canary share", [(hours(p["window_end"]), p["observed_canary_share_pct"]) for p in split
                                       if p["observed_canary_share_pct"] is not None], _CANARY),
        ], x_label="hours since initiation"),
        _p("Metric comparison per stage against production (pooled over each stage's evaluation windows)",
           "Heading3"),
    ]
    compared = [s for s in report["stages"] if s["canary"] is not None]
    labels = [f"{s['number']}: {s['label']}" for s in compared]
    drawings = []
    for title, value, _ in _COMPARED:
        pairs = [(value(s["canary"]), value(s["production"])) for s in compared]
        drawings.append(_bar_chart(title=title, labels=labels, canary=[c or 0.0 for c, _ in pairs],
                                   production=[p or 0.0 for _, p in pairs]))
    for i in range(0, len(drawings), 2):
        story.append(Table([drawings[i:i + 2]]))
    rows = [["Stage", "Windows", *[f"{t}: canary / production" for t, _, _ in _COMPARED], "Safety", "Red"]]
    for s in compared:
        rows.append([labels[compared.index(s)], str(s["windows"]),
                     *[f"{_cell(value(s['canary']), fmt)} / {_cell(value(s['production']), fmt)}"
                       for _, value, fmt in _COMPARED],
                     f"{s['safety_violations']:g}", str(s["red_evaluations"])])
    story += [_table(rows), Spacer(1, 4 * mm), _p("Time at each stage and how it ended", "Heading3")]
    story.append(_table(
        [["Stage", "Traffic", "Entered", "Time at stage", "How it ended"]]
        + [[f"{s['number']}: {s['label']}", f"{s['percent']}%", s["entered_at"] or "-",
            _duration(s["time_s"]), s["decision"] or "-"] for s in report["stages"]],
        [30 * mm, 15 * mm, 45 * mm, 25 * mm, 65 * mm]))
    story.append(_p("Anomalies: warnings, holds, red evaluations, the rollback", "Heading3"))
    if report["anomalies"]:
        story.append(_table([["At", "Kind", "What"]] + [[a["at"], a["kind"], a["text"]] for a in report["anomalies"]],
                            [45 * mm, 20 * mm, 115 * mm]))
    else:
        story.append(_p("No warning, hold, red evaluation or rollback."))
    story += [_p("Incidents", "Heading3")]
    story.append(_table([["#", "Severity", "Kind", "Status", "Summary"]]
                        + [[str(i["id"]), i["severity"], i["kind"], i["status"], i["summary"]]
                           for i in report["incidents"]]) if report["incidents"] else _p("None."))
    return _build(story, title=f"Post-canary report, canary {canary['id']}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds) // 60
    days, minutes = divmod(minutes, 1440)
    return f"{days} d {minutes // 60} h {minutes % 60} min" if days else f"{minutes // 60} h {minutes % 60} min"


def verify_url(certificate_id: Any) -> str:
    return reverse("evidence:certificate-verify-page", args=[certificate_id])


def render_pdf(cert: Any) -> bytes:
    """The PDF of a certificate (governance.certificates.models.Certificate), as issued."""
    return certificate_pdf(
        certificate_id=str(cert.pk), body=cert.body, evidence_hash=cert.evidence_hash,
        chain_head={"seq": cert.chain_head_seq, "hash": cert.chain_head_hash}, verify_url=verify_url(cert.pk),
        signing_key=getattr(cert, "signature", None) or None,
    )
