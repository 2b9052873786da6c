"""Vendor mapping files: validation on load, and a mapped vendor export end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ingest_helpers import rows, run, write
from toolkit.ingest.mapping import MappingError, load_mapping, parse_mapping

VENDOR_MAPPING = """
vendor: "MediLink Cloud export v3"
tables:
  sessions:
    files: ["ml_sessions*.csv"]
    encoding: cp932
    columns: {受診ID: session_id, 患者ID: patient_id, 開始日時: started_at, 区分: kind, 初診: is_first_visit}
    drop: [患者氏名, 電話番号]
    values:
      kind: {オンライン診療: online_care, 診療前相談: pre_consultation, 受診勧奨: online_referral}
      is_first_visit: {初診: "true", 再診: "false"}
    timestamp_format: "%Y/%m/%d %H:%M"
    date_format: "%Y/%m/%d"
    constants: {platform: dedicated}
  doctors:
    files: ["ml_doctors.csv"]
    columns: {医師ID: doctor_id, 研修修了日: online_training_on}
    date_format: "%Y/%m/%d"
"""


def test_mapping_rename_values_formats_drop_constants(tmp_path: Path) -> None:
    src = tmp_path / "export"
    write(
        src / "ml_sessions_202604.csv",
        "受診ID,患者ID,患者氏名,電話番号,開始日時,区分,初診\n"
        "V1,P1,山田 花子,090-0000-0000,2026/04/01 09:30,オンライン診療,初診\n"
        "V2,P2,佐藤 太郎,090-1111-1111,2026/04/02 10:00,不明,再診\n"
        "V3,P3,鈴木 次郎,090-2222-2222,2026-04-03T11:00:00+09:00,診療前相談,再診\n",
        "cp932",
    )
    write(src / "ml_doctors.csv", "医師ID,研修修了日\nD1,2024/04/01\nD2,2024-04-01\nD3,2024/02/30\n")
    mapping = write(tmp_path / "mapping.yaml", VENDOR_MAPPING)
    db = tmp_path / "a.duckdb"
    summary, text = run(db, src, mapping)
    assert summary.ok, summary.errors
    assert rows(
        db,
        "SELECT session_id, patient_id, kind, is_first_visit, platform, "
        "strftime(timezone('Asia/Tokyo', started_at), '%Y-%m-%d %H:%M') FROM sessions ORDER BY 1",
    ) == [
        ("V1", "P1", "online_care", True, "dedicated", "2026-04-01 09:30"),
        ("V3", "P3", "pre_consultation", False, "dedicated", "2026-04-03 11:00"),
    ]
    q = rows(
        db, "SELECT line_number, column_name, reason, raw_row FROM quarantine WHERE table_name='sessions'"
    )
    assert q[0][:3] == (
        3,
        "kind",
        "kind: '不明' is not one of pre_consultation, online_care, online_referral",
    )
    assert "佐藤" not in q[0][3] and "090" not in q[0][3]  # dropped columns never reach the database
    assert "山田" not in text and "不明" not in text
    assert rows(db, "SELECT columns_present FROM ingest_files WHERE table_name = 'sessions'")[0][0] == [
        "session_id",
        "patient_id",
        "kind",
        "started_at",
        "is_first_visit",
        "platform",
    ]
    assert rows(db, "SELECT doctor_id FROM doctors ORDER BY 1") == [("D1",), ("D2",)]
    assert rows(db, "SELECT reason FROM quarantine WHERE table_name='doctors'") == [
        ("online_training_on: '2024/02/30' is not a date (%Y/%m/%d)",)
    ]
    assert rows(db, "SELECT mapping FROM ingest_runs")[0][0] == str(mapping)


@pytest.mark.parametrize(
    "doc, fragment",
    [
        (
            {"vendr": "x"},
            "unknown key 'vendr' (did you mean 'vendor'?); valid keys: vendor, encoding, tables",
        ),
        ({"tables": {"sesions": {}}}, "tables: unknown key 'sesions' (did you mean 'sessions'?)"),
        (
            {"tables": {"sessions": {"colums": {}}}},
            "tables.sessions: unknown key 'colums' (did you mean 'columns'?); valid keys: files, encoding, columns",
        ),
        (
            {"tables": {"sessions": {"columns": {"受診ID": "visit_id"}}}},
            "tables.sessions.columns: '受診ID' is mapped to 'visit_id', which is not a column of sessions",
        ),
        (
            {"tables": {"sessions": {"columns": {"a": "session_id", "b": "session_id"}}}},
            "several vendor columns map to session_id",
        ),
        (
            {"tables": {"sessions": {"values": {"kind": {"x": "online"}}}}},
            "tables.sessions.values.kind: 'online' is not one of pre_consultation",
        ),
        ({"tables": {"sessions": {"values": {"knd": {}}}}}, "tables.sessions.values: unknown key 'knd'"),
        ({"tables": {"sessions": {"constants": {"platfrom": "dedicated"}}}}, "unknown key 'platfrom'"),
        (
            {"tables": {"sessions": {"encoding": "latin-1"}}},
            "tables.sessions.encoding: unknown encoding 'latin-1'",
        ),
        ({"tables": {"sessions": {"timestamp_format": "YYYY/MM/DD"}}}, "expected a strptime format"),
        ({"tables": {"sessions": {"drop": {"a": 1}}}}, "tables.sessions.drop: expected a list of names"),
        ([1, 2], "expected a mapping with keys vendor, encoding, tables"),
    ],
)
def test_mapping_validation_errors(doc: object, fragment: str) -> None:
    with pytest.raises(MappingError) as exc:
        parse_mapping(doc, "m.yaml")
    assert fragment in str(exc.value)
    assert str(exc.value).startswith("m.yaml: invalid mapping: ")


def test_mapping_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="mapping file not found"):
        load_mapping(tmp_path / "none.yaml")
    bad = write(tmp_path / "bad.yaml", "tables: [unclosed\n")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(bad)
    m = load_mapping(write(tmp_path / "ok.yaml", "encoding: sjis\ntables:\n  patients:\n    drop: [氏名]\n"))
    assert m.table("patients").encoding == "cp932" and m.table("patients").drop == ["氏名"]
    assert m.table("doctors").encoding == "cp932"
    assert load_mapping(None).tables == {}


def test_code_prefix_and_birth_year_alternatives(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "patients.csv", "Patient_ID,birth_year,SEX\nP1,1980,female\nP2,19x0,male\n")
    write(
        src / "drug_master.csv",
        "code_prefix,narcotic,psychotropic,high_risk,emergency_contraceptive,"
        "first_visit_caution\n811,1,0,0,0,1\n",
    )
    db = tmp_path / "a.duckdb"
    summary, _ = run(db, src)
    assert summary.ok
    assert rows(db, "SELECT patient_id, birth_year, sex FROM patients") == [("P1", 1980, "female")]
    assert rows(db, "SELECT drug_code, narcotic FROM drug_master") == [("811", True)]
    assert (
        rows(db, "SELECT columns_present FROM ingest_files WHERE table_name = 'drug_master'")[0][0][0]
        == "drug_code"
    )
