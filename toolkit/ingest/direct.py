"""The direct first load: an empty table is not staged (Parquet, CSV and JSON Lines files alike).

The write transaction opens before phase 1 and the files are read straight into the canonical
table (bad rows are moved out to ``_inc_<table>``, the only rows kept there); duplicate keys are
found afterwards with one GROUP BY on the table and resolved as the staged path does.
A statement that fails inside the transaction aborts it in DuckDB, so a failing file raises
:class:`~toolkit.ingest.records._Fallback` and the ingest starts again staged; so does a CSV file
with malformed lines, records over several lines or over the size limits (their line numbers are
mapped on the staged rows).
"""

from __future__ import annotations

import duckdb

from toolkit.contract import TABLES, Table
from toolkit.ingest import readers as rd
from toolkit.ingest.readers import lit, q
from toolkit.ingest.records import TableCounts
from toolkit.store import SCHEMA_VERSION, ensure_schema, schema_version, table_exists


class DirectLoad:
    """The direct path of :class:`toolkit.ingest.run._Run` (see the module docstring)."""

    def begin_direct(self, files: list[rd.SourceFile]) -> bool:
        """Open the write transaction now if some table can be loaded directly; True if so.

        A table qualifies when it is empty (any file format). Its files are then
        read straight into the canonical table inside the one transaction (bad rows moved out
        to the TEMP table); the other files are staged as usual, in the same transaction.
        """
        con = self.con
        if schema_version(con) not in (None, SCHEMA_VERSION):
            return False  # migrations and refusals keep the staged order of events
        direct = {t for t in {f.table for f in files} if _table_empty(con, t)}
        if not direct:
            return False
        con.execute("BEGIN TRANSACTION")
        self.in_txn = True
        ensure_schema(con)  # in this transaction
        self.direct = direct
        return True

    def _direct_insert(
        self, table: str, sql: str, idx: int, inc: str, *, number_by_position: bool = False
    ) -> int:
        """Insert every row of the parse SELECT into the (empty) canonical table; move bad rows to ``inc``.

        A bad row is written with ``_row_hash`` NULL (``hash()`` is never NULL) and its reason, failing
        column and raw row packed in ``_ingest_id`` as a JSON array; it is then copied to ``inc`` and
        deleted. Returns rows read.

        ``number_by_position`` (a CSV file, whose SELECT gives ``_line`` NULL): the rows are inserted
        in file order (DuckDB's ``preserve_insertion_order``, which keeps a parallel read in order),
        so they take consecutive ``rowid`` s; the n-th gets line n + 1 (the header is line 1). That
        is its physical line when every record sits on one line, which
        :meth:`~toolkit.ingest.read.ReadPhase._direct_csv_done` checks afterwards.
        """
        con = self.con
        t = TABLES[table]
        cols = ", ".join(q(c) for c in t.column_names)
        if not number_by_position:  # Parquet (file_row_number) and JSON Lines (line numbers from the text)
            con.execute("SET preserve_insertion_order = false")
        try:
            n = con.execute(
                f"INSERT INTO {q(table)} ({cols}, _ingest_id, _row_hash, _source_file, _line_number) "
                f"SELECT {cols}, CASE WHEN _reason IS NULL THEN {lit(self.ingest_id)} "
                "ELSE CAST(json_array(_reason, _errcol, _raw) AS VARCHAR) END, "
                "CASE WHEN _reason IS NULL THEN _row_hash END, _source_file, _line "
                f"FROM ({sql})"
            ).fetchall()[0][0]
        finally:
            con.execute("RESET preserve_insertion_order")
        if number_by_position and n:  # this file's rows are the only ones without a line number
            con.execute(
                f"UPDATE {q(table)} SET _line_number = rowid - (SELECT min(rowid) FROM {q(table)} "
                "WHERE _line_number IS NULL) + 2 WHERE _line_number IS NULL"
            )
        bad = f"FROM {q(table)} WHERE _row_hash IS NULL"
        if con.execute(f"SELECT count(*) {bad}").fetchall()[0][0]:
            con.execute(
                f"INSERT INTO {inc} (_file_idx, _line, _reason, _errcol, _raw, _source_file) "
                f"SELECT {idx}, _line_number, json_extract_string(_ingest_id, '$[0]'), "
                "json_extract_string(_ingest_id, '$[1]'), json_extract_string(_ingest_id, '$[2]'), "
                f"_source_file {bad}"
            )
            con.execute(f"DELETE {bad}")
        return int(n)

    def _write_direct(self, t: Table, inc: str, ingest_id: str, counts: TableCounts) -> TableCounts:
        """Write phase of a table loaded directly: duplicate keys, initial_load record, quarantine."""
        con = self.con
        dup_same = self._direct_duplicates(t, inc) if t.key else 0
        counts.read = sum(f.read or 0 for f in self.files if f.sf.table == t.name)
        counts.quarantined, dup_diff = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE _dup = 'conflict') FROM {inc}"
        ).fetchall()[0]
        counts.inserted = counts.read - counts.quarantined - dup_same
        if counts.inserted:
            con.execute(
                "INSERT INTO row_changes (ingest_id, table_name, row_key, change, old_hash, new_hash) "
                "VALUES (?, ?, NULL, 'initial_load', NULL, ?)",
                [ingest_id, t.name, f"{counts.inserted} rows"],
            )
        # the table was empty: a replacing load (drug_master) deletes nothing
        self._quarantine(t.name, inc, ingest_id)
        return self._finish_counts(t.name, counts, dup_same, dup_diff)

    def _direct_duplicates(self, t: Table, inc: str) -> int:
        """Duplicate keys in a directly loaded table, as :meth:`_duplicates` decides them.

        Later rows (by file order, then line) with an already-seen key are deleted from the table;
        identical ones are counted (returned), the others are staged in ``inc`` as quarantined.
        Rows are deleted by ``rowid``, so the first occurrence of a key is never deleted, even if two
        rows share (source file, line) — e.g. one file reached under two names.
        """
        con = self.con
        key = q(t.key[0])
        table = q(t.name)
        dups = f"SELECT {key} FROM {table} GROUP BY {key} HAVING count(*) > 1"
        if not con.execute(f"SELECT count(*) FROM ({dups})").fetchall()[0][0]:
            return 0
        fidx = (
            "CASE _source_file "
            + " ".join(f"WHEN {lit(str(f.sf.path))} THEN {f.idx}" for f in self.files if f.sf.table == t.name)
            + " END"
        )
        obj = ", ".join(f"{lit(c)}, {q(c)}" for c in t.column_names)
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _dd AS
SELECT * FROM (
  SELECT _fi AS _file_idx, _line_number AS _line, _source_file, _row_hash, CAST({key} AS VARCHAR) AS k,
         CAST(json_object({obj}) AS VARCHAR) AS _raw,
         row_number() OVER w AS rn, first_value(_row_hash) OVER w AS fh, first_value(_line_number) OVER w AS fl,
         first_value(_fi) OVER w AS ff, first_value(_source_file) OVER w AS fsrc, _rid
  FROM (SELECT *, rowid AS _rid, {fidx} AS _fi FROM {table} WHERE {key} IN ({dups}))
  WINDOW w AS (PARTITION BY {key} ORDER BY _fi, _line_number, _rid)) WHERE rn > 1""")
        con.execute(f"""
INSERT INTO {inc} (_file_idx, _line, _reason, _errcol, _raw, _dup, _source_file)
SELECT _file_idx, _line, 'duplicate key ' || k || ' with different content (first at '
         || CASE WHEN ff = _file_idx THEN '' ELSE fsrc || ' ' END || 'line ' || fl || ')',
       {lit(t.key[0])}, _raw, 'conflict', _source_file
FROM _dd WHERE _row_hash <> fh""")
        same = con.execute("SELECT count(*) FROM _dd WHERE _row_hash = fh").fetchall()[0][0]
        con.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT _rid FROM _dd)")
        con.execute("DROP TABLE _dd")
        return int(same)


def _table_empty(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """True if canonical ``table`` does not exist yet or holds no rows."""
    if not table_exists(con, table):
        return True
    return con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {q(table)} LIMIT 1)").fetchall()[0][0] == 0
