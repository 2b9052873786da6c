"""The DuckDB file's schema: canonical tables, ingest records, quarantine and the run store.

Every stage opens the database through :func:`toolkit.store.connect` and calls
:func:`ensure_schema`, so the layout is defined once. The run store tables are append-only: a run is written
in one transaction and never updated afterwards.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator

import duckdb

from toolkit.contract import TABLE_ORDER, TABLES

#: Bump when the layout changes; :func:`ensure_schema` migrates older files or refuses them.
SCHEMA_VERSION = 4

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

#: Review marks on findings (append-only; the current state of a finding is its latest mark, the
#: highest ``mark_id``). Keyed by what stays stable across runs: (rule_id, entity, entity_id);
#: ``run_id`` is the run whose finding the reviewer saw. Added by schema version 3.
REVIEW_MARKS_DDL = """
CREATE TABLE IF NOT EXISTS review_marks (
    mark_id   BIGINT PRIMARY KEY,
    rule_id   VARCHAR NOT NULL,
    entity    VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    state     VARCHAR NOT NULL,
    marked_by VARCHAR NOT NULL,
    marked_at TIMESTAMPTZ NOT NULL,
    note      VARCHAR,
    run_id    VARCHAR
);
"""

META_DDL += REVIEW_MARKS_DDL


_ALL_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", META_DDL)) | frozenset(TABLE_ORDER)


@contextlib.contextmanager
def committed(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """COMMIT the transaction the caller opened when the block ends; ROLLBACK on any exception.

    A COMMIT that fails (disk full) has already ended the transaction, so the ROLLBACK's own
    error is ignored and the first error is raised.
    """
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def insert_sql(table: str, columns: tuple[str, ...] | list[str]) -> str:
    """``INSERT INTO table (c1, …) VALUES (?, …)``: every insert names its columns."""
    cols = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({cols}) VALUES ({marks})"


def canonical_ddl(table_name: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one contract table, plus ingest bookkeeping columns.

    ``_ingest_id`` names the ingest that last wrote the row and ``_row_hash`` is DuckDB's ``hash()``
    (UBIGINT) of its contract values (it tells identical duplicate keys in one ingest from
    conflicting ones; re-ingest compares the values themselves).
    """
    t = TABLES[table_name]
    cols = ",\n    ".join(f'"{c.name}" {c.duckdb_type}' for c in t.columns)
    return (
        f'CREATE TABLE IF NOT EXISTS "{t.name}" (\n    {cols},\n'
        f"    _ingest_id VARCHAR,\n    _row_hash UBIGINT,\n    _source_file VARCHAR,\n"
        f"    _line_number BIGINT\n);"
    )


class SchemaVersionError(RuntimeError):
    """The DuckDB file was written by a toolkit with another schema version."""


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return (
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_name = ? AND table_type = 'BASE TABLE'",
            [name],
        ).fetchone()[0]
        > 0
    )


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The file's schema version: None for a new (empty) file, 0 for the layout before versions."""
    if _has_table(con, "schema_meta"):
        row = con.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchone()
        if row is not None:
            try:
                return int(row[0])
            except (TypeError, ValueError):
                raise SchemaVersionError(
                    f"schema_meta.schema_version is {str(row[0])[:40]!r}, not a number: the file is "
                    "damaged or was not written by ocaudit (it was not changed). Give the --db file "
                    "ocaudit wrote, restore it from a backup, or ingest into a new file."
                ) from None
    known = ("ingest_runs", "ingest_files", "quarantine", "audit_runs", "rule_results", *TABLE_ORDER)
    return 0 if any(_has_table(con, t) for t in known) else None


def _newer_error(version: int) -> SchemaVersionError:
    return SchemaVersionError(
        f"this database was written by a newer ocaudit (schema {version}; this toolkit knows "
        f"up to {SCHEMA_VERSION}). Upgrade ocaudit, or ingest into a new database file."
    )


def check_version(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse (SchemaVersionError) a file this toolkit cannot read as it is, without changing it."""
    version = schema_version(con)
    if version is None or version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise _newer_error(version)
    raise SchemaVersionError(
        f"this database has an older layout (schema {version}; this toolkit uses {SCHEMA_VERSION}). "
        "Run 'ocaudit audit --db FILE' or 'ocaudit ingest --db FILE SOURCE' once (it migrates the "
        "file in place, in one transaction) and open it again; back the file up first if you keep backups."
    )


def in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """True inside an explicit ``BEGIN … COMMIT`` (two statements then share one transaction id)."""
    first = con.execute("SELECT txid_current()").fetchone()[0]
    return con.execute("SELECT txid_current()").fetchone()[0] == first


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table that does not exist yet, migrate an older layout, record the version.

    A file recording a newer schema version is refused (:class:`SchemaVersionError`), so is any
    file on a read-only connection that would need a change. Migrations
    (:mod:`toolkit.store.migrations`) run in one transaction — the caller's if one is open.
    """
    from toolkit.store import migrations

    version = schema_version(con)
    if version is not None and version > SCHEMA_VERSION:
        raise _newer_error(version)
    readonly = con.execute(
        "SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()[0]
    if readonly:
        check_version(con)
        return
    existing = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    if version == SCHEMA_VERSION and not _ALL_TABLES - existing:
        return  # up to date: write nothing
    own = not in_transaction(con)
    if own:
        con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE TABLE IF NOT EXISTS schema_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        if version is not None and version < SCHEMA_VERSION:
            migrations.migrate(con, version)
        con.execute(META_DDL)
        for name in TABLE_ORDER:
            con.execute(canonical_ddl(name))
        con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        if own:
            con.execute("COMMIT")
    except BaseException:
        if own:
            con.execute("ROLLBACK")
        raise


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """True if ``name`` is a table or view in the main schema."""
    return (
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema='main' AND table_name=?",
            [name],
        ).fetchone()[0]
        > 0
    )


def run_parameters(parameters: str | dict | None) -> dict:
    """``audit_runs.parameters`` (JSON text) as a dict; ``{}`` when empty or unreadable."""
    if isinstance(parameters, dict):
        return parameters
    try:
        out = json.loads(parameters or "{}")
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def run_is_partial(parameters: str | dict | None) -> bool:
    """True for a *partial* run (made with ``audit --rules`` and leaving rules out).

    The one test every reader uses (no schema column: the run's ``parameters`` JSON holds it).
    Runs since this toolkit version record ``partial``; older runs only their ``rules`` pattern,
    and any pattern then counts as partial.
    """
    params = run_parameters(parameters)
    if "partial" in params:
        return bool(params["partial"])
    return bool(params.get("rules"))


def runs_newest_first(con: duckdb.DuckDBPyConnection) -> list[tuple[str, bool]]:
    """Every audit run as (run_id, partial), the most recent first."""
    rows = con.execute(
        "SELECT run_id, parameters FROM audit_runs ORDER BY started_at DESC, run_id DESC"
    ).fetchall()
    return [(rid, run_is_partial(params)) for rid, params in rows]


def latest_run_id(con: duckdb.DuckDBPyConnection, complete: bool = True) -> str | None:
    """The id of the most recent **complete** audit run (any run with ``complete=False``), or None."""
    for rid, partial in runs_newest_first(con):
        if not (complete and partial):
            return rid
    return None
