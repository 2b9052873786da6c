"""The smallest fix that makes Great Expectations 1.24 work on DuckDB through duckdb-engine.

The defect (fivetran/great_expectations issue #11579): ``SqlAlchemyExecutionEngine.execute_query``
runs the query inside ``with self.get_connection() as connection:`` and returns the *cursor
result* after that block has closed the connection. DuckDB's DBAPI cursor is tied to its
connection, so the rows fetched afterwards come back empty; ``resolve_metric_bundle`` then
reads ``res[0]`` of an empty list and every expectation errors with "list index out of range".

The fix buffers the rows (``CursorResult.freeze()``) while the connection is still open and
hands back a fully materialised result with the same interface. Only the ``duckdb`` dialect
takes the patched path; other dialects call GX's original method unchanged. Metric queries
return one aggregate row, so buffering costs nothing.

Also here: GX's anonymous usage statistics are switched off before GX is imported, because
the toolkit runs on machines without internet and must open no network connection; and
:func:`preload`, which imports GX in a background thread while the audit's SQL runs.

Tested on great-expectations 1.24.1 (pinned ``>=1.24.1,<1.25`` in pyproject.toml); remove this
module when an upstream release fixes #11579 and the pin moves past it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

_PATCHED_FLAG = "_ocaudit_duckdb_fix"
_original_execute_query: Any = None  # GX's method, kept by apply()
_apply_lock = threading.Lock()


def _engine_class() -> Any:
    from great_expectations.execution_engine.sqlalchemy_execution_engine import SqlAlchemyExecutionEngine

    return SqlAlchemyExecutionEngine


def _execute_query_buffered(self, query):  # type: ignore[no-untyped-def]
    """Like GX's ``execute_query``, but fetch the rows before the DuckDB connection closes."""
    if self.dialect_name != "duckdb":
        return _original_execute_query(self, query)
    with self.get_connection() as connection:
        result = self._execute_query_with_recovery(connection, query)
        return result.freeze()()


def apply() -> None:
    """Install the fix (idempotent). Imports GX."""
    global _original_execute_query
    engine = _engine_class()
    with _apply_lock:
        if not getattr(engine, _PATCHED_FLAG, False):
            _original_execute_query = engine.execute_query
            engine.execute_query = _execute_query_buffered
            setattr(engine, _PATCHED_FLAG, True)


def preload() -> threading.Thread | None:
    """Start importing GX (and applying the fix) in a background thread; None if already imported.

    Importing GX costs about 3 s of pure Python. DuckDB releases the GIL while it executes, so
    the audit starts this first and joins the thread just before validating: the import then
    overlaps the check-table SQL instead of adding to it (0.1M sessions: −3 s). At 10M the
    overlap is not free: the first facts step slowed by ≈ 2 s while the thread ran, against ≈ 4 s
    saved later (benchmarks/RESULTS.md). A failed import is not swallowed: the later synchronous
    :func:`apply` raises it again.
    """
    if is_applied():
        return None

    def _import() -> None:
        with contextlib.suppress(Exception):  # raised again by the caller's own apply()
            apply()

    thread = threading.Thread(target=_import, name="ocaudit-gx-import")
    thread.start()
    return thread


def shared_connection_config() -> dict[str, str]:
    """The DuckDB config duckdb-engine opens its connections with.

    DuckDB refuses a second connection to the same file with a different configuration, so
    the audit opens its own (writer) connection with exactly this config: GX's connection then
    joins the same in-process database instance and the audit keeps the file's write lock
    for the whole run.
    """
    import duckdb_engine
    import sqlalchemy

    if not getattr(duckdb_engine, "supports_user_agent", False):
        return {}
    return {
        "custom_user_agent": f"duckdb_engine/{duckdb_engine.__version__}(sqlalchemy/{sqlalchemy.__version__})"
    }


def is_applied() -> bool:
    """True once :func:`apply` has run in this process (never imports GX)."""
    if "great_expectations.execution_engine.sqlalchemy_execution_engine" not in sys.modules:
        return False
    return bool(getattr(_engine_class(), _PATCHED_FLAG, False))
