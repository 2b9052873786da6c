"""Every file the toolkit writes: owner-only (0600 files, 0700 folders), formula-safe CSV and Excel.

:func:`open_owner_only` is the one way the toolkit opens an output file: ``O_CREAT | O_TRUNC`` with
mode 0600, then ``fchmod`` to 0600, so the file is owner-only whatever the umask and even when it
existed before with a wider mode. :func:`make_dirs` creates missing folders 0700 (``chmod`` after
``mkdir``, so the umask cannot widen them). Outputs hold ids and counts that are personal data in
aggregate; nobody else on a shared analysis machine should read them.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by
Excel/LibreOffice as a formula (CSV injection, e.g. ``=cmd|' /C calc'!A0``). Such text gets a
leading apostrophe so the spreadsheet shows it as text. Numbers are left as numbers (a negative
number is not text), so counts stay summable.

:func:`copy_query_to` writes a query's rows with DuckDB's ``COPY … TO`` (CSV or Parquet), streamed
by DuckDB so memory stays flat in the number of rows; the CSV is formula-neutralised in SQL
(:func:`neutralise_sql`, the same rule as :func:`neutralise`).
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and openpyxl are imported when a frame is written, not by every connect
    import duckdb
    import pandas as pd

DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dirs(path: str | os.PathLike[str], *, fix_existing: bool = False) -> Path:
    """Create folder ``path`` and any missing parents, each mode 0700 whatever the umask.

    Folders that already exist keep their mode (a user's own folder is not changed), except that
    ``fix_existing`` sets ``path`` itself to 0700: for folders the toolkit owns (an output folder
    it fills, the survey's ``local/``).
    """
    p = Path(path)
    missing = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            d.mkdir(mode=DIR_MODE)
        os.chmod(d, DIR_MODE)
    if fix_existing and not missing and p.is_dir() and not p.is_symlink():
        with contextlib.suppress(PermissionError):  # not ours: leave it
            os.chmod(p, DIR_MODE)
    return p


@contextlib.contextmanager
def open_owner_only(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing (truncated), owner-only (0600) whatever the umask or the old mode.

    ``mode`` is ``"w"`` (text, ``encoding``/``newline`` apply) or ``"wb"``. Missing parent folders are
    created 0700. The file is opened with ``O_CREAT | O_TRUNC`` and mode 0600, then ``fchmod``-ed
    to 0600 so a file that existed with a wider mode is narrowed before anything is written.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode {mode!r}: expected 'w' or 'wb'")
    p = Path(path)
    make_dirs(p.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(p, flags, FILE_MODE)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # not /dev/null or a FIFO the user chose
            os.fchmod(fd, FILE_MODE)
        if mode == "wb":
            fh: IO[Any] = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` owner-only (see :func:`open_owner_only`); the path."""
    with open_owner_only(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` owner-only (see :func:`open_owner_only`); the path."""
    with open_owner_only(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def neutralise(value: Any) -> Any:
    """Return ``value`` with a leading apostrophe if it is text that a spreadsheet would run."""
    if isinstance(value, str) and value.startswith(DANGEROUS_PREFIXES):
        return "'" + value
    return value


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every text cell and column label neutralised."""
    import pandas as pd

    out = df.copy()
    out.columns = [neutralise(str(c)) if isinstance(c, str) else c for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise).astype(object)
    return out


def write_csv(df: pd.DataFrame, path: str | os.PathLike[str], *, bom: bool = True) -> Path:
    """Write ``df`` as CSV (UTF-8 with BOM by default, so Excel reads Japanese), neutralised."""
    path = Path(path)
    with open_owner_only(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        neutralise_frame(df).to_csv(fh, index=False, lineterminator="\n")
    return path


def write_rows_csv(rows: Iterable[Sequence[Any]], path: str | os.PathLike[str], *, bom: bool = True) -> Path:
    """Write plain rows (first row = header) as CSV, every cell neutralised."""
    path = Path(path)
    with open_owner_only(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        for row in rows:
            w.writerow([neutralise(v) for v in row])
    return path


def write_excel(
    sheets: dict[str, pd.DataFrame],
    path: str | os.PathLike[str],
    notes: dict[str, Sequence[str]] | None = None,
) -> Path:
    """Write one sheet per frame (sheet names cut to Excel's 31 characters), every cell neutralised.

    ``notes``: lines written above the table on that sheet (e.g. what the denominator is).
    """
    import pandas as pd
    from openpyxl.styles import Font

    path = Path(path)
    notes = notes or {}
    with open_owner_only(path, "wb") as fh, pd.ExcelWriter(fh, engine="openpyxl") as xw:
        for name, df in sheets.items():
            sheet = name[:31]
            lines = [neutralise(n) for n in notes.get(name, ())]
            start = len(lines) + 1 if lines else 0
            neutralise_frame(df).to_excel(xw, sheet_name=sheet, index=False, startrow=start)
            ws = xw.sheets[sheet]
            ws.freeze_panes = ws.cell(row=start + 2, column=3 if df.shape[1] > 2 else 1)
            for c in ws[start + 1]:
                c.font = Font(bold=True)
            for i, text in enumerate(lines, start=1):
                ws.cell(row=i, column=1, value=text)
            for col_cells in ws.iter_cols(min_row=start + 1, max_row=start + 1):
                for c in col_cells:
                    ws.column_dimensions[c.column_letter].width = max(
                        12, min(48, len(str(c.value or "")) + 4)
                    )
    return path


def unneutralise(value: Any) -> Any:
    """The inverse of :func:`neutralise` for a cell read back: drop the apostrophe it added."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(DANGEROUS_PREFIXES):
        return value[1:]
    return value


@dataclass
class ExcelSheet:
    """One sheet for :func:`write_excel_rows`: a bold header row and rows streamed from an iterable.

    ``widths``: column widths (characters); ``choices``: 0-based column → the values of a
    drop-down list offered on every data row of that column (typing other text stays possible).
    """

    name: str
    header: Sequence[str]
    rows: Iterable[Sequence[Any]]
    widths: Sequence[int] = ()
    choices: dict[int, Sequence[str]] = field(default_factory=dict)


def write_excel_rows(sheets: Sequence[ExcelSheet], path: str | os.PathLike[str]) -> tuple[Path, list[int]]:
    """Write sheets whose rows are streamed (openpyxl write-only mode), every cell neutralised.

    Memory stays bounded whatever the number of rows: each row goes to the workbook as it comes.
    The header row is frozen. Returns the path and the number of data rows written per sheet.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    path = Path(path)
    wb = Workbook(write_only=True)
    counts = []
    for spec in sheets:
        ws = wb.create_sheet(spec.name[:31])
        ws.freeze_panes = "A2"
        for i, w in enumerate(spec.widths, start=1):
            ws.column_dimensions[get_column_letter(i)].width = w
        header = []
        for h in spec.header:
            cell = WriteOnlyCell(ws, value=neutralise(h))
            cell.font = Font(bold=True)
            header.append(cell)
        ws.append(header)
        n = 0
        for row in spec.rows:
            ws.append([neutralise(v) for v in row])
            n += 1
        for col, values in spec.choices.items():
            listed = ",".join(str(v).replace('"', "") for v in values)
            dv = DataValidation(type="list", formula1=f'"{listed}"', allow_blank=True, showErrorMessage=False)
            letter = get_column_letter(col + 1)
            dv.add(f"{letter}2:{letter}{max(n, 1) + 1}")
            ws.data_validations.append(dv)
        counts.append(n)
    with open_owner_only(path, "wb") as fh:
        wb.save(fh)
    return path, counts


def neutralise_sql(expr: str) -> str:
    """A SQL expression that is :func:`neutralise` of the text expression ``expr`` (NULL stays NULL).

    ``starts_with`` compares bytes, so a prefix is the first character exactly as ``str.startswith``
    sees it (no grapheme clusters: ``'\\r\\n…'`` starts with a carriage return here too).
    """
    tests = " OR ".join(f"starts_with({expr}, chr({ord(p)}))" for p in DANGEROUS_PREFIXES)
    return f"CASE WHEN {tests} THEN chr(39) || {expr} ELSE {expr} END"


#: COPY options of the CSV :func:`copy_query_to` writes: the bytes Python's ``csv.writer`` writes in
#: its default (Excel) dialect: comma, ``\r\n`` after every record, a field quoted only when it holds
#: a comma, a double quote, CR or LF (``COMMENT ''``: DuckDB would otherwise also quote ``#``), no BOM.
#: An empty text is written as NULL is, an empty field (DuckDB would write ``""``), as csv does.
_CSV_COPY_OPTIONS = (
    "FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', ESCAPE '\"', NEW_LINE '\\r\\n', "
    "COMMENT '', NULLSTR '', COMPRESSION 'none', USE_TMP_FILE false"
)
_PARQUET_COPY_OPTIONS = "FORMAT parquet, USE_TMP_FILE false"


def _copy_query(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any], fmt: str, order_by: Sequence[str]
) -> str:
    """The query COPY writes: ``sql`` ordered by its columns ``order_by`` (the values as stored, not
    the neutralised ones); for CSV every text column (and column name) neutralised, '' made NULL."""
    if fmt == "csv":
        rel = con.sql(sql, params=list(params)) if params else con.sql(sql)  # lazy: only the columns
        cols = []
        for name, typ in zip(rel.columns, rel.types, strict=True):
            ident = "q." + _ident(name)
            text = neutralise_sql(f"NULLIF({ident}, '')")
            cols.append(f"{text if str(typ) == 'VARCHAR' else ident} AS {_ident(str(neutralise(name)))}")
        select = ", ".join(cols)
    else:
        select = "q.*"
    order = " ORDER BY " + ", ".join("q." + _ident(c) for c in order_by) if order_by else ""
    return f"SELECT {select} FROM ({sql}) AS q{order}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_query_to(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    path: str | os.PathLike[str],
    *,
    fmt: str = "csv",
    params: Sequence[Any] = (),
    order_by: Sequence[str] = (),
) -> int:
    """Write the rows of query ``sql`` (with ``params``) to ``path`` with DuckDB's COPY; rows written.

    DuckDB reads, sorts (by the columns ``order_by`` of ``sql``, spilling under its memory cap) and writes;
    no row passes through Python. ``fmt="csv"``: a header, every text cell neutralised
    (:func:`neutralise_sql`) in the dialect of ``csv.writer``'s default (see ``_CSV_COPY_OPTIONS``);
    other types in DuckDB's text form. ``fmt="parquet"``: the values as they are (typed columns; a
    Parquet file is read by programs, not opened by a spreadsheet, so nothing is neutralised and
    ids stay exactly as stored).

    Owner-only and never half-written: DuckDB writes into a 0600 temporary file made in the target's
    folder (missing folders 0700), which is ``chmod``-ed 0600, flushed and renamed over ``path``.
    As with :func:`open_owner_only`, a symlink is followed (the file it names is replaced) and an
    existing device or FIFO (``/dev/null``) is written into (the bytes are copied from a temporary
    file in a private folder). A folder at ``path`` is refused before anything is written.
    """
    from toolkit.errors import UserError

    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt {fmt!r}: expected 'csv' or 'parquet'")
    target = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path).absolute()
    if target.is_dir():
        raise UserError(
            f"{path}: フォルダです。書き出すファイル名を指定してください (is a folder; give a file name)"
        )
    special = target.exists() and not target.is_file()  # a device or FIFO the user chose
    scratch = tempfile.mkdtemp(prefix="ocaudit-copy-") if special else None  # mkdtemp: mode 0700
    folder = Path(scratch) if scratch else make_dirs(target.parent)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")  # 0600, O_EXCL
    os.close(fd)
    try:
        query = _copy_query(con, sql, params, fmt, order_by)
        options = _CSV_COPY_OPTIONS if fmt == "csv" else _PARQUET_COPY_OPTIONS
        row = con.execute(f"COPY ({query}) TO ? ({options})", [*params, tmp]).fetchone()
        os.chmod(tmp, FILE_MODE)  # DuckDB reuses the file; narrowed again in case it made its own
        if special:
            with open(tmp, "rb") as src, open_owner_only(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # on disk before the rename: after a crash the old file or the new, whole
            finally:
                os.close(fd)
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return int(row[0]) if row else 0
