"""Phase 2 of an ingest, in one ``BEGIN … COMMIT``: duplicate keys, upsert, quarantine, records.

Upsert by key (DELETE + INSERT of changed keys), ``row_changes``, ``quarantine``,
``ingest_files`` and ``ingest_runs``. A failure or a kill leaves the database file as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime

from toolkit import __version__
from toolkit.contract import TABLE_ORDER, TABLES, Table
from toolkit.ingest.readers import lit, q
from toolkit.ingest.records import TableCounts
from toolkit.store import committed, ensure_schema, insert_sql

INGEST_FILE_COLUMNS = (
    "ingest_id",
    "table_name",
    "path",
    "size_bytes",
    "sha256",
    "file_format",
    "encoding",
    "columns_present",
    "rows_read",
    "rows_loaded",
    "rows_quarantined",
)
INGEST_RUN_COLUMNS = (
    "ingest_id",
    "started_at",
    "finished_at",
    "toolkit_version",
    "source",
    "mapping",
    "rows_read",
    "rows_loaded",
    "rows_quarantined",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
)


class WritePhase:
    """Phase 2 of :class:`toolkit.ingest.run._Run` (staged tables; direct ones via :class:`DirectLoad`)."""

    # ---------------------------------------------------------------- phase 2: write
    def write(self, ingest_id: str, source: str, started: datetime) -> None:
        """Upsert, quarantine and ingest records, in one transaction."""
        con = self.con
        if not self.in_txn:
            ensure_schema(con)  # its own transaction (a no-op on an up-to-date file)
        con.execute("SET preserve_insertion_order = false")  # row order in the tables does not matter
        if not self.in_txn:
            con.execute("BEGIN TRANSACTION")
            self.in_txn = True
        try:
            with committed(con):
                for table in TABLE_ORDER:
                    if table in self.tables:
                        self.summary.tables[table] = self._write_table(table, ingest_id)
                self._write_records(ingest_id, source, started)
        finally:
            self.in_txn = False

    def _write_table(self, table: str, ingest_id: str) -> TableCounts:
        con = self.con
        t = TABLES[table]
        inc = f"_inc_{table}"
        counts = TableCounts(files=sum(1 for f in self.files if f.sf.table == table))
        if table in self.direct:
            return self._write_direct(t, inc, ingest_id, counts)
        if t.key:
            self._duplicates(t, inc)
        cols = ", ".join(q(c) for c in t.column_names)
        ins = (
            f"INSERT INTO {q(table)} ({cols}, _ingest_id, _row_hash, _source_file, _line_number) "
            f"SELECT {', '.join('c.' + q(c) for c in t.column_names)}, {lit(ingest_id)}, c._row_hash, "
            f"c._source_file, c._line FROM {inc} c"
        )
        cand = f"FROM {inc} c WHERE c._reason IS NULL AND c._dup IS NULL"
        key = q(t.key[0]) if t.key else None
        empty = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {q(table)} LIMIT 1)").fetchall()[0][0] == 0
        if empty:
            # first load into an empty table: every candidate is inserted; one summary row in
            # row_changes (the rows carry _ingest_id) instead of one row per inserted record
            con.execute(f"{ins} WHERE c._reason IS NULL AND c._dup IS NULL")
            counts.inserted = con.execute(f"SELECT count(*) {cand}").fetchall()[0][0]
            counts.updated = 0
            if counts.inserted:
                con.execute(
                    "INSERT INTO row_changes (ingest_id, table_name, row_key, change, old_hash, new_hash) "
                    "VALUES (?, ?, NULL, 'initial_load', NULL, ?)",
                    [ingest_id, table, f"{counts.inserted} rows"],
                )
        else:
            # compare values, not hashes: the result does not depend on DuckDB's hash() staying the same
            differs = "x._row_hash IS NULL OR " + " OR ".join(
                f"x.{q(c)} IS DISTINCT FROM c.{q(c)}" for c in t.column_names
            )
            same_values = " AND ".join(f"x.{q(c)} IS NOT DISTINCT FROM c.{q(c)}" for c in t.column_names)
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _chg (_file_idx INTEGER, _line BIGINT, k VARCHAR, "
                "old_hash UBIGINT, new_hash UBIGINT)"
            )
            if key:
                con.execute(
                    "INSERT INTO _chg (_file_idx, _line, k, old_hash, new_hash) "
                    f"SELECT c._file_idx, c._line, CAST(c.{key} AS VARCHAR), x._row_hash, "
                    f"c._row_hash {cand.replace('WHERE', f'LEFT JOIN {q(table)} x ON x.{key} = c.{key} WHERE')} "
                    f"AND ({differs})"
                )
                con.execute(
                    f"DELETE FROM {q(table)} WHERE {key} IN (SELECT k FROM _chg WHERE old_hash IS NOT NULL)"
                )
            else:
                con.execute(
                    "INSERT INTO _chg (_file_idx, _line, k, old_hash, new_hash) "
                    f"SELECT c._file_idx, c._line, CAST(c._row_hash AS VARCHAR), NULL, c._row_hash {cand} "
                    f"AND NOT EXISTS (SELECT 1 FROM {q(table)} x WHERE {same_values})"
                )
            con.execute(f"{ins} SEMI JOIN _chg g ON c._file_idx = g._file_idx AND c._line = g._line")
            con.execute(
                "INSERT INTO row_changes (ingest_id, table_name, row_key, change, old_hash, new_hash) "
                f"SELECT {lit(ingest_id)}, {lit(table)}, k, "
                "CASE WHEN old_hash IS NULL THEN 'inserted' ELSE 'updated' END, CAST(old_hash AS VARCHAR), "
                "CAST(new_hash AS VARCHAR) FROM _chg"
            )
            counts.inserted, counts.updated = con.execute(
                "SELECT count(*) FILTER (WHERE old_hash IS NULL), count(old_hash) FROM _chg"
            ).fetchall()[0]
        if key and table in self.replace_tables and table not in self.refused_tables:
            gone = (
                f"FROM {q(table)} WHERE {key} NOT IN (SELECT {key} FROM {inc} WHERE _reason IS NULL "
                f"AND {key} IS NOT NULL)"
            )
            counts.deleted = con.execute(f"SELECT count(*) {gone}").fetchall()[0][0]
            con.execute(
                "INSERT INTO row_changes (ingest_id, table_name, row_key, change, old_hash, new_hash) "
                f"SELECT {lit(ingest_id)}, {lit(table)}, CAST({key} AS VARCHAR), "
                f"'deleted', CAST(_row_hash AS VARCHAR), NULL {gone}"
            )
            con.execute(f"DELETE {gone}")
        self._quarantine(table, inc, ingest_id)
        counts.read, counts.quarantined, dup_same, dup_diff = con.execute(
            f"SELECT count(*), count(_reason), count(*) FILTER (WHERE _dup = 'identical'), "
            f"count(*) FILTER (WHERE _dup = 'conflict') FROM {inc}"
        ).fetchall()[0]
        return self._finish_counts(table, counts, dup_same, dup_diff)

    def _quarantine(self, table: str, inc: str, ingest_id: str) -> None:
        """Replace the quarantine verdict of this table's files (unchanged rows are kept)."""
        con = self.con
        paths = [str(f.sf.path) for f in self.files if f.sf.table == table]
        same = (
            "i._source_file = z.source_file AND i._line IS NOT DISTINCT FROM z.line_number "
            "AND i._reason = z.reason AND i._raw IS NOT DISTINCT FROM z.raw_row"
        )
        # quarantine holds the latest verdict per file; an unchanged verdict keeps its rows (idempotent)
        con.execute(
            f"DELETE FROM quarantine z WHERE table_name = ? AND list_contains(?, source_file) AND NOT EXISTS "
            f"(SELECT 1 FROM {inc} i WHERE i._reason IS NOT NULL AND {same})",
            [table, paths],
        )
        con.execute(
            "INSERT INTO quarantine (ingest_id, table_name, source_file, line_number, column_name, reason, raw_row) "
            f"SELECT {lit(ingest_id)}, {lit(table)}, _source_file, _line, _errcol, "
            f"_reason, _raw FROM {inc} i WHERE _reason IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
            f"quarantine z WHERE z.table_name = {lit(table)} AND {same}) ORDER BY _file_idx, _line"
        )

    def _finish_counts(self, table: str, counts: TableCounts, dup_same: int, dup_diff: int) -> TableCounts:
        """Loaded / unchanged from the other counts; print the duplicate-key notes."""
        if dup_diff:
            self.out(
                f"  {table}: {dup_diff} row(s) with an already-seen key and different content quarantined "
                "(the first occurrence is loaded)"
            )
        counts.loaded = counts.read - counts.quarantined
        counts.unchanged = counts.loaded - counts.inserted - counts.updated
        if dup_same:
            self.out(
                f"  note: {table}: {dup_same} identical duplicate row(s) (same key, same content) "
                "loaded once, counted as unchanged"
            )
        return counts

    def _duplicates(self, t: Table, inc: str) -> None:
        """Later rows with an already-seen key: identical → ``_dup='identical'``; else quarantined."""
        con = self.con
        key = q(t.key[0])
        n = con.execute(
            f"SELECT count(*) FROM (SELECT {key} FROM {inc} WHERE _reason IS NULL "
            f"GROUP BY {key} HAVING count(*) > 1)"
        ).fetchall()[0][0]
        if not n:
            return
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _dd AS
SELECT * FROM (
  SELECT _file_idx, _line, _row_hash, CAST({key} AS VARCHAR) AS k,
         row_number() OVER w AS rn, first_value(_row_hash) OVER w AS fh, first_value(_line) OVER w AS fl,
         first_value(_file_idx) OVER w AS ff, first_value(_source_file) OVER w AS fsrc
  FROM {inc} WHERE _reason IS NULL AND {key} IN (
    SELECT {key} FROM {inc} WHERE _reason IS NULL GROUP BY {key} HAVING count(*) > 1)
  WINDOW w AS (PARTITION BY {key} ORDER BY _file_idx, _line)) WHERE rn > 1""")
        obj = ", ".join(f"{lit(c)}, {inc}.{q(c)}" for c in t.column_names)
        con.execute(f"""
UPDATE {inc} SET
  _dup = CASE WHEN d._row_hash = d.fh THEN 'identical' ELSE 'conflict' END,
  _reason = CASE WHEN d._row_hash = d.fh THEN NULL ELSE
     'duplicate key ' || d.k || ' with different content (first at '
     || CASE WHEN d.ff = d._file_idx THEN '' ELSE d.fsrc || ' ' END || 'line ' || d.fl || ')' END,
  _errcol = CASE WHEN d._row_hash = d.fh THEN NULL ELSE {lit(t.key[0])} END,
  _raw = CASE WHEN d._row_hash = d.fh THEN NULL ELSE CAST(json_object({obj}) AS VARCHAR) END
FROM _dd d WHERE {inc}._file_idx = d._file_idx AND {inc}._line = d._line""")

    def _write_records(self, ingest_id: str, source: str, started: datetime) -> None:
        con = self.con
        for f in self.files:
            inc = f"_inc_{f.sf.table}"
            read, bad = con.execute(
                f"SELECT count(*), count(_reason) FROM {inc} WHERE _file_idx = {f.idx}"
            ).fetchall()[0]
            if f.read is not None:
                read = f.read
            con.execute(
                insert_sql("ingest_files", INGEST_FILE_COLUMNS),
                [
                    ingest_id,
                    f.sf.table,
                    str(f.sf.path),
                    f.sf.size,
                    f.sha256,
                    f.sf.fmt + (".gz" if f.sf.gz else ""),
                    f.encoding,
                    f.columns_present,
                    read,
                    read - bad,
                    bad,
                ],
            )
        tot = [
            sum(getattr(c, a) for c in self.summary.tables.values())
            for a in ("read", "loaded", "quarantined", "inserted", "updated", "unchanged")
        ]
        con.execute(
            insert_sql("ingest_runs", INGEST_RUN_COLUMNS),
            [ingest_id, started, datetime.now(UTC), __version__, source, self.mapping.path, *tot],
        )
