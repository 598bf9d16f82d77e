"""A statistics report as people read it: a short chat summary, a longer text, the Excel
workbook a Vietnamese office files, and a chart picture for a phone. All words come from the
catalogues; Vietnamese writes 95,2% and 1.234 the Vietnamese way."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import date
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from bot.core.i18n import Translator
from bot.services.periods import Period
from bot.services.statistics import OUTREACH_ROLES, Report, Row, change_percent, share
from storage.models import CATEGORIES, OUTCOMES

CHART_AREAS = 12  # the busiest areas a phone can still read in one picture


# ---- numbers and dates in the reader's language -----------------------------------------------

def number(t: Translator, value: float | int | None, decimals: int = 0) -> str:
    """1234.5 as 1.234,5 in Vietnamese, 1,234.5 in English; None as a dash."""
    if value is None:
        return "—"
    text = f"{value:,.{decimals}f}"
    if t.language == "vi":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def percent(t: Translator, value: float | None) -> str:
    """95.2 as 95,2% (vi) or 95.2% (en)."""
    return "—" if value is None else number(t, value, 1) + "%"


def signed_percent(t: Translator, value: float | None) -> str:
    """A change: +4,0% / −6,5%."""
    if value is None:
        return "—"
    return ("+" if value > 0 else "−" if value < 0 else "") + percent(t, abs(value))


def duration(t: Translator, minutes: float | None) -> str:
    """Minutes as people say them: 12 phút, 2,5 giờ, 1,5 ngày."""
    if minutes is None:
        return "—"
    if minutes < 90:
        return t("stats.minutes", n=number(t, minutes, 0 if minutes >= 10 else 1))
    if minutes < 48 * 60:
        return t("stats.hours", n=number(t, minutes / 60, 1))
    return t("stats.days", n=number(t, minutes / 1440, 1))


def day(value: date) -> str:
    """A date as Vietnamese offices write it: 15/09/2026."""
    return value.strftime("%d/%m/%Y")


def period_name(t: Translator, period: Period) -> str:
    """Quý 3 năm 2026, 6 tháng đầu năm 2026, Năm 2026, Tháng 11 năm 2026, or a range."""
    label = period.label
    if period.kind == "custom":
        return t("stats.period.custom", first=day(period.first), last=day(period.last))
    year, _, part = label.partition("-")
    if period.kind == "year":
        return t("stats.period.year", year=year)
    if period.kind == "half":
        return t(f"stats.period.half{part[1]}", year=year)
    if period.kind == "quarter":
        return t("stats.period.quarter", n=part[1], year=year)
    return t("stats.period.month", n=int(part), year=year)


def area_name(t: Translator, report: Report) -> str:
    """The report's area, or "every area"."""
    return report.area_name or t("stats.all_areas")


# ---- text ------------------------------------------------------------------------------------

def summary(t: Translator, report: Report, tz: Any) -> str:
    """The short summary a chat shows (and the first lines of the text report)."""
    r = report.total
    head = t("stats.summary.head", period=period_name(t, report.period),
             area=area_name(t, report), first=day(report.period.first),
             last=day(report.period.last))
    if not report.complete:
        head += "\n" + t("stats.running", time=report.as_of.astimezone(tz).strftime(
            "%H:%M %d/%m/%Y"))
    lines = [head, t(
        "stats.summary.body",
        received=number(t, r.received), urgent=number(t, r.urgent),
        anonymous=number(t, r.anonymous),
        classified=percent(t, share(r.classified, r.received)),
        unclassified=number(t, report.unclassified_count),
        acknowledged=number(t, r.acknowledged), median=duration(t, r.ack_median_minutes),
        p90=duration(t, r.ack_p90_minutes),
        urgent_median=duration(t, report.ack_urgent_median_minutes),
        escalated=number(t, r.escalated), closed=number(t, r.closed),
        rate=percent(t, r.resolution_rate),
        within=percent(t, share(r.closed_within_target, r.closed)),
        backlog=number(t, r.backlog), confirmed=number(t, r.confirmed),
        disputed=number(t, r.disputed), unanswered=number(t, r.unconfirmed),
        change=signed_percent(t, change_percent(r.received, r.year_earlier_received)),
        before=number(t, r.year_earlier_received),
        people=number(t, r.outreach_people), parents=number(t, r.parents_registered))]
    return "\n".join(lines)


def text(t: Translator, report: Report, tz: Any) -> str:
    """The longer text report (`safeschool stats --format text`): the summary, then a line
    per area, the categories and outcomes, the exceptions and the backlog."""
    out = [summary(t, report, tz), "", t("stats.sheet.areas")]
    for row in [*report.rows, _total(t, report)]:
        out.append(t("stats.text.area_line", area=row.name, received=number(t, row.received),
                     closed=number(t, row.closed), rate=percent(t, row.resolution_rate),
                     backlog=number(t, row.backlog),
                     change=signed_percent(t, change_percent(row.received,
                                                             row.year_earlier_received))))
    out += ["", t("stats.sheet.categories")]
    for category in CATEGORIES:
        n = report.total.by_category.get(category, 0)
        before = report.categories_year_earlier.get(category, 0)
        if n or before:
            out.append(f"- {t(f'category.{category}')}: {number(t, n)} "
                       f"({signed_percent(t, change_percent(n, before))})")
    out += ["", t("stats.sheet.outcomes")]
    for outcome in OUTCOMES:
        n = report.total.by_outcome.get(outcome, 0)
        if n:
            out.append(f"- {t(f'outcome.{outcome}')}: {number(t, n)}")
    if report.unclassified:
        out += ["", t("stats.unclassified", n=number(t, report.unclassified_count)),
                ", ".join(report.unclassified)]
    if report.overdue:
        out += ["", t("stats.sheet.backlog")]
        out += [t("stats.text.overdue_line", ref=o.ref, area=o.area, days=o.days_open)
                for o in report.overdue]
    return "\n".join(out)


def _total(t: Translator, report: Report) -> Row:
    return replace(report.total, name=t("stats.total"))


# ---- the workbook ----------------------------------------------------------------------------

BOLD = Font(bold=True)
TITLE = Font(bold=True, size=13)
HEADER_FILL = PatternFill("solid", fgColor="DDE7F3")
THIN = Side(style="thin", color="999999")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
PERCENT = "0.0%"
INTEGER = "#,##0"
DECIMAL = "#,##0.0"


class _Sheet:
    """One sheet: the title block, then tables with bold boxed headers and total rows."""

    def __init__(self, ws: Worksheet, t: Translator, report: Report, title_lines: list[str]):
        self.ws = ws
        self.widths: dict[int, int] = {}
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True
        ws.print_options.horizontalCentered = True
        for n, line in enumerate(title_lines, start=1):
            cell = ws.cell(row=n, column=1, value=line)
            cell.font = TITLE if n == 2 else BOLD if n == 1 else Font(italic=True)
        self.row = len(title_lines) + 2

    def table(self, headers: list[str], rows: list[list[Any]], formats: list[str | None],
              total: list[Any] | None = None) -> None:
        """Write a table; formats give each column's number format (None: text)."""
        ws = self.ws
        for col, header in enumerate(headers, start=1):
            cell = ws.cell(row=self.row, column=col, value=header)
            cell.font, cell.fill, cell.border = BOLD, HEADER_FILL, BOX
            cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
            self.widths[col] = max(self.widths.get(col, 8), min(len(header) + 2, 22))
        self.row += 1
        for values, bold in [*((v, False) for v in rows), *([(total, True)] if total else [])]:
            for col, (value, fmt) in enumerate(zip(values, formats, strict=True), start=1):
                cell = ws.cell(row=self.row, column=col, value=value)
                cell.border = BOX
                if bold:
                    cell.font = BOLD
                if fmt:
                    cell.number_format = fmt
                elif value is not None:
                    self.widths[col] = max(self.widths.get(col, 8), min(len(str(value)) + 2, 60))
            self.row += 1
        self.row += 1
        for col, width in self.widths.items():
            ws.column_dimensions[get_column_letter(col)].width = width

    def line(self, value: str, bold: bool = False) -> None:
        """A line of text under the tables."""
        cell = self.ws.cell(row=self.row, column=1, value=value)
        if bold:
            cell.font = BOLD
        self.row += 1


def _ratio(value: float | None) -> float | None:
    """A percentage as Excel stores it (0.952 shown as 95.2%)."""
    return None if value is None else round(value / 100.0, 4)


def workbook(t: Translator, report: Report, committee: str, tz: Any) -> bytes:
    """The .xlsx: Tổng hợp, Theo địa bàn, Theo loại vụ việc, Theo kết quả xử lý, Tồn đọng,
    Tuyên truyền; a title block on each, bold headers, total rows, A4 landscape."""
    book = Workbook()
    title = [committee, t("stats.title"),
             t("stats.period_line", period=period_name(t, report.period),
               first=day(report.period.first), last=day(report.period.last)),
             t("stats.area_line", area=area_name(t, report)),
             t("stats.as_of", time=report.as_of.astimezone(tz).strftime("%H:%M %d/%m/%Y"))]
    total = _total(t, report)

    ws = book.active
    ws.title = t("stats.sheet.summary")
    sheet = _Sheet(ws, t, report, title)
    figures: list[tuple[str, Any, str]] = [
        (t("stats.f.received"), total.received, INTEGER),
        (t("stats.f.urgent"), total.urgent, INTEGER),
        (t("stats.f.anonymous"), total.anonymous, INTEGER),
        (t("stats.f.classified"), _ratio(share(total.classified, total.received)), PERCENT),
        (t("stats.f.acknowledged"), total.acknowledged, INTEGER),
        (t("stats.f.ack_median"), total.ack_median_minutes, DECIMAL),
        (t("stats.f.ack_p90"), total.ack_p90_minutes, DECIMAL),
        (t("stats.f.ack_urgent_median"), report.ack_urgent_median_minutes, DECIMAL),
        (t("stats.f.ack_urgent_p90"), report.ack_urgent_p90_minutes, DECIMAL),
        (t("stats.f.escalated"), total.escalated, INTEGER),
        (t("stats.f.closed"), total.closed, INTEGER),
        (t("stats.f.closed_with_outcome"),
         _ratio(share(total.closed_with_outcome, total.closed)), PERCENT),
        (t("stats.f.resolution_rate"), _ratio(total.resolution_rate), PERCENT),
        (t("stats.f.within_target"), _ratio(share(total.closed_within_target, total.closed)),
         PERCENT),
        (t("stats.f.backlog"), total.backlog, INTEGER),
        (t("stats.f.confirmed"), total.confirmed, INTEGER),
        (t("stats.f.disputed"), total.disputed, INTEGER),
        (t("stats.f.unanswered"), total.unconfirmed, INTEGER),
        (t("stats.f.year_earlier"), total.year_earlier_received, INTEGER),
        (t("stats.f.change"), _ratio(change_percent(total.received,
                                                    total.year_earlier_received)), PERCENT),
        (t("stats.f.outreach"), total.outreach_people, INTEGER),
        (t("stats.f.parents"), total.parents_registered, INTEGER),
    ]
    sheet.table([t("stats.h.indicator"), t("stats.h.value")],
                [[name, value] for name, value, _ in figures], [None, None])
    for n, (_, _, fmt) in enumerate(figures):  # each value its own format
        ws.cell(row=sheet.row - 1 - len(figures) + n, column=2).number_format = fmt
    if report.unclassified:
        sheet.line(t("stats.unclassified", n=number(t, report.unclassified_count)), bold=True)
        for ref in report.unclassified:
            sheet.line(ref)

    sheet = _Sheet(book.create_sheet(t("stats.sheet.areas")), t, report, title)
    headers = [t("stats.h.area"), t("stats.f.received"), t("stats.f.urgent"),
               t("stats.f.anonymous"), t("stats.f.classified"), t("stats.f.acknowledged"),
               t("stats.f.ack_median"), t("stats.f.ack_p90"), t("stats.f.escalated"),
               t("stats.f.closed"), t("stats.f.resolution_rate"), t("stats.f.within_target"),
               t("stats.f.backlog"), t("stats.f.confirmed"), t("stats.f.disputed"),
               t("stats.f.unanswered"), t("stats.f.year_earlier"), t("stats.f.change")]
    formats = [None, INTEGER, INTEGER, INTEGER, PERCENT, INTEGER, DECIMAL, DECIMAL, INTEGER,
               INTEGER, PERCENT, PERCENT, INTEGER, INTEGER, INTEGER, INTEGER, INTEGER, PERCENT]

    def area_row(r: Row) -> list[Any]:
        return [r.name, r.received, r.urgent, r.anonymous,
                _ratio(share(r.classified, r.received)), r.acknowledged, r.ack_median_minutes,
                r.ack_p90_minutes, r.escalated, r.closed, _ratio(r.resolution_rate),
                _ratio(share(r.closed_within_target, r.closed)), r.backlog, r.confirmed,
                r.disputed, r.unconfirmed, r.year_earlier_received,
                _ratio(change_percent(r.received, r.year_earlier_received))]
    sheet.table(headers, [area_row(r) for r in report.rows], formats, area_row(total))

    sheet = _Sheet(book.create_sheet(t("stats.sheet.categories")), t, report, title)
    rows = []
    for category in CATEGORIES:
        n = total.by_category.get(category, 0)
        before = report.categories_year_earlier.get(category, 0)
        rows.append([t(f"category.{category}"), n, _ratio(share(n, total.received)), before,
                     _ratio(change_percent(n, before))])
    sheet.table([t("stats.h.category"), t("stats.f.received"), t("stats.h.share"),
                 t("stats.f.year_earlier"), t("stats.f.change")], rows,
                [None, INTEGER, PERCENT, INTEGER, PERCENT],
                [t("stats.total"), total.received, _ratio(100.0) if total.received else None,
                 total.year_earlier_received,
                 _ratio(change_percent(total.received, total.year_earlier_received))])
    levels = sorted(total.by_school_level)
    if levels:
        sheet.table([t("stats.h.school_level"), t("stats.f.received")],
                    [[level, total.by_school_level[level]] for level in levels],
                    [None, INTEGER])

    sheet = _Sheet(book.create_sheet(t("stats.sheet.outcomes")), t, report, title)
    sheet.table([t("stats.h.outcome"), t("stats.f.closed"), t("stats.h.share")],
                [[t(f"outcome.{o}"), total.by_outcome.get(o, 0),
                  _ratio(share(total.by_outcome.get(o, 0), total.closed))] for o in OUTCOMES],
                [None, INTEGER, PERCENT],
                [t("stats.total"), total.closed, _ratio(100.0) if total.closed else None])

    sheet = _Sheet(book.create_sheet(t("stats.sheet.backlog")), t, report, title)
    sheet.table([t("stats.h.ref"), t("stats.h.area"), t("stats.h.days_open")],
                [[o.ref, o.area, o.days_open] for o in report.overdue],
                [None, None, INTEGER], [t("stats.total"), None, total.backlog])

    sheet = _Sheet(book.create_sheet(t("stats.sheet.outreach")), t, report, title)
    roles = [t(f"role.{role}") for role in OUTREACH_ROLES]

    def reach_row(r: Row) -> list[Any]:
        return [r.name, r.outreach_people, *(r.outreach.get(role, 0) for role in OUTREACH_ROLES),
                r.parents_registered]
    sheet.table([t("stats.h.area"), t("stats.f.outreach"), *roles, t("stats.f.parents")],
                [reach_row(r) for r in report.rows],
                [None, INTEGER, *([INTEGER] * len(roles)), INTEGER], reach_row(total))
    sheet.table([t("stats.h.school"), t("stats.h.area"), t("stats.f.parents")],
                [[s.name, s.area, s.parents] for s in report.schools], [None, None, INTEGER],
                [t("stats.total"), None, total.parents_registered])

    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---- the chart -------------------------------------------------------------------------------

def chart(t: Translator, report: Report) -> bytes:
    """A PNG a phone can read: received and processed per area (the busiest), then the
    categories. DejaVu Sans, which matplotlib ships, has every Vietnamese diacritic."""
    # matplotlib takes about a second to import: only a report pays for it, not every command.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sorted(report.rows, key=lambda r: (-r.received, r.name))[:CHART_AREAS]
    rows.reverse()  # the busiest at the top of a horizontal bar chart
    categories = [(t(f"category.{c}"), report.total.by_category.get(c, 0)) for c in CATEGORIES]
    categories = [item for item in categories if item[1]] or [(t("stats.none"), 0)]
    categories.sort(key=lambda item: item[1])
    height = 3.0 + 0.45 * (len(rows) + len(categories))
    figure = Figure(figsize=(8, max(6.0, height)), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"{period_name(t, report.period)} — {area_name(t, report)}", fontsize=14,
                    fontweight="bold")
    top, bottom = figure.subplots(2, 1, height_ratios=[max(len(rows), 1) + 1,
                                                        len(categories) + 1])
    names = [r.name for r in rows]
    positions = list(range(len(rows)))
    top.barh([p + 0.2 for p in positions], [r.received for r in rows], height=0.4,
             label=t("stats.f.received"), color="#2f6db5")
    top.barh([p - 0.2 for p in positions], [r.closed for r in rows], height=0.4,
             label=t("stats.f.closed"), color="#3a9d5d")
    top.set_yticks(positions, names, fontsize=11)
    top.set_title(t("stats.chart.areas"), fontsize=12)
    top.legend(loc="lower right", fontsize=10)
    top.xaxis.get_major_locator().set_params(integer=True)
    bottom.barh([name for name, _ in categories], [n for _, n in categories], color="#c0504d")
    bottom.set_title(t("stats.chart.categories"), fontsize=12)
    bottom.tick_params(axis="y", labelsize=11)
    bottom.xaxis.get_major_locator().set_params(integer=True)
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
