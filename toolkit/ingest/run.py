"""Files → DuckDB canonical tables, with quarantine, idempotent upsert and ingest records.

The orchestrator: discover files, open the database, run phase 1 (:mod:`toolkit.ingest.read`)
and phase 2 (:mod:`toolkit.ingest.write`), or the direct first load (:mod:`toolkit.ingest.direct`)
with its fallback to the staged path, and print the summary.

Choices: within one ingest the first row of a key wins, later rows with other content are
quarantined (``duplicate key …``), identical ones count as unchanged. Changes are found by
comparing values (not hashes); ``access_log`` rows are identified by all their values. The
first load into an empty table writes one ``row_changes`` row (``initial_load``, new_hash =
"N rows") instead of one per row — the rows carry ``_ingest_id``. ``quarantine`` holds the
latest verdict per file: re-ingesting a file replaces its rows there (unchanged rows are kept).
A statement that fails inside a transaction aborts it in DuckDB, so a file that fails while read
there makes the ingest roll back and start again staged (phase 1 outside the transaction); it is
then refused as it would have been, and lines already printed are not printed twice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from toolkit.contract import TABLE_ORDER, TABLES
from toolkit.errors import UserError
from toolkit.ingest import readers as rd
from toolkit.ingest.coverage import coverage_lines
from toolkit.ingest.direct import DirectLoad
from toolkit.ingest.mapping import Mapping, load_mapping
from toolkit.ingest.read import ReadPhase
from toolkit.ingest.readers import lit
from toolkit.ingest.records import (
    SHIPPED_DRUG_MASTER,
    TMP_PREFIX,
    IngestSummary,
    _Fallback,
    _FileRec,
)
from toolkit.ingest.write import WritePhase
from toolkit.store import connect, table_exists


class _Run(ReadPhase, DirectLoad, WritePhase):
    """State of one ingest (one connection, one temp folder); its phases live in read, direct and write."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        mapping: Mapping,
        forced: str | None,
        out: Callable[[str], Any],
        summary: IngestSummary,
        tmpdir: Path,
        ingest_id: str = "",
    ) -> None:
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
        self.direct: set[str] = set()  # empty tables whose files load straight into them
        self.in_txn = False


def _print_table(summary: IngestSummary, out: Callable[[str], Any]) -> None:
    hdr = f"{'table':<17}{'read':>10}{'loaded':>10}{'quarant.':>10}{'inserted':>10}{'updated':>10}{'unchanged':>10}"
    out(hdr)
    for name in TABLE_ORDER:
        c = summary.tables.get(name)
        if c is None:
            continue
        out(
            f"{name:<17}{c.read:>10}{c.loaded:>10}{c.quarantined:>10}{c.inserted:>10}{c.updated:>10}"
            f"{c.unchanged:>10}" + (f"  ({c.deleted} deleted)" if c.deleted else "")
        )


def ingest_source(
    db_path: str | Path,
    source: str | Path,
    mapping_path: str | Path | None = None,
    encoding: str | None = None,
    *,
    out: Callable[[str], Any] = print,
) -> IngestSummary:
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
        raise UserError(
            f"{src}: no data files found; expected files named after contract tables "
            f"({', '.join(TABLE_ORDER)}) in {rd.ACCEPTED}"
        )
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
            _ingest_once(
                con, mapping, forced, record, summary, tmpdir, found, ingest_id, src, started, direct=True
            )
        except _Fallback:
            # a file failed while read inside the direct-load transaction: nothing was written;
            # redo everything staged (that file is then refused), not repeating lines already shown
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            summary.errors[:] = errors
            summary.warnings.clear()
            summary.tables.clear()
            _ingest_once(
                con,
                mapping,
                forced,
                _skip_repeated(out, printed),
                summary,
                tmpdir,
                found,
                ingest_id,
                src,
                started,
                direct=False,
            )
        _print_coverage(con, summary, out)
    finally:
        con.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    _print_table(summary, out)
    out(f"database: {db_path}  ({time.monotonic() - t0:.1f} s)")
    if summary.errors:
        out(f"{len(summary.errors)} file(s) refused; the other files were loaded.")
    return summary


def _print_coverage(
    con: duckdb.DuckDBPyConnection, summary: IngestSummary, out: Callable[[str], Any]
) -> None:
    """Name the contract columns the data lacks and the rules they make not evaluable."""
    files = [
        (t, Path(path).name, list(cols or []))
        for t, path, cols in con.execute(
            "SELECT table_name, path, columns_present FROM ingest_files WHERE ingest_id = ? ORDER BY path",
            [summary.ingest_id],
        ).fetchall()
    ]
    warnings, notes = coverage_lines(available_columns(con), summary.tables, files)
    for w in warnings:
        summary.warnings.append(w)
        summary.not_evaluable.append(w)
        out(f"  warning: {w}")
    for n in notes:
        out(f"  note: {n}")


def _ingest_once(
    con: duckdb.DuckDBPyConnection,
    mapping: Mapping,
    forced: str | None,
    out: Callable[[str], Any],
    summary: IngestSummary,
    tmpdir: Path,
    found: rd.Discovery,
    ingest_id: str,
    src: Path,
    started: datetime,
    *,
    direct: bool,
) -> None:
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
            sf = rd.SourceFile(
                path=SHIPPED_DRUG_MASTER,
                table="drug_master",
                fmt="csv",
                gz=False,
                display="(shipped) toolkit/data/drug_master.csv",
            )
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


def _remove_stale_tmpdirs() -> None:
    """Remove temp folders (transcoded copies, spill files) left by killed ingests."""
    for d in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*-*"):
        pid = d.name[len(TMP_PREFIX) :].split("-", 1)[0]
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
        "SELECT table_name, flatten(list(columns_present)) FROM ingest_files GROUP BY table_name"
    ).fetchall():
        if table in TABLES:
            out[table] = set(cols or [])
    return out


def cli_ingest(args: Any) -> int:
    """``ocaudit ingest``: 0 when every file loaded, 2 when a file was refused."""
    summary = ingest_source(
        args.db, args.source, getattr(args, "mapping", None), getattr(args, "encoding", None)
    )
    if summary.errors:
        for e in summary.errors:
            print(f"ocaudit: error: {e}", file=sys.stderr)
        return 2
    return 0
