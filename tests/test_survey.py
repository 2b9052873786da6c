"""EC survey tables against a hand-built DuckDB (tests/survey_fixtures.py), asserted cell by cell."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import survey_fixtures as F  # noqa: E402

from toolkit.cli import main  # noqa: E402
from toolkit.errors import UserError  # noqa: E402
from toolkit.periods import months_of as parse_period  # noqa: E402
from toolkit.survey import run as survey  # noqa: E402
from toolkit.survey.counts import age_band, age_range  # noqa: E402
from toolkit.survey.tables import EC_TOTAL, build_layout  # noqa: E402

AS_OF = dt.date(2026, 7, 20)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return F.build_db(tmp_path_factory.mktemp("db") / "survey.duckdb")


@pytest.fixture(scope="module")
def result(db: Path, tmp_path_factory: pytest.TempPathFactory) -> survey.SurveyResult:
    return survey.run_survey_ec(db, F.PERIOD, tmp_path_factory.mktemp("out"), institution="I1", as_of=AS_OF)


def exported_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and survey.LOCAL_DIR not in p.parts]


def file_text(p: Path) -> str:
    if p.suffix == ".xlsx":
        wb = openpyxl.load_workbook(p)
        return "\n".join(
            str(c.value) for ws in wb for row in ws.iter_rows() for c in row if c.value is not None
        )
    return p.read_text(encoding="utf-8-sig")


def test_every_exact_cell_matches_hand_computed(result: survey.SurveyResult) -> None:
    for cid, v in result.values.items():
        if cid.startswith("T5|"):
            continue
        assert v == F.EXPECTED.get(cid, 0), cid
    assert set(F.EXPECTED) <= set(result.values)


def test_t5_from_the_audit_run_restricted_to_period_cases(result: survey.SurveyResult) -> None:
    v = result.values
    for rule, (scope, ok, viol, ne) in F.EXPECTED_T5.items():
        assert (
            v[f"T5|{rule}|in_scope"],
            v[f"T5|{rule}|compliant"],
            v[f"T5|{rule}|violated"],
            v[f"T5|{rule}|not_evidenced"],
            v[f"T5|{rule}|available"],
        ) == (scope, ok, viol, ne, 1), rule
    assert v["T5|ec.witnessed_intake|available"] == 0
    t5 = result.local["T5"].set_index("コード (code)")
    assert t5.loc["ec.witnessed_intake", "対象数 (in scope)"] == "評価なし (not evaluated)"
    assert t5.loc["ec.follow_up", "遵守率(%) (compliance rate (%))"] == round(100 * 5 / 7, 1)


def test_local_tables_show_exact_counts_and_rates(result: survey.SurveyResult) -> None:
    t1 = result.local["T1"].set_index("コード (code)")
    assert t1.loc["all", "計 (total)"] == 7
    assert t1.loc["prescriber:untrained", "2026-05"] == 1
    t2 = result.local["T2"].set_index("コード (code)")
    assert t2.loc["outside", "該当率(%) (rate met (%))"] == round(100 * 5 / 7, 1)
    assert t2.loc["outside", "症例数（分母） (EC cases (denominator))"] == 7
    t3 = result.local["T3"].set_index("コード (code)")
    assert t3.loc["completed", "率(%) (rate (%))"] == 60.0
    t4 = result.local["T4"].set_index("コード (code)")
    assert t4.loc["referred_yes", "率(%) (rate (%))"] == 75.0
    assert t4.loc["cg_yes", "率(%) (rate (%))"] == 100.0
    t6 = result.local["T6"].set_index("コード (code)")
    assert t6.loc["total", "基礎疾患不明で8日以上の処方 (8+ days' supply, history not known)"] == 2


def test_published_cells_never_small_and_rates_hidden(result: survey.SurveyResult) -> None:
    for tid, df in result.published.items():
        for col in df.columns[2:]:
            for v in df[col]:
                if isinstance(v, int) and "集計機関数" not in col:
                    assert v == 0 or v >= 10, (tid, col, v)
    t2 = result.published["T2"]
    assert set(t2["該当率(%) (rate met (%))"]) == {"*"}
    assert (t2["該当 (met)"] == "<10").all()


def test_published_suppression_has_no_single_hidden_cell_per_line(result: survey.SurveyResult) -> None:
    layout = build_layout(F.MONTHS)
    for line in layout.lines:
        assert sum(1 for c in line if c in result.masked) != 1, line


def test_lower_threshold_publishes_some_cells(db: Path, tmp_path: Path) -> None:
    res = survey.run_survey_ec(db, F.PERIOD, tmp_path, institution="I1", as_of=AS_OF, threshold=3)
    layout = build_layout(F.MONTHS)
    assert all(sum(1 for c in line if c in res.masked) != 1 for line in layout.lines)
    assert EC_TOTAL not in res.masked
    t1 = res.published["T1"].set_index("コード (code)")
    assert t1.loc["all", "計 (total)"] == 7
    for cid, v in res.values.items():
        if cid not in res.masked and not cid.endswith("|available"):
            assert v == 0 or v >= 3, cid


def test_exports_contain_no_ids_and_local_copy_does(result: survey.SurveyResult) -> None:
    out = result.out_dir
    files = exported_files(out)
    assert any(p.suffix == ".xlsx" for p in files) and any(p.name == "manifest.json" for p in files)
    for p in files:
        text = file_text(p)
        for ident in F.ALL_IDS:
            assert ident not in text, (p, ident)
        if p.parent.name == survey.PACKAGE_DIR and p.suffix == ".csv":
            assert "I1" not in text
    local = out / survey.LOCAL_DIR
    assert (local / "README_NOT_FOR_RELEASE.txt").is_file()
    assert all("NOT_FOR_RELEASE" in p.name for p in local.iterdir())
    nc = pd.read_csv(local / "noncompliant_cases_NOT_FOR_RELEASE.csv", encoding="utf-8-sig")
    assert "SES-E3" in set(nc["ec_case_session_id"])
    assert not ({"SES-E0", "SES-E8"} & set(nc["ec_case_session_id"]))  # other period / institution
    assert len(nc) == 13


def test_csv_bom_and_excel_sheets(result: survey.SurveyResult) -> None:
    out = result.out_dir
    for tid in ("T1", "T2", "T3", "T4", "T5", "T6"):
        assert (out / f"ec_survey_{tid}.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    wb = openpyxl.load_workbook(out / "ec_survey.xlsx")
    assert wb.sheetnames == ["T1", "T2", "T3", "T4", "T5", "T6"]
    notes = [c.value for c in wb["T2"]["A"][:8] if c.value]
    assert any("分母" in str(n) and "Denominator" in " ".join(map(str, notes)) for n in notes)


def test_package_manifest(result: survey.SurveyResult) -> None:
    m = json.loads((result.out_dir / "package" / "manifest.json").read_text(encoding="utf-8"))
    assert m["institution_id"] == "I1" and m["period"] == F.PERIOD and m["as_of"] == "2026-07-20"
    assert m["table_schema_version"] == 1 and m["audit_run_available"] is True
    assert sorted(m["files"]) == [f"t{i}_counts.csv" for i in range(1, 7)]


def test_no_audit_run_skips_t5_with_a_note(tmp_path: Path) -> None:
    db = F.build_db(tmp_path / "norun.duckdb", with_run=False)
    res = survey.run_survey_ec(db, F.PERIOD, tmp_path / "out", institution="I1")
    assert not res.audit_run_available
    assert res.as_of == dt.datetime.now(survey.JST).date()  # default without a run: today in Japan
    assert all(v == 0 for k, v in res.values.items() if k.startswith("T5|"))
    assert "no audit run" in (tmp_path / "out" / "README.txt").read_text(encoding="utf-8")
    assert res.values[EC_TOTAL] == 7


def test_as_of_defaults_to_the_audit_run(db: Path, tmp_path: Path) -> None:
    res = survey.run_survey_ec(db, F.PERIOD, tmp_path, institution="I1")
    assert res.as_of == AS_OF


def test_institution_detection(db: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="2 institutions"):
        survey.run_survey_ec(db, F.PERIOD, tmp_path, as_of=AS_OF)
    res = survey.run_survey_ec(db, "2026-04", tmp_path / "apr", as_of=AS_OF)  # only I1 in April
    assert res.institution_id == "I1" and res.values[EC_TOTAL] == 3
    with pytest.raises(UserError, match="no such institution"):
        survey.run_survey_ec(db, F.PERIOD, tmp_path, institution="NOPE", as_of=AS_OF)
    with pytest.raises(UserError, match="no sessions"):
        survey.run_survey_ec(db, "2025-01..2025-02", tmp_path, as_of=AS_OF)


def test_cli_exit_codes(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "survey",
                "ec",
                "--db",
                str(db),
                "--period",
                F.PERIOD,
                "--out",
                str(tmp_path / "o"),
                "--institution",
                "I1",
            ]
        )
        == 0
    )
    assert "EC survey" in capsys.readouterr().out
    assert main(["survey", "ec", "--db", str(db), "--period", "2026/04", "--out", str(tmp_path / "o2")]) == 2
    assert (
        main(
            [
                "survey",
                "ec",
                "--db",
                str(tmp_path / "missing.duckdb"),
                "--period",
                F.PERIOD,
                "--out",
                str(tmp_path / "o3"),
            ]
        )
        == 2
    )


@pytest.mark.parametrize(
    ("period", "months"),
    [
        ("2026-04..2026-06", ["2026-04", "2026-05", "2026-06"]),
        ("2026-11..2027-01", ["2026-11", "2026-12", "2027-01"]),
        ("2026-04", ["2026-04"]),
    ],
)
def test_parse_period(period: str, months: list[str]) -> None:
    assert parse_period(period) == months


@pytest.mark.parametrize("bad", ["2026-06..2026-04", "2026-13", "x", ""])
def test_parse_period_rejects(bad: str) -> None:
    with pytest.raises(UserError):
        parse_period(bad)


@pytest.mark.parametrize(
    ("bd", "by", "on", "band"),
    [
        (dt.date(2010, 4, 6), None, dt.date(2026, 4, 5), "u16"),
        (dt.date(2010, 4, 5), None, dt.date(2026, 4, 5), "16_17"),
        (None, 2008, dt.date(2026, 4, 20), "boundary"),  # 17 or 18
        (None, 2000, dt.date(2026, 6, 1), "20s"),  # 25 or 26
        (None, 1976, dt.date(2026, 6, 1), "boundary"),  # 49 or 50
        (None, 1970, dt.date(2026, 6, 1), "50p"),
        (None, None, dt.date(2026, 6, 1), "unknown"),
    ],
)
def test_age_band(bd: dt.date | None, by: int | None, on: dt.date, band: str) -> None:
    assert age_band(age_range(bd, by, on)) == band


def test_real_audit_verdicts_reach_t1_and_t5(tmp_path: Path) -> None:
    """The real audit on the fixture (no hand-built run), with RX-E4's code changed to one the
    drug master does not classify: E4 (doctor D4, not OB/GYN, no EC training date) violates
    ec.prescriber_qualified, as E3 (trained after the visit) does, and T1's classes say so; E4's
    only line may be the tablet, so both tablet rules count it in scope and not evidenced."""
    from toolkit import store
    from toolkit.audit.run import run_audit

    db = F.build_db(tmp_path / "real.duckdb", with_run=False)
    con = store.connect(db)
    con.execute("UPDATE prescriptions SET drug_code = '9990001F1000' WHERE rx_id = 'RX-E4'")
    con.close()
    run_audit(db, as_of=AS_OF, progress=False)
    v = survey.run_survey_ec(db, F.PERIOD, tmp_path / "out", institution="I1").values

    def t5(rule: str) -> tuple[int, int, int]:
        return (v[f"T5|{rule}|in_scope"], v[f"T5|{rule}|violated"], v[f"T5|{rule}|not_evidenced"])

    assert t5("ec.prescriber_qualified") == (7, 2, 0)
    assert v["T1|prescriber:untrained|total"] + v["T1|prescriber:not_recorded|total"] == 2
    assert v["T1|prescriber:unknown|total"] == 0
    # E2 two tablets, E3 two EC lines, E5 inside; E4 unclassified only
    assert t5("ec.single_tablet_outside") == (7, 3, 1)
    # E5 not witnessed; E2 pharmacist unknown, E7 intake unknown, E4 unclassified only
    assert t5("ec.witnessed_intake") == (7, 1, 3)
    assert v["T2|single_tablet|unknown"] == 1


def test_without_institution_one_package_each_plus_merged(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Several institutions in the period: one survey per institution and their merged, suppressed tables."""
    out = tmp_path / "all"
    args = ["survey", "ec", "--db", str(db), "--period", F.PERIOD, "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 institutions" in printed and "for I1" in printed and "for I2" in printed
    for inst in ("I1", "I2"):
        manifest = json.loads((out / inst / survey.PACKAGE_DIR / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["institution_id"] == inst
        assert (out / inst / survey.LOCAL_DIR).is_dir()
    merged = json.loads((out / "merged" / "merged_manifest.json").read_text(encoding="utf-8"))
    assert [i["institution_id"] for i in merged["institutions"]] == ["I1", "I2"]
    one = survey.run_survey_ec(db, F.PERIOD, tmp_path / "i1", institution="I1", as_of=AS_OF)
    two = survey.run_survey_ec(db, F.PERIOD, tmp_path / "i2", institution="I2", as_of=AS_OF)
    m = survey.merge_packages(
        [str(one.out_dir / survey.PACKAGE_DIR), str(two.out_dir / survey.PACKAGE_DIR)], tmp_path / "m"
    )
    assert m.values[EC_TOTAL] == one.values[EC_TOTAL] + two.values[EC_TOTAL] == 8
    assert (out / "merged" / "ec_survey_merged_T1.csv").read_bytes() == (
        tmp_path / "m" / "ec_survey_merged_T1.csv"
    ).read_bytes()  # the same published (suppressed) tables as the survey office's merge
    assert not list(out.glob("ec_survey_T*.csv"))  # nothing unsuppressed or per-site at the top


def test_unknown_institution_lists_the_known_ones(db: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"known: I1, I2"):
        survey.run_survey_ec(db, F.PERIOD, tmp_path, institution="NOPE", as_of=AS_OF)
    assert survey.institution_folder("../x") != "../x" and "/" not in survey.institution_folder("a/b")
