"""The audit split into parts (toolkit.rules.parts) stores exactly what the one-part audit stores.

Real generator, real ingest, real GX: the same database is audited in one part and in three, and
every stored row of the two runs is compared — strata, violations with their strata, rule results,
data-quality rows — and the three-part run's violations are the generator's ground truth.
"""

from __future__ import annotations

import csv
import datetime as dt
import json

import duckdb
import pytest

from tests.reporting_fixtures import generated_db
from toolkit.audit.run import run_audit
from toolkit.rules import facts
from toolkit.rules.build import audit_part_count, rowid_ranges
from toolkit.rules.parts import Part, part_count, parts

ROWS = {
    "rule_results_strata": "rule_id, institution_id, doctor_id, month, denominator, violated, not_evidenced",
    "violations": "rule_id, entity, entity_id, status, institution_id, doctor_id, month",
    "rule_results": "rule_id, status, denominator, violated, not_evidenced, message",
    "dq_results": "check_id, n",
}


def _rows(con: duckdb.DuckDBPyConnection, table: str, run_id: str) -> list[tuple]:
    return con.execute(
        f"SELECT {ROWS[table]} FROM {table} WHERE run_id = ? ORDER BY ALL", [run_id]
    ).fetchall()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):  # type: ignore[no-untyped-def]
    data, db = generated_db(tmp_path_factory.mktemp("parts"), name="parts")
    as_of = dt.date.fromisoformat(json.loads((data / "generation.json").read_text(encoding="utf-8"))["as_of"])
    with open(data / "ground_truth.csv", encoding="utf-8") as fh:
        truth = {(r["rule_id"], r["entity"], r["entity_id"], r["status"]) for r in csv.DictReader(fh)}
    return db, as_of, truth


@pytest.mark.slow
def test_three_parts_store_exactly_what_one_part_stores(generated) -> None:  # type: ignore[no-untyped-def]
    db, as_of, truth = generated
    whole = run_audit(db, as_of=as_of, progress=False, partitions=1)
    split = run_audit(db, as_of=as_of, progress=False, partitions=3)
    con = duckdb.connect(str(db), read_only=True)
    try:
        for table in ROWS:
            one, three = _rows(con, table, whole.run_id), _rows(con, table, split.run_id)
            assert one == three, table
            assert one or table == "dq_results", f"{table} is empty: the comparison proves nothing"
        found = {tuple(r[:4]) for r in _rows(con, "violations", split.run_id)}
    finally:
        con.close()
    assert found == truth
    assert split.n_violations == whole.n_violations > 0


def test_parts_split_session_keyed_records_by_session(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every session id lands in exactly one part, NULL included; one part is no filter at all."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'S' || i AS session_id FROM range(1000) r(i) UNION ALL SELECT NULL")
    counts = [
        con.execute(f"SELECT count(*) FROM t WHERE {p.of('session_id')}").fetchone()[0] for p in parts(3)
    ]
    assert sum(counts) == 1001 and min(counts) > 250
    assert Part().of("session_id") == "TRUE"


def test_the_part_count_follows_the_memory_cap(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert part_count(10_000_000, 1400) == 1
    assert part_count(30_000_000, 1400) == 3
    assert part_count(10_000_000, 467) == 6  # three ran out of memory there, eight fitted
    assert part_count(0, 1400) == 1
    con = duckdb.connect(str(tmp_path / "p.duckdb"))
    con.execute("CREATE TABLE sessions AS SELECT 'S' || i AS session_id FROM range(20000) r(i)")
    monkeypatch.setenv("OCAUDIT_MEMORY_LIMIT", "100MB")  # the smallest part: 250,000 sessions
    con.execute("INSERT INTO sessions SELECT 'T' || i FROM range(480000) r(i)")
    assert audit_part_count(con) == 2
    monkeypatch.setenv("OCAUDIT_MEMORY_LIMIT", "1GB")
    assert audit_part_count(con) == 1
    ranges = rowid_ranges(con, "sessions", 3)
    assert ranges[0][0] == 0 and ranges[-1][1] == 500000
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert rowid_ranges(con, "sessions", 1) == [None]


def test_overlap_is_found_across_parts_of_a_doctor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The overlap facts are built doctor by doctor in slices: the same sessions in any number of slices."""
    con = duckdb.connect()
    con.execute("""CREATE TABLE sessions AS SELECT 'S' || i AS session_id, 'D' || (i % 7) AS doctor_id,
        TIMESTAMPTZ '2026-01-01 00:00:00+00' + INTERVAL (i * 7 % 500) MINUTE AS started_at,
        TIMESTAMPTZ '2026-01-01 00:00:00+00' + INTERVAL (i * 7 % 500 + 3 + i % 40) MINUTE AS ended_at,
        'P' || i AS patient_id, 'online_care' AS kind, i % 3 = 0 AS is_first_visit FROM range(2000) r(i)""")
    found = []
    for n in (1, 4):
        for sql in facts.session_facts_shared(n):
            con.execute(sql)
        found.append(con.execute("SELECT rid FROM _audit_ov ORDER BY rid").fetchall())
    assert found[0] == found[1] and 0 < len(found[0]) < 2000


def test_running_out_of_memory_is_explained_not_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real DuckDB out-of-memory error is told in words: the cap, how to raise it, nothing lost."""
    from toolkit.store import describe_storage_error

    con = duckdb.connect()
    con.execute("SET memory_limit = '20MB'")
    con.execute("SET threads = 1")
    with pytest.raises(duckdb.OutOfMemoryException) as info:
        con.execute("SELECT length(list(i)) FROM range(10000000) r(i)").fetchall()  # one list: no spilling
    msg = describe_storage_error(info.value, "/X/clinic.duckdb")
    assert msg is not None and msg.startswith("/X/clinic.duckdb: DuckDB ran out of memory")
    assert "OCAUDIT_MEMORY_LIMIT=4GB" in msg and "what it held before" in msg


@pytest.mark.slow
def test_strata_inserted_a_few_rules_at_a_time_equal_one_statement(generated, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The strata INSERT split into chunks of rules stores the rows one INSERT of all rules stores."""
    from toolkit.rules import catalogue
    from toolkit.rules import sql as rule_sql

    db, as_of, _truth = generated
    rules = catalogue.load().rules
    session_rules = [r.id for r in rules if r.entity == "session"]
    assert len(rule_sql.strata_rule_chunks(session_rules)) > 1  # the default does split them
    monkeypatch.setattr(rule_sql, "STRATA_RULES_PER_STATEMENT", 1000)
    whole = run_audit(db, as_of=as_of, progress=False)
    monkeypatch.setattr(rule_sql, "STRATA_RULES_PER_STATEMENT", 3)
    chunked = run_audit(db, as_of=as_of, progress=False)
    con = duckdb.connect(str(db), read_only=True)
    try:
        one, many = (_rows(con, "rule_results_strata", r.run_id) for r in (whole, chunked))
    finally:
        con.close()
    assert one == many and len({row[0] for row in one}) == len(rules) == 44
