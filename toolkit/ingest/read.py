"""Phase 1 of an ingest: read each file, set-based in SQL, into a TEMP table per contract table.

Parsed contract values, the row hash, and for a row that breaks the contract the reason, first
failing column and raw row (JSON) go to ``_inc_<table>``. A file that cannot be read at all is
refused (one error, nothing from it kept). Files of a table loaded directly
(:mod:`toolkit.ingest.direct`) go straight into the canonical table instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from toolkit.contract import TABLES, Column, Table
from toolkit.errors import InputFileError
from toolkit.ingest import readers as rd
from toolkit.ingest import suggest
from toolkit.ingest.mapping import Mapping
from toolkit.ingest.parse import check_columns, parse_select
from toolkit.ingest.readers import lit, q
from toolkit.ingest.records import SHIPPED_DRUG_MASTER, _Fallback, _FileRec


class ReadPhase:
    """Phase 1 of :class:`toolkit.ingest.run._Run`: files → TEMP tables (or the canonical table, direct)."""

    # ---------------------------------------------------------------- phase 1: read
    def _incoming(self, table: str) -> str:
        name = f"_inc_{table}"
        if table not in self.tables:
            t = TABLES[table]
            cols = ", ".join(f"{q(c.name)} {c.duckdb_type}" for c in t.columns)
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {name} (_file_idx INTEGER, _line BIGINT, {cols}, "
                "_row_hash UBIGINT, _reason VARCHAR, _errcol VARCHAR, _raw VARCHAR, _dup VARCHAR, "
                "_source_file VARCHAR)"
            )
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
            f"SELECT count(*), count(_reason) FROM {inc} WHERE _file_idx = {idx}"
        ).fetchall()[0]
        if rec.read is not None:
            read = rec.read
        enc = f", {rec.encoding}" if rec.encoding else ""
        self.out(
            f"  {sf.display} → {sf.table} ({sf.fmt}{enc}): {read} read, {read - bad} loaded, "
            f"{bad} quarantined"
        )
        if bad:
            self._explain(sf, idx, inc)
            self._encoding_hint(sf, idx, inc, read)

    def _encoding_hint(self, sf: rd.SourceFile, idx: int, inc: str, read: int) -> None:
        """Malformed CSV lines under a forced encoding: name the encoding that decodes the file."""
        tmap = self.mapping.table(sf.table)
        forced = self.forced or tmap.encoding
        if sf.fmt != "csv" or not forced or sf.path == SHIPPED_DRUG_MASTER:
            return
        malformed = self.con.execute(
            f"SELECT count(*) FROM {inc} WHERE _file_idx = {idx} AND starts_with(_reason, 'malformed CSV line')"
        ).fetchall()[0][0]
        source = "--encoding" if self.forced else "the mapping's encoding:"
        hint = suggest.encoding_hint(sf, forced, source, malformed, read) if malformed else ""
        if hint:
            self.summary.warnings.append(hint)
            self.out(f"  hint: {hint}")

    def _explain(self, sf: rd.SourceFile, idx: int, inc: str) -> None:
        """Print why rows were quarantined: column, expected, count, first line — never values."""
        t = TABLES[sf.table]
        big = lit(rd.OVERSIZE_REASON)
        for col, huge, n, first in self.con.execute(
            f"SELECT _errcol, starts_with(_reason, {big}) AS huge, count(*), min(_line) FROM {inc} "
            f"WHERE _file_idx = {idx} AND _reason IS NOT NULL GROUP BY _errcol, huge ORDER BY min(_line), _errcol NULLS FIRST, huge"
        ).fetchall():
            if huge:
                what = (
                    f"record over the size limit (a field over {rd.MAX_FIELD_BYTES} bytes = 1 MiB, or a "
                    f"record over {rd.MAX_RECORD_BYTES} bytes = 8 MiB); not read"
                    + (f" (column {col})" if col else "")
                )
            elif col is None:
                what = (
                    "not a JSON object"
                    if sf.fmt == "jsonl"
                    else "malformed line (wrong number of fields, bad quoting or encoding)"
                )
            else:
                what = f"column {col}: expected {_expected(t, t.column(col), self.mapping)}"
            where = "row" if sf.fmt == "parquet" else "line"
            at = f"{where} {first}" if n == 1 else f"first at {where} {first}"
            self.out(f"    {n} row(s) quarantined ({at}): {what}")

    def _read(self, sf: rd.SourceFile, idx: int, inc: str) -> _FileRec:
        tmap = self.mapping.table(sf.table)
        enc = None
        jl = f"_jl_{idx}"
        oversize: list[rd.Oversize] = []  # records over the size limits, blanked out of the text
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
            path, n_phys, oversize = self._fit(sf, idx, path)
            if sf.fmt == "csv":
                header = rd.read_header(path, sf.gz)
                _check_header(sf, header)
                src_cols = [(h, "VARCHAR") for h in header]
            else:
                keys = self._sql(sf, lambda: rd.stage_jsonl(self.con, path, jl, self.tmpdir))
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
            if sf.table in self.direct:  # numbered by position in the table (see _direct_insert)
                rel = rd.csv_relation(path, header, keep_idx, f"_rej_{idx}", numbered=False)
                line = "CAST(NULL AS BIGINT)"
            else:
                rel, line = rd.csv_relation(path, header, keep_idx, f"_rej_{idx}"), "_rec + 1"
        sql = parse_select(TABLES[sf.table], res, types, tmap, rel, line, idx, str(sf.path))
        if sf.table in self.direct:
            if sf.fmt == "csv" and oversize:
                raise _Fallback(str(sf.path))  # records blanked out of a copy: the staged path reads it
            by_position = sf.fmt == "csv"
            n = self._sql(
                sf, lambda: self._direct_insert(sf.table, sql, idx, inc, number_by_position=by_position)
            )
            if sf.fmt == "csv":
                self._direct_csv_done(sf, f"_rej_{idx}", n, n_phys)
            elif sf.fmt == "jsonl":
                n += self._jsonl_broken(sf, idx, inc, jl, res.only_contract_columns)
                if oversize:
                    self._quarantine_oversize(sf, idx, inc, oversize, [], res)
                    n += len(oversize)
            if sf.fmt != "parquet" and path != sf.path:
                path.unlink(missing_ok=True)
            return _FileRec(sf=sf, idx=idx, encoding=enc, columns_present=res.present, read=n)
        self._sql(sf, lambda: self.con.execute(f"INSERT INTO {inc} {sql}"))
        if sf.fmt == "csv" and not self._csv_rejects(
            sf, idx, inc, path, f"_rej_{idx}", n_phys, True, keep_raw=res.only_contract_columns
        ):
            # the line mapping met a field over the limit that the line scan cannot see (a quoted value
            # spanning many short lines): blank such records out of a copy and read that instead
            self.con.execute(f"DELETE FROM {inc} WHERE _file_idx = {idx}")
            path, oversize = self._blank(sf, idx, path, rd.find_oversize(path, sf.gz, "csv"))
            rel = rd.csv_relation(path, header, keep_idx, f"_rej_{idx}")
            sql = parse_select(TABLES[sf.table], res, types, tmap, rel, line, idx, str(sf.path))
            self._sql(sf, lambda: self.con.execute(f"INSERT INTO {inc} {sql}"))
            self._csv_rejects(
                sf, idx, inc, path, f"_rej_{idx}", n_phys, False, keep_raw=res.only_contract_columns
            )
        elif sf.fmt == "jsonl":
            self._jsonl_broken(sf, idx, inc, jl, res.only_contract_columns)
        if oversize:
            self._quarantine_oversize(sf, idx, inc, oversize, header if sf.fmt == "csv" else [], res)
        if sf.fmt != "parquet" and path != sf.path:
            path.unlink(missing_ok=True)  # the transcoded copy is not needed any more
        return _FileRec(sf=sf, idx=idx, encoding=enc, columns_present=res.present)

    def _jsonl_broken(self, sf: rd.SourceFile, idx: int, inc: str, jl: str, keep_raw: bool) -> int:
        """Quarantine the lines of a JSON Lines file that are not JSON objects; how many."""
        raw = (  # a broken line of a file with keys outside the contract is not kept
            "CAST(json_object('_json_line', left(_txt, 10000)) AS VARCHAR)" if keep_raw else lit(_RAW_OMITTED)
        )
        n = self.con.execute(
            f"INSERT INTO {inc} (_file_idx, _line, _reason, _raw, _source_file) SELECT {idx}, _line, "
            f"'line is not a JSON object (broken or truncated JSON)', {raw}, "
            f"{lit(str(sf.path))} FROM {jl} WHERE NOT _ok"
        ).fetchall()[0][0]
        self.con.execute(f"DROP TABLE IF EXISTS {jl}")
        return int(n)

    def _direct_csv_done(self, sf: rd.SourceFile, rej: str, n: int, n_phys: int) -> None:
        """After a CSV file was read straight into its table: done if every record was well formed and
        sat on one line (its line number is then its record number + 1, as the staged path finds);
        else raise :class:`_Fallback`: malformed lines and multi-line records take the staged path."""
        rejects = self.con.execute(f"SELECT count(*) FROM {rej}").fetchall()[0][0]
        if rejects or n_phys != 1 + n:
            raise _Fallback(str(sf.path))
        self.con.execute(f"DROP TABLE IF EXISTS {rej}")
        self.con.execute(f"DROP TABLE IF EXISTS {rej}_scan")

    def _fit(self, sf: rd.SourceFile, idx: int, path: Path) -> tuple[Path, int, list[rd.Oversize]]:
        """(text path to read, physical lines, records over the size limits) of a CSV/JSONL file.

        One byte pass counts the lines and flags a possibly oversized record; only then is the file
        streamed again to find those records, which are blanked out in a copy (same line numbers)
        that DuckDB reads instead. An oversized header refuses the file.
        """
        scan = rd.scan_text(path, sf.gz)
        if not scan.suspicious:
            return path, scan.lines, []
        path, oversize = self._blank(sf, idx, path, rd.find_oversize(path, sf.gz, sf.fmt))
        return path, scan.lines, oversize

    def _blank(
        self, sf: rd.SourceFile, idx: int, path: Path, oversize: list[rd.Oversize]
    ) -> tuple[Path, list[rd.Oversize]]:
        """A copy of ``path`` with the ``oversize`` records blanked out (or ``path`` if there are none)."""
        if not oversize:
            return path, oversize
        if sf.fmt == "csv" and oversize[0].line == 1:
            raise InputFileError(
                str(sf.path),
                f"the header line is longer than the limit ({oversize[0].reason(None)}); expected a "
                "header naming the columns",
            )
        dest = self.tmpdir / f"{idx}_{sf.path.name}.fit"
        rd.blank_out(path, sf.gz, oversize, dest)
        if path != sf.path:
            path.unlink(missing_ok=True)
        return dest, oversize

    def _quarantine_oversize(
        self,
        sf: rd.SourceFile,
        idx: int,
        inc: str,
        oversize: list[rd.Oversize],
        header: list[str],
        res: Any,
    ) -> None:
        """Quarantine the records over the size limits by line (their first bytes kept as the raw row)."""
        contract_of = {src: c for c, src in res.src_for.items()}
        key = "_csv_line" if sf.fmt == "csv" else "_json_line"
        rows = []
        for o in oversize:
            src = header[o.column] if o.column < len(header) and o.size > rd.MAX_FIELD_BYTES else None
            rows.append(
                [
                    idx,
                    o.line,
                    o.reason(src),
                    contract_of.get(src) if src else None,
                    json.dumps({key: o.prefix.decode("utf-8", "replace") + "…"}, ensure_ascii=False),
                    str(sf.path),
                ]
            )
        self.con.executemany(
            f"INSERT INTO {inc} (_file_idx, _line, _reason, _errcol, _raw, _source_file) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def _sql(self, sf: rd.SourceFile, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except duckdb.Error as exc:
            if self.in_txn:
                raise _Fallback(str(sf.path)) from exc
            msg = str(exc).splitlines()[0][:240]
            raise InputFileError(str(sf.path), f"cannot be read as {sf.fmt.upper()} ({msg})") from None

    def _csv_rejects(
        self,
        sf: rd.SourceFile,
        idx: int,
        inc: str,
        path: Path,
        rej: str,
        n_phys: int,
        may_retry: bool,
        *,
        keep_raw: bool = True,
    ) -> bool:
        """Quarantine malformed CSV lines and set physical line numbers of the good rows.

        ``n_phys``: physical lines of the file. Returns False (having changed nothing) if ``may_retry``
        and the line mapping met a field over the size limit: the caller blanks and reads again.
        ``keep_raw`` False (the header has a column outside the contract, e.g. one the mapping
        drops): the raw line text is not stored, since it holds that column's value too.
        """
        rejects = self.con.execute(
            f"SELECT line, string_agg(DISTINCT error_type, ', '), min(error_message), min(csv_line), "
            f"min(byte_position) FROM {rej} GROUP BY line ORDER BY line"
        ).fetchall()
        same_bytes = path == sf.path and not sf.gz  # byte offsets are the file's own
        rejects = [
            (line, etype, msg + rd.bad_utf8_at(path, pos), raw)
            if same_bytes and pos is not None and "ENCODING" in etype.upper()
            else (line, etype, msg, raw)
            for line, etype, msg, raw, pos in rejects
        ]
        self.con.execute(f"DROP TABLE IF EXISTS {rej}")
        self.con.execute(f"DROP TABLE IF EXISTS {rej}_scan")
        n_good = self.con.execute(f"SELECT count(*) FROM {inc} WHERE _file_idx = {idx}").fetchall()[0][0]
        if n_phys != 1 + n_good + len(rejects):
            rejected = {r[0] for r in rejects}
            try:
                starts = [s for s in rd.record_start_lines(path, sf.gz) if s not in rejected]
            except rd.FieldTooLarge:
                if may_retry:
                    return False
                starts = []
            if len(starts) != n_good:
                self.summary.warnings.append(f"{sf.display}: line numbers may be approximate")
            starts = (starts + [None] * n_good)[:n_good]
            lm = pa.table(
                {"rec": pa.array(range(1, n_good + 1), pa.int64()), "line": pa.array(starts, pa.int64())}
            )
            self.con.register("_lm_arrow", lm)
            self.con.execute(
                f"UPDATE {inc} SET _line = coalesce(m.line, {inc}._line) FROM _lm_arrow m "
                f"WHERE {inc}._file_idx = {idx} AND {inc}._line = m.rec + 1"
            )
            self.con.unregister("_lm_arrow")
        elif rejects:
            # good record k sits on line k + 1 + (number of rejected lines before it)
            gs = [line - 2 - j for j, (line, *_rest) in enumerate(rejects)]
            self.con.execute("CREATE OR REPLACE TEMP TABLE _rej_g (g BIGINT)")
            self.con.executemany("INSERT INTO _rej_g (g) VALUES (?)", [[g] for g in gs])
            self.con.execute(
                f"UPDATE {inc} SET _line = {inc}._line + x.n FROM (SELECT i._line AS l, "
                f"(SELECT count(*) FROM _rej_g WHERE g < i._line - 1) AS n FROM {inc} i "
                f"WHERE i._file_idx = {idx}) x WHERE {inc}._file_idx = {idx} AND {inc}._line = x.l AND x.n > 0"
            )
        if rejects:
            self.con.executemany(
                f"INSERT INTO {inc} (_file_idx, _line, _reason, _raw, _source_file) VALUES (?, ?, ?, ?, ?)",
                [
                    [
                        idx,
                        line,
                        f"malformed CSV line ({etype.lower()}): {msg}",
                        _json_str(raw) if keep_raw else _RAW_OMITTED,
                        str(sf.path),
                    ]
                    for line, etype, msg, raw in rejects
                ],
            )
        return True


#: ``raw_row`` of a malformed line of a file with columns outside the contract (the line is not kept).
_RAW_OMITTED = json.dumps(
    {"_omitted": "raw line not stored: the file has columns outside the contract (dropped or ignored)"}
)


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
        raise InputFileError(
            str(sf.path), f"duplicate column names in the header: {', '.join(dup)}; expected each column once"
        )


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
    lo, hi = c.bounds
    if c.min is not None or c.max is not None:  # the contract range of the column
        what += f" {c.range_text()}"
    elif isinstance(lo, str) and isinstance(hi, str):  # dates and timestamps: the type's years
        what += f", years {lo[:4]}–{hi[:4]}"
    return f"{base}, {what}" if base else what
