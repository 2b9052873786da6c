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
import re
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
#: the largest field (CSV) or line (JSON Lines) read, in bytes: a record holding a longer one is
#: quarantined by line without being read (streamed past in bounded memory)
MAX_FIELD_BYTES = 1 << 20
#: the largest CSV record read, in bytes (all its fields together); a longer one is quarantined the same way
MAX_RECORD_BYTES = 8 << 20
#: the pre-scan's chunk: a line or quoted run longer than MAX_FIELD_BYTES always spans a chunk boundary
SCAN_CHUNK = 512 << 10
OVERSIZE_REASON = "record over the size limit"


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
    return scan_text(path, gz).lines


@dataclass
class TextScan:
    """What one byte pass over a text file found: its physical lines, and whether a line is longer
    than :data:`MAX_FIELD_BYTES` (then :func:`find_oversize` looks closer)."""

    lines: int
    suspicious: bool


def _opener(path: Path, gz: bool):  # noqa: ANN202
    return gzip.open if gz and path.name.endswith(".gz") else open


def scan_text(path: Path, gz: bool) -> TextScan:
    """Count physical lines and flag a line longer than :data:`MAX_FIELD_BYTES`, in one byte pass.

    Per chunk of 512 KiB: ``count``, ``find`` and ``rfind`` of the line break (C speed, no per-row
    work), so a normal file costs what a plain line count costs. A quoted value spanning many short
    lines is not seen here; the record-line mapping (:func:`record_start_lines`) catches it.
    """
    n = 0
    last = b"\n"
    run = 0  # bytes since the last line break
    suspicious = False
    with _opener(path, gz)(path, "rb") as fh:
        while chunk := fh.read(SCAN_CHUNK):
            c = chunk.count(b"\n")
            n += c
            if c:
                suspicious = suspicious or run + chunk.find(b"\n") > MAX_FIELD_BYTES
                run = len(chunk) - chunk.rfind(b"\n") - 1
            else:
                run += len(chunk)
            suspicious = suspicious or run > MAX_FIELD_BYTES
            last = chunk[-1:]
    return TextScan(lines=n + (0 if last == b"\n" else 1), suspicious=suspicious)


class FieldTooLarge(Exception):
    """:func:`record_start_lines` met a field over :data:`MAX_FIELD_BYTES` characters."""


@dataclass
class Oversize:
    """A record over the size limits: where it is, its biggest field, and its first bytes."""

    start: int  # byte offset of its first byte
    end: int  # byte offset just past its last byte (its line break excluded)
    line: int  # physical line it starts on
    breaks: int  # line breaks inside it (quoted)
    column: int  # 0-based field index of its biggest field
    size: int  # bytes of its biggest field (CSV) or of the line (JSON Lines)
    total: int  # bytes of the whole record
    prefix: bytes  # its first bytes (at most 200), for the quarantine row

    def reason(self, column: str | None) -> str:
        """The quarantine reason (no value of the record)."""
        if self.size > MAX_FIELD_BYTES:
            what = f"field {self.column + 1}" + (f" ({column})" if column else "")
            return (
                f"{OVERSIZE_REASON}: {what} holds {self.size} bytes, more than {MAX_FIELD_BYTES} "
                "(1 MiB); the record is quarantined without being read"
            )
        return (
            f"{OVERSIZE_REASON}: the record holds {self.total} bytes, more than {MAX_RECORD_BYTES} "
            "(8 MiB); it is quarantined without being read"
        )


_CSV_SPECIAL = re.compile(rb'[,\n"]')


def find_oversize(path: Path, gz: bool, fmt: str) -> list[Oversize]:
    """Records over :data:`MAX_FIELD_BYTES` (a field; a line for JSON Lines) or :data:`MAX_RECORD_BYTES`.

    Streams the file in 1 MiB chunks and never holds a field: a CSV state machine (RFC 4180 quoting,
    a quote is special only at the start of a field, as Python's csv reader reads it) that jumps
    between special bytes with a regex and skips quote-free runs of whole lines at once. Only run
    when :func:`scan_text` finds a file suspicious. The header (line 1) is included.
    """
    out: list[Oversize] = []
    off = 0
    line = 1
    rec_start, rec_line, breaks = 0, 1, 0
    col = flen = 0
    big, big_col = 0, 0
    state = 0  # 0 unquoted (field start when flen == 0), 2 inside quotes, 3 quote seen inside quotes
    prefix = b""
    first = True
    jsonl = fmt == "jsonl"

    def close(end: int) -> None:
        nonlocal big, big_col
        if flen > big:
            big, big_col = flen, col
        total = end - rec_start
        if big > MAX_FIELD_BYTES or total > MAX_RECORD_BYTES:
            out.append(Oversize(rec_start, end, rec_line, breaks, big_col, big, total, prefix))

    with _opener(path, gz)(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            n = len(chunk)
            pos = 0
            if first:
                prefix, first = chunk[:200], False
            while pos < n:
                if state == 0 and flen == 0 and col == 0:
                    # at a record start: whole lines up to the next quote are records shorter than a chunk
                    q = n if jsonl else chunk.find(b'"', pos)
                    stop = chunk.rfind(b"\n", pos, n if q < 0 else q)
                    if stop >= 0:
                        line += chunk.count(b"\n", pos, stop + 1)
                        rec_start, rec_line, breaks, pos = off + stop + 1, line, 0, stop + 1
                        prefix = chunk[pos : pos + 200]
                        big = big_col = 0
                        continue
                if state == 2:
                    q = chunk.find(b'"', pos)
                    e = n if q < 0 else q
                    k = chunk.count(b"\n", pos, e)
                    line += k
                    breaks += k
                    flen += e - pos
                    pos, state = (n, 2) if q < 0 else (q + 1, 3)
                    continue
                if state == 3:
                    if chunk[pos] == 0x22:  # a doubled quote: one quote in the value
                        flen, pos, state = flen + 1, pos + 1, 2
                        continue
                    state = 0  # the closing quote; what follows is read as unquoted
                m = _CSV_SPECIAL.search(chunk, pos) if not jsonl else None
                i = m.start() if m else (chunk.find(b"\n", pos) if jsonl else -1)
                if i < 0:
                    flen += n - pos
                    pos = n
                    continue
                ch = chunk[i]
                flen += i - pos
                pos = i + 1
                if ch == 0x22:
                    if flen == 0:
                        state = 2
                    else:
                        flen += 1  # a quote inside an unquoted value is a character
                    continue
                if ch == 0x2C:
                    if flen > big:
                        big, big_col = flen, col
                    col, flen = col + 1, 0
                    continue
                close(off + i)  # a line break ends the record
                line += 1
                rec_start, rec_line, breaks, col, flen, big, big_col = off + i + 1, line, 0, 0, 0, 0, 0
                prefix = chunk[pos : pos + 200]
            off += n
    if off > rec_start:
        close(off)
    return out


def blank_out(path: Path, gz: bool, spans: list[Oversize], dest: Path) -> None:
    """Copy the file to ``dest`` (uncompressed) with each span replaced by its line breaks only.

    Every other byte, and so every physical line number, stays; the blanked records become empty
    lines, which the readers skip. Bounded memory: the spans are skipped chunk by chunk.
    """
    with _opener(path, gz)(path, "rb") as src, open(dest, "wb") as dst:
        pos = 0
        for sp in spans:
            _copy(src, dst, sp.start - pos)
            _skip(src, sp.end - sp.start)
            dst.write(b"\n" * sp.breaks)
            pos = sp.end
        shutil.copyfileobj(src, dst, CHUNK)


def _copy(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    while n > 0:
        chunk = src.read(min(n, CHUNK))
        if not chunk:
            return
        dst.write(chunk)
        n -= len(chunk)


def _skip(src: BinaryIO, n: int) -> None:
    while n > 0:
        chunk = src.read(min(n, CHUNK))
        if not chunk:
            return
        n -= len(chunk)


def record_start_lines(path: Path, gz: bool) -> Iterable[int]:
    """Physical start line of every non-empty CSV record after the header (slow path).

    Raises :class:`FieldTooLarge` at a field over :data:`MAX_FIELD_BYTES` characters (so at most
    that much of it is held); the caller then finds and blanks such records (:func:`find_oversize`).
    """
    opener = gzip.open if gz and path.name.endswith(".gz") else open
    old_limit = csv.field_size_limit(MAX_FIELD_BYTES)
    try:
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
            except csv.Error as exc:
                if "field limit" in str(exc):
                    raise FieldTooLarge(str(exc)) from None
                return
    finally:
        csv.field_size_limit(old_limit)


def bad_utf8_at(path: Path, near: int) -> str:
    """`` (invalid UTF-8 byte at byte offset N)`` for the first bad byte from about ``near`` on, or ``""``.

    ``near`` is DuckDB's ``byte_position`` of a rejected line (the start of the failing field); at
    most 64 KiB from a little before it are read.
    """
    start = max(0, near - 4096)
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(64 << 10)
    if start:  # do not count a character cut at the window's start
        cut = next((i for i in range(min(3, len(data))) if not 0x80 <= data[i] <= 0xBF), 0)
        start, data = start + cut, data[cut:]
    bad, _good = utf8_errors(data)
    return f" (invalid UTF-8 byte at byte offset {start + bad[0]})" if bad else ""


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
