"""The direct first load (Parquet into an empty table) gives exactly what the staged path gives.

Each case ingests the same sources twice: as shipped (direct where it applies) and with the
direct path switched off (every file staged in TEMP tables first). The databases must hold the
same rows (canonical tables, quarantine, row_changes, ingest records), the summaries the same
counts and the printed lines the same text.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from tests.ingest_helpers import SESSION_HEADER, session_row, write
from toolkit.contract import TABLE_ORDER
from toolkit.ingest import run as ingest

RECORDS = {
    "quarantine": "SELECT table_name, source_file, line_number, column_name, reason, raw_row FROM quarantine",
    "row_changes": "SELECT table_name, row_key, change, old_hash, new_hash FROM row_changes",
    "ingest_files": "SELECT table_name, path, file_format, columns_present, rows_read, rows_loaded, "
    "rows_quarantined FROM ingest_files",
    "ingest_runs": "SELECT rows_read, rows_loaded, rows_quarantined, rows_inserted, rows_updated, rows_unchanged "
    "FROM ingest_runs",
}


def _dump(db: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {k: sorted(con.execute(sql).fetchall(), key=repr) for k, sql in RECORDS.items()}
        for t in TABLE_ORDER:
            out[t] = sorted(con.execute(f'SELECT * EXCLUDE (_ingest_id) FROM "{t}"').fetchall(), key=repr)
        return out
    finally:
        con.close()


def _ingest_all(db: Path, sources: list[Path], direct: bool, monkeypatch: pytest.MonkeyPatch) -> list:
    results = []
    with monkeypatch.context() as m:
        if not direct:
            m.setattr(ingest._Run, "begin_direct", lambda self, files: False)
        calls: list[str] = []
        orig = ingest._Run._direct_insert

        def spy(self: ingest._Run, table: str, *a: object, **kw: bool) -> int:
            calls.append(table)
            return orig(self, table, *a, **kw)

        m.setattr(ingest._Run, "_direct_insert", spy)
        for src in sources:
            lines: list[str] = []
            s = ingest.ingest_source(db, src, out=lines.append)
            shown = [x for x in lines if not x.startswith(("ingest ingest-", "database:"))]
            results.append((shown, s.errors, s.warnings, {k: vars(v) for k, v in s.tables.items()}))
        results.append(sorted(set(calls)))
    return results


_READ_ERROR = re.compile(r"cannot be read as (\w+) \((?:[^()]|\([^()]*\))*\)")


def _stable(value: object) -> object:
    """``value`` with DuckDB's own wording of a read failure replaced by ``(…)``, recursively.

    A damaged Parquet file fails in whichever row group a reader thread decodes first, so
    DuckDB's message varies between runs ("ZSTD Decompression failure", "don't know what
    type", …); that the file was refused, and where, is what both paths must agree on.
    """
    if isinstance(value, str):
        return _READ_ERROR.sub(r"cannot be read as \1 (…)", value)
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_stable(v) for v in value)
    return value


def _compare(tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch) -> list:
    direct = _ingest_all(tmp_path / "direct.duckdb", sources, True, monkeypatch)
    staged = _ingest_all(tmp_path / "staged.duckdb", sources, False, monkeypatch)
    assert staged[-1] == []
    assert _stable(direct[:-1]) == _stable(staged[:-1])
    assert _dump(tmp_path / "direct.duckdb") == _dump(tmp_path / "staged.duckdb")
    return direct


def _parquet(path: Path, sql: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
    con.close()


def _csv_rel(path: Path) -> str:
    return f"SELECT * FROM read_csv('{path}', all_varchar=true, header=true)"


def test_direct_matches_staged_with_bad_rows_and_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "csv"
    sessions = [session_row(f"S{i}") for i in range(1, 9)]
    write(csv / "sessions.csv", "\n".join([SESSION_HEADER, *sessions]) + "\n")
    write(
        csv / "bad.csv",
        "\n".join(
            [
                SESSION_HEADER,
                session_row("S20", kind="bogus 'q' ユ"),  # not an enum value
                session_row("S21", started="not a time"),  # not a timestamp
                session_row(""),  # missing key
                session_row("S3"),  # identical duplicate (other file)
                session_row("S4", kind="pre_consultation"),  # conflicting duplicate (other file)
                session_row("S22"),
                session_row("S22"),  # identical within the file
                session_row("S23"),
                session_row("S23", kind="pre_consultation"),  # conflict within the file
            ]
        )
        + "\n",
    )
    write(
        csv / "access_log.csv",
        "session_id,at,event,actor,mfa\nS1,2026-04-01T09:00:00,join,doctor,1\n"
        "S1,2026-04-01T09:15:00,weird,doctor,1\n,2026-04-01T09:16:00,join,doctor,1\n"
        "S1,2026-04-01T09:00:00,join,doctor,1\n",
    )
    src = tmp_path / "src"
    _parquet(src / "sessions" / "part-0.parquet", _csv_rel(csv / "sessions.csv"))
    _parquet(src / "sessions" / "part-1.parquet", _csv_rel(csv / "bad.csv"))
    _parquet(src / "access_log.parquet", _csv_rel(csv / "access_log.csv"))
    # native types as well: a typed Parquet file for patients
    _parquet(
        src / "patients.parquet",
        "SELECT 'P1' AS patient_id, DATE '1990-02-03' AS birth_date, 'female' AS sex "
        "UNION ALL SELECT 'P2', NULL, 'unknown_value'",
    )
    # a second ingest: sessions changed (re-ingest path), care_plans new (direct again)
    src2 = tmp_path / "src2"
    write(
        csv / "s2.csv",
        "\n".join(
            [SESSION_HEADER, session_row("S1", kind="pre_consultation"), *sessions[1:], session_row("S30")]
        )
        + "\n",
    )
    _parquet(src2 / "sessions.parquet", _csv_rel(csv / "s2.csv"))
    write(
        csv / "cp.csv",
        "care_plan_id,patient_id,created_at,has_content\nCP1,P1,2026-03-01T10:00:00+09:00,yes\n"
        "CP1,P1,2026-03-01T10:00:00+09:00,yes\nCP2,P1,2026-03-02,maybe\n",
    )
    _parquet(src2 / "care_plans.parquet", _csv_rel(csv / "cp.csv"))
    res = _compare(tmp_path, [src, src2, src], monkeypatch)
    assert res[-1] == ["access_log", "care_plans", "patients", "sessions"]
    first = res[0][3]
    assert first["sessions"]["quarantined"] == 5 and first["sessions"]["unchanged"] == 2
    assert first["access_log"]["quarantined"] == 2 and first["patients"]["quarantined"] == 1


def test_file_failing_mid_read_falls_back_to_staged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Parquet file whose header reads but whose data does not: refused, output not repeated."""
    src = tmp_path / "src"
    _parquet(src / "doctors.parquet", "SELECT 'D1' AS doctor_id, 'I1' AS institution_id")
    path = src / "patients.parquet"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT 'P' || i AS patient_id, 'female' AS sex FROM range(50000) t(i)) TO '{path}' "
        "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 5000)"
    )
    con.close()
    data = bytearray(path.read_bytes())
    for i in range(len(data) * 2 // 5, len(data) * 3 // 5):
        data[i] ^= 0x5A
    path.write_bytes(data)
    res = _compare(tmp_path, [src], monkeypatch)
    shown, errors = res[0][0], res[0][1]
    assert len(errors) == 1 and "patients.parquet" in errors[0]
    assert len(shown) == len(set(shown))  # the doctors line is not printed twice


def test_csv_and_jsonl_first_loads_are_direct_and_match_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSV and JSON Lines load straight into empty tables (bad rows, duplicates, broken JSON lines
    included); a CSV with a malformed line or a record over two lines takes the staged path."""
    src = tmp_path / "src"
    rows_ = [session_row(f"S{i}") for i in range(1, 6)]
    bad = [
        session_row("S9", kind="bogus"),
        session_row(""),
        session_row("S2"),
        session_row("S3", first="no?"),
    ]
    write(src / "sessions.csv", "\n".join([SESSION_HEADER, *rows_, *bad]) + "\n")
    write(
        src / "access_log.jsonl",
        '{"session_id": "S1", "at": "2026-04-01T09:00:00", "event": "join", "actor": "doctor", "mfa": true}\n'
        '{"session_id": "S1", "at": "2026-04-01T09:15:00", "event": "weird", "actor": "doctor"}\n'
        "{not json\n\n"
        '{"session_id": "S1", "at": "2026-04-01T09:00:00", "event": "join", "actor": "doctor", "mfa": true}\n',
    )
    write(src / "doctors.csv", "doctor_id,institution_id\nD1,I1\nD2,I1\nD1,I2\n")
    res = _compare(tmp_path / "a", [src], monkeypatch)
    assert res[-1] == ["access_log", "doctors", "sessions"]  # every table direct
    first = res[0][3]
    assert first["sessions"]["quarantined"] == 3 and first["sessions"]["unchanged"] == 1
    assert first["access_log"]["quarantined"] == 2 and first["doctors"]["quarantined"] == 1

    messy = tmp_path / "messy"
    write(messy / "doctors.csv", "doctor_id,institution_id\nD1,I1\n")
    write(
        messy / "sessions.csv",
        "\n".join([SESSION_HEADER, rows_[0], 'S7,"P1\nmore",D1', rows_[1], "S8,P1,D1,I1,x,y,z", rows_[2]])
        + "\n",
    )
    res = _compare(tmp_path / "b", [messy], monkeypatch)
    assert res[0][3]["sessions"]["read"] >= 3 and res[0][3]["doctors"]["inserted"] == 1


def test_jsonl_keys_are_in_first_appearance_order_every_time(tmp_path: Path) -> None:
    """The keys of a JSON Lines file (and so the quarantine's raw_row) come in the order they first
    appear; DuckDB's parallel GROUP BY alone gave keys of one line in varying order."""
    import duckdb

    from toolkit.ingest.readers import stage_jsonl

    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"session_id": "S1", "at": "x", "event": "join", "actor": "doctor", "mfa": true}\n'
        '{"b": 1, "session_id": "S2", "zz": 2}\n',
        encoding="utf-8",
    )
    con = duckdb.connect()
    orders = {tuple(stage_jsonl(con, path, "t", tmp_path)) for _ in range(100)}
    assert orders == {("session_id", "at", "event", "actor", "mfa", "b", "zz")}


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
def test_blank_id_keys_are_missing_keys_and_text_times_parse_after_cleaning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """A key made only of whitespace (ASCII, 全角, no-break, tab) is a missing key, in both paths:
    the id strip leaves it NULL, with no separate blank check after it. A time in full-width
    digits fails the fast parse and is read by the cleaned one."""
    blank_keys = [" ", "\u3000", "\u00a0\u3000", "\t "]
    rows = [session_row(k) for k in blank_keys] + [
        session_row("S1"),
        session_row("S2", started="２０２６-０４-０１T０９:００:００"),
    ]
    write(tmp_path / "src" / "sessions.csv", "\n".join([SESSION_HEADER, *rows]) + "\n")
    db = tmp_path / "ocaudit.duckdb"
    _ingest_all(db, [tmp_path / "src"], direct, monkeypatch)
    con = duckdb.connect(str(db), read_only=True)
    try:
        loaded = con.execute(
            "SELECT session_id, started_at = TIMESTAMPTZ '2026-04-01 09:00:00+09:00' FROM sessions ORDER BY 1"
        ).fetchall()
        reasons = con.execute("SELECT line_number, reason FROM quarantine ORDER BY 1").fetchall()
    finally:
        con.close()
    assert loaded == [("S1", True), ("S2", True)]
    assert reasons == [(n, "session_id: missing key") for n in range(2, 2 + len(blank_keys))]


def test_csv_rows_read_in_parallel_are_numbered_by_their_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV first load numbers its rows by their place in the table, not with a window: with small
    read buffers (so DuckDB's threads read the file in many parts) and two files for one table, the
    first of them ending in bad rows that are moved out, every row and every quarantined row carries
    its physical line, as the staged path finds it."""
    monkeypatch.setattr(ingest.rd, "MAX_LINE_SIZE", 1 << 16)
    monkeypatch.setattr(ingest.rd, "CSV_BUFFER_SIZE", 1 << 18)  # 256 KiB: a 3 MB file in 12+ parts
    src = tmp_path / "src" / "doctors"
    bad_lines = {0: {1_000, 123_457, 240_001}, 1: {2, 77_777}}  # lines with an empty key
    for part, (first, count) in enumerate([(0, 240_000), (240_000, 160_000)]):
        rows = []
        for i in range(first, first + count):
            line = i - first + 2
            rows.append(f",I{i % 7}" if line in bad_lines[part] else f"D{i},I{i % 7}")
        if part == 0:
            rows.append("D5,I6")  # a conflicting duplicate of line 7, the file's last line
            bad_lines[0].add(240_002)
        write(src / f"part-{part}.csv", "doctor_id,institution_id\n" + "\n".join(rows) + "\n")
    done: list[str] = []
    orig = ingest._Run._direct_csv_done

    def finished_direct(self: ingest._Run, sf: object, *a: object) -> None:
        orig(self, sf, *a)  # raises _Fallback if the file has to be staged
        done.append(sf.path.name)  # type: ignore[attr-defined]

    monkeypatch.setattr(ingest._Run, "_direct_csv_done", finished_direct)
    res = _compare(tmp_path, [tmp_path / "src"], monkeypatch)
    assert sorted(done) == ["part-0.csv", "part-1.csv"]  # both read straight into the table
    assert res[0][3]["doctors"]["read"] == 400_001 and res[0][3]["doctors"]["quarantined"] == 6
    con = duckdb.connect(str(tmp_path / "direct.duckdb"), read_only=True)
    try:
        off = con.execute(
            "SELECT count(*) FROM doctors WHERE _line_number <> CAST(substr(doctor_id, 2) AS BIGINT) + 2 "
            "- CASE WHEN _source_file LIKE '%part-1.csv' THEN 240000 ELSE 0 END"
        ).fetchall()[0][0]
        quarantined = con.execute(
            "SELECT CASE WHEN source_file LIKE '%part-1.csv' THEN 1 ELSE 0 END, line_number FROM quarantine"
        ).fetchall()
    finally:
        con.close()
    assert off == 0
    assert sorted(quarantined) == sorted((p, n) for p, lines in bad_lines.items() for n in lines)
