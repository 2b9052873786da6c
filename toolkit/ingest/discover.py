"""Which files SOURCE holds: contract tables by name, refused kinds, special files, files seen twice."""

from __future__ import annotations

import fnmatch
import gzip
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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
#: files `ocaudit generate` writes next to the tables; skipped with a note
GENERATOR_FILES = frozenset({"ground_truth.csv", "generation.json"})


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
