"""The dashboard's reads: bounded queries over the run store's pre-aggregated tables.

Every figure comes from ``rule_results`` and ``rule_results_strata`` (a few rows per rule ×
institution × doctor × month) through :mod:`toolkit.report.data`, so a 10M-session run answers
as fast as a small one. Record lists read ``violations`` one page at a time (``LIMIT``/``OFFSET``
on an indexed order) and hold ids only; nothing loads all violations into Python.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import duckdb
import pandas as pd

from toolkit import store
from toolkit.audit import verdict as verdict_mod
from toolkit.errors import UserError
from toolkit.report import data as rd
from toolkit.report import html as report
from toolkit.review import marks
from toolkit.review import summary as review_summary

#: The columns a record list shows: ids, status, institution, doctor, month — never other patient fields.
RECORD_COLUMNS = ("rule_id", "entity", "entity_id", "status", "institution_id", "doctor_id", "month")
PAGE_SIZE = 50


@dataclass(frozen=True)
class Selection:
    """What the dashboard shows: a run and the filters set by its controls (None = all)."""

    run_id: str
    institution: str | None = None
    doctor: str | None = None
    period: tuple[str, str] | None = None
    level: str = "must"
    rule_id: str | None = None
    #: record lists only: the findings' current review state (:data:`REVIEW_FILTERS`; None = any)
    review_state: str | None = None

    @property
    def scope(self) -> rd.Scope:
        """The report :class:`~toolkit.report.data.Scope` of this selection (rule and level aside)."""
        return rd.Scope(institution=self.institution, period=self.period, doctor=self.doctor)

    def with_(self, **changes: object) -> Selection:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


@contextmanager
def reading(db_path: str | os.PathLike[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for one interaction, closed at once (the monthly ingest is never blocked)."""
    con = report.open_store(db_path)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def reading_or(
    db_path: str | os.PathLike[str], con: duckdb.DuckDBPyConnection | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """``con`` when the caller already holds one for this interaction, else a fresh :func:`reading`."""
    if con is not None:
        yield con
        return
    with reading(db_path) as fresh:
        yield fresh


def check_database(db_path: str | os.PathLike[str]) -> str:
    """The latest complete run id of ``db_path``; UserError when the file is missing or has no complete run."""
    with reading(db_path) as con:
        return rd.resolve_run(con, None)


def runs(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(label, run_id) of every run, newest first; partial runs are marked (for a dropdown)."""
    out = []
    for run_id, partial in store.runs_newest_first(con):
        mark = " (部分実行 partial)" if partial else ""
        out.append((f"{run_id}{mark}", run_id))
    return out


def _distinct(con: duckdb.DuckDBPyConnection, column: str, sel: Selection) -> list[str]:
    cond, params = ["run_id = ?", f"{column} IS NOT NULL"], [sel.run_id]
    if column == "doctor_id" and sel.institution is not None:
        cond.append("institution_id = ?")
        params.append(sel.institution)
    rows = con.execute(
        f"SELECT DISTINCT {column} FROM rule_results_strata WHERE {' AND '.join(cond)} ORDER BY 1", params
    ).fetchall()
    return [r[0] for r in rows]


def institutions(con: duckdb.DuckDBPyConnection, sel: Selection) -> list[str]:
    """Institution ids of the run (from the strata)."""
    return _distinct(con, "institution_id", sel)


def doctors(con: duckdb.DuckDBPyConnection, sel: Selection) -> list[str]:
    """Doctor ids of the run, of the selected institution when one is selected."""
    return _distinct(con, "doctor_id", sel)


def months(con: duckdb.DuckDBPyConnection, sel: Selection) -> list[str]:
    """Months (YYYY-MM) of the run's dated strata, oldest first."""
    return _distinct(con, "month", sel)


@dataclass(frozen=True)
class Overview:
    """What the top of the dashboard shows for a selection."""

    verdict: verdict_mod.Verdict
    rules: pd.DataFrame  # rule_frame of the scope (all levels)
    pooled: dict  # rd.pooled of the selected level
    choice: rd.RunChoice


def overview(con: duckdb.DuckDBPyConnection, sel: Selection) -> Overview:
    """Verdict, per-rule counts and the pooled rate of the selection (from the strata)."""
    rules = rd.rule_frame(con, sel.run_id, sel.scope)
    choice = rd.run_choice(con, None)  # the default run, so the page can say whether this is it
    if choice.run_id != sel.run_id:
        choice = rd.run_choice(con, sel.run_id)
    return Overview(rd.run_verdict(con, sel.run_id, rules), rules, rd.pooled(rules, sel.level), choice)


def providers(con: duckdb.DuckDBPyConnection, sel: Selection) -> tuple[str, pd.DataFrame]:
    """Funnel rows of the selected rule (or level): by institution, or by doctor once an institution is set."""
    by = "doctor_id" if sel.institution is not None else "institution_id"
    scope = rd.Scope(institution=sel.institution, period=sel.period)
    return by, rd.provider_frame(con, sel.run_id, by, scope, sel.level, rule_id=sel.rule_id)


def trend(con: duckdb.DuckDBPyConnection, sel: Selection) -> pd.DataFrame:
    """Monthly compliance of the selected rule, or the level's pooled line when no rule is selected."""
    df = rd.trend_frame(con, sel.run_id, sel.scope, sel.level, rule_id=sel.rule_id, per_rule=False)
    return df[df["rule_id"] == "(all rules 全規則)"].reset_index(drop=True)


def _record_where(sel: Selection) -> tuple[str, list]:
    where, params = rd.strata_where(sel.scope, "v")
    cond, out = ["v.run_id = ?", where], [sel.run_id, *params]
    if sel.rule_id is not None:
        cond.append("v.rule_id = ?")
        out.append(sel.rule_id)
    else:
        cond.append("v.rule_id IN (SELECT rule_id FROM rule_results WHERE run_id = ? AND level = ?)")
        out += [sel.run_id, sel.level]
    if sel.review_state is not None:
        cond.append(_REVIEW_CONDITIONS[sel.review_state])
        out += [sel.review_state] if sel.review_state in ("acknowledged", "justified", "corrected") else []
        out += [sel.run_id] if sel.review_state == "still_present" else []
    return " AND ".join(cond), out


#: The record list's review-state filter: value → label (JA/EN).
REVIEW_FILTERS = {
    "open": "未対応 open",
    "acknowledged": "確認中 acknowledged",
    "justified": "正当な例外 justified",
    "corrected": "訂正済み corrected",
    "still_present": "訂正済みだが再検出 marked corrected, still present",
}
_MARKED = (
    "EXISTS (SELECT 1 FROM review_marks m WHERE m.rule_id = v.rule_id AND m.entity = v.entity"
    " AND m.entity_id = v.entity_id AND m.mark_id = (SELECT max(x.mark_id) FROM review_marks x"
    " WHERE x.rule_id = v.rule_id AND x.entity = v.entity AND x.entity_id = v.entity_id) AND {})"
)
_REVIEW_CONDITIONS = {
    "none": "FALSE",  # a file without review_marks: nothing is in a marked state
    "open": "NOT " + _MARKED.format("m.state <> 'open'"),
    "acknowledged": _MARKED.format("m.state = ?"),
    "justified": _MARKED.format("m.state = ?"),
    "corrected": _MARKED.format("m.state = ?"),
    "still_present": _MARKED.format(
        f"m.state = 'corrected' AND m.marked_at < (SELECT rd.data_at FROM ({marks.RUN_DATA_SQL}) rd"
        " WHERE rd.run_id = ?)"
    ),
}


#: The review counts the record list shows, in order: (column of summary.mark_counts, label JA/EN).
REVIEW_COUNT_LABELS = (
    ("violated", "違反 violated"),
    ("not_evidenced", "記録なし not evidenced"),
    ("open", "未対応 open"),
    ("acknowledged", "確認中 acknowledged"),
    ("justified", "正当な例外 justified"),
    ("corrected_pending", "訂正済み（次回の監査で確認） marked corrected, next run will tell"),
    ("corrected_still_present", "訂正済みだが再検出 marked corrected, still present"),
)


def review_counts(con: duckdb.DuckDBPyConnection, sel: Selection) -> dict[str, int]:
    """Distinct findings of the selection (its rule, or every rule of its level) by current review state.

    Keys: :data:`toolkit.review.summary.COUNT_COLUMNS`. Marks never change the audit's counts: a
    justified finding is still violated. One aggregate over the selection's violations.
    """
    where, params = _record_where(sel.with_(review_state=None))
    df = review_summary.mark_counts(con, sel.run_id, where, params)
    return {c: int(df[c].sum()) for c in review_summary.COUNT_COLUMNS}


def page_marks(
    con: duckdb.DuckDBPyConnection, run_id: str, keys: Sequence[marks.Key]
) -> dict[marks.Key, dict[str, object]]:
    """The latest mark of each of ``keys`` (one page: at most a few dozen) that has one.

    Values: ``state``, ``marked_by``, ``note``, ``still_present`` (marked corrected before the
    run's data was loaded, and flagged by it). Keys without a mark are ``open`` and left out.
    """
    if not keys or not marks.has_marks_table(con):
        return {}
    values = ", ".join("(?, ?, ?)" for _ in keys)
    sql = (
        f"WITH k(rule_id, entity, entity_id) AS (VALUES {values}), rd AS ({marks.RUN_DATA_SQL})"
        " SELECT m.rule_id, m.entity, m.entity_id, m.state, m.marked_by, m.note,"
        " coalesce(m.state = 'corrected' AND m.marked_at < (SELECT data_at FROM rd WHERE run_id = ?), false)"
        " FROM review_marks m JOIN k ON k.rule_id = m.rule_id AND k.entity = m.entity"
        " AND k.entity_id = m.entity_id"
        " QUALIFY row_number() OVER (PARTITION BY m.rule_id, m.entity, m.entity_id ORDER BY m.mark_id DESC) = 1"
    )
    params = [str(v) for key in keys for v in key] + [run_id]
    return {
        (r, e, i): {"state": st, "marked_by": by, "note": note, "still_present": bool(sp)}
        for r, e, i, st, by, note, sp in con.execute(sql, params).fetchall()
    }


def record_count(con: duckdb.DuckDBPyConnection, sel: Selection) -> int:
    """How many violating records the selection holds (violated and not evidenced)."""
    where, params = _record_where(sel)
    return int(con.execute(f"SELECT count(*) FROM violations v WHERE {where}", params).fetchone()[0])


def record_page(
    con: duckdb.DuckDBPyConnection, sel: Selection, page: int = 0, page_size: int = PAGE_SIZE
) -> pd.DataFrame:
    """One page of the selection's violating records, ids only (:data:`RECORD_COLUMNS`)."""
    where, params = _record_where(sel)
    cols = ", ".join(f"v.{c}" for c in RECORD_COLUMNS)
    sql = (
        f"SELECT {cols} FROM violations v WHERE {where}"
        " ORDER BY v.rule_id, v.month NULLS LAST, v.institution_id, v.doctor_id, v.entity_id"
        " LIMIT ? OFFSET ?"
    )
    return con.execute(sql, [*params, int(page_size), int(page) * int(page_size)]).df()


def record_batches(
    con: duckdb.DuckDBPyConnection, sel: Selection, batch_size: int = 50_000
) -> Iterator[tuple[object, ...]]:
    """Every record of the selection as tuples in :data:`RECORD_COLUMNS` order, streamed in batches."""
    where, params = _record_where(sel)
    cols = ", ".join(f"v.{c}" for c in RECORD_COLUMNS)
    cur = con.execute(
        f"SELECT {cols} FROM violations v WHERE {where}"
        " ORDER BY v.rule_id, v.month NULLS LAST, v.institution_id, v.doctor_id, v.entity_id",
        params,
    )
    while rows := cur.fetchmany(batch_size):
        yield from rows


@dataclass(frozen=True)
class Comparison:
    """New / persisting / resolved records against the previous complete run, or why there is none."""

    previous_run_id: str | None
    changes: pd.DataFrame
    reason: str | None


def comparison(con: duckdb.DuckDBPyConnection, sel: Selection) -> Comparison:
    """Per rule changes since the previous complete run, limited to the selected rule (or level)."""
    prev = rd.previous_run_id(con, sel.run_id)
    empty = pd.DataFrame(columns=["rule_id", "new", "resolved", "persisting"])
    if prev is None:
        return Comparison(
            None,
            empty,
            "比較できる前回の完全な監査がありません（この監査がデータベースで最初の完全な監査です）。"
            " No earlier complete run to compare with: this is the first complete audit in the database.",
        )
    if sel.rule_id is not None:
        rule_ids = [sel.rule_id]
    else:
        rule_ids = [
            r[0]
            for r in con.execute(
                "SELECT rule_id FROM rule_results WHERE run_id = ? AND level = ?", [sel.run_id, sel.level]
            ).fetchall()
        ]
    changes = rd.violation_changes(con, sel.run_id, prev, sel.scope, rule_ids)
    reason = None
    if changes.empty:
        reason = (
            f"前回 {prev} と今回のどちらにも、この選択の違反・記録なしはありません。"
            f" Neither this run nor the previous one ({prev}) has findings in this selection."
        )
    return Comparison(prev, changes.reset_index(drop=True), reason)


def parse_db_env(default: str) -> str:
    """The database the notebook shows: ``OCAUDIT_DB`` (set by ``ocaudit dashboard``) or ``default``."""
    return os.environ.get("OCAUDIT_DB") or default


__all__ = [
    "PAGE_SIZE",
    "RECORD_COLUMNS",
    "Comparison",
    "Overview",
    "Selection",
    "UserError",
    "check_database",
    "comparison",
    "doctors",
    "institutions",
    "months",
    "overview",
    "providers",
    "reading",
    "record_batches",
    "record_count",
    "record_page",
    "runs",
    "trend",
]
