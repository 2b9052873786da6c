"""``ocaudit mapping init``: a commented ``mapping.yaml`` skeleton from a vendor file's header.

Every header of the file is listed: under ``columns:`` with its most likely contract column (the
other candidates, closest first, in a comment), under ``drop:`` when it looks like a direct
identifier, or commented out when no contract column is close. The guesses come from
:mod:`toolkit.ingest.suggest` (a small table of Japanese header words and ``difflib``); the file
says plainly that it is a skeleton to review. It loads with :func:`toolkit.ingest.mapping.load_mapping`
as written and is created with mode 0600. Only header names are read and written, never values.
"""

from __future__ import annotations

import codecs
import csv
import glob
import io
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from toolkit.contract import TABLE_ORDER, TABLES
from toolkit.errors import InputFileError, UserError
from toolkit.ingest import readers as rd
from toolkit.ingest import suggest
from toolkit.ingest.parse import looks_like_identifier
from toolkit.store.files import write_text

#: bytes read to find a CSV header / JSON Lines keys
HEADER_BYTES = 1 << 20
JSONL_LINES = 1000


@dataclass
class Skeleton:
    """The guesses for one file: renames, drops, headers left for the user, columns still missing."""

    table: str
    file_name: str
    encoding: str | None
    columns: list[tuple[str, str, list[str]]] = field(default_factory=list)  # header, column, others
    already: list[str] = field(default_factory=list)  # headers that are contract names already
    drop: list[str] = field(default_factory=list)
    unmatched: list[tuple[str, list[str]]] = field(default_factory=list)  # header, taken candidates
    uncovered: list[str] = field(default_factory=list)  # contract columns no header gives


def source_file(path: Path, table: str | None) -> rd.SourceFile:
    """The :class:`~toolkit.ingest.readers.SourceFile` of ``path``; the table from ``table`` or its name."""
    if not path.is_file():
        raise UserError(f"{path}: file not found; expected one vendor export file")
    parts = rd.split_suffix(path)
    if parts is None:
        raise UserError(f"{path}: unsupported file format; expected one of {rd.ACCEPTED}")
    stem, fmt, gz = parts
    name = table or rd.table_from_stem(stem)
    if name is None:
        raise UserError(
            f"{path}: the file name names no contract table; give one with --table ({', '.join(TABLE_ORDER)})"
        )
    if name not in TABLES:
        raise UserError(f"--table {name!r}: not a contract table; tables: {', '.join(TABLE_ORDER)}")
    return rd.SourceFile(path=path.resolve(), table=name, fmt=fmt, gz=gz, display=path.name)


def read_file_header(sf: rd.SourceFile, encoding: str | None = None) -> tuple[list[str], str | None]:
    """(header names, encoding) of a CSV, Parquet or JSON Lines file; only names are read."""
    if sf.fmt == "parquet":
        con = duckdb.connect()
        try:
            return [name for name, _ in rd.parquet_columns(con, sf)], None
        finally:
            con.close()
    enc = rd.detect_encoding(sf, encoding)
    with rd.open_binary(sf) as fh:
        sample = fh.read(HEADER_BYTES)
    text = codecs.getincrementaldecoder("utf-8" if enc == "utf-8-sig" else enc)("replace").decode(sample)
    text = text.lstrip("\ufeff")
    if sf.fmt == "jsonl":
        keys: dict[str, None] = {}
        for line in text.splitlines()[:JSONL_LINES]:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                keys.update(dict.fromkeys(str(k) for k in obj))
        return list(keys), enc
    try:
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error as exc:
        raise InputFileError(str(sf.path), f"the header line cannot be parsed ({exc})") from None
    return [h.strip() or f"(unnamed column {i + 1})" for i, h in enumerate(header)], enc


def _canon(t: Any, col: str) -> str:
    """The contract column a mapping target stands for (``code_prefix`` → ``drug_code``)."""
    return col if col in t.column_names else t.alternatives.get(col, col)


def guess(sf: rd.SourceFile, header: list[str], encoding: str | None) -> Skeleton:
    """Assign each header a contract column (each column once, the surest guesses first)."""
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputFileError(
            str(sf.path), f"duplicate column names in the header: {', '.join(dup)}; ingest would refuse it"
        )
    t = TABLES[sf.table]
    sk = Skeleton(table=sf.table, file_name=sf.path.name, encoding=encoding)
    lower = {c.lower(): c for c in (*t.column_names, *t.alternatives)}
    taken: set[str] = set()
    for h in header:
        if h.lower() in lower:
            sk.already.append(h)
            taken.add(_canon(t, lower[h.lower()]))
    rest = [h for h in header if h not in sk.already]
    sk.drop = [h for h in rest if looks_like_identifier(h)]
    scored = {h: suggest.scored_candidates(h, sf.table) for h in rest if h not in sk.drop}
    order = sorted(scored, key=lambda h: -(scored[h][0][1] if scored[h] else 0.0))
    chosen: dict[str, tuple[str, list[str]]] = {}
    for h in order:
        names = [c for c, _ in scored[h]]
        free = [c for c in names if _canon(t, c) not in taken]
        if free:
            taken.add(_canon(t, free[0]))
            chosen[h] = (free[0], [c for c in names if c != free[0]][:3])
    for h in rest:
        if h in chosen:
            sk.columns.append((h, *chosen[h]))
        elif h not in sk.drop:
            sk.unmatched.append((h, [c for c, _ in scored[h]][:3]))
    sk.uncovered = [c for c in t.column_names if c not in taken]
    return sk


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _width(text: str) -> int:
    """Display width (a full-width character takes two columns)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def render(sk: Skeleton, out_name: str) -> str:
    """The commented YAML text of a skeleton."""
    t = TABLES[sk.table]
    w = max([_width(_q(h)) for h, *_ in sk.columns] + [_width(_q(h)) for h, _ in sk.unmatched] + [8])
    lines = [
        f"# ocaudit mapping skeleton for {sk.file_name} (table {sk.table}), written by `ocaudit mapping init`.",
        "# これは下書きです: a SKELETON TO REVIEW, not a finished mapping. The column guesses come from a",
        "# small table of common Japanese header words and from name similarity, and they can be wrong.",
        "# Check every line against the vendor's export documentation, then:",
        f"#   ocaudit ingest --db audit.duckdb {sk.file_name} --mapping {out_name}",
        "# Format: docs/ingest.md (Mapping file). Lines starting with # are comments.",
        'vendor: ""',
        "tables:",
        f"  {sk.table}:",
        f"    files: [{_q(glob.escape(sk.file_name))}]",
    ]
    if sk.encoding and sk.encoding != "utf-8":
        lines.append(f"    encoding: {sk.encoding}   # detected")
    lines.append("    columns:   # vendor header: contract column")
    for h, col, others in sk.columns:
        c = t.column(_canon(t, col))
        notes = [f"{c.type}" + (f": {', '.join(c.enum)}" if c.enum else "")]
        if others:
            notes.append("other candidates: " + ", ".join(others))
        lines.append(f"      {_pad(_q(h) + ':', w + 1)} {col}   # " + "; ".join(notes))
    for h, cands in sk.unmatched:
        why = (
            f"candidates already taken: {', '.join(cands)}"
            if cands
            else "no close contract column: ignored unless you map it"
        )
        lines.append(f"      # {_pad(_q(h) + ':', w + 1)} ?   # {why}")
    for h in sk.already:
        lines.append(f"      # {_pad(_q(h), w + 1)} is a contract column already (no rename needed)")
    lines.append("    drop:      # removed before anything else: direct identifiers are never ingested")
    for h in sk.drop:
        lines.append(
            f"      - {_q(h)}   # looks like a direct identifier (name, address, phone, insurance …)"
        )
    lines += [
        "    # values: vendor value -> contract value, per contract column, e.g.",
        "    #   kind: {オンライン診療: online_care, 診療前相談: pre_consultation, 受診勧奨: online_referral}",
        '    #   is_first_visit: {初診: "true", 再診: "false"}',
        '    # timestamp_format: "%Y/%m/%d %H:%M"   # when timestamps are not ISO 8601 (no offset = +09:00)',
        '    # date_format: "%Y/%m/%d"',
        "    # constants: {platform: dedicated}     # a contract column the file lacks, the same for every row",
    ]
    if sk.uncovered:
        lines.append(
            "# Contract columns no header gives (they load as empty; the rules needing them are not evaluable):"
        )
        row = "#  "
        for c in sk.uncovered:
            if len(row) + len(c) > 100:
                lines.append(row)
                row = "#  "
            row += f" {c},"
        lines.append(row.rstrip(","))
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str, *, force: bool = False) -> None:
    """Write ``text`` to ``path`` as UTF-8, mode 0600; refuse an existing file unless ``force``."""
    target = Path(path)
    if (target.exists() or target.is_symlink()) and not force:
        raise UserError(f"{path}: already exists; choose another --out or add --force to replace it")
    try:
        write_text(target, text)
    except OSError as exc:
        raise UserError(f"{path}: cannot be written ({exc.strerror})") from None


def mapping_init(
    file: str | Path,
    table: str | None = None,
    out: str | Path = "mapping.yaml",
    *,
    encoding: str | None = None,
    force: bool = False,
) -> Skeleton:
    """Write the mapping skeleton of ``file`` to ``out`` (0600) and return the guesses."""
    sf = source_file(Path(file), table)
    try:
        forced = rd.normalise_encoding(encoding)
    except ValueError as exc:
        raise UserError(f"--encoding: {exc}") from None
    header, enc = read_file_header(sf, forced)
    if not header:
        raise InputFileError(str(sf.path), f"no header line; expected a header naming the {sf.table} columns")
    sk = guess(sf, header, enc)
    write_private(Path(out), render(sk, Path(out).name), force=force)
    return sk


def cli_mapping_init(args: Any) -> int:
    """``ocaudit mapping init FILE [--table T] [--out mapping.yaml]``: write the skeleton, say what it holds."""
    sk = mapping_init(args.file, args.table, args.out, encoding=args.encoding, force=args.force)
    print(
        f"wrote {args.out} (mode 0600): {len(sk.columns)} header(s) mapped to {sk.table} columns, "
        f"{len(sk.drop)} to drop (direct identifiers), {len(sk.unmatched)} left for you, "
        f"{len(sk.already)} already contract names"
    )
    if sk.uncovered:
        print(f"  {len(sk.uncovered)} contract column(s) no header gives: {', '.join(sk.uncovered)}")
    print("  this is a skeleton to review: check every guessed column before ingesting with --mapping")
    return 0
