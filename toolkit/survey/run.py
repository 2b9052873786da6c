"""EC survey (初診からのオンライン診療による緊急避妊薬の処方に係る実態調査): tables, exports, merge.

``ocaudit survey ec`` computes the survey tables (:mod:`toolkit.survey.tables`) for a period,
writes them with small-cell suppression (:mod:`toolkit.survey.suppression`) as CSV (UTF-8 with BOM) and
one Excel workbook, keeps the unsuppressed tables and non-compliant case ids apart in
``local_not_for_release/``, and writes an aggregate-only package (:mod:`toolkit.survey.package`)
for the survey office. ``ocaudit survey merge`` verifies many packages, adds them up and
publishes the combined tables with suppression. See docs/survey.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from toolkit import __version__, store
from toolkit.errors import UserError
from toolkit.periods import months_of
from toolkit.store.files import make_dirs, write_csv, write_excel, write_rows_csv, write_text
from toolkit.survey.counts import compute_counts, ec_case_rows
from toolkit.survey.package import PackageRejected, add_values, verify_all, write_package
from toolkit.survey.suppression import count_text, rate_text, suppress
from toolkit.survey.tables import EC_RULES, TABLE_SCHEMA_VERSION, Layout, build_layout

JST = dt.timezone(dt.timedelta(hours=9))
LOCAL_DIR = "local_not_for_release"
PACKAGE_DIR = "package"
README_LOCAL = """NOT FOR RELEASE — 公開・提出しないこと

This folder holds the institution's own copy of the EC survey: the tables WITHOUT small-cell
suppression and the ids of EC cases that were not compliant with an ec.* rule. It is for the
quality officer's follow-up only. Do not send it to the survey office, do not publish it and do
not attach it to e-mail. Send only the files in ../package/ (aggregate counts) or the
suppressed tables in the parent folder.

このフォルダには少数セルを秘匿していない集計表と、規則に適合しなかった症例のIDが含まれます。
院内の質改善のためだけに使用し、外部へ提出・公開しないでください。
"""


@dataclass
class SurveyResult:
    """What a survey run produced (values are exact; ``masked`` = cells suppressed for publication)."""

    out_dir: Path
    institution_id: str
    period: str
    months: list[str]
    as_of: dt.date
    audit_run_available: bool
    layout: Layout
    values: dict[str, int]
    masked: set[str]
    published: dict[str, pd.DataFrame]
    local: dict[str, pd.DataFrame]
    files: list[Path] = field(default_factory=list)


@dataclass
class MergeResult:
    """Outcome of merging packages."""

    out_dir: Path
    institutions: list[str]
    values: dict[str, int]
    masked: set[str]
    published: dict[str, pd.DataFrame]


def _label(ja: str, en: str) -> str:
    return ja if ja == en else f"{ja} ({en})"


def suppression_mask(layout: Layout, values: dict[str, int], threshold: int) -> set[str]:
    """Cells to suppress in ``layout`` (institution counts in T5 'available' are never suppressed)."""
    counted = {k: v for k, v in values.items() if not k.endswith("|available")}
    return suppress(counted, layout.lines, threshold, layout.links)


def render(
    layout: Layout, values: dict[str, int], *, threshold: int, masked: set[str] | None
) -> dict[str, pd.DataFrame]:
    """One frame per table; ``masked`` None = exact (local) version, else the published version."""
    hidden = masked or set()
    frames = {}
    for spec in layout.tables:
        records = []
        for rkey, rja, ren in spec.rows:
            rec: dict[str, Any] = {"コード (code)": rkey, "項目 (item)": _label(rja, ren)}
            not_run = spec.id == "T5" and not values.get(f"T5|{rkey}|available", 0)
            for ckey, cja, cen in spec.cols:
                ref = spec.cells.get((rkey, ckey))
                head = _label(cja, cen)
                if ref is None:
                    rec[head] = ""
                elif not_run and ckey != "available":
                    rec[head] = "評価なし (not evaluated)" if ckey == "in_scope" else ""
                elif isinstance(ref, tuple):
                    _, num, den = ref
                    rec[head] = rate_text(values.get(num), values.get(den), num in hidden or den in hidden)
                elif ref.endswith("|available"):
                    rec[head] = int(values.get(ref, 0))
                else:
                    rec[head] = (
                        count_text(values.get(ref), ref in hidden, threshold)
                        if masked is not None
                        else int(values.get(ref, 0))
                    )
            records.append(rec)
        frames[spec.id] = pd.DataFrame.from_records(records).astype(object)
    return frames


def table_notes(
    layout: Layout,
    *,
    period: str,
    as_of: dt.date | None,
    threshold: int | None,
    extra: list[str] | None = None,
) -> dict[str, list[str]]:
    """Lines shown above each Excel sheet: title, period, as-of, suppression rule and the table's notes."""
    out = {}
    for spec in layout.tables:
        lines = [f"{spec.id} {spec.title_ja} / {spec.title_en}", f"期間 (period): {period}"]
        if as_of is not None:
            lines.append(f"基準日 (as-of): {as_of.isoformat()}")
        if threshold is not None:
            lines.append(
                f"<{threshold} = 1–{threshold - 1} 件、又は合計からの逆算を防ぐため秘匿したセル（補完秘匿、"
                f"値は{threshold}以上のこともある）。0 はそのまま表示。* = 秘匿セルから計算される率 "
                f"(<{threshold} marks a count of 1–{threshold - 1}, OR a cell hidden so that such a count "
                "cannot be recovered from totals (complementary suppression; its value may be larger). "
                "The same mark is used for both so that the two cannot be told apart. 0 is shown as 0; "
                "'*' = a rate computed from a hidden count.)"
            )
        else:
            lines.append("秘匿なし・公開不可 (NOT suppressed — NOT FOR RELEASE)")
        out[spec.id] = lines + spec.notes + ((extra or []) if spec.id == "T5" else [])
    return out


def _write_tables(
    out: Path, frames: dict[str, pd.DataFrame], notes: dict[str, list[str]], stem: str, suffix: str = ""
) -> list[Path]:
    files = []
    for tid, df in frames.items():
        files.append(write_csv(df, out / f"{stem}_{tid}{suffix}.csv"))
    sheets = {f"{tid}": df for tid, df in frames.items()}
    files.append(write_excel(sheets, out / f"{stem}{suffix}.xlsx", notes=notes))
    return files


def _readme(out: Path, notes: dict[str, list[str]], header: list[str]) -> Path:
    text = "\n".join(header) + "\n\n" + "\n\n".join("\n".join(v) for v in notes.values()) + "\n"
    return write_text(out / "README.txt", text)


def _need_tables(con: duckdb.DuckDBPyConnection) -> None:
    for t in ("sessions", "ec_cases", "prescriptions", "drug_master", "doctors", "patients"):
        if not store.table_exists(con, t):
            raise UserError(f"the database has no {t} table; run `ocaudit ingest` first")


def _institutions_with_sessions(con: duckdb.DuckDBPyConnection, months: list[str]) -> list[str]:
    marks = ", ".join("?" for _ in months)
    return [
        str(r[0])
        for r in con.execute(
            f"SELECT DISTINCT institution_id FROM sessions WHERE institution_id IS NOT NULL AND "
            f"strftime(timezone('Asia/Tokyo', started_at), '%Y-%m') IN ({marks}) ORDER BY 1",
            months,
        ).fetchall()
    ]


def survey_institutions(db_path: str | os.PathLike[str], period: str) -> list[str]:
    """Institutions with sessions in ``period`` (Japan time): one survey package each (notebook 05)."""
    if not Path(db_path).is_file():
        raise UserError(f"{db_path}: no such database file")
    con = store.connect(db_path, read_only=True)
    try:
        _need_tables(con)
        return _institutions_with_sessions(con, months_of(period))
    finally:
        con.close()


def _institution(con: duckdb.DuckDBPyConnection, months: list[str], institution: str | None) -> str:
    found = _institutions_with_sessions(con, months)
    if institution:
        known = con.execute(
            "SELECT count(*) FROM sessions WHERE institution_id = ?", [institution]
        ).fetchone()[0]
        if not known and institution not in found:
            has_inst = (
                store.table_exists(con, "institutions")
                and con.execute(
                    "SELECT count(*) FROM institutions WHERE institution_id = ?", [institution]
                ).fetchone()[0]
            )
            if not has_inst:
                ids = known_institutions(con)
                raise UserError(
                    f"--institution {institution}: no such institution in the database; known: "
                    f"{', '.join(ids[:20]) or 'none'}{' …' if len(ids) > 20 else ''}"
                )
        return institution
    if len(found) == 1:
        return str(found[0])
    if not found:
        raise UserError("no sessions in the period; give --institution to write an empty survey for one")
    raise UserError(
        f"the period has sessions of {len(found)} institutions ({', '.join(map(str, found[:10]))}); "
        "give --institution ID (one survey package per institution)"
    )


def known_institutions(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Institution ids of the sessions and the institutions table, sorted (for error messages)."""
    sql = "SELECT institution_id FROM sessions WHERE institution_id IS NOT NULL"
    if store.table_exists(con, "institutions"):
        sql += " UNION SELECT institution_id FROM institutions WHERE institution_id IS NOT NULL"
    return [str(r[0]) for r in con.execute(f"SELECT DISTINCT * FROM ({sql}) ORDER BY 1").fetchall()]


def period_institutions(db_path: str | os.PathLike[str], period: str) -> list[str]:
    """Institutions with sessions in ``period`` (Japan time), sorted."""
    months = months_of(period)
    if not Path(db_path).is_file():
        raise UserError(f"{db_path}: no such database file")
    con = store.connect(db_path, read_only=True)
    try:
        _need_tables(con)
        return _institutions_with_sessions(con, months)
    finally:
        con.close()


def institution_folder(institution_id: str) -> str:
    """A safe folder name for an institution's package (odd characters replaced, hash added if changed)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", institution_id).strip("_")[:40]
    if safe != institution_id or not safe or safe == "merged":
        safe = f"{safe or 'institution'}_{hashlib.sha256(institution_id.encode()).hexdigest()[:8]}"
    return safe


@dataclass
class SurveyAllResult:
    """``survey ec`` over every institution of the period: one survey each, then their merge."""

    out_dir: Path
    surveys: list[SurveyResult]
    merged: MergeResult


def run_survey_ec_all(
    db_path: str | os.PathLike[str],
    period: str,
    out_dir: str | os.PathLike[str],
    *,
    threshold: int = 10,
    as_of: dt.date | None = None,
) -> SurveyAllResult:
    """One survey package per institution with sessions in ``period`` (``out/<institution>/``), then
    their merged, suppressed tables (``out/merged/``), as the survey office's ``survey merge`` would."""
    insts = period_institutions(db_path, period)
    if not insts:
        raise UserError("no sessions in the period; give --institution to write an empty survey for one")
    out = make_dirs(out_dir, fix_existing=True)
    surveys = [
        run_survey_ec(
            db_path, period, out / institution_folder(i), threshold=threshold, institution=i, as_of=as_of
        )
        for i in insts
    ]
    merged = merge_packages(
        [str(r.out_dir / PACKAGE_DIR) for r in surveys], out / "merged", threshold=threshold
    )
    return SurveyAllResult(out, surveys, merged)


def audit_t5(
    con: duckdb.DuckDBPyConnection, case_ids: set[str], months: list[str], institution: str | None
) -> tuple[dict[str, dict[str, int]] | None, list[tuple[str, str, str]], dt.date | None]:
    """EC rule results of the latest audit run, restricted to ``case_ids`` (the period's cases).

    The records in scope of each rule are the audit's own (its strata of the period's months and
    the institution), never re-derived here. Returns (per rule {in_scope, violated, not_evidenced,
    available} or None when there is no run,
    the non-compliant (rule, case id, status) rows for the local copy, the run's as-of date).
    """
    if not store.table_exists(con, "audit_runs"):
        return None, [], None
    run_id = store.latest_run_id(con)
    if run_id is None:
        return None, [], None
    as_of = con.execute("SELECT as_of FROM audit_runs WHERE run_id = ?", [run_id]).fetchone()[0]
    status = dict(
        con.execute(
            "SELECT rule_id, status FROM rule_results WHERE run_id = ? AND rule_id LIKE 'ec.%'", [run_id]
        ).fetchall()
    )
    rows = [
        (r, e, s)
        for r, e, s in con.execute(
            "SELECT rule_id, entity_id, status FROM violations WHERE run_id = ? AND rule_id LIKE 'ec.%' "
            "ORDER BY rule_id, entity_id",
            [run_id],
        ).fetchall()
        if e in case_ids
    ]
    marks = ", ".join("?" for _ in months)
    inst_sql, params = (
        ("", [run_id, *months])
        if institution is None
        else (" AND institution_id = ?", [run_id, *months, institution])
    )
    in_scope = dict(
        con.execute(
            "SELECT rule_id, sum(denominator) FROM rule_results_strata WHERE run_id = ? AND rule_id LIKE 'ec.%' "
            f"AND month IN ({marks}){inst_sql} GROUP BY rule_id",
            params,
        ).fetchall()
    )
    out: dict[str, dict[str, int]] = {}
    for rule, _, _ in EC_RULES:
        avail = rule in status and status[rule] not in ("not_evaluable", "error")
        out[rule] = {
            "available": int(avail),
            "in_scope": int(in_scope.get(rule) or 0),
            "violated": sum(1 for r, _, s in rows if r == rule and s == "violated"),
            "not_evidenced": sum(1 for r, _, s in rows if r == rule and s == "not_evidenced"),
        }
    return out, rows, as_of


def run_survey_ec(
    db_path: str | os.PathLike[str],
    period: str,
    out_dir: str | os.PathLike[str],
    *,
    threshold: int = 10,
    institution: str | None = None,
    as_of: dt.date | None = None,
) -> SurveyResult:
    """Compute and write the EC survey for one institution and period (see module doc).

    ``as_of`` (follow-up status in T3): default the latest audit run's as-of date, else today in Japan.
    """
    if threshold < 1:
        raise UserError("--threshold must be at least 1")
    months = months_of(period)
    period = f"{months[0]}..{months[-1]}"
    if not Path(db_path).is_file():
        raise UserError(f"{db_path}: no such database file")
    con = store.connect(db_path, read_only=True)
    try:
        _need_tables(con)
        inst = _institution(con, months, institution)
        flt = inst if institution else None
        cases = ec_case_rows(con, months, flt)
        case_ids = {str(c["session_id"]) for c in cases}
        t5, nonconf, run_as_of = audit_t5(con, case_ids, months, flt)
        as_of = as_of or run_as_of or dt.datetime.now(JST).date()
        values = compute_counts(con, months, flt, as_of, t5)
    finally:
        con.close()
    layout = build_layout(months)
    masked = suppression_mask(layout, values, threshold)
    published = render(layout, values, threshold=threshold, masked=masked)
    local = render(layout, values, threshold=threshold, masked=None)
    t5_note = (
        []
        if t5 is not None
        else [
            "監査実行がないため T5 は省略 "
            "(no audit run in the database: T5 skipped; run `ocaudit audit` first)."
        ]
    )

    out = make_dirs(out_dir, fix_existing=True)
    files = _write_tables(
        out,
        published,
        table_notes(layout, period=period, as_of=as_of, threshold=threshold, extra=t5_note),
        "ec_survey",
    )
    header = [
        f"ocaudit {__version__} EC survey / 緊急避妊に係る実態調査",
        f"institution: {inst}",
        f"period: {period}",
        f"as-of: {as_of.isoformat()}",
        f"suppression threshold: {threshold}",
        *t5_note,
    ]
    files.append(
        _readme(
            out, table_notes(layout, period=period, as_of=as_of, threshold=threshold, extra=t5_note), header
        )
    )
    loc = out / LOCAL_DIR
    make_dirs(loc, fix_existing=True)
    write_text(loc / "README_NOT_FOR_RELEASE.txt", README_LOCAL)
    _write_tables(
        loc,
        local,
        table_notes(layout, period=period, as_of=as_of, threshold=None, extra=t5_note),
        "ec_survey",
        "_NOT_FOR_RELEASE",
    )
    write_rows_csv(
        [("rule_id", "ec_case_session_id", "status"), *nonconf],
        loc / "noncompliant_cases_NOT_FOR_RELEASE.csv",
    )
    pkg = write_package(
        out / PACKAGE_DIR,
        values,
        institution_id=inst,
        period=period,
        months=months,
        as_of=as_of,
        audit_run_available=t5 is not None,
    )
    files += sorted(pkg.iterdir())
    return SurveyResult(
        out, inst, period, months, as_of, t5 is not None, layout, values, masked, published, local, files
    )


def merge_packages(paths: list[str], out_dir: str | os.PathLike[str], *, threshold: int = 10) -> MergeResult:
    """Verify all packages (any problem: :class:`PackageRejected`, nothing written), add and publish."""
    if threshold < 1:
        raise UserError("--threshold must be at least 1")
    pkgs = verify_all(paths)
    first = pkgs[0].manifest
    months = list(first["months"])
    layout = build_layout(months)
    values = add_values(pkgs)
    masked = suppression_mask(layout, values, threshold)
    published = render(layout, values, threshold=threshold, masked=masked)
    out = make_dirs(out_dir, fix_existing=True)
    n_audit = sum(1 for p in pkgs if p.manifest.get("audit_run_available"))
    extra = [f"T5: {n_audit}/{len(pkgs)} 機関が監査実行あり (institutions with an audit run)."]
    notes = table_notes(layout, period=first["period"], as_of=None, threshold=threshold, extra=extra)
    _write_tables(out, published, notes, "ec_survey_merged")
    institutions = [str(p.manifest["institution_id"]) for p in pkgs]
    _readme(
        out,
        notes,
        [
            f"ocaudit {__version__} merged EC survey",
            f"period: {first['period']}",
            f"institutions: {len(pkgs)}",
            f"suppression threshold: {threshold}",
        ],
    )
    merged = {
        "format": "ocaudit-ec-survey-merged",
        "period": first["period"],
        "months": months,
        "toolkit_version": first["toolkit_version"],
        "table_schema_version": TABLE_SCHEMA_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "threshold": threshold,
        "institutions": [
            {
                "institution_id": p.manifest["institution_id"],
                "as_of": p.manifest.get("as_of"),
                "created_at": p.manifest.get("created_at"),
                "audit_run_available": p.manifest.get("audit_run_available"),
                "manifest_sha256": p.manifest_sha256,
                "files": p.manifest["files"],
            }
            for p in pkgs
        ],
    }
    write_text(out / "merged_manifest.json", json.dumps(merged, ensure_ascii=False, indent=2) + "\n")
    return MergeResult(out, institutions, values, masked, published)


def cli_survey_ec(args: argparse.Namespace) -> int:
    """``ocaudit survey ec``: 0 ok, 2 usage/data error.

    Without ``--institution`` on a period with sessions of several institutions: one package per
    institution plus their merged, suppressed tables (:func:`run_survey_ec_all`).
    """
    institution = getattr(args, "institution", None)
    try:
        if not institution and len(period_institutions(args.db, args.period)) > 1:
            return _cli_survey_ec_all(args)
        res = run_survey_ec(
            args.db,
            args.period,
            args.out,
            threshold=args.threshold,
            institution=institution,
            as_of=getattr(args, "as_of", None),
        )
    except UserError as exc:
        print(f"ocaudit: error: {exc}", file=sys.stderr)
        return 2
    n = res.values.get("T1|all|total", 0)
    print(
        f"EC survey {res.period} for {res.institution_id}: {n} EC case(s), as of {res.as_of}; "
        f"{len(res.masked)} cell(s) suppressed at threshold {args.threshold}"
    )
    if not res.audit_run_available:
        print("note: no audit run in the database — T5 (ec.* compliance) skipped; run `ocaudit audit` first")
    print(f"published tables: {res.out_dir}/ec_survey_T1..T6.csv, ec_survey.xlsx")
    print(f"package for the survey office: {res.out_dir / PACKAGE_DIR}")
    print(f"NOT FOR RELEASE (unsuppressed, case ids): {res.out_dir / LOCAL_DIR}")
    return 0


def _cli_survey_ec_all(args: argparse.Namespace) -> int:
    try:
        res = run_survey_ec_all(
            args.db, args.period, args.out, threshold=args.threshold, as_of=getattr(args, "as_of", None)
        )
    except PackageRejected as exc:
        print(f"ocaudit: error: the institutions' packages could not be merged: {exc}", file=sys.stderr)
        return 2
    for r in res.surveys:
        print(
            f"EC survey {r.period} for {r.institution_id}: {r.values.get('T1|all|total', 0)} EC case(s); "
            f"package: {r.out_dir / PACKAGE_DIR}"
        )
    m = res.merged
    print(
        f"{len(res.surveys)} institutions 医療機関 (one package each; give --institution ID for one); merged "
        f"{m.values.get('T1|all|total', 0)} EC case(s), {len(m.masked)} cell(s) suppressed: {m.out_dir}"
    )
    print(f"NOT FOR RELEASE (unsuppressed, case ids): {res.out_dir}/<institution>/{LOCAL_DIR}")
    return 0


def cli_survey_merge(args: argparse.Namespace) -> int:
    """``ocaudit survey merge``: 0 ok, 2 a rejected package or usage error (nothing merged)."""
    try:
        res = merge_packages(list(args.packages), args.out, threshold=args.threshold)
    except PackageRejected as exc:
        print(f"ocaudit: rejected, nothing merged: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"ocaudit: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"merged {len(res.institutions)} package(s): {', '.join(res.institutions)}; "
        f"{res.values.get('T1|all|total', 0)} EC case(s); {len(res.masked)} cell(s) suppressed"
    )
    print(f"published tables and merged_manifest.json in {res.out_dir}")
    return 0


__all__ = [
    "SurveyResult",
    "MergeResult",
    "run_survey_ec",
    "run_survey_ec_all",
    "merge_packages",
    "render",
    "suppression_mask",
    "audit_t5",
    "cli_survey_ec",
    "cli_survey_merge",
]
