"""Opening the DuckDB file: one writer or many readers, owner-only files, a memory cap.

Every stage opens the database through :func:`connect` (or :func:`snapshot` for a reader that
must not wait for a writer). Errors DuckDB raises about the file itself (locked, read-only,
full disk, not a database) are turned into one sentence by :func:`describe_storage_error`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from pathlib import Path

import duckdb

from toolkit.errors import UserError
from toolkit.store.files import make_dirs
from toolkit.store.schema import check_version


class DatabaseBusyError(RuntimeError):
    """Another process holds the DuckDB file (a writer, or a reader while we want to write)."""


class DatabaseAccessError(UserError):
    """The DuckDB file or its folder cannot be created, opened or written (permissions, read-only
    file system, disk full). The message names the path; the CLI exits with code 2."""


#: Environment variable: seconds any :func:`connect` waits for a busy database at least
#: (for scheduled jobs that should wait for a notebook or another job instead of failing).
BUSY_WAIT_ENV = "OCAUDIT_BUSY_WAIT"

_ACCESS_HINTS = (
    (
        ("out of memory error",),
        "DuckDB ran out of memory under its cap (OCAUDIT_MEMORY_LIMIT, default 1400MB). Run the "
        "command again with a larger cap, e.g. OCAUDIT_MEMORY_LIMIT=4GB, on a machine that has it "
        "(メモリ上限を超えました。OCAUDIT_MEMORY_LIMIT を大きくして再実行してください); "
        "the database holds what it held before this command",
    ),
    (
        ("no space left", "disk full", "enospc", "not enough space"),
        "the disk is full. Free space (or choose another folder) and run the command again; "
        "the database holds what it held before this command",
    ),
    (
        ("read-only file system", "erofs", "read only file system"),
        "the file system is read-only. Choose a writable folder for the database",
    ),
    (
        ("permission denied", "eacces", "operation not permitted"),
        "permission denied. Check the owner and mode of the file and its folder",
    ),
    (
        (
            "not a valid duckdb database",
            "could not read enough bytes",
            "database file is corrupt",
            "checksum",
            "the file is not a valid",
            "database is not a valid",
            "unsupported duckdb storage",
            "incompatible version",
        ),
        "not a DuckDB database, or a damaged or truncated one (the file was not changed). Give the "
        "--db file ocaudit wrote, restore it from a backup, or ingest into a new file",
    ),
)


def describe_storage_error(exc: BaseException, path: str | os.PathLike[str] | None = None) -> str | None:
    """A plain message for a disk-full / read-only / permission error, or None for anything else.

    Used by :func:`connect` and (for errors raised later, e.g. a full disk during a write) by
    the CLI, so the user sees the path and what to do instead of a traceback. The path named is
    the file the error names (an output file, the WAL …), else ``path``.
    """
    text, fname = "", None
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:  # the error and what it was raised from / during
        seen.add(id(e))
        text += f" {e} {getattr(e, 'strerror', '') or ''}"
        if isinstance(e, OSError):
            fname = fname or e.filename
            text += {
                errno.ENOSPC: " enospc",
                errno.EROFS: " erofs",
                errno.EACCES: " eacces",
                errno.EPERM: " eperm operation not permitted",
            }.get(e.errno or 0, "")
        e = e.__cause__ or e.__context__
    for needles, hint in _ACCESS_HINTS:
        if any(n in text.lower() for n in needles):
            named = re.search(r'file "([^"]+)"', text)  # DuckDB names the file it could not write
            where = str(fname) if fname else (str(path) if path is not None else None)
            if named and (where is None or not named.group(1).startswith(where)):
                where = f"{where} ({named.group(1)})" if where else named.group(1)
            return f"{where}: {hint}." if where else f"{hint[0].upper()}{hint[1:]}."
    return None


def _owner_only_umask() -> None:
    """Make everything this process creates from now on owner-only (umask |= 077).

    DuckDB creates the write-ahead log (``FILE.wal``) and spill files lazily, long after
    :func:`connect` returns, and removes and recreates the WAL at each checkpoint; they hold
    patient rows, so a process that opens the database keeps an owner-only umask.
    """
    old = os.umask(0o077)
    os.umask(old | 0o077)


def _is_lock_error(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return "lock" in msg and ("conflicting" in msg or "could not set" in msg)


def busy_wait(default: float) -> float:
    """Seconds to wait for a busy file: ``$OCAUDIT_BUSY_WAIT`` when set to a number, else ``default``.

    The variable replaces each command's default (ingest and audit wait 30 s) in both directions,
    so a scheduler can wait longer and a test or an impatient operator shorter.
    """
    raw = os.environ.get(BUSY_WAIT_ENV, "").strip()
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError as exc:
        raise UserError(f"{BUSY_WAIT_ENV}={raw!r}: expected a number of seconds, e.g. 60") from exc


def connect(
    db_path: str | os.PathLike[str],
    *,
    read_only: bool = False,
    wait_seconds: float = 0.0,
    config: dict[str, str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file (created owner-only, mode 0600, folder 0700, if new).

    DuckDB lets one process write a file, or several processes read it, never both. A file
    held by another process raises :class:`DatabaseBusyError` with a message saying to retry,
    after waiting up to :func:`busy_wait` seconds (``$OCAUDIT_BUSY_WAIT`` when set, else ``wait_seconds``).
    A file or folder that cannot be created or written raises :class:`DatabaseAccessError`
    naming the path. A read-only connection to a file of an older or newer layout raises
    :class:`SchemaVersionError` saying what to do. From here on the process creates files
    owner-only (see :func:`_owner_only_umask`).
    """
    path = Path(db_path)
    _owner_only_umask()
    wait_seconds = busy_wait(wait_seconds)
    if path.exists() and not path.is_file():  # a FIFO would hang DuckDB, a device fill memory
        raise DatabaseAccessError(
            f"{path}: not a regular file (a folder, FIFO or device); give the DuckDB file ocaudit writes"
        )
    if read_only and not path.is_file():
        raise DatabaseAccessError(f"{path}: no such database file")
    if not read_only and not path.exists():
        try:
            make_dirs(path.parent)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
            path.unlink()  # DuckDB refuses an empty non-database file; the umask keeps 0600
        except OSError as exc:
            msg = describe_storage_error(exc, path) or f"{exc.filename or path}: {exc.strerror}"
            raise DatabaseAccessError(
                msg if msg.startswith(f"{path}:") else f"{path}: cannot create the database file — {msg}"
            ) from None
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config or {})
            break
        except duckdb.Error as exc:
            if not _is_lock_error(exc):
                msg = describe_storage_error(exc, path)
                if msg:
                    raise DatabaseAccessError(
                        msg if msg.startswith(f"{path}") else f"{path}: cannot open the database — {msg}"
                    ) from None
                first = (str(exc).splitlines() or [""])[0][:200]
                raise DatabaseAccessError(
                    f"{path}: cannot be opened as a DuckDB database ({first}); the file was not changed"
                ) from None
            if time.monotonic() >= deadline:
                who = (
                    "an ingest or audit is writing it"
                    if read_only
                    else "an ingest or audit is writing it, or a report/notebook is reading it"
                )
                raise DatabaseBusyError(
                    f"{path}: the database is in use by another process ({who}; busy). "
                    f"Retry when it has finished (or set {BUSY_WAIT_ENV}=SECONDS to wait)."
                ) from exc
            time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
    if not read_only:  # a database opened to write is narrowed to 0600 (only once DuckDB accepted it)
        with contextlib.suppress(OSError):
            if stat.S_IMODE(path.stat().st_mode) != 0o600:
                os.chmod(path, 0o600)
    try:
        _apply_memory_limit(con, writer=not read_only)
        if read_only:
            check_version(con)
    except BaseException:
        con.close()
        raise
    return con


#: Environment variable with DuckDB's memory limit for every ocaudit connection (e.g. ``4GB``).
MEMORY_LIMIT_ENV = "OCAUDIT_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "1400MB"


_UNIT_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNIT_BYTES.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", flags=re.I)


def memory_limit() -> str:
    """The memory cap every ocaudit connection sets (``OCAUDIT_MEMORY_LIMIT``, else the default);
    UserError when the variable is not a size."""
    limit = os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT).strip()
    if not _SIZE.fullmatch(limit):
        raise UserError(f"{MEMORY_LIMIT_ENV}={limit!r}: expected a size such as 1536MB or 4GB")
    return limit


def memory_limit_mb() -> float:
    """:func:`memory_limit` in megabytes (10^6 bytes, DuckDB's MB)."""
    number, unit = _SIZE.fullmatch(memory_limit()).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_BYTES[unit.lower()] / 10**6


def _apply_memory_limit(con: duckdb.DuckDBPyConnection, *, writer: bool = False) -> None:
    """Cap DuckDB's memory (default 1400 MB; ``OCAUDIT_MEMORY_LIMIT`` overrides).

    DuckDB otherwise takes up to 80 % of RAM; with a cap, large joins, sorts and temporary
    tables spill to DuckDB's temporary directory instead, so a monthly job on a shared
    analysis machine stays within its share. The process's peak RSS runs about 1.25-1.5x the cap
    (DuckDB allocations outside its buffer pool, the allocator, Python and GX), so 1400 MB keeps
    every stage under 2 GB at 10M sessions (benchmarks/RESULTS.md). Set at run time (not as
    connection config) so GX's connection can still join the same database instance.

    A connection that writes (ingest, audit) also lets DuckDB's block allocator keep up to the
    cap mapped, so a block freed by one step is reused by the next instead of being handed back
    to the system and faulted in again: about 1.5 s less of the audit at 10M sessions, with the
    same peak RSS there; smaller runs peak higher (the 0.1M audit at ≈ 700 MB instead of ≈ 400 MB)
    because freed blocks stay mapped until the database closes. Readers (reports, notebooks,
    snapshots) do not do this.
    """
    limit = memory_limit()
    con.execute(f"SET memory_limit = '{limit}'")
    if writer:
        con.execute(f"SET block_allocator_memory = '{limit}'")


def snapshot(db_path: str | os.PathLike[str], *, wait_seconds: float = 0.0) -> duckdb.DuckDBPyConnection:
    """An in-memory copy of the database: a consistent snapshot that holds no lock on the file.

    For notebooks and other long-lived readers: a read-only :func:`connect` keeps a shared lock
    for as long as it is open, and the monthly ingest or audit cannot write meanwhile (it waits,
    then fails as busy). The copy is taken under the read lock, which is released at once; it
    needs memory for the whole file. Raises like :func:`connect` (busy, version, missing file).
    """
    path = Path(db_path)
    src = connect(path, read_only=True, wait_seconds=wait_seconds)  # checks existence and version
    src.close()
    con = duckdb.connect(":memory:")
    deadline = time.monotonic() + max(wait_seconds, 5.0)
    while True:
        try:
            con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS _ocaudit_src (READ_ONLY)")
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                con.close()
                if _is_lock_error(exc):
                    raise DatabaseBusyError(
                        f"{path}: the database is in use by another process (busy). "
                        "Retry when it has finished."
                    ) from exc
                raise
            time.sleep(0.2)
    try:
        con.execute("COPY FROM DATABASE _ocaudit_src TO memory")
    finally:
        con.execute("DETACH _ocaudit_src")
    return con
