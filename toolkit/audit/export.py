"""The violations export of a run: ids only, formula-safe, owner-only, written by DuckDB.

The rows never pass through Python: :func:`toolkit.store.files.copy_query_to` has DuckDB sort and
write them (``COPY … TO``), so memory stays flat however many violations a run has. A name ending
in ``.parquet`` gets Parquet (values as stored: Parquet is read by programs, not spreadsheets),
anything else the formula-safe CSV (UTF-8 without BOM, ``\\r\\n``, quoted only where needed).
"""

from __future__ import annotations

import os

from toolkit import store

VIOLATION_CSV_COLUMNS = ("run_id", "rule_id", "section", "level", "entity", "entity_id", "status")

#: The violations of one run (parameter: the run id) with each rule's section and level.
VIOLATIONS_SQL = """SELECT v.run_id, v.rule_id, r.section, r.level, v.entity, v.entity_id, v.status
    FROM violations v JOIN rule_results r ON r.run_id = v.run_id AND r.rule_id = v.rule_id
    WHERE v.run_id = ?"""
#: Rule, then entity id (status breaks a tie a duplicated id could make): a stable file to diff.
VIOLATIONS_ORDER = ("rule_id", "entity_id", "status")


def violations_format(out: str | os.PathLike[str]) -> str:
    """``"parquet"`` when ``out`` ends in ``.parquet`` (any case), else ``"csv"``."""
    return "parquet" if str(out).lower().endswith(".parquet") else "csv"


def export_violations(db_path: str | os.PathLike[str], run_id: str, out: str | os.PathLike[str]) -> int:
    """Write the violations of a run (exactly :data:`VIOLATION_CSV_COLUMNS`) to ``out``; rows written.

    CSV unless ``out`` ends in ``.parquet`` (:func:`violations_format`).
    """
    from toolkit.store.files import copy_query_to

    con = store.connect(db_path, read_only=True, wait_seconds=30)
    try:
        return copy_query_to(
            con,
            VIOLATIONS_SQL,
            out,
            fmt=violations_format(out),
            params=[run_id],
            order_by=VIOLATIONS_ORDER,
        )
    finally:
        con.close()
