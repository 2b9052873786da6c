"""Stage 0, the store: the DuckDB file every stage reads and writes.

- :mod:`~toolkit.store.connection`: open the file (one writer or many readers, memory cap, clear errors);
- :mod:`~toolkit.store.schema`: the layout (canonical tables, ingest records, quarantine, run store);
- :mod:`~toolkit.store.migrations`: ordered migrations of older files;
- :mod:`~toolkit.store.files`: owner-only (0600) files, formula-safe CSV and Excel.
"""

from toolkit.store.connection import (
    BUSY_WAIT_ENV,
    DEFAULT_MEMORY_LIMIT,
    MEMORY_LIMIT_ENV,
    DatabaseAccessError,
    DatabaseBusyError,
    connect,
    describe_storage_error,
    memory_limit_mb,
    snapshot,
)
from toolkit.store.schema import (
    SCHEMA_VERSION,
    SchemaVersionError,
    canonical_ddl,
    check_version,
    committed,
    ensure_schema,
    in_transaction,
    insert_sql,
    latest_run_id,
    run_is_partial,
    run_parameters,
    runs_newest_first,
    schema_version,
    table_exists,
)

__all__ = [
    "BUSY_WAIT_ENV",
    "DEFAULT_MEMORY_LIMIT",
    "MEMORY_LIMIT_ENV",
    "SCHEMA_VERSION",
    "DatabaseAccessError",
    "DatabaseBusyError",
    "SchemaVersionError",
    "canonical_ddl",
    "check_version",
    "committed",
    "connect",
    "describe_storage_error",
    "ensure_schema",
    "in_transaction",
    "insert_sql",
    "latest_run_id",
    "memory_limit_mb",
    "run_is_partial",
    "run_parameters",
    "runs_newest_first",
    "schema_version",
    "snapshot",
    "table_exists",
]
