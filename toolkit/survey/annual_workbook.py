"""Files of the annual report: the workbook in the form's layout, the same figures as CSV, definitions.

The sheet follows the 様式 「情報通信機器を用いた診療に係る報告書」 of the MHLW notice
「基本診療料の施設基準等及びその届出に関する手続きの取扱いについて」 (令和6年3月5日, 保医発0305第5号):
a row per month from August to July with 対面診療で実施した診療の算定件数 (初診料・再診料) and
情報通信機器を用いた診療の算定件数 (初診料・再診料), under each month the two counts of the online
初診 (診療前相談を行った件数; その後自院にて対面診療を行わなかった件数), then item 1(2) on patients
located in another municipality. What could and could not be confirmed of the form: README.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from toolkit import municipality
from toolkit.store.files import make_dirs, neutralise, write_bytes, write_rows_csv, write_text
from toolkit.survey.annual import DEFINITIONS, MEASURES, AnnualReport, InstitutionAnnual

TITLE = "情報通信機器を用いた診療に係る報告書"
SECTION_1 = "1 情報通信機器を用いた診療の実施状況"
SECTION_1_1 = "(1) 情報通信機器を用いた診療の件数"
SECTION_1_2 = (
    "(2) 患者の所在が、上記医療機関と異なる市町村又は特別区である場合の直接の対面診療を行える体制の整備状況"
)
IN_PERSON_HEAD = "対面診療で実施した診療の算定件数"
ONLINE_HEAD = "情報通信機器を用いた診療の算定件数"
PRE_LABEL = "（初診料を算定した患者の内、診療前相談を行った件数）"
NO_AFTER_LABEL = "（初診料を算定した患者の内、その後自院にて対面診療を行わなかった件数）"
FORM_NOTES = (
    "〔記載上の注意〕",
    "1 本報告は、前年8月1日（又は届出を行った日）から当年7月31日までの診療実施状況を記載する。"
    "診療した実績がない場合は報告の必要はない。",
    "2 1の(2)は、全診療件数のうち患者の所在が上記医療機関と異なる市町村又は特別区である場合の割合が"
    "8割を超える場合に記載する。市町村及び特別区は診療件数の多い5箇所について記載する。",
)
EN_SUB = {key: en for key, (_ja, en) in MEASURES.items()}
COUNT_KEYS = ("in_person_first", "in_person_revisit", "online_first", "online_revisit")
BLANK = "—"  # a count the data cannot give (shown, never a silent 0)


def _month_label(month: str) -> str:
    return f"{int(month[5:])}月"


def _cell(ws: Any, row: int, col: int, value: Any, **style: Any) -> Any:
    c = ws.cell(row=row, column=col, value=neutralise(value) if isinstance(value, str) else value)
    for k, v in style.items():
        setattr(c, k, v)
    return c


def sheet_title(institution_id: str, taken: list[str]) -> str:
    """A valid, unused Excel sheet name for an institution id (``[]:*?/\\`` → ``_``, ≤ 31 characters)."""
    base = re.sub(r"[\[\]:*?/\\]", "_", institution_id or "institution").strip("'")[:28] or "institution"
    title, k = base, 2
    while title.casefold() in {t.casefold() for t in taken}:
        title, k = f"{base}~{k}", k + 1
    return title


def _sheet(wb: Any, report: AnnualReport, inst: InstitutionAnnual) -> None:
    from openpyxl.styles import Alignment, Border, Font, Side

    ws = wb.create_sheet(title=sheet_title(inst.institution_id, wb.sheetnames))
    thin = Side(style="thin")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    wrap = Alignment(wrap_text=True, vertical="center")
    center = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for col, width in zip("ABCDEFG", (10, 16, 16, 16, 16, 30, 30), strict=True):
        ws.column_dimensions[col].width = width
    ws.merge_cells("A1:G1")
    _cell(ws, 1, 1, TITLE, font=Font(bold=True, size=14), alignment=center)
    _cell(
        ws,
        5,
        1,
        "Report on care using information and communication devices (annual, to the Regional Bureau)",
    )
    _cell(ws, 2, 1, f"{report.year}年8月報告（対象期間 {report.year - 1}年8月1日～{report.year}年7月31日）")
    _cell(ws, 3, 1, "保険医療機関名")
    _cell(ws, 3, 3, f"{inst.name} ({inst.institution_id})" if inst.name else inst.institution_id)
    _cell(ws, 4, 1, "所在地（市町村）")
    place = municipality.label(inst.municipality_code) if inst.municipality_code else "不明 / unknown"
    _cell(ws, 4, 3, place)
    _cell(ws, 6, 1, SECTION_1, font=Font(bold=True))
    _cell(ws, 7, 1, SECTION_1_1, font=Font(bold=True))
    head = 8
    ws.merge_cells(start_row=head, start_column=1, end_row=head + 1, end_column=1)
    _cell(ws, head, 1, "月", alignment=center, border=box)
    ws.merge_cells(start_row=head, start_column=2, end_row=head, end_column=3)
    _cell(ws, head, 2, IN_PERSON_HEAD, alignment=center, border=box)
    ws.merge_cells(start_row=head, start_column=4, end_row=head, end_column=5)
    _cell(ws, head, 4, ONLINE_HEAD, alignment=center, border=box)
    _cell(
        ws,
        head,
        6,
        "In person (B–C) and online (D–E): 初診料 = first-visit fee, 再診料 = revisit fee",
        alignment=wrap,
    )
    for col, text in zip((2, 3, 4, 5), ("初診料", "再診料", "初診料", "再診料"), strict=True):
        _cell(ws, head + 1, col, text, alignment=center, border=box, font=Font(bold=True))
    r = head + 2
    for month in report.months:
        vals = inst.rows[month]
        _cell(ws, r, 1, _month_label(month), alignment=center, border=box)
        for col, key in zip((2, 3, 4, 5), COUNT_KEYS, strict=True):
            v = vals[key]
            _cell(ws, r, col, BLANK if v is None else v, border=box)
        for k, (label, key) in enumerate(
            (
                (PRE_LABEL, "online_first_pre_consultation"),
                (NO_AFTER_LABEL, "online_first_no_in_person_after"),
            ),
            start=1,
        ):
            ws.merge_cells(start_row=r + k, start_column=2, end_row=r + k, end_column=3)
            _cell(ws, r + k, 2, label, alignment=wrap, border=box, font=Font(size=9))
            v = vals[key]
            _cell(ws, r + k, 4, BLANK if v is None else v, border=box)
            _cell(ws, r + k, 6, EN_SUB[key], alignment=wrap, font=Font(size=9, color="555555"))
            ws.row_dimensions[r + k].height = 28
        r += 3
    _cell(ws, r, 1, "合計", alignment=center, border=box, font=Font(bold=True))
    for col, key in zip((2, 3, 4, 5), COUNT_KEYS, strict=True):
        t = inst.total(key)
        _cell(ws, r, col, BLANK if t is None else t, border=box, font=Font(bold=True))
    r += 2
    _cell(ws, r, 1, SECTION_1_2, font=Font(bold=True))
    r += 1
    share = "—" if inst.share is None else f"{inst.share:.1%}"
    _cell(ws, r, 1, "全診療件数")
    _cell(ws, r, 3, inst.all_care)
    _cell(ws, r + 1, 1, "うち患者の所在が異なる市町村又は特別区")
    _cell(ws, r + 1, 3, inst.elsewhere)
    _cell(ws, r + 1, 4, share)
    _cell(ws, r + 2, 1, "うち患者の所在が不明")
    _cell(ws, r + 2, 3, inst.unknown_place)
    r += 3
    if inst.above_80 is None:
        _cell(ws, r, 1, "8割を超えるか判定できません / the 80 % rule cannot be decided (see the notes)")
        r += 1
    elif not inst.above_80:
        _cell(ws, r, 1, "8割を超えないため記載不要 / not above 80 %: nothing to fill in")
        r += 1
    else:
        _cell(ws, r, 1, "8割を超えるため記載 / above 80 %: fill in")
        _cell(ws, r + 1, 1, "順位", border=box, alignment=center)
        ws.merge_cells(start_row=r + 1, start_column=2, end_row=r + 1, end_column=4)
        _cell(ws, r + 1, 2, "市町村又は特別区（診療件数の多い5箇所）", border=box)
        _cell(ws, r + 1, 5, "診療件数", border=box)
        for k, (code, n) in enumerate(inst.top, start=1):
            _cell(ws, r + 1 + k, 1, k, border=box, alignment=center)
            ws.merge_cells(start_row=r + 1 + k, start_column=2, end_row=r + 1 + k, end_column=4)
            _cell(ws, r + 1 + k, 2, municipality.label(code), border=box)
            _cell(ws, r + 1 + k, 5, n, border=box)
        r += 2 + len(inst.top)
        _cell(
            ws,
            r,
            1,
            "直接の対面診療を行える体制の整備状況（記入してください / describe how in-person care is arranged）",
        )
        ws.merge_cells(start_row=r + 1, start_column=1, end_row=r + 4, end_column=7)
        _cell(ws, r + 1, 1, "", border=box, alignment=wrap)
        r += 5
    r += 1
    for text in FORM_NOTES:
        ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=7)
        _cell(ws, r, 1, text, alignment=wrap, font=Font(size=9))
        ws.row_dimensions[r].height = 30 if len(text) > 60 else 15
        r += 1
    for ja, en in [*report.notes, *inst.notes]:
        ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=7)
        _cell(ws, r, 1, f"注: {ja} / {en}", alignment=wrap, font=Font(size=9, color="9C0006"))
        ws.row_dimensions[r].height = 45
        r += 1
    ws.freeze_panes = "B10"


def _definitions_sheet(wb: Any) -> None:
    from openpyxl.styles import Alignment, Font

    ws = wb.create_sheet(title="定義 Definitions")
    ws.column_dimensions["A"].width = 80
    ws.column_dimensions["B"].width = 80
    _cell(ws, 1, 1, "定義（日本語）", font=Font(bold=True))
    _cell(ws, 1, 2, "Definition (English)", font=Font(bold=True))
    for k, (ja, en) in enumerate(DEFINITIONS, start=2):
        _cell(ws, k, 1, ja, alignment=Alignment(wrap_text=True, vertical="top"))
        _cell(ws, k, 2, en, alignment=Alignment(wrap_text=True, vertical="top"))
        ws.row_dimensions[k].height = 60


def csv_rows(report: AnnualReport) -> list[list[Any]]:
    """The monthly figures: one row per institution and month (header first, bilingual)."""
    header = ["institution_id", "month 月", *(f"{key} {ja}" for key, (ja, _en) in MEASURES.items())]
    rows: list[list[Any]] = [header]
    for inst in report.institutions:
        for month in report.months:
            rows.append(
                [inst.institution_id, month, *(("" if v is None else v) for v in inst.rows[month].values())]
            )
    return rows


def _summary_rows(report: AnnualReport) -> list[list[Any]]:
    rows: list[list[Any]] = [
        [
            "institution_id",
            "municipality_code 所在地",
            "all_care 全診療件数",
            "elsewhere 異なる市町村",
            "unknown_place 所在不明",
            "share 割合",
            "above_80 8割超",
            "rank 順位",
            "top_municipality 市町村",
            "care 診療件数",
        ]
    ]
    for inst in report.institutions:
        share = "" if inst.share is None else round(inst.share, 4)
        verdict = {True: "yes", False: "no", None: "not decidable"}[inst.above_80]
        own = municipality.with_check_digit(inst.municipality_code) if inst.municipality_code else ""
        base = [inst.institution_id, own, inst.all_care, inst.elsewhere, inst.unknown_place, share, verdict]
        if not inst.top:
            rows.append([*base, "", "", ""])
        for k, (code, n) in enumerate(inst.top, start=1):
            rows.append([*base, k, municipality.label(code), n])
    return rows


def write_annual(report: AnnualReport, out: Path, *, chart: bool = False) -> list[Path]:
    """Write the workbook, the CSVs, ``definitions.txt`` and, with ``chart``, the months chart (SVG);
    all 0600 in a 0700 folder. Returns the paths."""
    from openpyxl import Workbook

    out = make_dirs(out)
    wb = Workbook()
    wb.remove(wb.active)
    for inst in report.institutions:
        _sheet(wb, report, inst)
    _definitions_sheet(wb)
    buf = io.BytesIO()
    wb.save(buf)
    stem = f"annual_report_{report.year}"
    paths = [
        write_bytes(out / f"{stem}.xlsx", buf.getvalue()),
        write_rows_csv(csv_rows(report), out / f"{stem}.csv"),
        write_rows_csv(_summary_rows(report), out / f"{stem}_municipalities.csv"),
    ]
    lines = [
        f"{TITLE} — {report.year}年8月報告 / annual report to the Regional Bureau, August {report.year}",
        f"対象期間 / period: {report.months[0]} – {report.months[-1]} (Japan time)",
        "",
        "定義 / Definitions",
        *(f"- {ja}\n  {en}" for ja, en in DEFINITIONS),
        "",
        "注記 / Notes on this data",
        *(f"- {ja}\n  {en}" for ja, en in report.notes),
        *(f"- {i.institution_id}: {ja}\n  {en}" for i in report.institutions for ja, en in i.notes),
    ]
    if not report.notes and not any(i.notes for i in report.institutions):
        lines.append("- なし / none")
    paths.append(write_text(out / "definitions.txt", "\n".join(lines) + "\n"))
    if chart:
        from toolkit.report.charts import to_svg
        from toolkit.survey.annual_chart import months_chart

        svg = to_svg(months_chart(report)).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
        paths.append(write_text(out / f"{stem}_months.svg", svg))  # a file of its own: namespace back
    return paths
