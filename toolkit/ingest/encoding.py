"""Text encodings: detection (UTF-8, BOM, CP932 only for text that reads as Japanese), transcoding."""

from __future__ import annotations

import codecs
import gzip
import shutil
from pathlib import Path

from toolkit.errors import InputFileError
from toolkit.ingest.discover import SourceFile, open_binary
from toolkit.store.files import open_owner_only

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
SAMPLE_BYTES = 1 << 20
CHUNK = 1 << 20


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
    with open_binary(sf) as src, open_owner_only(dest, "w", encoding="utf-8", newline="") as dst:
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
        with open_binary(sf) as src, open_owner_only(dest, "wb", encoding=None) as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        return dest
    transcode(sf, "utf-8" if encoding == "utf-8-sig" else encoding, dest)
    return dest


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
