"""Re-create the malformed-input corpus in this folder (the files are committed; run to refresh).

    python tests/bad_inputs/make_corpus.py

Each file is small and breaks one thing; ``cases.yaml`` says what ingest must do with it.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
S_HEAD = "session_id,patient_id,doctor_id,institution_id,kind,care_form,started_at,ended_at,is_first_visit"


def s_row(sid: str, kind: str = "online_care", started: str = "2026-04-01T09:00:00") -> str:
    return f"{sid},P1,D1,I1,{kind},d_to_p,{started},2026-04-01T09:15:00,true"


def write_huge_field_csv(path: Path, field_bytes: int, chunk: int = 8 << 20) -> Path:
    """``sessions`` CSV: header, ``S1,<field_bytes of A>``, ``S2,online_care`` — written streaming.

    Too big to commit (the issue's case is 2 GiB): the slow test generates it. S1 must be quarantined
    at line 2 without its field being held in memory, S2 loaded at line 3.
    """
    block = b"A" * chunk
    with open(path, "wb") as fh:
        fh.write(b"session_id,kind\nS1,")
        left = field_bytes
        while left > 0:
            fh.write(block[: min(left, chunk)])
            left -= chunk
        fh.write(b"\nS2,online_care\n")
    return path


def w(name: str, data: str | bytes, encoding: str = "utf-8") -> None:
    path = HERE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))


def main() -> None:
    w("sessions-truncated-quote.csv", f'{S_HEAD}\n{s_row("S1")}\n{s_row("S2")}\n"S3,P1,D1,I1,onl')
    w("sessions-truncated-line.csv", f"{S_HEAD}\n{s_row('S1')}\n{s_row('S2')}\nS3,P1,D1")
    w(
        "doctors-mixed-encoding.csv",
        b"doctor_id,institution_id,specialty,online_training_on\n"
        + "D1,I1,内科,2024-01-05\n".encode()
        + "D2,I1,内科,2024-01-05\n".encode("cp932"),
    )
    w("patients-nul-bytes.csv", b"patient_id,sex\nP1,female\nP2,fe\x00male\n")
    w("patients-bom-in-middle.csv", "patient_id,sex\nP1,female\nP2,\ufefffemale\n\ufeffP3,male\n")
    w("patients-duplicate-headers.csv", "patient_id,sex,sex\nP1,female,male\n")
    w("sessions-missing-header.csv", f"{s_row('S1')}\n{s_row('S2')}\n")
    w("patients-extra-columns.csv", "patient_id,sex,blood_type,visit_count\nP1,female,A,3\n")
    w("patients-quoted-newlines.csv", 'patient_id,sex\n"P\n1",female\n"P2","ma\nle"\nP3,male\n')
    w(
        "prescriptions-fullwidth.csv",
        "rx_id,session_id,drug_code,drug_name,quantity,days_supply,dispensing\n"
        "R1,S1,2171022F1020,アムロジピン錠5mg,１４,１４,outside\n"
        "R2,S1,2171022F1020　,アムロジピン錠5mg,　14　,7,ｏｕｔｓｉｄｅ\n"
        "R3,S1,2171022F1020,アムロジピン錠5mg,1 4,7,outside\n",
    )
    w(
        "doctors-era-date.csv",
        "doctor_id,institution_id,specialty,online_training_on\n"
        "D1,I1,internal,令和6年4月1日\nD2,I1,internal,2024-04-01\nD3,I1,internal,R6.4.1\n",
    )
    w(
        "doctors-impossible-date.csv",
        "doctor_id,institution_id,specialty,online_training_on,ec_training_on\n"
        "D1,I1,internal,2026-02-30,\nD2,I1,internal,2024-13-01,\nD3,I1,internal,2024-02-29,2023-02-29\n",
    )
    w(
        "access_log-odd-offsets.csv",
        "session_id,at,event,actor\n"
        "S1,2026-04-01T09:00:00+05:45,join,doctor\nS1,2026-04-01T09:00:00Z,join,patient\n"
        "S1,2026-04-01T09:00:00+0900,leave,doctor\nS1,2026-04-01 09:00:00+09,leave,patient\n"
        "S1,2026-04-01T09:00:00 JST,drop,patient\nS1,2026-04-01T25:00:00,drop,doctor\n",
    )
    w(
        "patients-huge-field.csv",
        "patient_id,birth_date,sex\nP1," + "9" * 200_000 + ",female\nP2,1990-01-01,male\n",
    )
    w("sessions-empty.csv", b"")
    w("sessions-header-only.csv", f"{S_HEAD}\n")
    pq.write_table(
        pa.table(
            {
                "session_id": ["S1", "S2", "S3"],
                "started_at": pa.array([1_775_000_000, 1_775_000_100, 0], pa.int64()),
                "is_first_visit": pa.array([1, 0, 2], pa.int64()),
                "network_interruptions": pa.array([1.0, 2.5, None], pa.float64()),
            }
        ),
        HERE / "sessions-wrong-types.parquet",
    )
    w(
        "access_log-broken-line.jsonl",
        "\n".join(
            [
                json.dumps(
                    {"session_id": "S1", "at": "2026-04-01T09:00:00", "event": "join", "actor": "doctor"}
                ),
                '{"session_id": "S1", "at": "2026-04-01T09:05:00", "event": "dro',
                json.dumps(
                    {"session_id": "S1", "at": "2026-04-01T09:10:00", "event": "leave", "actor": "doctor"}
                ),
            ]
        )
        + "\n",
    )
    w(
        "access_log-array-line.jsonl",
        '["S1", "2026-04-01T09:00:00", "join"]\n'
        + json.dumps({"session_id": "S1", "at": "2026-04-01T09:10:00", "event": "leave", "actor": "doctor"})
        + "\n"
        + json.dumps({"session_id": None, "at": "2026-04-01T09:10:00", "event": "leave", "actor": "doctor"})
        + "\n",
    )
    mixed = HERE / "mixed_dir" / "access_log"
    w("mixed_dir/access_log/part-1.csv", "session_id,at,event,actor\nS1,2026-04-01T09:00:00,join,doctor\n")
    w(
        "mixed_dir/access_log/part-2.jsonl",
        json.dumps({"session_id": "S1", "at": "2026-04-01T09:05:00", "event": "drop", "actor": "patient"})
        + "\n",
    )
    pq.write_table(
        pa.table(
            {"session_id": ["S1"], "at": ["2026-04-01T09:10:00"], "event": ["leave"], "actor": ["bogus"]}
        ),
        mixed / "part-3.parquet",
    )
    w("mixed_dir/README.txt", "not data\n")
    w("patients-utf16.csv", "patient_id,sex\nP1,female\n".encode("utf-16"))
    w("sessions-binary.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    w(
        "institutions-cp932.csv",
        "institution_id,name,prefecture,contact_published,compliance_published\n"
        "I1,テスト病院,東京都,有,無\nI2,第二病院,１３,はい,いいえ\n",
        "cp932",
    )
    w(
        "institutions-bad-bool.csv",
        "institution_id,name,contact_published,compliance_published\n"
        "I1,A,済,true\nI2,B,true,false\nI3,C,TRUE,False\n",
    )
    w("sessions-missing-key-values.csv", f"{S_HEAD}\n{s_row('S1')}\n{s_row('')}\n{s_row('  ')}\n")
    w(
        "sessions-dup-conflict.csv",
        f"{S_HEAD}\n{s_row('S1')}\n{s_row('S1', kind='pre_consultation')}\n{s_row('S1')}\n",
    )
    w("patients-identifier.csv", "patient_id,sex,住所\nP1,female,東京都千代田区\n")
    w(
        "drug_master-code-prefix.csv",
        "code_prefix,drug_name,narcotic,psychotropic,high_risk,"
        "emergency_contraceptive,first_visit_caution\n811,麻薬,1,0,0,0,1\n396,糖尿病用剤,0,0,1,0,1\n",
    )
    w(
        "ec_cases-bad-enum.csv",
        "session_id,reason,follow_up_due_on\nS1,geographic,2026-04-22\nS2,other,2026-04-22\n",
    )
    w(
        "care_plans-crlf.csv",
        "care_plan_id,patient_id,created_at,has_content\r\n"
        "CP1,P1,2026-03-01T10:00:00,1\r\nCP2,P1,yesterday,1\r\nCP3,P1,2026-03-01T10:00:00,0\r\n",
    )
    w("prescriptions-semicolon.csv", "rx_id;session_id;drug_code;quantity\nR1;S1;2171022F1020;14\n")
    w("visits.csv", "visit_id,patient_id\nV1,P1\n")
    full = gzip.compress(f"{S_HEAD}\n{s_row('S1')}\n{s_row('S2')}\n".encode() * 50, mtime=0)
    w("sessions-truncated.csv.gz", full[: len(full) // 2])
    w("sessions-not-gzip.csv.gz", f"{S_HEAD}\n{s_row('S1')}\n")
    w(
        "prescriptions-decimal-comma.csv",
        "rx_id,session_id,quantity,days_supply,dispensing\n"
        'R1,S1,"1,5",7,outside\nR2,S1,1.5,7.0,inside\nR3,S1,2,-3,inside\n',
    )
    w("patients-tab-separated.csv", "patient_id\tsex\nP1\tfemale\n")
    w(
        "sessions-bad-enums-many.csv",
        f"{S_HEAD}\n{s_row('S1', kind='Online Care')}\n{s_row('S2', kind='')}\n"
        f"{s_row('S3', kind='オンライン診療')}\n",
    )
    w(
        "care_plans-blank-lines.csv",
        "care_plan_id,patient_id,created_at\n\nCP1,P1,2026-03-01T10:00:00\n\n\nCP2,P1,not-a-time\n",
    )
    # issue 15: a `latest` symlink next to the file it names (read once), for Parquet and CSV
    link_dir = HERE / "sessions-latest-link" / "sessions"
    link_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"session_id": ["S1", "S2", "S3"], "patient_id": ["P1", "P1", "P2"]}),
        link_dir / "2026-09.parquet",
    )
    _symlink(link_dir / "latest.parquet", "2026-09.parquet")
    w(
        "access_log-latest-link/access_log/2026-09.csv",
        "session_id,at,event,actor\nS1,2026-04-01T09:00:00,join,doctor\nS1,2026-04-01T09:05:00,leave,doctor\n",
    )
    _symlink(HERE / "access_log-latest-link" / "access_log" / "latest.csv", "2026-09.csv")
    # issue 15: valid UTF-8 but for one stray byte that would make the file decode as CP932 (mojibake)
    w(
        "institutions-utf8-stray-byte.csv",
        "institution_id,name,contact_published,compliance_published\nI1,東京クリニック,true,true\n".encode()
        + b"I2,Osaka\x8aA,true,false\n",
    )
    # issue 15: ids that differ only by width, surrounding spaces or invisible characters
    w(
        "patients-lookalike-ids.csv",
        "patient_id,sex\nP1,female\nＰ１,female\n P1 ,female\nP1\u200b,female\n\u200fP1,female\nP2,male\n",
    )


def _symlink(link: Path, target: str) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)

    rx_head = "rx_id,session_id,drug_code,drug_name,quantity,days_supply,dispensing"
    w(
        "prescriptions-out-of-range.csv",
        f"{rx_head}\nR1,S1,X,a,14,7,outside\nR2,S1,X,a,14,-30,outside\nR3,S1,X,a,14,0,outside\n"
        "R4,S1,X,a,-1,7,outside\nR5,S1,X,a,14,-0,outside\nR6,S1,X,a,-0.5,,outside\n"
        "R7,S1,X,a,14,１０,outside\nR8,S1,X,a,0,,inside\nR9,S1,X,a,14,－３,outside\n",
    )
    w(
        "prescriptions-underscore.csv",
        f"{rx_head}\nR1,S1,X,a,1000,7,outside\nR2,S1,X,a,1_000,7,outside\nR3,S1,X,a,14,1_0,outside\n",
    )
    pq.write_table(
        pa.table(
            {
                "rx_id": ["R1", "R2", "R3"],
                "session_id": ["S1", "S1", "S1"],
                "drug_code": ["X", "X", "X"],
                "drug_name": ["a", "a", "a"],
                "quantity": pa.array([14, 14, -3], pa.int32()),
                "days_supply": pa.array([7, -30, 7], pa.int32()),
                "dispensing": ["outside", "outside", "outside"],
            }
        ),
        HERE / "prescriptions-negative.parquet",
    )
    w(
        "sessions-special-timestamps.csv",
        f"{S_HEAD}\n{s_row('S1')}\n{s_row('S2', started='infinity')}\n{s_row('S3', started='epoch')}\n"
        f"{s_row('S4', started='-infinity')}\n{s_row('S5', started='10000-01-01T09:00:00')}\n"
        f"{s_row('S6', started='0000-01-01T09:00:00')}\n",
    )
    pq.write_table(
        pa.table(
            {
                "session_id": ["S1", "S2"],
                "started_at": pa.array([1_775_000_000_000_000, -62_200_000_000_000_000], pa.timestamp("us")),
            }
        ),
        HERE / "sessions-year-zero.parquet",
    )
    w(
        "doctors-date-range.csv",
        "doctor_id,institution_id,specialty,online_training_on\n"
        "D1,I1,internal,2024-04-01\nD2,I1,internal,0000-01-01\nD3,I1,internal,12024-04-01\n",
    )

    w("sessions-misspelled-column.csv", f"{S_HEAD},consent_time\n{s_row('S1')},2026-04-01T08:00:00\n")
    w("sessions-spaced-key.csv", "Session ID,patient_id,kind\nS1,P1,online_care\n")
    w(
        "sessions-japanese-header.csv",
        "受診ID,患者ID,医師ID,診療開始日時\nV1,P1,D1,2026-04-01T09:00:00\n",
        "cp932",
    )


if __name__ == "__main__":
    main()
