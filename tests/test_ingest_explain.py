"""Input that explains itself (issue 16, items 5–7).

5. a missing contract column is named with the rules it makes not evaluable; an unknown header
   close to a contract column gets "did you mean …?" (also when the key is missing);
6. malformed rows under a forced encoding get the encoding that decodes the file; a CP932 file
   with Japanese headers is refused with its header and the ``ocaudit mapping init`` command,
   which writes a commented skeleton that loads;
7. out-of-range values (contract ``min``/``max``, dates/timestamps years 0001–9999, ``1_000``,
   ``infinity``, ``epoch``) are quarantined with the reason, never loaded — CSV and Parquet.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.ingest_helpers import SESSION_HEADER, balanced, rows, run, session_row, write
from toolkit import cli
from toolkit.contract import TABLES
from toolkit.ingest import suggest
from toolkit.ingest.mapping import load_mapping
from toolkit.ingest.parse import required_columns
from toolkit.rules.catalogue import load, rules_disabled_by

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "toolkit", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


# ---------------------------------------------------------------- 5. missing columns, did you mean
def test_misspelled_column_names_the_column_and_the_rules_it_disables(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(
        src / "sessions.csv",
        f"{SESSION_HEADER},consent_time\n{session_row('S1')},2026-04-01T08:00:00\n",
    )
    done = _cli("ingest", "--db", str(tmp_path / "a.duckdb"), str(src))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ignored columns not in the sessions contract: consent_time (did you mean `consent_at`?)" in out
    assert (
        "sessions.consent_at missing → consent.recorded, consent.explained_first will be not evaluable" in out
    )


def test_missing_columns_are_warnings_of_the_summary(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "sessions.csv", f"{SESSION_HEADER}\n{session_row('S1')}\n")
    summary, printed = run(tmp_path / "a.duckdb", src)
    assert summary.ok
    line = "sessions.tls_version missing → security.tls will be not evaluable"
    assert line in summary.not_evaluable and line in summary.warnings
    assert f"  warning: {line}" in printed.splitlines()
    # columns the file has are not named; a column no rule needs is a note, not a warning
    assert not any(w.startswith("sessions.started_at ") for w in summary.not_evaluable)
    write(src / "patients.csv", "patient_id,sex\nP1,female\n")
    _, printed = run(tmp_path / "b.duckdb", src)
    assert (
        "note: patients has no column birth_date, birth_year (loaded as empty; no rule needs it)" in printed
    )


def test_a_table_with_no_data_names_every_rule_needing_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "care_plans.csv", "plan,patient_id\nCP1,P1\n")
    summary, printed = run(tmp_path / "a.duckdb", src)
    assert len(summary.errors) == 1
    needing = sorted({r.id for r in load().rules if any(c.startswith("care_plans.") for c in r.requires)})
    assert needing
    line = f"care_plans: no data loaded → {len(needing)} rule(s) needing it will be not evaluable: "
    assert line + ", ".join(needing) in printed


def test_rules_disabled_by_follows_the_catalogue_requires() -> None:
    cat = load()
    for r in cat.rules:
        for col in r.requires:
            assert r.id in rules_disabled_by([col])[col]
    assert rules_disabled_by(["sessions.consent_at"]) == {
        "sessions.consent_at": ("consent.recorded", "consent.explained_first")
    }
    assert rules_disabled_by(["patients.birth_year"]) == {"patients.birth_year": ()}


@pytest.mark.parametrize("header", ["Session ID", "sessionId", "SESSION-ID", "session id", "Session-Id"])
def test_missing_key_refusal_says_did_you_mean(tmp_path: Path, header: str) -> None:
    src = tmp_path / "src"
    write(src / "sessions.csv", f'"{header}",patient_id,kind\nS1,P1,online_care\n')
    summary, printed = run(tmp_path / "a.duckdb", src)
    assert len(summary.errors) == 1
    err = summary.errors[0]
    assert "missing key column session_id" in err
    assert f"`{header.strip()}` looks like it: did you mean `session_id`?" in err
    assert "ocaudit mapping init" in err


def test_data_line_as_header_is_not_printed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "sessions.csv", f"{session_row('S1')}\n{session_row('S2')}\n")
    summary, _ = run(tmp_path / "a.duckdb", src)
    assert "the first line looks like data, not a header" in summary.errors[0]
    assert "S1" not in summary.errors[0].split("sessions.csv", 1)[1]  # no values shown


def test_candidates_read_japanese_words_and_normalised_names() -> None:
    assert suggest.candidates("患者ID", "sessions")[0] == "patient_id"
    assert suggest.candidates("診療開始日時", "sessions")[0] == "started_at"
    assert suggest.candidates("同意日時", "sessions")[0] == "consent_at"
    assert suggest.candidates("処方日数", "prescriptions")[0] == "days_supply"
    assert suggest.candidates("医師ID", "doctors")[0] == "doctor_id"
    assert suggest.candidates("ｾｯｼｮﾝID", "sessions")[0] == "session_id"  # half-width kana (NFKC)
    assert suggest.candidates("patientId", "patients") == ["patient_id"]
    assert suggest.candidates("consent_time", "sessions") == ["consent_at"]
    assert suggest.candidates("consent_time", "sessions", exclude=["consent_at"]) == []
    assert suggest.candidates("blood_type", "patients") == []
    assert suggest.did_you_mean("備考", "sessions") == ""


# ---------------------------------------------------------------- 6. encodings, mapping skeleton
def test_malformed_rows_under_forced_encoding_get_the_encoding_that_decodes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(
        src / "institutions.csv",
        "institution_id,name,prefecture,contact_published,compliance_published\n"
        "I1,テスト病院,東京都,有,無\nI2,第二病院,大阪府,はい,いいえ\n",
        "cp932",
    )
    summary, printed = run(tmp_path / "a.duckdb", src, encoding="utf-8")
    assert summary.tables["institutions"].quarantined == 2
    hint = (
        "institutions.csv: 2 of 2 row(s) are malformed under --encoding utf-8, but the file decodes as "
        "cp932: ingest again with --encoding cp932"
    )
    assert any(hint in line for line in printed.splitlines() if line.startswith("  hint: "))
    # the right encoding (detected or forced) loads it, without a hint
    summary, printed = run(tmp_path / "b.duckdb", src, encoding="cp932")
    assert summary.tables["institutions"].loaded == 2 and "hint:" not in printed


JA_HEADER = (
    "受診ID,患者ID,医師ID,医療機関コード,診療区分,診療形態,診療開始日時,診療終了日時,初診,同意日時,備考"
)
JA_ROW = "V1,P1,D1,I1,online_care,d_to_p,2026-04-01T09:00:00,2026-04-01T09:15:00,はい,2026-04-01T08:00:00,x"


def test_cp932_japanese_header_is_refused_with_its_header_and_the_skeleton_command(tmp_path: Path) -> None:
    src = tmp_path / "src"
    path = write(src / "sessions.csv", f"{JA_HEADER}\n{JA_ROW}\n", "cp932")
    summary, printed = run(tmp_path / "a.duckdb", src)
    assert len(summary.errors) == 1
    err = summary.errors[0]
    assert "missing key column session_id" in err
    assert "The header read: 受診ID, 患者ID, 医師ID, 医療機関コード" in err  # decoded from CP932
    assert f"ocaudit mapping init {path} --table sessions --out mapping.yaml" in err
    assert "REFUSED sessions.csv" in printed


def test_identifier_refusal_points_to_the_skeleton_command(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "patients.csv", "patient_id,sex,患者氏名\nP1,female,x\n", "cp932")
    summary, _ = run(tmp_path / "a.duckdb", src)
    assert "look like direct identifiers: 患者氏名" in summary.errors[0]
    assert "ocaudit mapping init" in summary.errors[0]


def test_mapping_init_writes_a_skeleton_that_loads_and_ingests(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "ml_sessions_2026.csv", f"{JA_HEADER},患者氏名,電話番号\n{JA_ROW},山田太郎,090\n", "cp932")
    out = tmp_path / "mapping.yaml"
    done = _cli(
        "mapping", "init", str(src / "ml_sessions_2026.csv"), "--table", "sessions", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out} (mode 0600): 10 header(s) mapped to sessions columns, 2 to drop" in done.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text(encoding="utf-8")
    assert "SKELETON TO REVIEW" in text
    assert '# "備考":' in text  # every header is listed, unmatched ones commented out
    m = load_mapping(out).table("sessions")
    assert m.encoding == "cp932" and m.files == ["ml_sessions_2026.csv"]
    assert m.columns == {
        "受診ID": "session_id",
        "患者ID": "patient_id",
        "医師ID": "doctor_id",
        "医療機関コード": "institution_id",
        "診療区分": "kind",
        "診療形態": "care_form",
        "診療開始日時": "started_at",
        "診療終了日時": "ended_at",
        "初診": "is_first_visit",
        "同意日時": "consent_at",
    }
    assert m.drop == ["患者氏名", "電話番号"]
    db = tmp_path / "a.duckdb"
    summary, printed = run(db, src, out)
    assert summary.ok, summary.errors
    assert summary.tables["sessions"].loaded == 1
    assert rows(db, "SELECT session_id, is_first_visit FROM sessions") == [("V1", True)]
    cols = {r[0] for r in rows(db, "SELECT column_name FROM information_schema.columns")}
    assert not cols & {"患者氏名", "電話番号"}


def test_mapping_init_closest_candidates_first_and_each_column_once(tmp_path: Path) -> None:
    path = write(tmp_path / "rx.csv", "処方ID,受診ID,薬剤コード,薬品名,数量,処方日数,投与日数,Drug Code\n")
    out = tmp_path / "m.yaml"
    assert cli.main(["mapping", "init", str(path), "--table", "prescriptions", "--out", str(out)]) == 0
    m = load_mapping(out).table("prescriptions")
    assert m.columns["処方日数"] == "days_supply" and m.columns["数量"] == "quantity"
    assert m.columns["処方ID"] == "rx_id" and m.columns["薬剤コード"] == "drug_code"
    assert "投与日数" not in m.columns and "Drug Code" not in m.columns  # their column is taken
    text = out.read_text(encoding="utf-8")
    assert '# "投与日数":' in text and "candidates already taken: days_supply" in text


def test_mapping_init_refuses_to_overwrite_and_names_the_table(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "sessions.csv", f"{SESSION_HEADER}\n")
    out = write(tmp_path / "mapping.yaml", "keep me\n")
    assert cli.main(["mapping", "init", str(path), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me\n"
    assert cli.main(["mapping", "init", str(path), "--out", str(out), "--force"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "(table sessions)" in text and '# "session_id"' in text  # contract names need no rename
    assert load_mapping(out).table("sessions").columns == {}
    other = write(tmp_path / "export.csv", "a,b\n")
    assert cli.main(["mapping", "init", str(other), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "give one with --table" in capsys.readouterr().err


def test_mapping_init_reads_parquet_headers(tmp_path: Path) -> None:
    path = tmp_path / "export.parquet"
    pq.write_table(pa.table({"Rx ID": ["R1"], "daysSupply": [7], "住所": ["x"]}), path)
    out = tmp_path / "m.yaml"
    assert cli.main(["mapping", "init", str(path), "--table", "prescriptions", "--out", str(out)]) == 0
    m = load_mapping(out).table("prescriptions")
    assert m.columns == {"Rx ID": "rx_id", "daysSupply": "days_supply"} and m.drop == ["住所"]


# ---------------------------------------------------------------- 7. ranges
def test_first_visit_line_with_negative_days_supply_is_quarantined_not_loaded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "sessions.csv", f"{SESSION_HEADER}\n{session_row('S1', first='true')}\n")
    write(
        src / "prescriptions.csv",
        "rx_id,session_id,drug_code,drug_name,quantity,days_supply,dispensing\n"
        "R1,S1,2171022F1020,a,14,-30,outside\nR2,S1,2171022F1020,a,-1,7,outside\n"
        "R3,S1,2171022F1020,a,1_000,7,outside\nR4,S1,2171022F1020,a,14,7,outside\n",
    )
    db = tmp_path / "a.duckdb"
    done = _cli("ingest", "--db", str(db), str(src))
    assert done.returncode == 0, done.stderr
    assert "prescriptions.csv → prescriptions (csv, utf-8): 4 read, 1 loaded, 3 quarantined" in done.stdout
    assert "1 row(s) quarantined (line 2): column days_supply: expected an integer ≥ 1" in done.stdout
    assert "column quantity: expected a number ≥ 0" in done.stdout
    assert rows(db, "SELECT rx_id FROM prescriptions") == [("R4",)]
    assert rows(db, "SELECT line_number, reason FROM quarantine ORDER BY line_number") == [
        (2, "days_supply: '-30' is out of range (expected an integer ≥ 1)"),
        (3, "quantity: '-1' is out of range (expected a number ≥ 0)"),
        (4, "quantity: '1_000' is not a number"),
    ]


def test_every_numeric_and_date_column_of_the_contract_has_a_range() -> None:
    for t in TABLES.values():
        for c in t.columns:
            if c.type in ("int", "decimal", "date", "timestamptz"):
                assert c.bounds[0] is not None, f"{t.name}.{c.name} has no minimum"


def _too_low(c) -> str:  # type: ignore[no-untyped-def]
    lo = c.bounds[0]
    if c.type == "date":
        return "0000-12-31"
    if c.type == "timestamptz":
        return "0000-12-31T09:00:00"
    return str(lo - 1)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_every_ranged_column_quarantines_a_value_out_of_range(tmp_path: Path, fmt: str) -> None:
    """One file per table; row k breaks ranged column k (below its minimum); the last row is in range."""
    src = tmp_path / "src"
    expected: dict[str, list[str]] = {}
    for t in TABLES.values():
        key = required_columns(t)[0]
        ranged = [c for c in t.columns if c.bounds[0] is not None and c.name != key]
        if not ranged:
            continue
        expected[t.name] = [c.name for c in ranged]
        data: dict[str, list] = {key: [f"K{k}" for k in range(len(ranged) + 1)]}
        for j, c in enumerate(ranged):
            good = {
                "int": str(c.bounds[0]),
                "decimal": str(c.bounds[0]),
                "timestamptz": "2026-04-01T09:00:00",
            }.get(c.type, "2026-04-01")
            data[c.name] = [_too_low(c) if k == j else good for k in range(len(ranged) + 1)]
        if fmt == "csv":
            names = list(data)
            lines = [",".join(names)] + [",".join(data[n][k] for n in names) for k in range(len(data[key]))]
            write(src / f"{t.name}.csv", "\n".join(lines) + "\n")
        else:
            typed = {}
            for n, vals in data.items():
                c = t.column(n)
                if c.type in ("int", "decimal"):
                    typed[n] = pa.array([int(float(v)) for v in vals], pa.int64())
                else:
                    typed[n] = pa.array(vals)
            src.mkdir(exist_ok=True)
            pq.write_table(pa.table(typed), src / f"{t.name}.parquet")
    db = tmp_path / "a.duckdb"
    summary, printed = run(db, src)
    assert summary.ok and balanced(summary), summary.errors
    for table, cols in expected.items():
        got = rows(
            db, "SELECT column_name FROM quarantine WHERE table_name = ? ORDER BY line_number", [table]
        )
        assert [r[0] for r in got] == cols, table
        assert summary.tables[table].loaded == 1, table
        reasons = [r[0] for r in rows(db, "SELECT reason FROM quarantine WHERE table_name = ?", [table])]
        assert all(" is out of range (expected " in r for r in reasons if "not a" not in r), reasons


@pytest.mark.parametrize(
    "value",
    [
        "infinity",
        "-infinity",
        "epoch",
        "10000-01-01T00:00:00",
        "+2026-04-01T09:00:00",
        "now",
        "2026-04-01",  # a date alone is not a date-and-time (it would read as midnight)
        "2026-4-1 9:00",
    ],
)
def test_timestamps_that_are_not_iso_dates_and_times_are_quarantined(tmp_path: Path, value: str) -> None:
    src = tmp_path / "src"
    write(
        src / "sessions.csv", f"{SESSION_HEADER}\n{session_row('S1', started=value)}\n{session_row('S2')}\n"
    )
    db = tmp_path / "a.duckdb"
    summary, _ = run(db, src)
    assert (summary.tables["sessions"].loaded, summary.tables["sessions"].quarantined) == (1, 1)
    assert rows(db, "SELECT reason FROM quarantine") == [
        (f"started_at: '{value}' is not a timestamp (ISO 8601)",)
    ]


def test_valid_timestamp_spellings_still_load(tmp_path: Path) -> None:
    src = tmp_path / "src"
    values = [
        "2026-04-01T09:00:00+09:00",
        "2026-04-01 09:00:00",
        "2026-04-01T00:00:00Z",
        "２０２６-04-01T09:00",
    ]
    body = "\n".join(session_row(f"S{i}", started=v) for i, v in enumerate(values))
    write(src / "sessions.csv", f"{SESSION_HEADER}\n{body}\n")
    summary, _ = run(tmp_path / "a.duckdb", src)
    assert summary.tables["sessions"].loaded == len(values)


def test_ingest_doc_range_table_is_current() -> None:
    from tools.docs import INGEST_DOC, RANGES_START, update_ingest_doc

    text = INGEST_DOC.read_text(encoding="utf-8")
    assert RANGES_START in text
    assert text == update_ingest_doc(text), "run python -m tools.docs"
    assert "| `prescriptions.days_supply` | int | ≥ 1 |" in text


def test_a_file_lacking_a_column_its_table_has_gets_a_note(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(
        src / "sessions" / "part-1.csv",
        f"{SESSION_HEADER},consent_at\n{session_row('S1')},2026-04-01T08:00\n",
    )
    write(src / "sessions" / "part-2.csv", f"{SESSION_HEADER}\n{session_row('S2')}\n")
    summary, printed = run(tmp_path / "a.duckdb", src)
    assert summary.ok
    assert not any(w.startswith("sessions.consent_at missing") for w in summary.not_evaluable)
    assert (
        "note: part-2.csv has no sessions.consent_at (other files of sessions have it): its rows load with "
        "it empty and count as not evidenced in consent.recorded, consent.explained_first"
    ) in printed


def test_ingest_imports_the_catalogue_data_not_the_audit() -> None:
    code = (
        "import sys, toolkit.ingest.run, toolkit.ingest.skeleton; "
        "print(sorted(m for m in sys.modules if m.startswith(('toolkit.audit', 'toolkit.report', "
        "'toolkit.rules.sql', 'great_expectations'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
