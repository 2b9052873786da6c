"""The review sheet for officers who work in Excel: ``ocaudit review export`` and ``review import``.

``export`` writes one run's findings (ids only) with their current mark and empty columns for a
new state, note and name; rows stream from DuckDB in batches into a write-only workbook, so the
memory used does not grow with the number of findings. ``import`` reads the filled-in rows
(only rows with a new state), validates every one (unknown rule or entity, a record the run
store never flagged, a bad state or change, a finding marked by someone else since the export)
and reports problems by sheet row. Nothing is applied if any row is bad, unless ``--skip-bad``.
Every cell written is formula-neutralised and the file is owner-only (0600).
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb

from toolkit import store
from toolkit.errors import UserError
from toolkit.review import marks, states
from toolkit.store.files import ExcelSheet, unneutralise, write_excel_rows

JST = timezone(timedelta(hours=9))
SHEET = "findings 指摘"
#: (key read back by import, header label, column width)
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("rule_id", "rule_id 規則ID", 28),
    ("title", "title 規則名", 30),
    ("level", "level 区分", 9),
    ("entity", "entity 対象", 12),
    ("entity_id", "entity_id 記録ID", 20),
    ("status", "status 判定", 14),
    ("institution_id", "institution_id 医療機関", 14),
    ("doctor_id", "doctor_id 医師", 12),
    ("month", "month 月", 9),
    ("run_id", "run_id 監査ID", 28),
    ("current_state", "current_state 現在の状態", 20),
    ("still_present", "still_present 訂正後も検出", 16),
    ("marked_by", "marked_by 前回の記入者", 16),
    ("marked_at", "marked_at 前回の記入日時", 18),
    ("note", "note 前回の備考", 30),
    ("new_state", "new_state 新しい状態", 24),
    ("new_note", "new_note 新しい備考", 40),
    ("new_marked_by", "new_marked_by 記入者", 16),
)
REQUIRED = ("rule_id", "entity", "entity_id", "new_state")
EXCEL_MAX_ROWS = 1_048_575
MAX_IMPORT_BYTES = 100 * 1024 * 1024
BATCH = 5000


@dataclass
class ExportResult:
    """What :func:`export_sheet` wrote."""

    path: Path
    run_id: str
    rows: int


@dataclass
class ImportResult:
    """What :func:`import_sheet` applied and (with ``skip_bad``) skipped."""

    applied: int
    rows_with_changes: int
    skipped: list[str] = field(default_factory=list)
    mark_ids: list[int] = field(default_factory=list)


def _how_to() -> list[list[str]]:
    rows = [
        ["記入方法", "How to fill in"],
        [
            "変更する行だけ new_state（新しい状態）を選び、new_note（備考）と new_marked_by（記入者）を書きます。",
            "Fill new_state only on rows you change; add new_note and new_marked_by (or give --by on import).",
        ],
        [
            "他の列は変更しないでください。記録IDと監査IDで指摘を照合します。",
            "Do not edit other columns: rows are matched by rule, record id and run id.",
        ],
        [
            "備考には理由と記録IDだけを書き、患者の氏名など個人情報は書かないでください。",
            f"Notes: reasons and ids only, never patient names (at most {states.NOTE_MAX} characters).",
        ],
        [
            "取り込み: ocaudit review import --db FILE marks.xlsx（1行でも誤りがあれば何も記録しません）",
            "Import: ocaudit review import --db FILE marks.xlsx (one bad row and nothing is applied; --skip-bad)",
        ],
        ["", ""],
        ["状態", "State"],
    ]
    rows += [[f"{ja} {code}", en] for code, (ja, en) in states.STATES.items()]
    rows += [
        ["", ""],
        [
            "正当な例外には理由（備考）が必要です。同じ状態への変更はできません（訂正後も検出された場合の再訂正を除く）。",
            "justified needs a note; a change to the same state is refused (except corrected again when "
            "a later run still flags the record).",
        ],
    ]
    return rows


def _fmt_time(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")
    return "" if value is None else str(value)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, args: list, run_id: str) -> Iterator[list]:
    cur = con.execute(sql, args)
    names = [d[0] for d in cur.description]
    while batch := cur.fetchmany(BATCH):
        for tup in batch:
            r = dict(zip(names, tup, strict=True))
            yield [
                r["rule_id"],
                r["title_ja"] or "",
                r["level"] or "",
                r["entity"],
                r["entity_id"],
                "違反 violated" if r["status"] == "violated" else "記録なし not_evidenced",
                r["institution_id"] or "",
                r["doctor_id"] or "",
                r["month"] or "",
                run_id,
                states.label(r["state"]),
                "はい yes" if r["still_present"] else "",
                r["marked_by"] or "",
                _fmt_time(r["marked_at"]),
                r["note"] or "",
                "",
                "",
                "",
            ]


def _wanted_states(state: str | None) -> list[str]:
    out = []
    for part in (state or "").split(","):
        part = part.strip()
        if not part:
            continue
        code = "still_present" if part in ("still_present", "still-present") else states.parse_state(part)
        if code is None:
            raise UserError(
                f"--state {part!r}: use open, acknowledged, corrected, justified or still_present "
                "(comma-separated) 状態の指定が不正です"
            )
        out.append(code)
    return out


def export_sheet(
    db_path: str | Path,
    out: str | Path,
    *,
    rule: str | None = None,
    state: str | None = None,
    run_id: str | None = None,
) -> ExportResult:
    """Write the review sheet of one run (default: the latest complete run) to ``out`` (.xlsx, 0600)."""
    if not Path(db_path).is_file():
        raise UserError(f"{db_path}: no such database file; run `ocaudit ingest` and `ocaudit audit` first")
    wanted = _wanted_states(state)
    con = store.connect(db_path, read_only=True)
    try:
        if not store.table_exists(con, "audit_runs"):
            raise UserError(f"{db_path}: no audit runs yet; run `ocaudit audit --db {db_path}` first")
        known = {r for r, _p in store.runs_newest_first(con)}
        if run_id is not None and run_id not in known:
            raise UserError(f"--run {run_id!r}: no such audit run in {db_path}")
        run_id = run_id or store.latest_run_id(con)
        if run_id is None:
            raise UserError(f"{db_path}: no complete audit run; give a partial run with --run")
        if (
            rule
            and not con.execute(
                "SELECT count(*) FROM rule_results WHERE run_id = ? AND rule_id GLOB ?", [run_id, rule]
            ).fetchone()[0]
        ):
            raise UserError(
                f"--rule {rule!r}: no rule of run {run_id} matches; rule ids look like consent.recorded"
            )
        latest = None if marks.has_marks_table(con) else marks._EMPTY_LATEST
        sql, args = marks.findings_sql(run_id, rule, wanted, latest=latest)
        n = con.execute(f"SELECT count(*) FROM ({sql})", args).fetchone()[0]
        if n > EXCEL_MAX_ROWS:
            raise UserError(
                f"{n:,} findings: more than one Excel sheet holds ({EXCEL_MAX_ROWS:,}); narrow the export "
                "with --rule and/or --state 件数が多すぎます"
            )
        sheets = [
            ExcelSheet(
                SHEET,
                [c[1] for c in COLUMNS],
                _rows(con, sql, args, run_id),
                widths=[c[2] for c in COLUMNS],
                choices={[c[0] for c in COLUMNS].index("new_state"): states.choices()},
            ),
            ExcelSheet("how_to 記入方法", ["日本語", "English"], _how_to(), widths=[90, 90]),
        ]
        path, counts = write_excel_rows(sheets, out)
    finally:
        con.close()
    return ExportResult(path, run_id, counts[0])


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(unneutralise(value)).strip() if isinstance(value, str) else str(value)


def _read_requests(path: Path, who: str | None) -> tuple[list[marks.MarkRequest], list[str], list[str]]:
    """The sheet's rows with a new state → (requests, their row names, problems found while reading)."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise UserError(
            f"{path}: not an Excel (.xlsx) workbook ({str(exc)[:120]}) Excel ファイルではありません"
        ) from None
    try:
        for ws in wb.worksheets:
            header = next(ws.iter_rows(min_row=1, max_row=1, values_only=True), ())
            index = {_cell(h).split(" ")[0].lower(): i for i, h in enumerate(header) if _cell(h)}
            if all(k in index for k in REQUIRED):
                break
        else:
            raise UserError(
                f"{path}: no sheet with the columns {', '.join(REQUIRED)} 必要な列がありません; "
                "fill in a sheet written by `ocaudit review export`"
            )
        requests, where, problems = [], [], []
        for n, row in enumerate(ws.iter_rows(min_row=2, values_only=True), start=2):
            cells = {k: _cell(row[i]) if i < len(row) else "" for k, i in index.items()}
            get = cells.get
            new_state, note = get("new_state", ""), get("new_note", "")
            name = f"sheet {ws.title!r} row {n} 行目"
            if not new_state:
                if note:
                    problems.append(
                        f"{name}: 備考だけで状態がありません new_note without a new_state; choose one"
                    )
                continue
            code = states.parse_state(new_state)
            if code is None:
                problems.append(f"{name}: {states.transition_problem('open', new_state, note)}")
                continue
            cur = get("current_state", "")
            requests.append(
                marks.MarkRequest(
                    rule_id=get("rule_id", ""),
                    entity=get("entity", ""),
                    entity_id=get("entity_id", ""),
                    state=code,
                    who=get("new_marked_by", "") or (who or ""),
                    note=note,
                    run_id=get("run_id", "") or None,
                    expected_state=states.parse_state(cur) if cur else None,
                )
            )
            where.append(name)
        return requests, where, problems
    finally:
        wb.close()


def import_sheet(
    db_path: str | Path, sheet: str | Path, *, skip_bad: bool = False, who: str | None = None
) -> ImportResult:
    """Apply a filled-in review sheet: every row validated; all or nothing unless ``skip_bad``.

    ``who``: the reviewer for rows whose new_marked_by is empty. Raises UserError listing every bad
    row by sheet row number (nothing written) when a row is bad and ``skip_bad`` is False.
    """
    path = Path(sheet)
    if not path.is_file():
        raise UserError(f"{path}: no such file (give the .xlsx written by `ocaudit review export`)")
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise UserError(f"{path}: larger than {MAX_IMPORT_BYTES // 2**20} MB; not a review sheet")
    if not Path(db_path).is_file():
        raise UserError(f"{db_path}: no such database file")
    requests, where, problems = _read_requests(path, who)
    con = store.connect(db_path, wait_seconds=30)
    try:
        store.ensure_schema(con)
        checked = marks.check_requests(con, requests)
        problems += [f"{where[i]}: {p}" for i, p in enumerate(checked) if p is not None]
        good = [r for r, p in zip(requests, checked, strict=True) if p is None]
        if problems and not skip_bad:
            shown = "\n".join(problems[:100])
            more = (
                f"\n… and {len(problems) - 100} more 他 {len(problems) - 100} 件"
                if len(problems) > 100
                else ""
            )
            raise UserError(
                f"{path}: {len(problems)} bad row(s); nothing was applied 1件も記録していません "
                f"(fix them, or apply the others with --skip-bad):\n{shown}{more}"
            )
        ids = marks.add_requests(con, good, [w for w, p in zip(where, checked, strict=True) if p is None])
    finally:
        con.close()
    return ImportResult(len(ids), len(requests), problems if skip_bad else [], ids)


def cli_review_export(args: argparse.Namespace) -> int:
    """``ocaudit review export``: write the sheet and say where."""
    res = export_sheet(args.db, args.out, rule=args.rule, state=args.state, run_id=args.run)
    print(
        f"review sheet written レビュー表を出力しました: {res.path.resolve()} "
        f"({res.rows:,} findings 件, run {res.run_id}); fill in new_state and import it with "
        f"`ocaudit review import --db {args.db} {args.out}`"
    )
    return 0


def cli_review_import(args: argparse.Namespace) -> int:
    """``ocaudit review import``: apply the sheet; exit 2 (nothing applied) on a bad row without --skip-bad."""
    res = import_sheet(args.db, args.sheet, skip_bad=args.skip_bad, who=args.by)
    for p in res.skipped:
        print(f"skipped 取り込まず: {p}", file=sys.stderr)
    print(
        f"{res.applied} mark(s) recorded 件を記録しました"
        + (f"; {len(res.skipped)} bad row(s) skipped 件を除外" if res.skipped else "")
        + f" ({datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')})"
    )
    return 0


def state_names() -> Sequence[str]:
    """Codes accepted by ``--state`` (the states and ``still_present``)."""
    return [*states.STATES, "still_present"]
