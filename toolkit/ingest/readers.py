"""File formats → staged rows: discovery, encoding detection, CP932 transcoding, line numbers.

Everything here is about *files*; the contract checks live in :mod:`toolkit.ingest.run`.

- CSV (``.csv``, ``.csv.gz``) in UTF-8, UTF-8 with BOM or CP932. UTF-8 files are read by
  DuckDB directly; CP932 files are transcoded in Python, streaming, to a temporary UTF-8 file
  (DuckDB's ``encodings`` extension is not used). Every value is read as VARCHAR.
- Parquet (``.parquet``): read with its own types and ``file_row_number``.
- JSON Lines (``.jsonl``, ``.ndjson``, optionally ``.gz``): each line is checked to be one JSON
  object; values are extracted as text.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import gzip
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import duckdb

from toolkit.contract import TABLES
from toolkit.errors import InputFileError, UserError

#: suffix → format; longest suffix wins (``.csv.gz`` before ``.gz``)
SUFFIXES: dict[str, tuple[str, bool]] = {
    ".csv.gz": ("csv", True),
    ".csv": ("csv", False),
    ".parquet": ("parquet", False),
    ".jsonl.gz": ("jsonl", True),
    ".ndjson.gz": ("jsonl", True),
    ".jsonl": ("jsonl", False),
    ".ndjson": ("jsonl", False),
}
ACCEPTED = ".csv, .csv.gz, .parquet, .jsonl, .ndjson (optionally .gz)"
#: extensions of files that look like data but are not accepted (refused with a clear error)
REFUSED_DATA_SUFFIXES = (".xlsx", ".xls", ".json", ".tsv", ".gz", ".zip", ".dat")
ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "utf-8-sig": "utf-8-sig",
    "utf_8_sig": "utf-8-sig",
    "cp932": "cp932",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "windows-31j": "cp932",
    "ms932": "cp932",
}
#: files `ocaudit generate` writes next to the tables; skipped with a note
GENERATOR_FILES = frozenset({"ground_truth.csv", "generation.json"})
SAMPLE_BYTES = 1 << 20
CHUNK = 1 << 20
MAX_LINE_SIZE = 64 << 20


@dataclass
class SourceFile:
    """One data file found in SOURCE and the table it holds."""

    path: Path
    table: str
    fmt: str
    gz: bool
    display: str
    link: bool = False  # found under a name that is a symlink

    @property
    def size(self) -> int:
        """File size in bytes."""
        return self.path.stat().st_size


@dataclass
class Discovery:
    """Files found in SOURCE, files refused at discovery, and notes (ignored files)."""

    files: list[SourceFile] = field(default_factory=list)
    errors: list[InputFileError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def normalise_encoding(name: str | None) -> str | None:
    """``utf-8``, ``utf-8-sig`` or ``cp932`` for an accepted spelling; ValueError otherwise."""
    if name is None:
        return None
    key = name.strip().lower().replace("_", "-")
    key = {"utf-8-sig": "utf-8-sig"}.get(key, key)
    if key in ENCODINGS:
        return ENCODINGS[key]
    if key.replace("-", "_") in ENCODINGS:
        return ENCODINGS[key.replace("-", "_")]
    raise ValueError(f"unknown encoding {name!r}; use utf-8, utf-8-sig or cp932")


def split_suffix(path: Path) -> tuple[str, str, bool] | None:
    """(stem, format, gzipped) for an accepted data file name, else None."""
    low = path.name.lower()
    for suf, (fmt, gz) in SUFFIXES.items():
        if low.endswith(suf) and len(low) > len(suf):
            return path.name[: -len(suf)], fmt, gz
    return None


def table_from_stem(stem: str) -> str | None:
    """Contract table named by a file stem: ``sessions``, ``sessions_2024``, ``sessions-part1``."""
    low = stem.lower()
    if low in TABLES:
        return low
    for name in sorted(TABLES, key=len, reverse=True):
        if low.startswith(name) and low[len(name)] in "_-.":
            return name
    return None


def _hidden(rel: Path) -> bool:
    return any(p.startswith((".", "_", "~$")) for p in rel.parts)


def special_kind(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file or folder (followed through symlinks), else None.

    ``"a FIFO (named pipe)"``, ``"a character device"``, ``"a block device"``, ``"a socket"`` or
    ``"a symlink to a missing file"``. Such a file is never opened (a FIFO would block the ingest).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a symlink to a missing file" if path.is_symlink() else "a missing file"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    return f"a symlink to {kind}" if path.is_symlink() else kind


def not_regular_error(path: Path, kind: str) -> InputFileError:
    """The refusal of a data-named path that is not a regular file (FIFO, device, socket, dangling link)."""
    return InputFileError(
        str(path),
        f"is {kind}, not a regular file; expected a regular {ACCEPTED} file "
        "(copy the data into a regular file, or move this entry out of SOURCE)",
    )


def _data_named(rel: Path, globs: dict[str, list[str]]) -> bool:
    """True if a path's name says it holds a contract table (or a refused data format)."""
    if any(fnmatch.fnmatch(rel.as_posix(), pat) for pats in globs.values() for pat in pats):
        return True
    return split_suffix(rel) is not None or rel.name.lower().endswith(REFUSED_DATA_SUFFIXES)


def discover(source: Path, globs: dict[str, list[str]] | None = None) -> Discovery:
    """The data files in ``source`` (a folder or one file) and the table each holds.

    A file's table is, in order: a mapping ``files`` glob that matches it, its name
    (``sessions.csv``, ``sessions_2024.csv.gz``), or the nearest parent folder named by a table
    (``sessions/part-0.parquet``). Non-data files (``.yaml``, ``.md`` …) are ignored with a note.
    """
    globs = globs or {}
    out = Discovery()
    kind = special_kind(source)
    if kind is not None:
        raise UserError(
            f"{source}: SOURCE is {kind}, not a regular file or folder; expected a folder or a "
            f"regular file holding contract tables ({ACCEPTED})"
        )
    if source.is_file():
        candidates = [(source, Path(source.name))]
    else:
        candidates = []
        skipped: set[str] = set()
        for p in sorted(source.rglob("*")):
            rel = p.relative_to(source)
            if _hidden(rel):
                continue
            kind = special_kind(p)
            if kind is not None:
                # a FIFO, device, socket or dangling symlink: refused when named like data, else noted
                if _data_named(rel, globs):
                    out.errors.append(not_regular_error(p, kind))
                else:
                    out.notes.append(f"ignored {rel.as_posix()} ({kind}, not a data file)")
                continue
            if not p.is_file():
                continue
            in_table_dir = len(rel.parts) > 1 and table_from_stem(rel.parts[0]) is not None
            globbed = any(fnmatch.fnmatch(rel.as_posix(), pat) for pats in globs.values() for pat in pats)
            if len(rel.parts) == 1 or in_table_dir or globbed:
                candidates.append((p, rel))
            else:
                skipped.add(rel.parts[0])
        out.notes.extend(
            f"ignored folder {d}/ (not named after a contract table; use a mapping `files:` glob)"
            for d in sorted(skipped)
        )
    for path, rel in candidates:
        if rel.name.lower() in GENERATOR_FILES:
            out.notes.append(
                f"ignored {rel.as_posix()} (written by `ocaudit generate`, not a contract table)"
            )
            continue
        table = None
        for t, patterns in globs.items():
            if any(
                fnmatch.fnmatch(rel.as_posix(), pat) or fnmatch.fnmatch(path.name, pat) for pat in patterns
            ):
                table = t
                break
        parts = split_suffix(path)
        if parts is None:
            if table is not None or path.name.lower().endswith(REFUSED_DATA_SUFFIXES):
                out.errors.append(
                    InputFileError(str(path), f"unsupported file format; expected one of {ACCEPTED}")
                )
            else:
                out.notes.append(f"ignored {rel.as_posix()} (not a data file: expected {ACCEPTED})")
            continue
        stem, fmt, gz = parts
        if table is None:
            table = table_from_stem(stem)
        if table is None:
            for parent in rel.parent.parts[::-1]:
                table = table_from_stem(parent)
                if table:
                    break
        if table is None:
            out.errors.append(
                InputFileError(
                    str(path),
                    "the file name names no contract table; expected a file or folder named "
                    f"after one of {', '.join(TABLES)} (e.g. sessions.csv), or a mapping `files:` glob",
                )
            )
            continue
        display = rel.as_posix() if source.is_dir() else path.name
        out.files.append(
            SourceFile(
                path=path.resolve(), table=table, fmt=fmt, gz=gz, display=display, link=path.is_symlink()
            )
        )
    out.files = _read_once(out)
    return out


def _read_once(found: Discovery) -> list[SourceFile]:
    """The files with each real file once: a symlink or hard link to a file already found is dropped.

    Two names of one file (``sessions/latest.parquet -> 2026-09.parquet``, or a hard link) are
    the same rows, so they are read once, under the name that is not a symlink (else the first in
    order); a note says which name was skipped and why.
    """
    groups: dict[tuple[int, int], list[SourceFile]] = {}
    for f in found.files:
        st = os.stat(f.path)
        groups.setdefault((st.st_dev, st.st_ino), []).append(f)
    keep: set[int] = set()
    for same in groups.values():
        first = next((f for f in same if not f.link), same[0])
        keep.add(id(first))
        found.notes.extend(
            f"skipped {f.display}: the same file as {first.display} "
            f"({'a symlink' if f.link else 'a hard link'} to it); each file is read once"
            for f in same
            if f is not first
        )
    return [f for f in found.files if id(f) in keep]


def open_binary(sf: SourceFile) -> BinaryIO:
    """The file's bytes (decompressed for ``.gz``); InputFileError if it is not a regular file.

    Opened non-blocking and checked with ``fstat``, so a file swapped for a FIFO or a device after
    discovery is refused instead of blocking or reading forever.
    """
    fd = os.open(sf.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_regular_error(sf.path, "not a regular file (a FIFO, device or socket)")
    fh = os.fdopen(fd, "rb")
    if not sf.gz:
        return fh
    gz = gzip.GzipFile(fileobj=fh, mode="rb")
    gz.myfileobj = fh  # closed with the GzipFile
    return gz  # type: ignore[return-value]


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def detect_encoding(sf: SourceFile, forced: str | None = None) -> str:
    """``utf-8``, ``utf-8-sig`` or ``cp932`` for a text file; InputFileError if it is neither.

    A BOM means UTF-8 with BOM; otherwise strict UTF-8 is tried on the first MB. A sample that is
    valid UTF-8 except for a few bytes (at least as many valid multi-byte characters as bad bytes) is
    *not* switched to CP932: the file is refused naming the first bad bytes (line and byte offset).
    Otherwise CP932 is chosen only if the sample decodes as CP932 and reads as Japanese text
    (:func:`reads_as_japanese`). Empty files and files with NUL bytes (binary, UTF-16) are refused.
    """
    try:
        with open_binary(sf) as fh:
            sample = fh.read(SAMPLE_BYTES)
            at_eof = not fh.read(1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputFileError(
            str(sf.path), f"cannot be read ({exc}); expected {sf.fmt.upper()} text"
        ) from None
    if not sample.strip(b" \t\r\n\xef\xbb\xbf"):
        raise InputFileError(
            str(sf.path),
            f"the file is empty (no header line); expected a header naming the {sf.table} columns",
        )
    nul = sample.find(b"\x00")
    if nul >= 0:
        raise InputFileError(
            str(sf.path),
            f"NUL byte at byte offset {nul} (line {_line_of(sample, nul)}): "
            "this is a binary or UTF-16 file; expected text in UTF-8 or CP932",
        )
    if forced:
        return forced
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if not at_eof:  # do not judge a multi-byte character cut at the end of the sample
        cut = sample.rfind(b"\n")
        sample = sample[: cut + 1] if cut > 0 else sample
    bad, good = utf8_errors(sample)
    if not bad:
        return "utf-8"
    u_off = bad[0]
    where = ", ".join(f"byte offset {o} (line {_line_of(sample, o)})" for o in bad[:3])
    if good >= len(bad):
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        hint = (
            " If the file really is CP932 (Shift_JIS), pass --encoding cp932."
            if _whole_file_cp932(sf) and reads_as_japanese(sample.decode("cp932", "replace"))
            else ""
        )
        raise InputFileError(
            str(sf.path),
            f"valid UTF-8 except {len(bad)} invalid byte sequence(s) at {where}{more}; expected UTF-8 "
            f"throughout. Fix or remove those bytes (re-export the file as UTF-8) and ingest again; the "
            f"file is not read as another encoding, which would garble its text.{hint}",
        )
    try:
        text = codecs.getincrementaldecoder("cp932")("strict").decode(sample, final=True)
    except UnicodeDecodeError as exc:
        raise InputFileError(
            str(sf.path),
            f"not UTF-8 (bad byte at offset {u_off}, line {_line_of(sample, u_off)}) nor CP932 "
            f"(bad byte at offset {exc.start}, line {_line_of(sample, exc.start)}); expected a text "
            "file in UTF-8, UTF-8 with BOM or CP932 (use --encoding to force one)",
        ) from None
    if not reads_as_japanese(text):
        raise InputFileError(
            str(sf.path),
            f"not UTF-8 (bad byte at offset {u_off}, line {_line_of(sample, u_off)}), and read as CP932 "
            "it is not Japanese text; expected a text file in UTF-8, UTF-8 with BOM or CP932 "
            "(re-export it as UTF-8)",
        )
    return "cp932"


def utf8_errors(data: bytes) -> tuple[list[int], int]:
    """(byte offsets of invalid UTF-8 sequences, number of valid multi-byte characters) of ``data``.

    Stops counting after 100 bad sequences (the data is then plainly not UTF-8).
    """
    bad: list[int] = []
    good = 0
    view = memoryview(data)
    pos = 0
    while pos < len(data) and len(bad) <= 100:
        try:
            text, _n = codecs.utf_8_decode(view[pos:], "strict", True)
        except UnicodeDecodeError as exc:
            good += _non_ascii(codecs.utf_8_decode(view[pos : pos + exc.start], "strict", True)[0])
            bad.append(pos + exc.start)
            pos += exc.end
            continue
        good += _non_ascii(text)
        break
    return bad, good


def _non_ascii(text: str) -> int:
    """Characters above U+007F in ``text``."""
    return len(text) - len(text.encode("ascii", "ignore"))


def reads_as_japanese(text: str) -> bool:
    """True if the non-ASCII characters of ``text`` are mostly common Japanese (a real CP932 text).

    Common: JIS X 0208 rows 1–47 (punctuation, full-width letters and digits, hiragana, katakana,
    level-1 kanji), i.e. CP932 codes 0x8140–0x9872. UTF-8 Japanese misread as CP932 (mojibake such as
    ``譚ｱ莠ｬ``) is mostly level-2 kanji and half-width katakana, so it does not count.
    """
    total = common = 0
    for ch in text:
        if ord(ch) <= 0x7F:
            continue
        total += 1
        try:
            b = ch.encode("cp932")
        except UnicodeEncodeError:
            continue
        if len(b) == 2 and 0x8140 <= int.from_bytes(b, "big") <= 0x9872:
            common += 1
    return total > 0 and common >= 0.7 * total


def _whole_file_cp932(sf: SourceFile) -> bool:
    """True if the whole file decodes as CP932 (streaming, bounded memory)."""
    dec = codecs.getincrementaldecoder("cp932")("strict")
    try:
        with open_binary(sf) as fh:
            while chunk := fh.read(CHUNK):
                dec.decode(chunk)
            dec.decode(b"", final=True)
    except (UnicodeDecodeError, OSError, EOFError):
        return False
    return True


def transcode(sf: SourceFile, encoding: str, dest: Path) -> None:
    """Stream ``sf`` (decompressed) into ``dest`` as UTF-8 without BOM, in bounded memory.

    Undecodable bytes raise InputFileError naming the byte offset and line.
    """
    dec = codecs.getincrementaldecoder(encoding)("strict")
    consumed = 0
    lines = 0
    with open_binary(sf) as src, open(dest, "w", encoding="utf-8", newline="") as dst:
        first = True
        while True:
            chunk = src.read(CHUNK)
            try:
                text = dec.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                off = consumed + exc.start
                line = lines + chunk.count(b"\n", 0, exc.start) + 1
                raise InputFileError(
                    str(sf.path),
                    f"not valid {encoding} at byte offset {off} (line {line}); expected one "
                    "encoding for the whole file (UTF-8, UTF-8 with BOM or CP932)",
                ) from None
            if first and text.startswith("\ufeff"):
                text = text[1:]
            first = False
            dst.write(text)
            if not chunk:
                break
            consumed += len(chunk)
            lines += chunk.count(b"\n")


def text_path(sf: SourceFile, encoding: str, tmpdir: Path, *, need_plain: bool) -> Path:
    """A path DuckDB can read as UTF-8 text: the file itself, or a transcoded/decompressed copy.

    ``need_plain`` asks for an uncompressed file without BOM (``read_text`` for JSON Lines).
    """
    if encoding in ("utf-8", "utf-8-sig") and not (need_plain and (sf.gz or encoding == "utf-8-sig")):
        return sf.path
    dest = tmpdir / f"{abs(hash(str(sf.path)))}_{sf.path.name}.utf8"
    if encoding == "utf-8" and sf.gz:
        with open_binary(sf) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        return dest
    transcode(sf, "utf-8" if encoding == "utf-8-sig" else encoding, dest)
    return dest


def read_header(path: Path, gz: bool) -> list[str]:
    """The header row of a UTF-8 CSV (BOM stripped); InputFileError if it has none."""
    opener = gzip.open if gz and path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="", errors="replace") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            header = []
        except csv.Error as exc:
            raise InputFileError(str(path), f"the header line cannot be parsed ({exc})") from None
    return [h.strip().lstrip("\ufeff").strip() for h in header]


def count_lines(path: Path, gz: bool) -> int:
    """Physical lines in a text file (a last line without newline counts)."""
    n = 0
    last = b"\n"
    opener = gzip.open if gz and path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (0 if last == b"\n" else 1)


def record_start_lines(path: Path, gz: bool) -> Iterable[int]:
    """Physical start line of every non-empty CSV record after the header (slow path)."""
    csv.field_size_limit(MAX_LINE_SIZE)
    opener = gzip.open if gz and path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="", errors="replace") as fh:
        reader = csv.reader(fh)
        prev = 0
        first = True
        try:
            for rec in reader:
                start = prev + 1
                prev = reader.line_num
                if first:
                    first = False
                    continue
                if rec:
                    yield start
        except csv.Error:
            return


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def csv_relation(path: Path, header: list[str], keep: list[int], rejects: str) -> str:
    """SQL relation over a UTF-8 CSV: ``_rec`` (record number) and the kept columns as VARCHAR."""
    cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header)))
    sel = ", ".join(f"c{i} AS {q(header[i])}" for i in keep)
    return (
        f"(SELECT row_number() OVER () AS _rec{', ' + sel if sel else ''} FROM read_csv({lit(str(path))}, "
        f"columns={{{cols}}}, header=true, auto_detect=false, delim=',', quote='\"', escape='\"', "
        f"store_rejects=true, rejects_table={lit(rejects)}, rejects_scan={lit(rejects + '_scan')}, "
        f"max_line_size={MAX_LINE_SIZE}, null_padding=false))"
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


def stage_jsonl(con: duckdb.DuckDBPyConnection, path: Path, table: str) -> list[str]:
    """Read a UTF-8 JSON Lines file into TEMP ``table`` (``_line``, ``_txt``, ``_ok``); its keys."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT _line, _txt, "
        "coalesce(json_valid(_txt) AND starts_with(ltrim(_txt), '{'), false) AS _ok FROM ("
        "SELECT _line, rtrim(CASE WHEN _line = 1 THEN ltrim(_t, chr(65279)) ELSE _t END, chr(13)) AS _txt "
        "FROM (SELECT generate_subscripts(l, 1) AS _line, unnest(l) AS _t FROM "
        f"(SELECT string_split(content, chr(10)) AS l FROM read_text({lit(str(path))}))))"
        " WHERE trim(_txt) <> ''"
    )
    rows = con.execute(
        f"SELECT k FROM (SELECT unnest(json_keys(_txt)) AS k, _line FROM {table} WHERE _ok) "
        "GROUP BY k ORDER BY min(_line)"
    ).fetchall()
    return [r[0] for r in rows]


def jsonl_relation(table: str, keys: list[str]) -> str:
    """SQL relation over a staged JSON Lines table: ``_line`` and each kept key as text."""
    sel = ", ".join(f"json_extract_string(_txt, {lit('$.' + json_key(k))}) AS {q(k)}" for k in keys)
    return f"(SELECT _line{', ' + sel if sel else ''} FROM {table} WHERE _ok)"


def json_key(k: str) -> str:
    """A JSON path member for key ``k``."""
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'
