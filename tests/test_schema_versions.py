"""The DuckDB file records its schema version; older layouts are migrated, newer ones refused.

v0 (``tests/fixtures/make_v0_db.py``): no ``schema_meta``, ``rule_results`` without
``missing_columns``, ``ingest_files`` without ``columns_present``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from tests.fixtures.make_v0_db import RUN, make
from tests.fixtures.secutil import cli, make_data
from toolkit import store
from toolkit.store import migrations


def _cols(db: Path, table: str) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table],
            ).fetchall()
        ]
    finally:
        con.close()


def _fresh_columns(tmp_path: Path, table: str) -> list[str]:
    db = tmp_path / "fresh.duckdb"
    con = store.connect(db)
    store.ensure_schema(con)
    con.close()
    return _cols(db, table)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture()
def v0(tmp_path):
    return make(tmp_path / "v0.duckdb")


def test_new_file_records_the_version(tmp_path):
    db = tmp_path / "new.duckdb"
    con = store.connect(db)
    store.ensure_schema(con)
    assert con.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchone()[0] == str(
        store.SCHEMA_VERSION
    )
    con.close()
    assert migrations.LATEST == store.SCHEMA_VERSION  # every version has its migration


def test_v0_fixture_is_really_v0(v0):
    con = duckdb.connect(str(v0), read_only=True)
    assert store.schema_version(con) == 0
    con.close()
    assert "missing_columns" not in _cols(v0, "rule_results")
    assert "columns_present" not in _cols(v0, "ingest_files")


def test_v0_is_migrated_in_place_with_the_current_column_order(v0, tmp_path):
    con = store.connect(v0)
    store.ensure_schema(con)
    assert store.schema_version(con) == store.SCHEMA_VERSION
    old = con.execute(
        "SELECT rule_id, status, missing_columns, message FROM rule_results "
        "WHERE run_id = ? ORDER BY rule_id",
        [RUN],
    ).fetchall()
    present = dict(con.execute("SELECT table_name, columns_present FROM ingest_files").fetchall())
    n_viol = con.execute("SELECT count(*) FROM violations").fetchone()[0]
    con.close()
    # stages insert positionally: the migrated tables must have exactly the new layout
    for t in ("rule_results", "ingest_files"):
        assert _cols(v0, t) == _fresh_columns(tmp_path, t), t
    assert old == [
        ("consent.recorded", "failed", [], ""),
        ("ec.follow_up", "not_evaluable", None, "needed columns absent"),
    ]
    assert n_viol == 1  # nothing lost
    # columns_present: the contract columns holding a value in the v0 data
    assert sorted(present["sessions"]) == [
        "doctor_id",
        "institution_id",
        "patient_id",
        "session_id",
        "started_at",
    ]
    assert present["institutions"] == ["institution_id"]
    # a second open changes nothing
    h = _sha(v0)
    con = store.connect(v0)
    store.ensure_schema(con)
    con.close()
    assert _sha(v0) == h


def test_v0_migrated_by_the_cli_and_then_ingested(v0, tmp_path):
    data = make_data(tmp_path / "data", sessions=20)
    r = cli("ingest", "--db", str(v0), str(data))
    assert r.returncode == 0, r.stderr
    con = store.connect(v0, read_only=True)
    assert store.schema_version(con) == store.SCHEMA_VERSION
    # the new ingest's positional INSERT landed in the right columns
    rows = con.execute(
        "SELECT encoding, columns_present, rows_read FROM ingest_files "
        "WHERE table_name = 'sessions' ORDER BY rows_read"
    ).fetchall()
    assert rows[-1][2] == 20 and "consent_at" in rows[-1][1]
    assert con.execute("SELECT count(*) FROM audit_runs").fetchone()[0] == 1  # the v0 run survived
    con.close()


def test_failed_migration_leaves_the_file_at_v0(v0, monkeypatch):
    def boom(con):
        migrations._rebuild_with(con, "rule_results", "missing_columns", "not_evidenced", "NULL")
        raise RuntimeError("simulated failure half-way through the migration")

    monkeypatch.setattr(migrations, "MIGRATIONS", [(1, "boom", boom)])
    con = store.connect(v0)
    with pytest.raises(RuntimeError, match="half-way"):
        store.ensure_schema(con)
    con.close()
    con = duckdb.connect(str(v0), read_only=True)
    assert store.schema_version(con) == 0
    con.close()
    assert "missing_columns" not in _cols(v0, "rule_results")


def test_reader_refuses_v0_with_advice_and_does_not_touch_it(v0):
    h = _sha(v0)
    with pytest.raises(store.SchemaVersionError, match="older layout.*ocaudit audit --db"):
        store.connect(v0, read_only=True)
    assert _sha(v0) == h


def test_newer_version_is_refused_with_upgrade_advice(tmp_path):
    db = tmp_path / "future.duckdb"
    con = store.connect(db)
    store.ensure_schema(con)
    con.execute(
        "UPDATE schema_meta SET value = ? WHERE key = 'schema_version'", [str(store.SCHEMA_VERSION + 1)]
    )
    con.close()
    h = _sha(db)
    with pytest.raises(store.SchemaVersionError, match="Upgrade ocaudit"):
        store.connect(db, read_only=True)
    data = make_data(tmp_path / "data", sessions=5)
    r = cli("ingest", "--db", str(db), str(data))
    assert r.returncode == 2
    assert "newer ocaudit" in r.stderr and "Upgrade ocaudit" in r.stderr and "Traceback" not in r.stderr
    assert _sha(db) == h  # refused before anything was written


def _make_v1(path: Path) -> Path:
    """A file in layout 1: the v0 fixture with the v0→v1 step applied and version 1 recorded."""
    make(path)
    con = duckdb.connect(str(path))
    migrations._v0_to_v1(con)
    con.execute("CREATE TABLE schema_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO schema_meta (key, value) VALUES ('schema_version', '1')")
    con.close()
    return path


def test_v1_is_migrated_to_the_latest_version_with_review_marks(tmp_path):
    from toolkit.review import marks

    v1 = _make_v1(tmp_path / "v1.duckdb")
    con = duckdb.connect(str(v1), read_only=True)
    assert store.schema_version(con) == 1 and not store.table_exists(con, "review_marks")
    con.close()
    con = store.connect(v1)
    store.ensure_schema(con)
    assert store.schema_version(con) == store.SCHEMA_VERSION == migrations.LATEST
    assert con.execute("SELECT count(*) FROM violations").fetchone()[0] == 1  # nothing lost
    # the v0 run's finding can be marked at once
    assert marks.add_marks(con, [("consent.recorded", "session", "S0002")], "acknowledged", "QA") == [1]
    con.close()
    assert _cols(v1, "review_marks") == _fresh_columns(tmp_path, "review_marks")
    assert _cols(v1, "rule_results") == _fresh_columns(tmp_path, "rule_results")
    done = migrations.migrate(duckdb.connect(":memory:"), migrations.LATEST)
    assert done == []  # nothing left to do at the latest version


def test_v3_text_row_hashes_become_the_integers_a_new_ingest_stores(tmp_path):
    """Schema 4 stores ``_row_hash`` as UBIGINT. A v3 file (the same hashes as decimal text) is
    migrated to exactly the integers a fresh ingest writes, and the same data ingested again
    afterwards changes nothing."""
    from toolkit.contract import TABLE_ORDER

    data = make_data(tmp_path / "data", mutate=False)
    db = tmp_path / "v3.duckdb"
    assert cli("ingest", "--db", str(db), str(data)).returncode == 0
    con = duckdb.connect(str(db))
    tables = [t for t in TABLE_ORDER if store.table_exists(con, t)]
    fresh = {t: con.execute(f'SELECT rowid, _row_hash FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
    assert (
        con.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'sessions' AND column_name = '_row_hash'"
        ).fetchone()[0]
        == "UBIGINT"
    )
    for t in tables:  # back to the v3 layout: the hash as its decimal text
        con.execute(f'ALTER TABLE "{t}" ALTER COLUMN _row_hash SET DATA TYPE VARCHAR')
    con.execute("UPDATE schema_meta SET value = '3' WHERE key = 'schema_version'")
    con.close()
    con = store.connect(db)
    store.ensure_schema(con)
    assert store.schema_version(con) == store.SCHEMA_VERSION == 4
    for t in tables:
        assert con.execute(f'SELECT rowid, _row_hash FROM "{t}" ORDER BY rowid').fetchall() == fresh[t], t
    con.close()
    again = cli("ingest", "--db", str(db), str(data))
    assert again.returncode == 0, again.stderr
    con = duckdb.connect(str(db), read_only=True)
    last = con.execute(
        "SELECT rows_inserted, rows_updated, rows_unchanged, rows_read FROM ingest_runs ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    con.close()
    assert last[0] == last[1] == 0 and last[2] == last[3] > 0
