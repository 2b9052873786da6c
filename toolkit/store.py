"""The DuckDB file's schema: canonical tables, ingest records, quarantine and the run store.

Every stage opens the database through :func:`connect` and calls :func:`ensure_schema`,
so the layout is defined once. The run store tables are append-only: a run is written
in one transaction and never updated afterwards.
"""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path

import duckdb

from toolkit.contract import TABLE_ORDER, TABLES
from toolkit.errors import UserError

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


_ALL_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", META_DDL)) | frozenset(TABLE_ORDER)


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
    """Another process holds the DuckDB file (a writer, or a reader while we want to write)."""


class SchemaVersionError(RuntimeError):
    """The DuckDB file was written by a toolkit with another schema version."""


class DatabaseAccessError(UserError):
    """The DuckDB file or its folder cannot be created, opened or written (permissions, read-only
    file system, disk full). The message names the path; the CLI exits with code 2."""


#: Environment variable: seconds any :func:`connect` waits for a busy database at least
#: (for scheduled jobs that should wait for a notebook or another job instead of failing).
BUSY_WAIT_ENV = "OCAUDIT_BUSY_WAIT"

_ACCESS_HINTS = (
    (("no space left", "disk full", "enospc", "not enough space"),
     "the disk is full. Free space (or choose another folder) and run the command again; "
     "the database holds what it held before this command"),
    (("read-only file system", "erofs", "read only file system"),
     "the file system is read-only. Choose a writable folder for the database"),
    (("permission denied", "eacces", "operation not permitted"),
     "permission denied. Check the owner and mode of the file and its folder"),
)


def describe_storage_error(exc: BaseException, path: str | os.PathLike[str] | None = None) -> str | None:
    """A plain message for a disk-full / read-only / permission error, or None for anything else.

    Used by :func:`connect` and (for errors raised later, e.g. a full disk during a write) by
    the CLI, so the user sees the path and what to do instead of a traceback. The path named is
    the file the error names (an output file, the WAL …), else ``path``.
    """
    text, fname = "", None
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:  # the error and what it was raised from / during
        seen.add(id(e))
        text += f" {e} {getattr(e, 'strerror', '') or ''}"
        if isinstance(e, OSError):
            fname = fname or e.filename
            text += {errno.ENOSPC: " enospc", errno.EROFS: " erofs", errno.EACCES: " eacces",
                     errno.EPERM: " eperm operation not permitted"}.get(e.errno or 0, "")
        e = e.__cause__ or e.__context__
    for needles, hint in _ACCESS_HINTS:
        if any(n in text.lower() for n in needles):
            named = re.search(r'file "([^"]+)"', text)  # DuckDB names the file it could not write
            where = str(fname) if fname else (str(path) if path is not None else None)
            if named and (where is None or not named.group(1).startswith(where)):
                where = f"{where} ({named.group(1)})" if where else named.group(1)
            return f"{where}: {hint}." if where else f"{hint[0].upper()}{hint[1:]}."
    return None


def _owner_only_umask() -> None:
    """Make everything this process creates from now on owner-only (umask |= 077).

    DuckDB creates the write-ahead log (``FILE.wal``) and spill files lazily, long after
    :func:`connect` returns, and removes and recreates the WAL at each checkpoint; they hold
    patient rows, so a process that opens the database keeps an owner-only umask.
    """
    old = os.umask(0o077)
    os.umask(old | 0o077)


def _is_lock_error(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return "lock" in msg and ("conflicting" in msg or "could not set" in msg)


def connect(db_path: str | os.PathLike[str], *, read_only: bool = False,
            wait_seconds: float = 0.0, config: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file (created owner-only, mode 0600, folder 0700, if new).

    DuckDB lets one process write a file, or several processes read it, never both. A file
    held by another process raises :class:`DatabaseBusyError` with a message saying to retry,
    after waiting up to ``wait_seconds`` (at least ``$OCAUDIT_BUSY_WAIT`` seconds when set).
    A file or folder that cannot be created or written raises :class:`DatabaseAccessError`
    naming the path. A read-only connection to a file of an older or newer layout raises
    :class:`SchemaVersionError` saying what to do. From here on the process creates files
    owner-only (see :func:`_owner_only_umask`).
    """
    path = Path(db_path)
    _owner_only_umask()
    try:
        env_wait = float(os.environ.get(BUSY_WAIT_ENV, "0") or 0)
    except ValueError:
        env_wait = 0.0
    wait_seconds = max(wait_seconds, env_wait)
    if read_only and not path.is_file():
        raise DatabaseAccessError(f"{path}: no such database file")
    if not read_only and not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
            path.unlink()  # DuckDB refuses an empty non-database file; the umask keeps 0600
        except OSError as exc:
            msg = describe_storage_error(exc, path) or f"{exc.filename or path}: {exc.strerror}"
            raise DatabaseAccessError(msg if msg.startswith(f"{path}:") else
                                      f"{path}: cannot create the database file — {msg}") from None
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config or {})
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                msg = describe_storage_error(exc, path)
                if msg:
                    raise DatabaseAccessError(msg if msg.startswith(f"{path}") else
                                              f"{path}: cannot open the database — {msg}") from None
                raise
            if time.monotonic() >= deadline:
                who = "an ingest or audit is writing it" if read_only else \
                    "an ingest or audit is writing it, or a report/notebook is reading it"
                raise DatabaseBusyError(
                    f"{path}: the database is in use by another process ({who}; busy). "
                    f"Retry when it has finished (or set {BUSY_WAIT_ENV}=SECONDS to wait)."
                    ) from exc
            time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
    try:
        _apply_memory_limit(con, writer=not read_only)
        if read_only:
            check_version(con)
    except BaseException:
        con.close()
        raise
    return con


#: Environment variable with DuckDB's memory limit for every ocaudit connection (e.g. ``4GB``).
MEMORY_LIMIT_ENV = "OCAUDIT_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "1400MB"


def _apply_memory_limit(con: duckdb.DuckDBPyConnection, *, writer: bool = False) -> None:
    """Cap DuckDB's memory (default 1400 MB; ``OCAUDIT_MEMORY_LIMIT`` overrides).

    DuckDB otherwise takes up to 80 % of RAM; with a cap, large joins, sorts and temporary
    tables spill to DuckDB's temporary directory instead, so a monthly job on a shared
    analysis machine stays within its share. The process's peak RSS runs about 1.25-1.5x the cap
    (DuckDB allocations outside its buffer pool, the allocator, Python and GX), so 1400 MB keeps
    every stage under 2 GB at 10M sessions (benchmarks/RESULTS.md). Set at run time (not as
    connection config) so GX's connection can still join the same database instance.

    A connection that writes (ingest, audit) also lets DuckDB's block allocator keep up to the
    cap mapped, so a block freed by one step is reused by the next instead of being handed back
    to the system and faulted in again: about 1.5 s less of the audit at 10M sessions, with the
    same peak RSS there; smaller runs peak higher (the 0.1M audit at ≈ 700 MB instead of ≈ 400 MB)
    because freed blocks stay mapped until the database closes. Readers (reports, notebooks,
    snapshots) do not do this.
    """
    limit = os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", limit, flags=re.I):
        raise UserError(f"{MEMORY_LIMIT_ENV}={limit!r}: expected a size such as 1536MB or 4GB")
    con.execute(f"SET memory_limit = '{limit}'")
    if writer:
        con.execute(f"SET block_allocator_memory = '{limit}'")


def snapshot(db_path: str | os.PathLike[str], *, wait_seconds: float = 0.0) -> duckdb.DuckDBPyConnection:
    """An in-memory copy of the database: a consistent snapshot that holds no lock on the file.

    For notebooks and other long-lived readers: a read-only :func:`connect` keeps a shared lock
    for as long as it is open, and the monthly ingest or audit cannot write meanwhile (it waits,
    then fails as busy). The copy is taken under the read lock, which is released at once; it
    needs memory for the whole file. Raises like :func:`connect` (busy, version, missing file).
    """
    path = Path(db_path)
    src = connect(path, read_only=True, wait_seconds=wait_seconds)  # checks existence and version
    src.close()
    con = duckdb.connect(":memory:")
    deadline = time.monotonic() + max(wait_seconds, 5.0)
    while True:
        try:
            con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS _ocaudit_src (READ_ONLY)")
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                con.close()
                if _is_lock_error(exc):
                    raise DatabaseBusyError(f"{path}: the database is in use by another process (busy). "
                                            "Retry when it has finished.") from exc
                raise
            time.sleep(0.2)
    try:
        con.execute("COPY FROM DATABASE _ocaudit_src TO memory")
    finally:
        con.execute("DETACH _ocaudit_src")
    return con


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
                       "AND table_name = ? AND table_type = 'BASE TABLE'", [name]).fetchone()[0] > 0


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The file's schema version: None for a new (empty) file, 0 for the layout before versions."""
    if _has_table(con, "schema_meta"):
        row = con.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchone()
        if row is not None:
            return int(row[0])
    known = ("ingest_runs", "ingest_files", "quarantine", "audit_runs", "rule_results", *TABLE_ORDER)
    return 0 if any(_has_table(con, t) for t in known) else None


def _newer_error(version: int) -> SchemaVersionError:
    return SchemaVersionError(
        f"this database was written by a newer ocaudit (schema {version}; this toolkit knows "
        f"up to {SCHEMA_VERSION}). Upgrade ocaudit, or ingest into a new database file.")


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
        "file in place, in one transaction) and open it again; back the file up first if you keep backups.")


def in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """True inside an explicit ``BEGIN … COMMIT`` (two statements then share one transaction id)."""
    first = con.execute("SELECT txid_current()").fetchone()[0]
    return con.execute("SELECT txid_current()").fetchone()[0] == first


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table that does not exist yet, migrate an older layout, record the version.

    A file recording a newer schema version is refused (:class:`SchemaVersionError`), so is any
    file on a read-only connection that would need a change. Migrations
    (:mod:`toolkit.migrations`) run in one transaction — the caller's if one is open.
    """
    from toolkit import migrations

    version = schema_version(con)
    if version is not None and version > SCHEMA_VERSION:
        raise _newer_error(version)
    readonly = con.execute("SELECT readonly FROM duckdb_databases() "
                           "WHERE database_name = current_database()").fetchone()[0]
    if readonly:
        check_version(con)
        return
    existing = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
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
    return con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema='main' AND table_name=?",
        [name]).fetchone()[0] > 0


def latest_run_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The id of the most recent audit run, or None if there is none."""
    row = con.execute("SELECT run_id FROM audit_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    return row[0] if row else None
