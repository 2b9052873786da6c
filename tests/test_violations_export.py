"""The violations export is written by DuckDB (COPY … TO), byte for byte what the Python csv writer
wrote before, owner-only and never half-written; ``.parquet`` gets Parquet with the raw values."""

from __future__ import annotations

import csv
import os
import stat
import tracemalloc
from pathlib import Path

import duckdb
import pytest

from tests.reporting_fixtures import RUN1, build_fixture_db
from toolkit import store
from toolkit.audit.export import VIOLATION_CSV_COLUMNS, export_violations
from toolkit.errors import UserError
from toolkit.store.files import copy_query_to, neutralise, open_owner_only

#: Ids a source system could hold: formula prefixes, CSV specials, line breaks, Japanese, empty.
HOSTILE_IDS = [
    "=cmd|' /C calc'!A0",
    "+81-3-1234",
    "-2",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
    "\r\n=1",
    'say "hi"',
    "a,b",
    "line\nbreak",
    "cr\rinside",
    "診療-東京-001",
    "＝全角",
    "#hash",
    " padded ",
    "",
    "'already",
    "a;b|c",
]
#: (section, level) of an extra rule: formula-like text, an empty text, a NULL.
HOSTILE_RULES = [("=evil.rule", "-1", None), ("+plus.rule", "", "@must"), ("普通.rule", None, "must")]


def old_export_violations(db_path: str | os.PathLike[str], run_id: str, out: str | os.PathLike[str]) -> int:
    """The export before it streamed (kept as the byte-for-byte reference): fetch, then csv.writer."""
    con = store.connect(db_path, read_only=True, wait_seconds=30)
    try:
        rows = con.execute(
            """SELECT v.run_id, v.rule_id, r.section, r.level, v.entity, v.entity_id, v.status
            FROM violations v JOIN rule_results r ON r.run_id = v.run_id AND r.rule_id = v.rule_id
            WHERE v.run_id = ? ORDER BY v.rule_id, v.entity_id""",
            [run_id],
        ).fetchall()
    finally:
        con.close()
    with open_owner_only(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(VIOLATION_CSV_COLUMNS)
        for row in rows:
            w.writerow([neutralise(v) for v in row])
    return len(rows)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The reporting sample database (one run), with hostile ids and rules added to the run.

    (The audited rule cases are compared with the old writer in test_audit_store.)"""
    db = build_fixture_db(tmp_path_factory.mktemp("export") / "sample.duckdb", runs=1)
    con = store.connect(db)
    try:
        for rule_id, section, level in HOSTILE_RULES:
            con.execute(
                "INSERT INTO rule_results (run_id, rule_id, section, level, entity) VALUES (?, ?, ?, ?, ?)",
                [RUN1, rule_id, section, level, "session"],
            )
            for i, eid in enumerate(HOSTILE_IDS):
                status = [None, "violated", "not_evidenced", ""][i % 4]
                con.execute(
                    "INSERT INTO violations (run_id, rule_id, entity, entity_id, status) VALUES (?, ?, ?, ?, ?)",
                    [RUN1, rule_id, "=session" if i % 5 == 0 else "session", eid, status],
                )
    finally:
        con.close()
    return db, RUN1


def test_csv_bytes_match_the_old_writer(audited: tuple[Path, str], tmp_path: Path) -> None:
    db, run_id = audited
    n_old = old_export_violations(db, run_id, tmp_path / "old.csv")
    n_new = export_violations(db, run_id, tmp_path / "new.csv")
    old, new = (tmp_path / "old.csv").read_bytes(), (tmp_path / "new.csv").read_bytes()
    assert n_new == n_old > len(HOSTILE_IDS) * len(HOSTILE_RULES)
    assert new == old
    assert new.startswith(b"run_id,rule_id,section,level,entity,entity_id,status\r\n")  # no BOM, CRLF
    rows = list(csv.reader(new.decode("utf-8").splitlines(keepends=True)))
    ids = {r[5] for r in rows[1:]}
    assert {"'=cmd|' /C calc'!A0", "'\r\n=1", "line\nbreak", "診療-東京-001", "'+81-3-1234"} <= ids
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in r)


def test_parquet_holds_the_raw_values_in_the_same_order(audited: tuple[Path, str], tmp_path: Path) -> None:
    db, run_id = audited
    out = tmp_path / "v.PARQUET"
    n = export_violations(db, run_id, out)
    assert out.read_bytes()[:4] == b"PAR1" and stat.S_IMODE(out.stat().st_mode) == 0o600
    con = duckdb.connect()
    got = con.execute("SELECT * FROM read_parquet(?)", [str(out)]).fetchall()
    assert tuple(d[0] for d in con.description) == VIOLATION_CSV_COLUMNS and len(got) == n
    export_violations(db, run_id, tmp_path / "v.csv")
    with open(tmp_path / "v.csv", encoding="utf-8", newline="") as fh:
        from_csv = list(csv.reader(fh))[1:]
    assert [[neutralise(v) if v is not None else "" for v in r] for r in got] == from_csv
    assert {r[5] for r in got} >= set(HOSTILE_IDS)  # not neutralised: the ids as stored


def _violations_db(path: Path, n: int) -> str:
    con = store.connect(path)
    try:
        store.ensure_schema(con)
        con.execute(
            "INSERT INTO rule_results (run_id, rule_id, section, level, entity) "
            "SELECT 'R1', 'r' || i, '§' || i, 'must', 'session' FROM range(5) t(i)"
        )
        con.execute(
            "INSERT INTO violations (run_id, rule_id, entity, entity_id, status) "
            f"SELECT 'R1', 'r' || (i % 5), 'session', 'S' || lpad(i::VARCHAR, 9, '0'), 'violated' FROM range({n}) t(i)"
        )
    finally:
        con.close()
    return "R1"


def _peak_python_bytes(export, db: Path, out: Path) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        export(db, "R1", out)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_export_memory_is_flat_in_the_number_of_rows(tmp_path: Path) -> None:
    """Python's traced peak is the same for 2 000 and 40 000 rows (DuckDB writes them); the old
    row-by-row writer, measured the same way, grows with the rows (so the check can fail)."""
    small, large = tmp_path / "small.duckdb", tmp_path / "large.duckdb"
    _violations_db(small, 2_000)
    _violations_db(large, 40_000)
    export_violations(small, "R1", tmp_path / "warm.csv")  # imports and caches outside the measurement
    peak_small = _peak_python_bytes(export_violations, small, tmp_path / "s.csv")
    peak_large = _peak_python_bytes(export_violations, large, tmp_path / "l.csv")
    assert peak_large < peak_small * 1.5 + 256 * 1024, (peak_small, peak_large)
    old_large = _peak_python_bytes(old_export_violations, large, tmp_path / "old.csv")
    assert old_large > 10 * peak_large, (old_large, peak_large)
    assert (tmp_path / "l.csv").read_bytes() == (tmp_path / "old.csv").read_bytes()


def _only_file(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_written_owner_only_through_a_temporary_name(tmp_path: Path) -> None:
    con = duckdb.connect()
    old_umask = os.umask(0)
    try:
        out = tmp_path / "out" / "v.csv"
        out.parent.mkdir(mode=0o755)
        out.write_text("old")
        out.chmod(0o644)
        assert copy_query_to(con, "SELECT '=1' AS a, 2 AS b", out) == 1
        assert out.read_bytes() == b"a,b\r\n'=1,2\r\n" and stat.S_IMODE(out.stat().st_mode) == 0o600
        assert _only_file(out.parent) == ["v.csv"]  # no temporary file left
        new = tmp_path / "new" / "deeper" / "v.parquet"
        copy_query_to(con, "SELECT '=1' AS a", new, fmt="parquet")
        assert stat.S_IMODE(new.stat().st_mode) == 0o600
        assert (
            stat.S_IMODE(new.parent.stat().st_mode) == stat.S_IMODE(new.parent.parent.stat().st_mode) == 0o700
        )
        assert duckdb.sql(f"SELECT a FROM '{new}'").fetchall() == [("=1",)]
    finally:
        os.umask(old_umask)


def test_a_failed_copy_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    con = duckdb.connect()
    out = tmp_path / "v.csv"
    copy_query_to(con, "SELECT 1 AS a", out)
    before = out.read_bytes()
    with pytest.raises(duckdb.Error):
        copy_query_to(con, "SELECT CAST('x' AS INTEGER) AS a FROM range(3)", out)
    assert out.read_bytes() == before and _only_file(tmp_path) == ["v.csv"]


def test_symlink_folder_and_device_targets(tmp_path: Path) -> None:
    con = duckdb.connect()
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    copy_query_to(con, "SELECT 'x' AS a", link)  # followed, as open_owner_only follows it
    assert link.is_symlink() and real.read_bytes() == b"a\r\nx\r\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    with pytest.raises(UserError, match="is a folder"):
        copy_query_to(con, "SELECT 1 AS a", tmp_path)
    assert copy_query_to(con, "SELECT 1 AS a", os.devnull) == 1  # a device is written into, not replaced
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real.csv"]
