"""Ordered schema migrations of the DuckDB file (called by :func:`toolkit.store.schema.ensure_schema`).

Schema versions:

* **0** — the first layout (before the file recorded a version): no ``schema_meta`` table,
  ``rule_results`` without ``missing_columns``, ``ingest_files`` without ``columns_present``.
* **1** — records ``schema_version`` in ``schema_meta``; ``rule_results.missing_columns``
  (``VARCHAR[]``) before ``message``; ``ingest_files.columns_present`` (``VARCHAR[]``) after
  ``encoding``.
* **2** — data contract v1.1: ``institutions.municipality_code`` (after ``in_person_backup_id``),
  ``patients.municipality_code`` (after ``sex``), ``sessions.insurance_billed`` and
  ``sessions.patient_municipality_code`` (after ``chart_marked_online``), all NULL in migrated rows
  (a v1 export did not have them; ``ingest_files.columns_present`` keeps saying so), and the new
  table ``in_person_visits``.
* **3** — the ``review_marks`` table (append-only review marks on findings; see ``toolkit/review``).
* **4** — ``_row_hash`` of every contract table is ``UBIGINT`` (DuckDB's ``hash()`` of the row's
  contract values) instead of its decimal text: the text cost the 10M ingest ≈ 10 s (73.5 → 63.2 s,
  benchmarks/RESULTS.md). Stored hashes are recomputed from the values, as a new ingest computes
  them (a hand-made table without contract columns keeps its text as a number, where it is one);
  ``row_changes`` keeps its text ``old_hash`` / ``new_hash``.

A migration rebuilds a table when a column is added in the middle: the stages insert rows
positionally, so column order is part of the layout. Every migration runs inside the caller's
transaction; a failure leaves the file at its old version.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from toolkit.contract import TABLES


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ? "
            "ORDER BY ordinal_position",
            [table],
        ).fetchall()
    ]


def _rebuild_with(con: duckdb.DuckDBPyConnection, table: str, new_col: str, after: str, expr: str) -> None:
    """Recreate ``table`` with ``new_col`` (value ``expr``) placed right after column ``after``."""
    cols = _columns(con, table)
    if not cols or new_col in cols:
        return
    if after not in cols:
        raise RuntimeError(f"cannot migrate {table}: column {after!r} not found (columns: {', '.join(cols)})")
    select = []
    for c in cols:
        select.append(f'"{c}"')
        if c == after:
            select.append(f'{expr} AS "{new_col}"')
    con.execute(f'CREATE TABLE "_mig_{table}" AS SELECT {", ".join(select)} FROM "{table}"')
    con.execute(f'DROP TABLE "{table}"')
    con.execute(f'ALTER TABLE "_mig_{table}" RENAME TO "{table}"')


def _v0_to_v1(con: duckdb.DuckDBPyConnection) -> None:
    # rule_results.missing_columns: known empty for every status but not_evaluable (unknown → NULL)
    _rebuild_with(
        con,
        "rule_results",
        "missing_columns",
        "not_evidenced",
        "CASE WHEN status = 'not_evaluable' THEN NULL ELSE CAST([] AS VARCHAR[]) END",
    )
    # ingest_files.columns_present: v0 did not record which columns a file had. Use the contract
    # columns holding at least one value in the table: a rule needing a column no row ever had
    # stays not_evaluable instead of being counted as "not evidenced" against the institution.
    if not _columns(con, "ingest_files"):
        return
    _rebuild_with(con, "ingest_files", "columns_present", "encoding", "CAST(NULL AS VARCHAR[])")
    for (table,) in con.execute("SELECT DISTINCT table_name FROM ingest_files").fetchall():
        if table not in TABLES or not _columns(con, table):
            continue
        present = [c for c in TABLES[table].column_names if c in _columns(con, table)]
        if not present:
            continue
        counts = con.execute(
            "SELECT " + ", ".join(f'count("{c}")' for c in present) + f' FROM "{table}"'
        ).fetchone()
        cols = [c for c, n in zip(present, counts, strict=True) if n]
        con.execute(
            "UPDATE ingest_files SET columns_present = ? WHERE table_name = ? AND columns_present IS NULL",
            [cols, table],
        )


#: v1.1 contract columns added by version 2: (table, new column, after column, SQL type).
V2_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("institutions", "municipality_code", "in_person_backup_id", "VARCHAR"),
    ("patients", "municipality_code", "sex", "VARCHAR"),
    ("sessions", "insurance_billed", "chart_marked_online", "BOOLEAN"),
    ("sessions", "patient_municipality_code", "insurance_billed", "VARCHAR"),
)


def _v1_to_v2(con: duckdb.DuckDBPyConnection) -> None:
    from toolkit.store.schema import canonical_ddl

    for table, col, after, sql_type in V2_COLUMNS:
        cols = _columns(con, table)
        if not cols or col in cols:
            continue
        if after not in cols:  # a partial table (made by hand): before the bookkeeping columns, else last
            after = cols[cols.index("_ingest_id") - 1] if "_ingest_id" in cols[1:] else cols[-1]
        _rebuild_with(con, table, col, after, f"CAST(NULL AS {sql_type})")
    con.execute(canonical_ddl("in_person_visits"))


def _v2_to_v3(con: duckdb.DuckDBPyConnection) -> None:
    # a new table only: no existing row changes
    from toolkit.store.schema import REVIEW_MARKS_DDL

    con.execute(REVIEW_MARKS_DDL)


def _v3_to_v4(con: duckdb.DuckDBPyConnection) -> None:
    for table, t in TABLES.items():
        cols = _columns(con, table)
        if "_row_hash" not in cols:
            continue
        present = ", ".join(f'"{c}"' for c in t.column_names if c in cols)
        new_hash = f"hash({present})" if present else "TRY_CAST(_row_hash AS UBIGINT)"
        con.execute(f'ALTER TABLE "{table}" ALTER COLUMN _row_hash SET DATA TYPE UBIGINT USING {new_hash}')


#: (version reached, what it does, function) in order; the file's version is set after each step.
MIGRATIONS: list[tuple[int, str, Callable[[duckdb.DuckDBPyConnection], None]]] = [
    (
        1,
        "record the schema version; add rule_results.missing_columns and ingest_files.columns_present",
        _v0_to_v1,
    ),
    (
        2,
        "data contract v1.1: municipality codes, sessions.insurance_billed, table in_person_visits",
        _v1_to_v2,
    ),
    (3, "add the review_marks table (append-only review marks on findings)", _v2_to_v3),
    (4, "store each contract row's hash as an integer (UBIGINT) instead of text", _v3_to_v4),
]

LATEST = MIGRATIONS[-1][0]


def migrate(con: duckdb.DuckDBPyConnection, from_version: int) -> list[str]:
    """Apply every migration above ``from_version`` in order; returns what was done.

    Runs in the caller's transaction (the caller commits or rolls back).
    """
    done = []
    for version, what, fn in MIGRATIONS:
        if version > from_version:
            fn(con)
            con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('schema_version', ?)", [str(version)])
            done.append(f"v{from_version}→v{version}: {what}")
            from_version = version
    return done
