"""Ingest: formats, encodings, quarantine, refused files, duplicates, idempotency, transactions."""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.ingest_helpers import SESSION_HEADER, balanced, rows, run, session_row, write
from toolkit.errors import UserError
from toolkit.ingest import run as ingest


def _good_source(src: Path) -> Path:
    write(
        src / "institutions.csv",
        "institution_id,name,prefecture,contact_published,compliance_published\nI1,テスト病院,東京都,有,無\n",
    )
    write(
        src / "doctors.csv",
        "doctor_id,institution_id,specialty,online_training_on,ec_training_on\nD1,I1,obgyn,2024-01-05,\n",
    )
    write(src / "patients.csv", "patient_id,birth_date,sex\nP1,1990-02-03,female\n")
    write(src / "sessions.csv", f"{SESSION_HEADER}\n{session_row('S1')}\n{session_row('S2', first='はい')}\n")
    write(
        src / "prescriptions.csv",
        "rx_id,session_id,drug_code,drug_name,quantity,days_supply,dispensing\n"
        "R1,S1,2171022F1020,アムロジピン錠5mg,14,14,outside\n",
    )
    write(
        src / "care_plans.csv",
        "care_plan_id,patient_id,created_at,has_content,doctors\n"
        "CP1,P1,2026-03-01T10:00:00+09:00,yes,D1;D2\n",
    )
    write(
        src / "ec_cases.csv",
        "session_id,reason,assault_suspected,follow_up_due_on\nS1,geographic,0,2026-04-22\n",
    )
    write(
        src / "access_log.csv",
        "session_id,at,event,actor,mfa\nS1,2026-04-01T09:00:00,join,doctor,1\n"
        "S1,2026-04-01T09:15:00,leave,doctor,1\n",
    )
    return src


def test_good_load_of_every_table(tmp_path: Path) -> None:
    src = _good_source(tmp_path / "src")
    db = tmp_path / "a.duckdb"
    summary, text = run(db, src)
    assert summary.ok and balanced(summary)
    for table, n in {
        "institutions": 1,
        "doctors": 1,
        "patients": 1,
        "sessions": 2,
        "prescriptions": 1,
        "care_plans": 1,
        "ec_cases": 1,
        "access_log": 2,
    }.items():
        assert summary.tables[table].loaded == n, table
        assert rows(db, f"SELECT count(*) FROM {table}")[0][0] == n
    assert summary.tables["drug_master"].loaded > 10  # shipped master on first ingest
    assert rows(db, "SELECT count(*) FROM quarantine")[0][0] == 0
    # types: timestamp without offset is Japan time; booleans in Japanese
    started, first = rows(db, "SELECT epoch(started_at), is_first_visit FROM sessions WHERE session_id='S2'")[
        0
    ]
    assert started == pytest.approx(1775001600.0)  # 2026-04-01T09:00+09:00 = 00:00Z
    assert first is True
    assert rows(db, "SELECT contact_published, compliance_published FROM institutions") == [(True, False)]
    assert rows(db, "SELECT _line_number FROM sessions ORDER BY session_id") == [(2,), (3,)]
    assert rows(db, "SELECT count(*) FROM ingest_runs")[0][0] == 1
    assert "sessions" in text and "quarantined" in text


def test_cli_ingest_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _good_source(tmp_path / "src")
    args = argparse.Namespace(db=str(tmp_path / "a.duckdb"), source=str(src), mapping=None, encoding=None)
    assert ingest.cli_ingest(args) == 0
    out = capsys.readouterr().out
    assert "unchanged" in out and str(tmp_path / "a.duckdb") in out
    write(src / "sessions_bad.csv", "patient_id,kind\nP1,online_care\n")
    assert ingest.cli_ingest(args) == 2
    with pytest.raises(UserError, match="SOURCE not found"):
        ingest.cli_ingest(
            argparse.Namespace(db=args.db, source=str(tmp_path / "nope"), mapping=None, encoding=None)
        )
    with pytest.raises(UserError, match="encoding"):
        ingest.ingest_source(args.db, src, encoding="latin-9", out=lambda s: None)


def test_cp932_bom_gz_parquet_jsonl(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(
        src / "doctors.csv",
        "doctor_id,institution_id,specialty,online_training_on\nD1,I1,内科,2024-01-05\n",
        "cp932",
    )
    write(src / "patients.csv", "\ufeffpatient_id,birth_year,sex\nP1,1980,女性\nP2,1990,male\n")
    (src / "institutions.csv.gz").write_bytes(
        gzip.compress("institution_id,name,contact_published\nI1,病院,はい\n".encode())
    )
    (src / "sessions").mkdir()
    pq.write_table(
        pa.table(
            {
                "session_id": ["A", "B"],
                "kind": ["online_care", "x"],
                "started_at": pa.array([1_700_000_000, None], pa.timestamp("s", tz="+09:00")),
                "is_first_visit": [True, None],
                "network_interruptions": pa.array([1, 2], pa.int32()),
            }
        ),
        src / "sessions" / "part-0.parquet",
    )
    with open(src / "access_log.jsonl", "w", encoding="utf-8") as fh:
        fh.write(
            json.dumps(
                {
                    "session_id": "A",
                    "at": "2026-04-01T09:00:00",
                    "event": "join",
                    "actor": "doctor",
                    "mfa": True,
                }
            )
            + "\n"
        )
        fh.write('{"session_id": "A", "at": \n')
        fh.write(
            json.dumps({"session_id": "A", "at": "2026-04-01T09:10:00Z", "event": "leave", "actor": "doctor"})
            + "\n"
        )
    db = tmp_path / "a.duckdb"
    summary, text = run(db, src)
    assert summary.ok and balanced(summary)
    files = dict(rows(db, "SELECT table_name, encoding FROM ingest_files WHERE table_name <> 'drug_master'"))
    assert files == {
        "doctors": "cp932",
        "patients": "utf-8-sig",
        "institutions": "utf-8",
        "sessions": None,
        "access_log": "utf-8",
    }
    assert rows(db, "SELECT specialty FROM doctors") == [("内科",)]
    assert rows(db, "SELECT patient_id, birth_year FROM patients") == [("P2", 1990)]
    q = rows(
        db,
        "SELECT table_name, regexp_replace(source_file, '.*/', ''), line_number, column_name, reason "
        "FROM quarantine ORDER BY table_name",
    )
    assert q == [
        ("access_log", "access_log.jsonl", 2, None, "line is not a JSON object (broken or truncated JSON)"),
        ("patients", "patients.csv", 2, "sex", "sex: '女性' is not one of female, male, other, unknown"),
        (
            "sessions",
            "part-0.parquet",
            2,
            "kind",
            "kind: 'x' is not one of pre_consultation, online_care, online_referral",
        ),
    ]
    assert "女性" not in text  # raw values are never printed
    assert rows(db, "SELECT network_interruptions, is_first_visit FROM sessions") == [(1, True)]


def test_bad_enum_date_bool_number_quarantined_with_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    lines = [
        SESSION_HEADER,
        session_row("S1"),
        session_row("S2", kind="online"),
        session_row("S3", started="2026-02-30T10:00:00"),
        session_row("S4", first="maybe"),
        session_row("S5", interruptions="three"),
        session_row("S6", kind="ONLINE_CARE"),
    ]
    write(src / "sessions.csv", "\n".join(lines) + "\n")
    db = tmp_path / "a.duckdb"
    summary, text = run(db, src)
    c = summary.tables["sessions"]
    assert (c.read, c.loaded, c.quarantined) == (6, 2, 4)
    got = rows(db, "SELECT line_number, column_name, reason FROM quarantine ORDER BY line_number")
    assert got == [
        (3, "kind", "kind: 'online' is not one of pre_consultation, online_care, online_referral"),
        (4, "started_at", "started_at: '2026-02-30T10:00:00' is not a timestamp (ISO 8601)"),
        (
            5,
            "is_first_visit",
            "is_first_visit: 'maybe' is not a boolean (true/false, 1/0, yes/no, はい/いいえ, 有/無)",
        ),
        (6, "network_interruptions", "network_interruptions: 'three' is not an integer"),
    ]
    raw = json.loads(rows(db, "SELECT raw_row FROM quarantine WHERE line_number = 3")[0][0])
    assert raw["session_id"] == "S2" and raw["kind"] == "online"
    assert "1 row(s) quarantined (line 3): column kind: expected one of" in text
    assert "'online'" not in text and "maybe" not in text
    assert rows(db, "SELECT kind FROM sessions WHERE session_id = 'S6'") == [("online_care",)]


def test_missing_key_column_refuses_file_others_load(tmp_path: Path) -> None:
    src = _good_source(tmp_path / "src")
    write(src / "sessions.csv", "patient_id,kind\nP1,online_care\n")
    db = tmp_path / "a.duckdb"
    summary, text = run(db, src)
    assert not summary.ok
    assert len(summary.errors) == 1
    assert "sessions.csv" in summary.errors[0] and "missing key column session_id" in summary.errors[0]
    assert "expected a header with the sessions columns" in summary.errors[0]
    assert rows(db, "SELECT count(*) FROM sessions")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM patients")[0][0] == 1
    assert "REFUSED sessions.csv" in text
    args = argparse.Namespace(db=str(tmp_path / "b.duckdb"), source=str(src), mapping=None, encoding=None)
    assert ingest.cli_ingest(args) == 2


def test_missing_optional_column_loads_and_columns_present(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "sessions.csv", f"{SESSION_HEADER}\n{session_row('S1')}\n")
    db = tmp_path / "a.duckdb"
    summary, _ = run(db, src)
    assert summary.ok
    present = rows(db, "SELECT columns_present FROM ingest_files WHERE table_name = 'sessions'")[0][0]
    assert present == SESSION_HEADER.split(",")
    assert rows(db, "SELECT modality, tls_version FROM sessions") == [(None, None)]
    con = duckdb.connect(str(db), read_only=True)
    avail = ingest.available_columns(con)
    con.close()
    assert avail["sessions"] == set(SESSION_HEADER.split(","))
    assert "drug_code" in avail["drug_master"]
    assert "patients" not in avail


def test_extra_columns_ignored_with_warning_identifiers_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "patients.csv", "patient_id,sex,favourite_colour\nP1,female,blue\n")
    summary, text = run(tmp_path / "a.duckdb", src)
    assert summary.ok and "ignored columns not in the patients contract: favourite_colour" in text
    write(src / "patients.csv", "patient_id,sex,患者氏名,phone_number\nP1,female,山田 花子,090\n")
    summary, text = run(tmp_path / "b.duckdb", src)
    assert not summary.ok
    assert "direct identifiers: 患者氏名, phone_number" in summary.errors[0]
    assert "drop" in summary.errors[0]
    assert "山田" not in text
    assert rows(tmp_path / "b.duckdb", "SELECT count(*) FROM patients")[0][0] == 0
    write(
        src / "institutions.csv", "institution_id,name\nI1,病院\n"
    )  # institutions.name is a contract column
    write(src / "prescriptions.csv", "rx_id,drug_name,PatientName\nR1,薬,x\n")
    summary, text = run(tmp_path / "d.duckdb", src)
    assert any("institutions.csv" in e for e in summary.errors) is False
    assert any("prescriptions.csv" in e and "identifiers: PatientName" in e for e in summary.errors)
    (src / "institutions.csv").unlink()
    (src / "prescriptions.csv").unlink()
    write(src / "doctors.csv", "doctor_id,name\nD1,x\n")
    summary, _ = run(tmp_path / "e.duckdb", src)
    assert any("doctors.csv" in e and "identifiers: name" in e for e in summary.errors)
    (src / "doctors.csv").unlink()
    mapping = write(tmp_path / "m.yaml", "tables:\n  patients:\n    drop: [患者氏名, phone_number]\n")
    summary, _ = run(tmp_path / "c.duckdb", src, mapping)
    assert summary.ok
    assert rows(tmp_path / "c.duckdb", "SELECT patient_id FROM patients") == [("P1",)]


def test_duplicate_keys_identical_and_different(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(
        src / "sessions.csv",
        "\n".join(
            [
                SESSION_HEADER,
                session_row("S1"),
                session_row("S2"),
                session_row("S1"),
                session_row("S2", kind="pre_consultation"),
            ]
        )
        + "\n",
    )
    db = tmp_path / "a.duckdb"
    summary, text = run(db, src)
    c = summary.tables["sessions"]
    assert (c.read, c.loaded, c.quarantined, c.inserted, c.unchanged) == (4, 3, 1, 2, 1)
    assert rows(db, "SELECT line_number, column_name, reason FROM quarantine") == [
        (5, "session_id", "duplicate key S2 with different content (first at line 3)")
    ]
    assert rows(db, "SELECT kind FROM sessions WHERE session_id = 'S2'") == [("online_care",)]
    assert "identical duplicate" in text


def test_idempotent_reingest_and_changed_row(tmp_path: Path) -> None:
    src = _good_source(tmp_path / "src")
    write(src / "sessions_extra.csv", f"{SESSION_HEADER}\n{session_row('S9', kind='bad')}\n")
    db = tmp_path / "a.duckdb"
    first, _ = run(db, src)
    before = {
        t: rows(db, f"SELECT * FROM {t} ORDER BY ALL") for t in ("sessions", "access_log", "quarantine")
    }
    second, _ = run(db, src)
    for t, c in second.tables.items():
        assert c.inserted == 0 and c.updated == 0, t
        assert c.unchanged == first.tables[t].loaded, t
        assert c.quarantined == first.tables[t].quarantined
    assert {t: rows(db, f"SELECT * FROM {t} ORDER BY ALL") for t in before} == before
    assert rows(db, "SELECT count(*) FROM ingest_runs")[0][0] == 2
    # change one session, add one
    write(
        src / "sessions.csv",
        f"{SESSION_HEADER}\n{session_row('S1', kind='online_referral')}\n"
        f"{session_row('S2', first='はい')}\n{session_row('S3')}\n",
    )
    third, _ = run(db, src)
    c = third.tables["sessions"]
    assert (c.inserted, c.updated, c.unchanged) == (1, 1, 1)
    ch = rows(
        db,
        "SELECT row_key, change, old_hash IS NOT NULL, new_hash IS NOT NULL FROM row_changes "
        "WHERE ingest_id = ? ORDER BY row_key",
        [third.ingest_id],
    )
    assert ch == [("S1", "updated", True, True), ("S3", "inserted", False, True)]
    assert rows(db, "SELECT kind FROM sessions WHERE session_id = 'S1'") == [("online_referral",)]
    assert rows(db, "SELECT count(*) FROM sessions")[0][0] == 3


def test_failing_ingest_leaves_database_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _good_source(tmp_path / "src")
    db = tmp_path / "a.duckdb"
    run(db, src)
    snapshot = {
        t: rows(db, f"SELECT * FROM {t} ORDER BY ALL")
        for t in ("sessions", "ingest_runs", "ingest_files", "row_changes", "quarantine")
    }
    write(
        src / "sessions.csv",
        f"{SESSION_HEADER}\n{session_row('S1', kind='online_referral')}\n{session_row('S7')}\n",
    )
    calls = {"n": 0}
    original = ingest._Run._write_records

    def boom(self, *a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        raise RuntimeError("simulated crash after the upserts")

    monkeypatch.setattr(ingest._Run, "_write_records", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(db, src)
    assert calls["n"] == 1
    assert {t: rows(db, f"SELECT * FROM {t} ORDER BY ALL") for t in snapshot} == snapshot
    monkeypatch.setattr(ingest._Run, "_write_records", original)
    summary, _ = run(db, src)
    assert summary.tables["sessions"].updated == 1 and summary.tables["sessions"].inserted == 1


def test_unreadable_files_refused(tmp_path: Path) -> None:
    src = _good_source(tmp_path / "src")
    (src / "ec_cases.csv").write_bytes(b"")
    (src / "doctors.csv").write_bytes(bytes(range(256)) * 4)
    (src / "care_plans.parquet").write_bytes(b"PAR1 not really")
    write(src / "visits.csv", "a,b\n1,2\n")
    (src / "prescriptions.xlsx").write_bytes(b"PK\x03\x04")
    db = tmp_path / "a.duckdb"
    summary, text = run(db, src)
    errs = "\n".join(summary.errors)
    assert "ec_cases.csv: the file is empty" in errs
    assert "doctors.csv: NUL byte at byte offset 0" in errs
    assert "care_plans.parquet: not a readable Parquet file" in errs
    assert "visits.csv: the file name names no contract table" in errs
    assert "prescriptions.xlsx: unsupported file format" in errs
    assert len(summary.errors) == 5
    assert summary.tables["sessions"].loaded == 2
    assert rows(db, "SELECT count(*) FROM doctors")[0][0] == 0


def test_wrong_encoding_forced_and_invalid(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(
        src / "doctors.csv",
        "doctor_id,institution_id,specialty,online_training_on\nD1,I1,内科,2024-01-05\n",
        "cp932",
    )
    summary, _ = run(tmp_path / "a.duckdb", src, encoding="utf-8")
    # forced UTF-8 on a CP932 file: the line with invalid bytes is quarantined, not loaded as mojibake
    c = summary.tables["doctors"]
    assert (c.read, c.loaded, c.quarantined) == (1, 0, 1)
    assert "encoding" in rows(tmp_path / "a.duckdb", "SELECT reason FROM quarantine")[0][0].lower()
    (src / "doctors.csv").write_bytes(b"doctor_id,institution_id\nD1,\x81\x00\n")
    summary, _ = run(tmp_path / "b.duckdb", src)
    assert "NUL byte" in summary.errors[0]
    (src / "doctors.csv").write_bytes(b"doctor_id,institution_id\nD1,\x81\x20x\n")
    summary, _ = run(tmp_path / "c.duckdb", src)
    assert "not UTF-8 (bad byte at offset 28, line 2) nor CP932" in summary.errors[0]


def test_cp932_invalid_later_in_file_refused_with_offset(tmp_path: Path) -> None:
    src = tmp_path / "src"
    body = "doctor_id,institution_id,specialty,online_training_on\n" + "D1,I1,内科,2024-01-05\n" * 10
    data = body.encode("cp932") + b"D2,I1,\x81\x20x,2024-01-05\n"
    (src / "doctors.csv").parent.mkdir(parents=True)
    (src / "doctors.csv").write_bytes(data)
    summary, _ = run(tmp_path / "a.duckdb", src, encoding="cp932")
    assert len(summary.errors) == 1 and "not valid cp932 at byte offset" in summary.errors[0]
    assert "(line 12)" in summary.errors[0]
    assert rows(tmp_path / "a.duckdb", "SELECT count(*) FROM doctors")[0][0] == 0


def test_malformed_csv_lines_and_quoted_newlines(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(
        src / "patients.csv",
        "patient_id,birth_date,sex\nP1,1990-01-01,female\nP2,1990-01-01\n"
        'P3,1990-01-01,male,extra\n"P\n4",1990-01-01,other\n\nP5,1990-01-01,unknown\nP6,x,female\n',
    )
    db = tmp_path / "a.duckdb"
    summary, _ = run(db, src)
    c = summary.tables["patients"]
    assert (c.read, c.loaded, c.quarantined) == (6, 3, 3)
    assert rows(db, "SELECT patient_id, _line_number FROM patients ORDER BY _line_number") == [
        ("P1", 2),
        ("P\n4", 5),
        ("P5", 8),
    ]
    got = rows(db, "SELECT line_number, column_name, reason FROM quarantine ORDER BY line_number")
    assert [g[0] for g in got] == [3, 4, 9]
    assert "missing columns" in got[0][2] and "too many columns" in got[1][2]
    assert got[2][1] == "birth_date"


def test_drug_master_from_source_replaces_shipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "sessions.csv", f"{SESSION_HEADER}\n{session_row('S1')}\n")
    db = tmp_path / "a.duckdb"
    run(db, src)
    shipped = rows(db, "SELECT count(*) FROM drug_master")[0][0]
    assert shipped > 10
    write(
        src / "drug_master.csv",
        "code_prefix,narcotic,psychotropic,high_risk,emergency_contraceptive,"
        "first_visit_caution\n811,有,無,無,無,有\n1124,無,有,無,無,有\n",
        "cp932",
    )
    summary, _ = run(db, src)
    assert summary.tables["drug_master"].deleted == shipped - 1  # 811 is in both: updated
    assert summary.tables["drug_master"].updated == 1
    assert rows(db, "SELECT drug_code, narcotic, psychotropic FROM drug_master ORDER BY 1") == [
        ("1124", False, True),
        ("811", True, False),
    ]
    summary, _ = run(db, src)
    assert summary.tables["drug_master"].unchanged == 2 and summary.tables["drug_master"].deleted == 0


def test_rejected_line_in_the_middle_keeps_line_numbers(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "patients.csv", "patient_id,sex,\nP1,female,\nP2,male,x,y\nP3,other,\nP4,bad,\nP5,male,\n")
    db = tmp_path / "a.duckdb"
    summary, text = run(db, src)
    assert summary.ok and "(unnamed column 3)" in text
    assert rows(db, "SELECT patient_id, _line_number FROM patients ORDER BY 2") == [
        ("P1", 2),
        ("P3", 4),
        ("P5", 6),
    ]
    assert rows(db, "SELECT line_number, column_name FROM quarantine ORDER BY 1") == [(3, None), (5, "sex")]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("patient_name", True),
        ("PatientName", True),
        ("patientname", True),
        ("name", True),
        ("Tel", True),
        ("phonenumber", True),
        ("e_mail", True),
        ("住所", True),
        ("患者氏名", True),
        ("電話番号", True),
        ("insurance_no", True),
        ("hotel", False),
        ("blood_type", False),
        ("session_id", False),
        ("birth_date", False),
        ("user_id", False),
    ],
)
def test_direct_identifier_names(name: str, expected: bool) -> None:
    from toolkit.ingest.parse import looks_like_identifier

    assert looks_like_identifier(name) is expected


def test_duplicate_across_files_and_quarantine_follows_the_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(
        src / "sessions" / "a.csv", f"{SESSION_HEADER}\n{session_row('S1')}\n{session_row('S2', kind='x')}\n"
    )
    write(src / "sessions" / "b.csv", f"{SESSION_HEADER}\n{session_row('S1', kind='online_referral')}\n")
    db = tmp_path / "a.duckdb"
    summary, _ = run(db, src)
    assert summary.tables["sessions"].files == 2
    reasons = [r[0] for r in rows(db, "SELECT reason FROM quarantine ORDER BY source_file")]
    assert reasons[0].startswith("kind: 'x'")
    assert reasons[1].startswith("duplicate key S1 with different content (first at ")
    assert reasons[1].endswith("sessions/a.csv line 2)")
    # the bad row is fixed in a.csv: its quarantine row goes, b.csv's duplicate stays
    write(src / "sessions" / "a.csv", f"{SESSION_HEADER}\n{session_row('S1')}\n{session_row('S2')}\n")
    run(db, src)
    assert [r[0][:9] for r in rows(db, "SELECT reason FROM quarantine")] == ["duplicate"]
    assert rows(db, "SELECT count(*) FROM sessions")[0][0] == 2


def test_temp_copies_of_killed_ingests_are_removed(tmp_path: Path) -> None:
    import subprocess
    import tempfile

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"{ingest.TMP_PREFIX}{dead.pid}-test"
    stale.mkdir(exist_ok=True)
    (stale / "x_sessions.csv.utf8").write_text("patient data")
    src = write(tmp_path / "src" / "doctors.csv", "doctor_id,specialty\nD1,内科\n", "cp932").parent
    summary, _ = run(tmp_path / "a.duckdb", src)
    assert summary.ok
    assert not stale.exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"{ingest.TMP_PREFIX}{__import__('os').getpid()}-*"))
