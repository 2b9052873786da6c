"""Neutralise spreadsheet formula injection in exported CSV and Excel files.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by
Excel/LibreOffice as a formula (CSV injection, e.g. ``=cmd|' /C calc'!A0``). Such text gets a
leading apostrophe so the spreadsheet shows it as text. Numbers are left as numbers (a negative
number is not text), so counts stay summable.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from openpyxl.styles import Font

DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """Return ``value`` with a leading apostrophe if it is text that a spreadsheet would run."""
    if isinstance(value, str) and value.startswith(DANGEROUS_PREFIXES):
        return "'" + value
    return value


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every text cell and column label neutralised."""
    out = df.copy()
    out.columns = [neutralise(str(c)) if isinstance(c, str) else c for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise).astype(object)
    return out


def write_csv(df: pd.DataFrame, path: str | os.PathLike[str], *, bom: bool = True) -> Path:
    """Write ``df`` as CSV (UTF-8 with BOM by default, so Excel reads Japanese), neutralised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralise_frame(df).to_csv(
        path, index=False, encoding="utf-8-sig" if bom else "utf-8", lineterminator="\n"
    )
    return path


def write_rows_csv(rows: Iterable[Sequence[Any]], path: str | os.PathLike[str], *, bom: bool = True) -> Path:
    """Write plain rows (first row = header) as CSV, every cell neutralised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        for row in rows:
            w.writerow([neutralise(v) for v in row])
    return path


def write_excel(
    sheets: dict[str, pd.DataFrame],
    path: str | os.PathLike[str],
    notes: dict[str, Sequence[str]] | None = None,
) -> Path:
    """Write one sheet per frame (sheet names cut to Excel's 31 characters), every cell neutralised.

    ``notes``: lines written above the table on that sheet (e.g. what the denominator is).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = notes or {}
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        for name, df in sheets.items():
            sheet = name[:31]
            lines = [neutralise(n) for n in notes.get(name, ())]
            start = len(lines) + 1 if lines else 0
            neutralise_frame(df).to_excel(xw, sheet_name=sheet, index=False, startrow=start)
            ws = xw.sheets[sheet]
            ws.freeze_panes = ws.cell(row=start + 2, column=3 if df.shape[1] > 2 else 1)
            for c in ws[start + 1]:
                c.font = Font(bold=True)
            for i, text in enumerate(lines, start=1):
                ws.cell(row=i, column=1, value=text)
            for col_cells in ws.iter_cols(min_row=start + 1, max_row=start + 1):
                for c in col_cells:
                    ws.column_dimensions[c.column_letter].width = max(
                        12, min(48, len(str(c.value or "")) + 4)
                    )
    return path
