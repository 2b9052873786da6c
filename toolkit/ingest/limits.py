"""Size limits on lines, fields and records, enforced by streaming scans in bounded memory."""

from __future__ import annotations

import csv
import gzip
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from toolkit.errors import InputFileError
from toolkit.ingest.encoding import CHUNK
from toolkit.store.files import open_owner_only

MAX_LINE_SIZE = 64 << 20
#: DuckDB's CSV read buffer. Its default is 16 × ``max_line_size`` (1 GiB here), or the whole file
#: when smaller, allocated in blocks that size: CSV files of a few hundred MB and more did not fit
#: the memory cap and were refused ("could not allocate block of size 1.0 GiB": the 3.6 GB
#: sessions.csv of 10M sessions under 1400 MB; a 353 MB file under 300 MB). One line's worth is
#: the least DuckDB accepts, and reads as fast.
CSV_BUFFER_SIZE = MAX_LINE_SIZE
#: A JSON Lines file is staged in pieces of about this size: DuckDB's ``read_text`` holds a whole
#: file as one value, so a file of a few hundred MB did not fit the memory cap.
JSONL_PIECE_BYTES = 32 << 20
#: the largest field (CSV) or line (JSON Lines) read, in bytes: a record holding a longer one is
#: quarantined by line without being read (streamed past in bounded memory)
MAX_FIELD_BYTES = 1 << 20
#: the largest CSV record read, in bytes (all its fields together); a longer one is quarantined the same way
MAX_RECORD_BYTES = 8 << 20
#: the pre-scan's chunk: a line or quoted run longer than MAX_FIELD_BYTES always spans a chunk boundary
SCAN_CHUNK = 512 << 10
OVERSIZE_REASON = "record over the size limit"


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
    with _opener(path, gz)(path, "rb") as src, open_owner_only(dest, "wb", encoding=None) as dst:
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
