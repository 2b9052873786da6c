"""Formula-injection neutralising for CSV and Excel exports."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from toolkit.store.files import neutralise, neutralise_frame, write_csv, write_excel, write_rows_csv

PAYLOADS = ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(1)", "\t=1", "\r=1"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_neutralise_payloads(payload: str) -> None:
    assert neutralise(payload) == "'" + payload


@pytest.mark.parametrize("value", ["abc", "東京", "", "1", 5, -3, 2.5, None, "a=b"])
def test_harmless_values_untouched(value: object) -> None:
    assert neutralise(value) == value


def test_csv_has_bom_and_no_live_formula(tmp_path: Path) -> None:
    df = pd.DataFrame({"項目": PAYLOADS[:4] + ["ok", "東京"], "n": [1, 2, 3, 4, 5, -6]})
    p = write_csv(df, tmp_path / "x.csv")
    raw = p.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(p, encoding="utf-8-sig")
    assert list(back["項目"][:4]) == ["'" + v for v in PAYLOADS[:4]]
    assert list(back["n"]) == [1, 2, 3, 4, 5, -6]  # numbers stay numbers
    p2 = write_rows_csv([("h", "v"), ("=1+1", 3)], tmp_path / "y.csv")
    assert "'=1+1" in p2.read_text(encoding="utf-8-sig")


def test_excel_cells_are_text_not_formulas(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": PAYLOADS[:4], "b": [1, 2, 3, 4]})
    p = write_excel({"T1": df}, tmp_path / "x.xlsx", notes={"T1": ['=HYPERLINK("http://x")']})
    wb = openpyxl.load_workbook(p)
    ws = wb["T1"]
    values = [c.value for row in ws.iter_rows() for c in row if c.value is not None]
    for v in values:
        if isinstance(v, str):
            assert not v.startswith(("=", "+", "-", "@")), v
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)


def test_neutralise_frame_headers() -> None:
    df = pd.DataFrame({"=x": ["-y"]})
    out = neutralise_frame(df)
    assert list(out.columns) == ["'=x"] and out.iloc[0, 0] == "'-y"
