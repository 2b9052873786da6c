"""File formats → staged rows: discovery, encoding detection, CP932 transcoding, line numbers.

Everything here is about *files*; the contract checks live in :mod:`toolkit.ingest.parse`.
This module builds the DuckDB relations of each format and re-exports the file-level helpers
of :mod:`~toolkit.ingest.discover` (which files), :mod:`~toolkit.ingest.encoding` (which
encoding), :mod:`~toolkit.ingest.limits` (line and field sizes) and
:mod:`~toolkit.ingest.sqlquote`, so stage code reads them as ``rd.<name>``.

- CSV (``.csv``, ``.csv.gz``) in UTF-8, UTF-8 with BOM or CP932. UTF-8 files are read by
  DuckDB directly; CP932 files are transcoded in Python, streaming, to a temporary UTF-8 file
  (DuckDB's ``encodings`` extension is not used). Every value is read as VARCHAR.
- Parquet (``.parquet``): read with its own types and ``file_row_number``.
- JSON Lines (``.jsonl``, ``.ndjson``, optionally ``.gz``): each line is checked to be one JSON
  object; values are extracted as text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb

from toolkit.errors import InputFileError
from toolkit.ingest.discover import (  # noqa: F401  (re-exported: rd.<name>)
    ACCEPTED,
    GENERATOR_FILES,
    REFUSED_DATA_SUFFIXES,
    SUFFIXES,
    Discovery,
    SourceFile,
    _data_named,
    _hidden,
    _read_once,
    discover,
    not_regular_error,
    open_binary,
    special_kind,
    split_suffix,
    table_from_stem,
)
from toolkit.ingest.encoding import (  # noqa: F401  (re-exported: rd.<name>)
    CHUNK,
    ENCODINGS,
    SAMPLE_BYTES,
    _line_of,
    _non_ascii,
    _whole_file_cp932,
    bad_utf8_at,
    detect_encoding,
    normalise_encoding,
    reads_as_japanese,
    text_path,
    transcode,
    utf8_errors,
)
from toolkit.ingest.limits import (  # noqa: F401  (re-exported: rd.<name>)
    _CSV_SPECIAL,
    CSV_BUFFER_SIZE,
    JSONL_PIECE_BYTES,
    MAX_FIELD_BYTES,
    MAX_LINE_SIZE,
    MAX_RECORD_BYTES,
    OVERSIZE_REASON,
    SCAN_CHUNK,
    FieldTooLarge,
    Oversize,
    TextScan,
    _copy,
    _opener,
    _skip,
    blank_out,
    count_lines,
    find_oversize,
    read_header,
    record_start_lines,
    scan_text,
)
from toolkit.ingest.sqlquote import (  # noqa: F401  (re-exported: rd.<name>)
    lit,
    q,
)
from toolkit.store.files import open_owner_only


def csv_relation(
    path: Path, header: list[str], keep: list[int], rejects: str, *, numbered: bool = True
) -> str:
    """SQL relation over a UTF-8 CSV: ``_rec`` (record number) and the kept columns as VARCHAR.

    ``numbered=False`` leaves ``_rec`` out: ``row_number() OVER ()`` is a streaming window, which
    makes DuckDB read and parse the file on one thread (the direct load numbers the rows by their
    position in the table instead, see :meth:`toolkit.ingest.direct.DirectLoad._direct_insert`)."""
    cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header)))
    sel = [f"c{i} AS {q(header[i])}" for i in keep]
    if numbered:
        sel.insert(0, "row_number() OVER () AS _rec")
    return (
        f"(SELECT {', '.join(sel) or '1 AS _one'} FROM read_csv({lit(str(path))}, "
        f"columns={{{cols}}}, header=true, auto_detect=false, delim=',', quote='\"', escape='\"', "
        f"store_rejects=true, rejects_table={lit(rejects)}, rejects_scan={lit(rejects + '_scan')}, "
        f"max_line_size={MAX_LINE_SIZE}, buffer_size={CSV_BUFFER_SIZE}, null_padding=false))"
    )


def parquet_columns(con: duckdb.DuckDBPyConnection, sf: SourceFile) -> list[tuple[str, str]]:
    """(name, DuckDB type) of a Parquet file's columns; InputFileError if it is not Parquet."""
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(sf.path))})").fetchall()
    except duckdb.Error as exc:
        msg = str(exc).splitlines()[0][:200]
        raise InputFileError(str(sf.path), f"not a readable Parquet file ({msg}); expected Parquet") from None
    return [(r[0], r[1]) for r in rows]


def parquet_relation(sf: SourceFile, keep: list[str]) -> str:
    """SQL relation over a Parquet file: ``_line`` (1-based row number) and the kept columns."""
    sel = ", ".join(q(c) for c in keep)
    return (
        f"(SELECT file_row_number + 1 AS _line{', ' + sel if sel else ''} "
        f"FROM read_parquet({lit(str(sf.path))}, file_row_number=true))"
    )


def jsonl_pieces(
    path: Path, tmpdir: Path, piece_bytes: int = JSONL_PIECE_BYTES
) -> Iterator[tuple[Path, int]]:
    """``path`` in pieces of about ``piece_bytes`` that end at a line break: (piece, lines before it).

    A file no larger than ``piece_bytes`` is its own one piece; a larger one is copied a piece at a
    time into ``tmpdir`` (owner-only), each piece deleted when the next is asked for. Its lines are
    at most :data:`MAX_FIELD_BYTES` long (longer ones were blanked out before), so a piece always
    holds whole lines."""
    if path.stat().st_size <= piece_bytes:
        yield path, 0
        return
    lines_before, carry, k = 0, b"", 0
    with open(path, "rb") as src:
        while True:
            data = src.read(piece_bytes)
            buf = carry + data
            cut = buf.rfind(b"\n") + 1 if data else len(buf)  # at the end: the rest, line break or not
            if data and cut == 0:  # no line break yet: read on
                carry = buf
                continue
            piece, carry = buf[:cut], buf[cut:]
            if piece:
                dest = tmpdir / f"{path.name}.piece{k}"
                with open_owner_only(dest, "wb", encoding=None) as fh:
                    fh.write(piece)
                try:
                    yield dest, lines_before
                finally:
                    dest.unlink()
                lines_before += piece.count(b"\n")
                k += 1
            if not data:
                return


def stage_jsonl(
    con: duckdb.DuckDBPyConnection, path: Path, table: str, tmpdir: Path, piece_bytes: int = JSONL_PIECE_BYTES
) -> list[str]:
    """Read a UTF-8 JSON Lines file into TEMP ``table`` (``_line``, ``_txt``, ``_ok``); its keys.

    The file is read a piece at a time (:func:`jsonl_pieces`): ``read_text`` holds a whole file as
    one value, and a file over the memory cap (or DuckDB's 4 GiB limit on a value) could not be read."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} (_line BIGINT, _txt VARCHAR, _ok BOOLEAN)")
    # DuckDB's trim functions walk the whole string: each is called only where its answer can
    # differ from the line as it is (a line that starts with '{' is not blank, one without a
    # final CR keeps its end). 737 MB of 47-key lines: 2.4 s against 13.1 s calling them on every line.
    for piece, before in jsonl_pieces(path, tmpdir, piece_bytes):
        con.execute(
            f"INSERT INTO {table} (_line, _txt, _ok) SELECT _line, _txt, coalesce(json_valid(_txt) "
            "AND (starts_with(_txt, '{') OR starts_with(ltrim(_txt), '{')), false) FROM ("
            "SELECT _line, CASE WHEN ends_with(_t, chr(13)) THEN rtrim(_t, chr(13)) ELSE _t END AS _txt FROM ("
            "SELECT _line, CASE WHEN _line = 1 THEN ltrim(_t, chr(65279)) ELSE _t END AS _t FROM ("
            f"SELECT {before} + generate_subscripts(l, 1) AS _line, unnest(l) AS _t FROM "
            f"(SELECT string_split(content, chr(10)) AS l FROM read_text({lit(str(piece))})))))"
            " WHERE CASE WHEN starts_with(_txt, '{') THEN true ELSE trim(_txt) <> '' END"
        )
    # keys in the order they first appear: by line, then by place in that line (ties broken by the key,
    # so the order never depends on how DuckDB's parallel aggregate happens to meet them)
    rows = con.execute(
        "SELECT k FROM (SELECT _line, unnest(json_keys(_txt)) AS k, generate_subscripts(json_keys(_txt), 1) AS pos"
        f" FROM {table} WHERE _ok) GROUP BY k ORDER BY min(_line), arg_min(pos, _line), k"
    ).fetchall()
    return [r[0] for r in rows]


def jsonl_relation(table: str, keys: list[str]) -> str:
    """SQL relation over a staged JSON Lines table: ``_line`` and each kept key as text.

    One ``json_extract_string`` with the list of paths parses each line once; one call per key
    parsed it once per key (47 keys, 1M lines: 6.5 s against 37 s)."""
    if not keys:
        return f"(SELECT _line FROM {table} WHERE _ok)"
    paths = ", ".join(lit("$." + json_key(k)) for k in keys)
    sel = ", ".join(f"_v[{i}] AS {q(k)}" for i, k in enumerate(keys, start=1))
    return f"(SELECT _line, {sel} FROM (SELECT _line, json_extract_string(_txt, [{paths}]) AS _v FROM {table} WHERE _ok))"


def json_key(k: str) -> str:
    """A JSON path member for key ``k``."""
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'
