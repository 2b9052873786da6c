"""Files → DuckDB canonical tables, with quarantine, idempotent upsert and ingest records.

Two phases:

1. *Read*: every file is read and checked set-based in SQL into a TEMP table per contract
   table (``_inc_<table>``): parsed contract values, the row hash, and for a row that breaks the
   contract the reason, first failing column and raw row (JSON). A file that cannot be read at
   all is refused here (one error, nothing from it kept).
2. *Write* (one ``BEGIN … COMMIT``): duplicate keys, upsert by key (DELETE + INSERT of changed
   keys), ``row_changes``, ``quarantine``, ``ingest_files`` and ``ingest_runs``. A failure or a kill
   leaves the database file as it was.

First load (direct): a table that is empty and fed only by Parquet files is not staged. The
transaction then opens before phase 1 and its files are read straight into the canonical table
(bad rows are moved out to ``_inc_<table>``, the only rows kept there); duplicate keys are found
afterwards with one GROUP BY on the table and resolved exactly as below (later rows deleted,
conflicting ones quarantined). The other tables are staged as above, in the same transaction.
A statement that fails inside a transaction aborts it in DuckDB, so a file that fails while read
there makes the ingest roll back and start again staged (phase 1 outside the transaction); it is
then refused as it would have been, and lines already printed are not printed twice.

Choices: within one ingest the first row of a key wins, later rows with other content are
quarantined (``duplicate key …``), identical ones count as unchanged. Changes are found by
comparing values (not hashes); ``access_log`` rows are identified by all their values. The
first load into an empty table writes one ``row_changes`` row (``initial_load``, new_hash =
"N rows") instead of one per row — the rows carry ``_ingest_id``. ``quarantine`` holds the
latest verdict per file: re-ingesting a file replaces its rows there (unchanged rows are kept).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from toolkit import __version__
from toolkit import readers as rd
from toolkit.contract import TABLE_ORDER, TABLES, Column, Table
from toolkit.errors import InputFileError, UserError
from toolkit.ingest_sql import check_columns, parse_select
from toolkit.mapping import Mapping, load_mapping
from toolkit.readers import lit, q
from toolkit.store import SCHEMA_VERSION, connect, ensure_schema, schema_version, table_exists

SHIPPED_DRUG_MASTER = Path(__file__).resolve().parent / "data" / "drug_master.csv"
TMP_PREFIX = "ocaudit-ingest-"


@dataclass
class TableCounts:
    """Row counts of one table in one ingest (read = loaded + quarantined)."""

    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    files: int = 0


@dataclass
class IngestSummary:
    """What one ingest did: per-table counts, refused files and warnings."""

    ingest_id: str
    db_path: str
    tables: dict[str, TableCounts] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file was refused."""
        return not self.errors


@dataclass
class _FileRec:
    sf: rd.SourceFile
    idx: int
    encoding: str | None
    columns_present: list[str]
    sha256: str = ""
    read: int | None = None  # rows read, for a file loaded directly (its bad rows alone are staged)


class _Fallback(Exception):
    """A file failed inside the direct-load transaction (which DuckDB then aborts): redo staged."""


class _Run:
    """State of one ingest (one connection, one temp folder)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, mapping: Mapping, forced: str | None,
                 out: Callable[[str], Any], summary: IngestSummary, tmpdir: Path, ingest_id: str = "") -> None:
        self.con = con
        self.ingest_id = ingest_id
        self.mapping = mapping
        self.forced = forced
        self.out = out
        self.summary = summary
        self.tmpdir = tmpdir
        self.files: list[_FileRec] = []
        self.tables: set[str] = set()
        self.refused_tables: set[str] = set()
        self.replace_tables: set[str] = set()
        self.direct: set[str] = set()  # empty tables whose Parquet files load straight into them
        self.in_txn = False

    def begin_direct(self, files: list[rd.SourceFile]) -> bool:
        """Open the write transaction now if some table can be loaded directly; True if so.

        A table qualifies when it is empty and every file for it is Parquet. Its files are then
        read straight into the canonical table inside the one transaction (bad rows moved out
        to the TEMP table); the other files are staged as usual, in the same transaction.
        """
        con = self.con
        if schema_version(con) not in (None, SCHEMA_VERSION):
            return False  # migrations and refusals keep the staged order of events
        fmts: dict[str, set[str]] = {}
        for f in files:
            fmts.setdefault(f.table, set()).add(f.fmt)
        direct = {t for t, f in fmts.items() if f == {"parquet"} and _table_empty(con, t)}
        if not direct:
            return False
        con.execute("BEGIN TRANSACTION")
        self.in_txn = True
        ensure_schema(con)  # in this transaction
        self.direct = direct
        return True

    # ---------------------------------------------------------------- phase 1: read
    def _incoming(self, table: str) -> str:
        name = f"_inc_{table}"
        if table not in self.tables:
            t = TABLES[table]
            cols = ", ".join(f"{q(c.name)} {c.duckdb_type}" for c in t.columns)
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {name} (_file_idx INTEGER, _line BIGINT, {cols}, "
                "_row_hash VARCHAR, _reason VARCHAR, _errcol VARCHAR, _raw VARCHAR, _dup VARCHAR, "
                "_source_file VARCHAR)")
            self.tables.add(table)
        return name

    def read_file(self, sf: rd.SourceFile) -> None:
        """Read one file into its table's TEMP table; refuse it (error, nothing kept) if unreadable."""
        idx = len(self.files) + 1
        inc = self._incoming(sf.table)
        try:
            rec = self._read(sf, idx, inc)
        except InputFileError as exc:
            self.con.execute(f"DELETE FROM {inc} WHERE _file_idx = {idx}")
            self.summary.errors.append(str(exc))
            self.refused_tables.add(sf.table)
            self.out(f"  REFUSED {sf.display}: {exc.detail}")
            return
        rec.sha256 = _sha256(sf.path)
        self.files.append(rec)
        read, bad = self.con.execute(
            f"SELECT count(*), count(_reason) FROM {inc} WHERE _file_idx = {idx}").fetchall()[0]
        if rec.read is not None:
            read = rec.read
        enc = f", {rec.encoding}" if rec.encoding else ""
        self.out(f"  {sf.display} → {sf.table} ({sf.fmt}{enc}): {read} read, {read - bad} loaded, "
                 f"{bad} quarantined")
        if bad:
            self._explain(sf, idx, inc)

    def _explain(self, sf: rd.SourceFile, idx: int, inc: str) -> None:
        """Print why rows were quarantined: column, expected, count, first line — never values."""
        t = TABLES[sf.table]
        for col, n, first in self.con.execute(
                f"SELECT _errcol, count(*), min(_line) FROM {inc} WHERE _file_idx = {idx} AND _reason IS NOT NULL "
                "GROUP BY _errcol ORDER BY min(_line)").fetchall():
            if col is None:
                what = ("not a JSON object" if sf.fmt == "jsonl"
                        else "malformed line (wrong number of fields, bad quoting or encoding)")
            else:
                what = f"column {col}: expected {_expected(t, t.column(col), self.mapping)}"
            where = "row" if sf.fmt == "parquet" else "line"
            at = f"{where} {first}" if n == 1 else f"first at {where} {first}"
            self.out(f"    {n} row(s) quarantined ({at}): {what}")

    def _read(self, sf: rd.SourceFile, idx: int, inc: str) -> _FileRec:
        tmap = self.mapping.table(sf.table)
        enc = None
        jl = f"_jl_{idx}"
        if sf.fmt == "parquet":
            if self.in_txn:  # an unreadable file must not abort the open transaction
                cur = self.con.cursor()
                try:
                    src_cols = rd.parquet_columns(cur, sf)
                finally:
                    cur.close()
            else:
                src_cols = rd.parquet_columns(self.con, sf)
        else:
            forced = "utf-8" if sf.path == SHIPPED_DRUG_MASTER else (self.forced or tmap.encoding)
            enc = rd.detect_encoding(sf, forced)
            path = rd.text_path(sf, enc, self.tmpdir, need_plain=sf.fmt == "jsonl")
            if sf.fmt == "csv":
                header = rd.read_header(path, sf.gz)
                _check_header(sf, header)
                src_cols = [(h, "VARCHAR") for h in header]
            else:
                keys = self._sql(sf, lambda: rd.stage_jsonl(self.con, path, jl))
                src_cols = [(k, "VARCHAR") for k in keys]
        res = check_columns(sf, [c for c, _ in src_cols], tmap)
        for w in res.warnings:
            self.summary.warnings.append(f"{sf.display}: {w}")
            self.out(f"  warning: {sf.display}: {w}")
        types = dict(src_cols)
        if sf.fmt == "parquet":
            rel, line = rd.parquet_relation(sf, res.keep), "_line"
        elif sf.fmt == "jsonl":
            rel, line = rd.jsonl_relation(jl, res.keep), "_line"
        else:
            keep_idx = [i for i, (c, _) in enumerate(src_cols) if c in set(res.keep)]
            rel, line = rd.csv_relation(path, header, keep_idx, f"_rej_{idx}"), "_rec + 1"
        sql = parse_select(TABLES[sf.table], res, types, tmap, rel, line, idx, str(sf.path))
        if sf.table in self.direct:
            n = self._sql(sf, lambda: self._direct_insert(sf.table, sql, idx, inc))
            return _FileRec(sf=sf, idx=idx, encoding=enc, columns_present=res.present, read=n)
        self._sql(sf, lambda: self.con.execute(f"INSERT INTO {inc} {sql}"))
        if sf.fmt == "csv":
            self._csv_rejects(sf, idx, inc, path, f"_rej_{idx}")
        elif sf.fmt == "jsonl":
            self.con.execute(
                f"INSERT INTO {inc} (_file_idx, _line, _reason, _raw, _source_file) SELECT {idx}, _line, "
                "'line is not a JSON object (broken or truncated JSON)', "
                "CAST(json_object('_json_line', left(_txt, 10000)) AS VARCHAR), "
                f"{lit(str(sf.path))} FROM {jl} WHERE NOT _ok")
            self.con.execute(f"DROP TABLE IF EXISTS {jl}")
        if sf.fmt != "parquet" and path != sf.path:
            path.unlink(missing_ok=True)  # the transcoded copy is not needed any more
        return _FileRec(sf=sf, idx=idx, encoding=enc, columns_present=res.present)

    def _direct_insert(self, table: str, sql: str, idx: int, inc: str) -> int:
        """Insert every row of the parse SELECT into the (empty) canonical table; move bad rows to ``inc``.

        A bad row is written with ``_ingest_id`` NULL and its reason, failing column and raw row packed
        in ``_row_hash`` as a JSON array; it is then copied to ``inc`` and deleted. Returns rows read.
        """
        con = self.con
        t = TABLES[table]
        cols = ", ".join(q(c) for c in t.column_names)
        con.execute("SET preserve_insertion_order = false")  # only Parquet (file_row_number) here
        try:
            n = con.execute(
                f"INSERT INTO {q(table)} ({cols}, _ingest_id, _row_hash, _source_file, _line_number) "
                f"SELECT {cols}, CASE WHEN _reason IS NULL THEN {lit(self.ingest_id)} END, "
                "CASE WHEN _reason IS NULL THEN _row_hash "
                "ELSE CAST(json_array(_reason, _errcol, _raw) AS VARCHAR) END, _source_file, _line "
                f"FROM ({sql})").fetchall()[0][0]
        finally:
            con.execute("RESET preserve_insertion_order")
        bad = f"FROM {q(table)} WHERE _ingest_id IS NULL"
        if con.execute(f"SELECT count(*) {bad}").fetchall()[0][0]:
            con.execute(f"INSERT INTO {inc} (_file_idx, _line, _reason, _errcol, _raw, _source_file) "
                        f"SELECT {idx}, _line_number, json_extract_string(_row_hash, '$[0]'), "
                        "json_extract_string(_row_hash, '$[1]'), json_extract_string(_row_hash, '$[2]'), "
                        f"_source_file {bad}")
            con.execute(f"DELETE {bad}")
        return int(n)

    def _sql(self, sf: rd.SourceFile, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except duckdb.Error as exc:
            if self.in_txn:
                raise _Fallback(str(sf.path)) from exc
            msg = str(exc).splitlines()[0][:240]
            raise InputFileError(str(sf.path), f"cannot be read as {sf.fmt.upper()} ({msg})") from None

    def _csv_rejects(self, sf: rd.SourceFile, idx: int, inc: str, path: Path, rej: str) -> None:
        """Quarantine malformed CSV lines and set physical line numbers of the good rows."""
        rejects = self.con.execute(
            f"SELECT line, string_agg(DISTINCT error_type, ', '), min(error_message), min(csv_line) "
            f"FROM {rej} GROUP BY line ORDER BY line").fetchall()
        self.con.execute(f"DROP TABLE IF EXISTS {rej}")
        self.con.execute(f"DROP TABLE IF EXISTS {rej}_scan")
        n_good = self.con.execute(f"SELECT count(*) FROM {inc} WHERE _file_idx = {idx}").fetchall()[0][0]
        n_phys = rd.count_lines(path, sf.gz)
        if n_phys != 1 + n_good + len(rejects):
            starts = [s for s in rd.record_start_lines(path, sf.gz) if s not in {r[0] for r in rejects}]
            if len(starts) != n_good:
                self.summary.warnings.append(f"{sf.display}: line numbers may be approximate")
            starts = (starts + [None] * n_good)[:n_good]
            lm = pa.table({"rec": pa.array(range(1, n_good + 1), pa.int64()), "line": pa.array(starts, pa.int64())})
            self.con.register("_lm_arrow", lm)
            self.con.execute(f"UPDATE {inc} SET _line = coalesce(m.line, {inc}._line) FROM _lm_arrow m "
                             f"WHERE {inc}._file_idx = {idx} AND {inc}._line = m.rec + 1")
            self.con.unregister("_lm_arrow")
        elif rejects:
            # good record k sits on line k + 1 + (number of rejected lines before it)
            gs = [line - 2 - j for j, (line, *_rest) in enumerate(rejects)]
            self.con.execute("CREATE OR REPLACE TEMP TABLE _rej_g (g BIGINT)")
            self.con.executemany("INSERT INTO _rej_g VALUES (?)", [[g] for g in gs])
            self.con.execute(
                f"UPDATE {inc} SET _line = {inc}._line + x.n FROM (SELECT i._line AS l, "
                f"(SELECT count(*) FROM _rej_g WHERE g < i._line - 1) AS n FROM {inc} i "
                f"WHERE i._file_idx = {idx}) x WHERE {inc}._file_idx = {idx} AND {inc}._line = x.l AND x.n > 0")
        if rejects:
            self.con.executemany(
                f"INSERT INTO {inc} (_file_idx, _line, _reason, _raw, _source_file) VALUES (?, ?, ?, ?, ?)",
                [[idx, line, f"malformed CSV line ({etype.lower()}): {msg}", _json_str(raw), str(sf.path)]
                 for line, etype, msg, raw in rejects])

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
            for table in TABLE_ORDER:
                if table in self.tables:
                    self.summary.tables[table] = self._write_table(table, ingest_id)
            self._write_records(ingest_id, source, started)
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # a failed COMMIT (disk full) already ended it
                con.execute("ROLLBACK")
            raise
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
        ins = (f'INSERT INTO {q(table)} ({cols}, _ingest_id, _row_hash, _source_file, _line_number) '
               f"SELECT {', '.join('c.' + q(c) for c in t.column_names)}, {lit(ingest_id)}, c._row_hash, "
               f"c._source_file, c._line FROM {inc} c")
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
                con.execute("INSERT INTO row_changes VALUES (?, ?, NULL, 'initial_load', NULL, ?)",
                            [ingest_id, table, f"{counts.inserted} rows"])
        else:
            # compare values, not hashes: the result does not depend on DuckDB's hash() staying the same
            differs = "x._row_hash IS NULL OR " + " OR ".join(
                f"x.{q(c)} IS DISTINCT FROM c.{q(c)}" for c in t.column_names)
            same_values = " AND ".join(f"x.{q(c)} IS NOT DISTINCT FROM c.{q(c)}" for c in t.column_names)
            con.execute("CREATE OR REPLACE TEMP TABLE _chg (_file_idx INTEGER, _line BIGINT, k VARCHAR, "
                        "old_hash VARCHAR, new_hash VARCHAR)")
            if key:
                con.execute(f"INSERT INTO _chg SELECT c._file_idx, c._line, CAST(c.{key} AS VARCHAR), x._row_hash, "
                            f"c._row_hash {cand.replace('WHERE', f'LEFT JOIN {q(table)} x ON x.{key} = c.{key} WHERE')} "
                            f"AND ({differs})")
                con.execute(f"DELETE FROM {q(table)} WHERE {key} IN (SELECT k FROM _chg WHERE old_hash IS NOT NULL)")
            else:
                con.execute(f"INSERT INTO _chg SELECT c._file_idx, c._line, c._row_hash, NULL, c._row_hash {cand} "
                            f"AND NOT EXISTS (SELECT 1 FROM {q(table)} x WHERE {same_values})")
            con.execute(f"{ins} SEMI JOIN _chg g ON c._file_idx = g._file_idx AND c._line = g._line")
            con.execute(f"INSERT INTO row_changes SELECT {lit(ingest_id)}, {lit(table)}, k, "
                        "CASE WHEN old_hash IS NULL THEN 'inserted' ELSE 'updated' END, old_hash, new_hash FROM _chg")
            counts.inserted, counts.updated = con.execute(
                "SELECT count(*) FILTER (WHERE old_hash IS NULL), count(old_hash) FROM _chg").fetchall()[0]
        if key and table in self.replace_tables and table not in self.refused_tables:
            gone = (f"FROM {q(table)} WHERE {key} NOT IN (SELECT {key} FROM {inc} WHERE _reason IS NULL "
                    f"AND {key} IS NOT NULL)")
            counts.deleted = con.execute(f"SELECT count(*) {gone}").fetchall()[0][0]
            con.execute(f"INSERT INTO row_changes SELECT {lit(ingest_id)}, {lit(table)}, CAST({key} AS VARCHAR), "
                        f"'deleted', _row_hash, NULL {gone}")
            con.execute(f"DELETE {gone}")
        self._quarantine(table, inc, ingest_id)
        counts.read, counts.quarantined, dup_same, dup_diff = con.execute(
            f"SELECT count(*), count(_reason), count(*) FILTER (WHERE _dup = 'identical'), "
            f"count(*) FILTER (WHERE _dup = 'conflict') FROM {inc}").fetchall()[0]
        return self._finish_counts(table, counts, dup_same, dup_diff)

    def _write_direct(self, t: Table, inc: str, ingest_id: str, counts: TableCounts) -> TableCounts:
        """Write phase of a table loaded directly: duplicate keys, initial_load record, quarantine."""
        con = self.con
        dup_same = self._direct_duplicates(t, inc) if t.key else 0
        counts.read = sum(f.read or 0 for f in self.files if f.sf.table == t.name)
        counts.quarantined, dup_diff = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE _dup = 'conflict') FROM {inc}").fetchall()[0]
        counts.inserted = counts.read - counts.quarantined - dup_same
        if counts.inserted:
            con.execute("INSERT INTO row_changes VALUES (?, ?, NULL, 'initial_load', NULL, ?)",
                        [ingest_id, t.name, f"{counts.inserted} rows"])
        # the table was empty: a replacing load (drug_master) deletes nothing
        self._quarantine(t.name, inc, ingest_id)
        return self._finish_counts(t.name, counts, dup_same, dup_diff)

    def _direct_duplicates(self, t: Table, inc: str) -> int:
        """Duplicate keys in a directly loaded table, as :meth:`_duplicates` decides them.

        Later rows (by file order, then line) with an already-seen key are deleted from the table;
        identical ones are counted (returned), the others are staged in ``inc`` as quarantined.
        """
        con = self.con
        key = q(t.key[0])
        table = q(t.name)
        dups = f"SELECT {key} FROM {table} GROUP BY {key} HAVING count(*) > 1"
        if not con.execute(f"SELECT count(*) FROM ({dups})").fetchall()[0][0]:
            return 0
        fidx = "CASE _source_file " + " ".join(
            f"WHEN {lit(str(f.sf.path))} THEN {f.idx}" for f in self.files if f.sf.table == t.name) + " END"
        obj = ", ".join(f"{lit(c)}, {q(c)}" for c in t.column_names)
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _dd AS
SELECT * FROM (
  SELECT _fi AS _file_idx, _line_number AS _line, _source_file, _row_hash, CAST({key} AS VARCHAR) AS k,
         CAST(json_object({obj}) AS VARCHAR) AS _raw,
         row_number() OVER w AS rn, first_value(_row_hash) OVER w AS fh, first_value(_line_number) OVER w AS fl,
         first_value(_fi) OVER w AS ff, first_value(_source_file) OVER w AS fsrc
  FROM (SELECT *, {fidx} AS _fi FROM {table} WHERE {key} IN ({dups}))
  WINDOW w AS (PARTITION BY {key} ORDER BY _fi, _line_number)) WHERE rn > 1""")
        con.execute(f"""
INSERT INTO {inc} (_file_idx, _line, _reason, _errcol, _raw, _dup, _source_file)
SELECT _file_idx, _line, 'duplicate key ' || k || ' with different content (first at '
         || CASE WHEN ff = _file_idx THEN '' ELSE fsrc || ' ' END || 'line ' || fl || ')',
       {lit(t.key[0])}, _raw, 'conflict', _source_file
FROM _dd WHERE _row_hash <> fh""")
        same = con.execute("SELECT count(*) FROM _dd WHERE _row_hash = fh").fetchall()[0][0]
        con.execute(f"DELETE FROM {table} USING _dd d WHERE {table}._source_file = d._source_file "
                    f"AND {table}._line_number = d._line")
        con.execute("DROP TABLE _dd")
        return int(same)

    def _quarantine(self, table: str, inc: str, ingest_id: str) -> None:
        """Replace the quarantine verdict of this table's files (unchanged rows are kept)."""
        con = self.con
        paths = [str(f.sf.path) for f in self.files if f.sf.table == table]
        same = ("i._source_file = z.source_file AND i._line IS NOT DISTINCT FROM z.line_number "
                "AND i._reason = z.reason AND i._raw IS NOT DISTINCT FROM z.raw_row")
        # quarantine holds the latest verdict per file; an unchanged verdict keeps its rows (idempotent)
        con.execute(f"DELETE FROM quarantine z WHERE table_name = ? AND list_contains(?, source_file) AND NOT EXISTS "
                    f"(SELECT 1 FROM {inc} i WHERE i._reason IS NOT NULL AND {same})", [table, paths])
        con.execute(f"INSERT INTO quarantine SELECT {lit(ingest_id)}, {lit(table)}, _source_file, _line, _errcol, "
                    f"_reason, _raw FROM {inc} i WHERE _reason IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                    f"quarantine z WHERE z.table_name = {lit(table)} AND {same}) ORDER BY _file_idx, _line")

    def _finish_counts(self, table: str, counts: TableCounts, dup_same: int, dup_diff: int) -> TableCounts:
        """Loaded / unchanged from the other counts; print the duplicate-key notes."""
        if dup_diff:
            self.out(f"  {table}: {dup_diff} row(s) with an already-seen key and different content quarantined "
                     "(the first occurrence is loaded)")
        counts.loaded = counts.read - counts.quarantined
        counts.unchanged = counts.loaded - counts.inserted - counts.updated
        if dup_same:
            self.out(f"  note: {table}: {dup_same} identical duplicate row(s) (same key, same content) "
                     "loaded once, counted as unchanged")
        return counts

    def _duplicates(self, t: Table, inc: str) -> None:
        """Later rows with an already-seen key: identical → ``_dup='identical'``; else quarantined."""
        con = self.con
        key = q(t.key[0])
        n = con.execute(f"SELECT count(*) FROM (SELECT {key} FROM {inc} WHERE _reason IS NULL "
                        f"GROUP BY {key} HAVING count(*) > 1)").fetchall()[0][0]
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
                f"SELECT count(*), count(_reason) FROM {inc} WHERE _file_idx = {f.idx}").fetchall()[0]
            if f.read is not None:
                read = f.read
            con.execute("INSERT INTO ingest_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [ingest_id, f.sf.table, str(f.sf.path), f.sf.size, f.sha256,
                         f.sf.fmt + (".gz" if f.sf.gz else ""), f.encoding, f.columns_present,
                         read, read - bad, bad])
        tot = [sum(getattr(c, a) for c in self.summary.tables.values())
               for a in ("read", "loaded", "quarantined", "inserted", "updated", "unchanged")]
        con.execute("INSERT INTO ingest_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [ingest_id, started, datetime.now(UTC), __version__, source, self.mapping.path, *tot])


def _json_str(text: str | None) -> str:
    return json.dumps({"_csv_line": (text or "")[:10000]}, ensure_ascii=False)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_header(sf: rd.SourceFile, header: list[str]) -> None:
    if not header or all(not h for h in header):
        raise InputFileError(str(sf.path), f"no header line; expected a header naming the {sf.table} columns")
    for i, h in enumerate(header):
        if not h:  # e.g. a trailing comma in an Excel export: an extra column, ignored with a warning
            header[i] = f"(unnamed column {i + 1})"
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputFileError(str(sf.path), f"duplicate column names in the header: {', '.join(dup)}; "
                             "expected each column once")


def _expected(t: Table, c: Column, mapping: Mapping) -> str:
    m = mapping.table(t.name)
    if c.key or (t.name == "access_log" and c.name == "session_id"):
        base = "a non-empty key"
        if c.type == "str":
            return base
    else:
        base = ""
    what = {
        "bool": "a boolean (true/false, 1/0, yes/no, はい/いいえ, 有/無)",
        "int": "an integer",
        "decimal": "a number",
        "date": f"a date ({m.date_format or 'YYYY-MM-DD'})",
        "timestamptz": f"a timestamp ({m.timestamp_format or 'ISO 8601, e.g. 2024-04-01T09:30:00+09:00'})",
        "enum": "one of " + ", ".join(c.enum),
        "str": "text",
    }[c.type]
    return f"{base}, {what}" if base else what


def _print_table(summary: IngestSummary, out: Callable[[str], Any]) -> None:
    hdr = f"{'table':<14}{'read':>10}{'loaded':>10}{'quarant.':>10}{'inserted':>10}{'updated':>10}{'unchanged':>10}"
    out(hdr)
    for name in TABLE_ORDER:
        c = summary.tables.get(name)
        if c is None:
            continue
        out(f"{name:<14}{c.read:>10}{c.loaded:>10}{c.quarantined:>10}{c.inserted:>10}{c.updated:>10}"
            f"{c.unchanged:>10}" + (f"  ({c.deleted} deleted)" if c.deleted else ""))


def ingest_source(db_path: str | Path, source: str | Path, mapping_path: str | Path | None = None,
                  encoding: str | None = None, *, out: Callable[[str], Any] = print) -> IngestSummary:
    """Ingest every contract table found in ``source`` into the DuckDB file ``db_path``.

    Rows breaking the contract go to ``quarantine``; files that cannot be read are refused
    (listed in ``IngestSummary.errors``) while the others load. Raises UserError for usage
    problems (missing SOURCE, bad mapping or encoding, no data files).
    """
    src = Path(source)
    if not src.exists():
        raise UserError(f"{src}: SOURCE not found; expected a folder or a file holding contract tables")
    try:
        forced = rd.normalise_encoding(encoding)
    except ValueError as exc:
        raise UserError(f"--encoding: {exc}") from None
    mapping = load_mapping(mapping_path)
    found = rd.discover(src, mapping.globs())
    if not found.files and not found.errors:
        raise UserError(f"{src}: no data files found; expected files named after contract tables "
                        f"({', '.join(TABLE_ORDER)}) in {rd.ACCEPTED}")
    started = datetime.now(UTC)
    ingest_id = f"ingest-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    summary = IngestSummary(ingest_id=ingest_id, db_path=str(db_path))
    out(f"ingest {ingest_id}: {src} → {db_path}")
    for note in found.notes:
        out(f"  note: {note}")
    for err in found.errors:
        summary.errors.append(str(err))
        out(f"  REFUSED {err}")
    t0 = time.monotonic()
    con = connect(db_path, wait_seconds=30)
    _remove_stale_tmpdirs()
    tmpdir = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
    try:
        con.execute("SET TimeZone = 'Asia/Tokyo'")
        con.execute(f"SET temp_directory = {lit(str(tmpdir / 'duckdb_tmp'))}")
        errors = list(summary.errors)
        printed: list[str] = []

        def record(line: str) -> None:
            printed.append(line)
            out(line)

        try:
            _ingest_once(con, mapping, forced, record, summary, tmpdir, found, ingest_id, src, started,
                         direct=True)
        except _Fallback:
            # a file failed while read inside the direct-load transaction: nothing was written;
            # redo everything staged (that file is then refused), not repeating lines already shown
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            summary.errors[:] = errors
            summary.warnings.clear()
            summary.tables.clear()
            _ingest_once(con, mapping, forced, _skip_repeated(out, printed), summary, tmpdir, found, ingest_id,
                         src, started, direct=False)
    finally:
        con.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    _print_table(summary, out)
    out(f"database: {db_path}  ({time.monotonic() - t0:.1f} s)")
    if summary.errors:
        out(f"{len(summary.errors)} file(s) refused; the other files were loaded.")
    return summary


def _ingest_once(con: duckdb.DuckDBPyConnection, mapping: Mapping, forced: str | None, out: Callable[[str], Any],
                 summary: IngestSummary, tmpdir: Path, found: rd.Discovery, ingest_id: str, src: Path,
                 started: datetime, *, direct: bool) -> None:
    """Read every file and write the result (phases 1 and 2); ``direct``: allow direct loads."""
    run = _Run(con, mapping, forced, out, summary, tmpdir, ingest_id)
    order = {t: i for i, t in enumerate(TABLE_ORDER)}
    files = sorted(found.files, key=lambda f: (order[f.table], f.display))
    try:
        if direct:
            run.begin_direct(files)
        for sf in files:
            run.read_file(sf)
        if any(f.table == "drug_master" for f in found.files):
            run.replace_tables.add("drug_master")
        elif _drug_master_empty(con):
            sf = rd.SourceFile(path=SHIPPED_DRUG_MASTER, table="drug_master", fmt="csv", gz=False,
                               display="(shipped) toolkit/data/drug_master.csv")
            run.read_file(sf)
    except BaseException:
        if run.in_txn:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
        raise
    run.write(ingest_id, str(src.resolve()), started)


def _skip_repeated(out: Callable[[str], Any], shown: list[str]) -> Callable[[str], Any]:
    """``out`` that drops the lines of ``shown`` while they come again in the same order."""
    pos = 0

    def emit(line: str) -> None:
        nonlocal pos
        if pos < len(shown) and shown[pos] == line:
            pos += 1
            return
        pos = len(shown)  # the first new line ends the repetition
        out(line)

    return emit


def _table_empty(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """True if canonical ``table`` does not exist yet or holds no rows."""
    if not table_exists(con, table):
        return True
    return con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {q(table)} LIMIT 1)").fetchall()[0][0] == 0


def _remove_stale_tmpdirs() -> None:
    """Remove temp folders (transcoded copies, spill files) left by killed ingests."""
    for d in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*-*"):
        pid = d.name[len(TMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _drug_master_empty(con: duckdb.DuckDBPyConnection) -> bool:
    if not SHIPPED_DRUG_MASTER.exists():
        return False
    if not table_exists(con, "drug_master"):
        return True
    return con.execute("SELECT count(*) FROM drug_master").fetchall()[0][0] == 0


def available_columns(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Contract columns the ingested data has, per table.

    For each contract table: the union of ``ingest_files.columns_present`` over every file ever
    ingested into it (the shipped drug master included). Tables never ingested are absent.
    """
    if not table_exists(con, "ingest_files"):
        return {}
    out: dict[str, set[str]] = {}
    for table, cols in con.execute(
            "SELECT table_name, flatten(list(columns_present)) FROM ingest_files GROUP BY table_name").fetchall():
        if table in TABLES:
            out[table] = set(cols or [])
    return out


def cli_ingest(args: Any) -> int:
    """``ocaudit ingest``: 0 when every file loaded, 2 when a file was refused."""
    summary = ingest_source(args.db, args.source, getattr(args, "mapping", None), getattr(args, "encoding", None))
    if summary.errors:
        for e in summary.errors:
            print(f"ocaudit: error: {e}", file=sys.stderr)
        return 2
    return 0
