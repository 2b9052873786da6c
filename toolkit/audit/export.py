"""The violations export of a run: ids only, formula-safe, owner-only."""

from __future__ import annotations

import csv
import os

from toolkit import store

VIOLATION_CSV_COLUMNS = ("run_id", "rule_id", "section", "level", "entity", "entity_id", "status")


def export_violations(db_path: str | os.PathLike[str], run_id: str, out: str | os.PathLike[str]) -> int:
    """Write the violations CSV of a run (exactly :data:`VIOLATION_CSV_COLUMNS`); returns rows written."""
    from toolkit.store.files import neutralise, open_owner_only

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
            w.writerow([neutralise(v) for v in row])  # no BOM: plain UTF-8 CSV
    return len(rows)
