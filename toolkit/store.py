"""The DuckDB file's schema: canonical tables, ingest records, quarantine and the run store.

Every stage opens the database through :func:`connect` and calls :func:`ensure_schema`,
so the layout is defined once. The run store tables are append-only: a run is written
in one transaction and never updated afterwards.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from toolkit.contract import TABLE_ORDER, TABLES

#: Bump when the layout changes; :func:`ensure_schema` migrates older files or refuses them.
SCHEMA_VERSION = 1

META_DDL = """
CREATE TABLE IF NOT EXISTS schema_meta (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE IF NOT EXISTS ingest_runs (
    ingest_id        VARCHAR PRIMARY KEY,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    toolkit_version  VARCHAR,
    source           VARCHAR,
    mapping          VARCHAR,
    rows_read        BIGINT,
    rows_loaded      BIGINT,
    rows_quarantined BIGINT,
    rows_inserted    BIGINT,
    rows_updated     BIGINT,
    rows_unchanged   BIGINT
);
CREATE TABLE IF NOT EXISTS ingest_files (
    ingest_id        VARCHAR,
    table_name       VARCHAR,
    path             VARCHAR,
    size_bytes       BIGINT,
    sha256           VARCHAR,
    file_format      VARCHAR,
    encoding         VARCHAR,
    columns_present  VARCHAR[],
    rows_read        BIGINT,
    rows_loaded      BIGINT,
    rows_quarantined BIGINT
);
CREATE TABLE IF NOT EXISTS quarantine (
    ingest_id   VARCHAR,
    table_name  VARCHAR,
    source_file VARCHAR,
    line_number BIGINT,
    column_name VARCHAR,
    reason      VARCHAR,
    raw_row     VARCHAR
);
CREATE TABLE IF NOT EXISTS row_changes (
    ingest_id  VARCHAR,
    table_name VARCHAR,
    row_key    VARCHAR,
    change     VARCHAR,
    old_hash   VARCHAR,
    new_hash   VARCHAR
);

CREATE TABLE IF NOT EXISTS audit_runs (
    run_id           VARCHAR PRIMARY KEY,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    as_of            DATE,
    toolkit_version  VARCHAR,
    suite_checksums  VARCHAR,
    ingest_ids       VARCHAR[],
    parameters       VARCHAR
);
CREATE TABLE IF NOT EXISTS rule_results (
    run_id          VARCHAR,
    rule_id         VARCHAR,
    section         VARCHAR,
    level           VARCHAR,
    entity          VARCHAR,
    title_en        VARCHAR,
    title_ja        VARCHAR,
    status          VARCHAR,
    denominator     BIGINT,
    violated        BIGINT,
    not_evidenced   BIGINT,
    missing_columns VARCHAR[],
    message         VARCHAR
);
CREATE TABLE IF NOT EXISTS violations (
    run_id         VARCHAR,
    rule_id        VARCHAR,
    entity         VARCHAR,
    entity_id      VARCHAR,
    status         VARCHAR,
    institution_id VARCHAR,
    doctor_id      VARCHAR,
    month          VARCHAR
);
CREATE TABLE IF NOT EXISTS rule_results_strata (
    run_id         VARCHAR,
    rule_id        VARCHAR,
    institution_id VARCHAR,
    doctor_id      VARCHAR,
    month          VARCHAR,
    denominator    BIGINT,
    violated       BIGINT,
    not_evidenced  BIGINT
);
CREATE TABLE IF NOT EXISTS dq_results (
    run_id     VARCHAR,
    check_id   VARCHAR,
    table_name VARCHAR,
    title_en   VARCHAR,
    title_ja   VARCHAR,
    n          BIGINT,
    detail     VARCHAR
);
CREATE TABLE IF NOT EXISTS attestations (
    run_id      VARCHAR,
    item_id     VARCHAR,
    section     VARCHAR,
    title_en    VARCHAR,
    title_ja    VARCHAR,
    attested    BOOLEAN,
    attested_by VARCHAR,
    attested_on DATE,
    note        VARCHAR
);
"""


def canonical_ddl(table_name: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one contract table, plus ingest bookkeeping columns.

    ``_ingest_id`` names the ingest that last wrote the row and ``_row_hash`` is a hash of its
    contract values (used to make re-ingest idempotent and to record changes).
    """
    t = TABLES[table_name]
    cols = ",\n    ".join(f'"{c.name}" {c.duckdb_type}' for c in t.columns)
    return (f'CREATE TABLE IF NOT EXISTS "{t.name}" (\n    {cols},\n'
            f'    _ingest_id VARCHAR,\n    _row_hash VARCHAR,\n    _source_file VARCHAR,\n'
            f'    _line_number BIGINT\n);')


class DatabaseBusyError(RuntimeError):
    """Another process holds the DuckDB file for writing."""


class SchemaVersionError(RuntimeError):
    """The DuckDB file was written by a toolkit with another schema version."""


def connect(db_path: str | os.PathLike[str], *, read_only: bool = False,
            wait_seconds: float = 0.0, config: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file (created owner-only, mode 0600, if new).

    A file locked by another writer raises :class:`DatabaseBusyError` with a message saying
    to retry, after waiting up to ``wait_seconds``.
    """
    path = Path(db_path)
    if not read_only and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        path.unlink()  # DuckDB refuses an empty non-database file; the umask below keeps 0600
    deadline = time.monotonic() + wait_seconds
    old_umask = os.umask(0o077)
    try:
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only, config=config or {})
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise DatabaseBusyError(
                        f"{path}: the database is in use by another ocaudit process (busy). "
                        "Retry when the running ingest or audit has finished.") from exc
                time.sleep(0.5)
    finally:
        os.umask(old_umask)
    return con


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table that does not exist yet and record the schema version.

    A file recording a newer schema version is refused (:class:`SchemaVersionError`).
    """
    con.execute("CREATE TABLE IF NOT EXISTS schema_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    row = con.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchone()
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"this database was written by a newer ocaudit (schema {row[0]}; this toolkit knows "
            f"up to {SCHEMA_VERSION}). Upgrade ocaudit, or ingest into a new database file.")
    con.execute(META_DDL)
    for name in TABLE_ORDER:
        con.execute(canonical_ddl(name))
    con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """True if ``name`` is a table or view in the main schema."""
    return con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema='main' AND table_name=?",
        [name]).fetchone()[0] > 0


def latest_run_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The id of the most recent audit run, or None if there is none."""
    row = con.execute("SELECT run_id FROM audit_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    return row[0] if row else None
