"""The annual report (情報通信機器を用いた診療に係る報告書), contract v1.1 and schema version 2.

Figures are checked exactly against the generator's independent truth (``generation.json``
``annual_report``, counted in plain Python in :mod:`toolkit.synth.annual`).
"""

from __future__ import annotations

import csv
import json
import shutil
import stat
from pathlib import Path

import duckdb
import openpyxl
import pytest

from toolkit import municipality, store
from toolkit.audit.dq import run_dq_checks
from toolkit.audit.plan import available_columns
from toolkit.cli import main
from toolkit.ingest.run import ingest_source
from toolkit.resources import sample_dir
from toolkit.store import migrations
from toolkit.survey import annual_workbook as wbmod
from toolkit.survey.annual import compute_annual, parse_year, period_months
from toolkit.synth.generate import generate_dataset

V11_COLUMNS = {
    "institutions": ["municipality_code"],
    "patients": ["municipality_code"],
    "sessions": ["insurance_billed", "patient_municipality_code"],
}


# ---------------------------------------------------------------- JIS X 0402 check digit
@pytest.mark.parametrize(
    "code",
    ["131016", "131041", "131130", "011002", "271004", "472018", "202011", "13101", "01100"],
)
def test_known_codes_are_valid(code: str) -> None:
    # 131041 新宿区 and 202011 長野市 have remainder 0 (check digit 1); 131130 渋谷区 remainder 1 (0)
    assert municipality.is_valid(code)
    assert municipality.normalise(code) == code[:5]


@pytest.mark.parametrize("code", ["131017", "131040", "131131", "1310", "1310166", "13a01", "", " "])
def test_wrong_or_malformed_codes_are_invalid(code: str) -> None:
    assert not municipality.is_valid(code)


def test_sql_check_agrees_with_python() -> None:
    codes = ["131016", "131017", "131041", "131130", "13101", "abcdef", "13a016", "1310", "01100", "011003"]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (k INTEGER, c VARCHAR)")
    con.executemany("INSERT INTO t (k, c) VALUES (?, ?)", list(enumerate(codes)))
    sql = f"SELECT coalesce({municipality.valid_sql('c')}, FALSE) FROM t ORDER BY k"
    got = [r[0] for r in con.execute(sql).fetchall()]
    assert got == [municipality.is_valid(c) for c in codes]
    assert municipality.with_check_digit("13104") == "131041"
    assert municipality.name("13101") == "東京都千代田区"
    assert municipality.name("99999") == "99999"  # unknown: the code is printed


# ---------------------------------------------------------------- a generated set, ingested
@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("annual")
    data = root / "data"
    summary = generate_dataset(data, 700, 5, "csv", 0.02)
    db = root / "g.duckdb"
    ingest_source(db, data)
    return db, summary


@pytest.fixture(scope="module")
def report(generated):
    con = store.connect(generated[0], read_only=True)
    try:
        return compute_annual(con, 2026)
    finally:
        con.close()


def test_figures_equal_the_generators_truth(generated, report) -> None:
    truth = generated[1]["annual_report"]
    assert report.months == period_months(2026) and report.months[0] == "2025-08"
    assert [i.institution_id for i in report.institutions] == sorted(truth["institutions"])
    for inst in report.institutions:
        t = truth["institutions"][inst.institution_id]
        for m in report.months:
            assert inst.rows[m] == t["months"][m], (inst.institution_id, m)
        assert (inst.all_care, inst.elsewhere, inst.unknown_place) == (
            t["all_care"],
            t["elsewhere"],
            t["unknown_place"],
        )
        assert inst.above_80 == t["above_80_percent"]
        assert [c for c, _n in inst.top] == t["top_municipalities"]
    # the set has online care, in-person care and one clinic above the 80 % line, the others below
    assert sum(i.total("online_first") for i in report.institutions) > 20
    assert sum(i.total("in_person_revisit") for i in report.institutions) > 20
    assert sorted(i.above_80 for i in report.institutions) == [False, False, True]


def test_data_quality_checks_find_the_injected_cases(generated) -> None:
    con = store.connect(generated[0], read_only=True)
    try:
        found = {r[0]: r[4] for r in run_dq_checks(con, set(available_columns(con)))}
    finally:
        con.close()
    expected = generated[1]["annual_report"]["dq"]
    assert expected["dq.in_person_unknown_patient"] >= 1 and expected["dq.patient_bad_municipality"] >= 1
    for check_id, n in expected.items():
        assert found[check_id] == n, check_id


def test_workbook_has_the_forms_layout_and_no_list_under_80(report, tmp_path) -> None:
    paths = wbmod.write_annual(report, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    wb = openpyxl.load_workbook(paths[0])
    assert wb.sheetnames == [*(i.institution_id for i in report.institutions), "定義 Definitions"]
    for inst in report.institutions:
        ws = wb[inst.institution_id]
        texts = [str(c.value) for row in ws.iter_rows() for c in row if c.value is not None]
        for label in (
            wbmod.TITLE,
            wbmod.IN_PERSON_HEAD,
            wbmod.ONLINE_HEAD,
            wbmod.PRE_LABEL,
            wbmod.NO_AFTER_LABEL,
        ):
            assert label in texts, label
        months = [t for t in texts if t.endswith("月") and t[:-1].isdigit()]
        assert months == [
            "8月",
            "9月",
            "10月",
            "11月",
            "12月",
            "1月",
            "2月",
            "3月",
            "4月",
            "5月",
            "6月",
            "7月",
        ]
        listed = "市町村又は特別区（診療件数の多い5箇所）" in texts
        assert listed == bool(inst.above_80), inst.institution_id
        if inst.above_80:
            assert len(inst.top) == 5
            assert municipality.label(inst.top[0][0]) in texts
        else:
            assert any("記載不要" in t for t in texts)
        # the month rows hold the figures (8月's online 初診 in column D)
        row8 = next(c.row for c in ws["A"] if c.value == "8月")
        assert ws.cell(row=row8, column=4).value == inst.rows["2025-08"]["online_first"]
    with open(paths[1], encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 1 + 12 * len(report.institutions)
    with open(paths[2], encoding="utf-8-sig", newline="") as fh:
        summary = list(csv.reader(fh))
    above = [i.institution_id for i in report.institutions if i.above_80]
    assert sum(1 for r in summary[1:] if r[7]) == 5 * len(above)  # a rank only for those above 80 %


# ---------------------------------------------------------------- v1 exports, bad input, migration
def _v1_export(out: Path) -> Path:
    """The shipped sample as a v1 export: no in_person_visits file, no v1.1 columns."""
    out.mkdir(parents=True)
    src = sample_dir()
    for p in src.glob("*.csv"):
        if p.name in ("in_person_visits.csv", "ground_truth.csv"):
            continue
        enc = "cp932" if p.name == "institutions.csv" else "utf-8"
        with open(p, encoding=enc, newline="") as fh:
            rows = list(csv.DictReader(fh))
        drop = set(V11_COLUMNS.get(p.stem, []))
        cols = [c for c in rows[0] if c not in drop]
        with open(out / p.name, "w", encoding=enc, newline="") as fh:
            w = csv.DictWriter(fh, cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    return out


@pytest.fixture(scope="module")
def v1_db(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("v1")
    data = _v1_export(root / "data")
    db = root / "v1.duckdb"
    summary = ingest_source(db, data)
    assert not summary.errors
    return db


def test_v1_export_loads_and_the_report_says_what_is_missing(v1_db, tmp_path, capsys) -> None:
    con = store.connect(v1_db, read_only=True)
    assert con.execute("SELECT count(*) FROM sessions").fetchone()[0] == 400
    assert con.execute("SELECT count(*) FROM sessions WHERE insurance_billed IS NOT NULL").fetchone()[0] == 0
    con.close()
    rc = main(["survey", "annual", "--db", str(v1_db), "--year", "2026", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 0
    assert "in_person_visits" in err and "insurance_billed is absent" in err and "Municipality codes" in err
    wb = openpyxl.load_workbook(tmp_path / "o" / "annual_report_2026.xlsx")
    ws = wb[wb.sheetnames[0]]
    row8 = next(c.row for c in ws["A"] if c.value == "4月")
    assert ws.cell(row=row8, column=2).value == wbmod.BLANK  # in person: blank, never a silent 0
    assert isinstance(ws.cell(row=row8, column=4).value, int)
    texts = [str(c.value) for row in ws.iter_rows() for c in row if c.value]
    assert any("判定できません" in t for t in texts)
    assert "not decidable" in (tmp_path / "o" / "definitions.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("year", ["26", "20260", "year"])
def test_bad_year_is_refused(year, v1_db, tmp_path, capsys) -> None:
    rc = main(["survey", "annual", "--db", str(v1_db), "--year", year, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "four-digit year" in err and "2025-08-01" in err
    assert not (tmp_path / "o").exists()
    assert parse_year("2026") == 2026


def test_v1_file_is_migrated_to_v2_and_then_takes_v11_data(v1_db, tmp_path) -> None:
    db = tmp_path / "old.duckdb"
    shutil.copyfile(v1_db, db)
    con = duckdb.connect(str(db))  # make it a v1 file: the layout before contract v1.1
    for table, cols in V11_COLUMNS.items():
        for c in cols:
            con.execute(f'ALTER TABLE {table} DROP COLUMN "{c}"')
    con.execute("DROP TABLE in_person_visits")
    con.execute("UPDATE schema_meta SET value = '1' WHERE key = 'schema_version'")
    n_sessions = con.execute("SELECT count(*) FROM sessions").fetchone()[0]
    con.close()
    con = store.connect(db)
    assert store.schema_version(con) == 1
    store.ensure_schema(con)
    assert store.schema_version(con) == store.SCHEMA_VERSION == migrations.LATEST >= 2  # v3+ may follow
    fresh = store.connect(tmp_path / "fresh.duckdb")
    store.ensure_schema(fresh)
    for table in (*V11_COLUMNS, "in_person_visits"):
        layout = "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position"
        assert con.execute(layout, [table]).fetchall() == fresh.execute(layout, [table]).fetchall(), table
    assert con.execute("SELECT count(*) FROM sessions").fetchone()[0] == n_sessions
    fresh.close()
    con.close()
    summary = ingest_source(db, sample_dir())  # the v1.1 sample into the migrated file
    assert not summary.errors
    con = store.connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM in_person_visits").fetchone()[0] > 100
    assert con.execute("SELECT count(*) FROM sessions WHERE insurance_billed").fetchone()[0] > 100
    truth = json.loads((sample_dir() / "generation.json").read_text(encoding="utf-8"))["annual_report"]
    rep = compute_annual(con, 2026, "I0003")
    con.close()
    assert [i.institution_id for i in rep.institutions] == ["I0003"]
    assert rep.institutions[0].rows == truth["institutions"]["I0003"]["months"]
    assert rep.institutions[0].above_80 is True


def test_notebook_runs_offline_on_the_generated_set(generated, monkeypatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    path = Path(__file__).resolve().parents[1] / "notebooks" / "06_annual_report.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        "commit without outputs"
    )
    assert "parameters" in code[0].metadata.get("tags", [])
    monkeypatch.setenv("OCAUDIT_DB", str(generated[0]))
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/svg+xml" in o.get("data", {}) for o in outputs), "the months chart drawn offline"
    text = "".join(o.get("text", "") for o in outputs)
    assert "2025-08 – 2026-07, 3 institution(s)" in text


def test_hostile_ids_and_names_are_neutralised_in_the_workbook(tmp_path) -> None:
    from toolkit.survey.annual import AnnualReport, InstitutionAnnual

    months = period_months(2026)
    rows = {m: {k: 0 for k in wbmod.MEASURES} for m in months}
    inst = InstitutionAnnual("I/1:[x]", '=HYPERLINK("http://x","y")', "13101", rows)
    paths = wbmod.write_annual(AnnualReport(2026, months, [inst], []), tmp_path / "o")
    wb = openpyxl.load_workbook(paths[0])
    assert wb.sheetnames[0] == "I_1__x_"
    texts = [c.value for row in wb["I_1__x_"].iter_rows() for c in row if isinstance(c.value, str)]
    assert any(t.startswith("'=HYPERLINK") for t in texts) and not any(t.startswith("=") for t in texts)
