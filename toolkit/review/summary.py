"""Review marks summed per rule for one run: what reports, feedback sheets and the dashboard show.

Every finding of the run is counted once under its current state: ``open`` (never marked or
re-opened), ``acknowledged``, ``justified``, ``corrected_pending`` (marked corrected after the
run's data was loaded: the next run will tell) and ``corrected_still_present`` (marked corrected
before the run's data was loaded, and the run still flags it — the signal that matters most).
Marks never change the counts or rates of the audit: a justified finding still counts as violated.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

from toolkit.review.marks import _EMPTY_LATEST, LATEST_SQL, RUN_DATA_SQL, has_marks_table

COUNT_COLUMNS = (
    "findings",
    "violated",
    "not_evidenced",
    "open",
    "acknowledged",
    "justified",
    "corrected_pending",
    "corrected_still_present",
)

RESOLVED_COLUMNS = ("resolved", "resolved_marked", "resolved_corrected")
ALL_COLUMNS = (*COUNT_COLUMNS, *RESOLVED_COLUMNS)


def _source(source: str) -> str:
    if not source.replace("_", "").isalpha():
        raise ValueError("source must be a plain table name")
    return source


def _latest(con: duckdb.DuckDBPyConnection) -> str:
    return LATEST_SQL if has_marks_table(con) else _EMPTY_LATEST


def any_marks(con: duckdb.DuckDBPyConnection) -> bool:
    """True when any finding has ever been marked."""
    return has_marks_table(con) and con.execute("SELECT count(*) FROM review_marks").fetchone()[0] > 0


#: Columns the counts may also be grouped by (``by=``): a feedback run reads every doctor's at once.
GROUP_COLUMNS = ("doctor_id",)


def _by(by: str | None) -> str:
    if by is not None and by not in GROUP_COLUMNS:
        raise ValueError(f"by must be one of {GROUP_COLUMNS}")
    return "" if by is None else f"v.{by}, "


def mark_counts(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    where: str = "TRUE",
    params: Sequence[object] = (),
    source: str = "violations",
    by: str | None = None,
) -> pd.DataFrame:
    """Per rule with findings in the run: :data:`COUNT_COLUMNS` (findings by current state).

    ``where``: an extra SQL condition on the run's violations (alias ``v``), e.g. one institution;
    ``source``: a table with the violations layout (e.g. a per-doctor temp copy); ``by``: also
    per value of this column (:data:`GROUP_COLUMNS`), which then comes first.

    Bounded at any size: the findings are counted per rule (the audit writes one row per rule ×
    record), and only the marked ones are joined with the latest marks (a hash join whose build side
    is the marks, not the millions of findings); ``open`` is the rest.
    """
    src, g = _source(source), _by(by)
    on = "m.rule_id = t.rule_id" + ("" if by is None else f" AND m.{by} IS NOT DISTINCT FROM t.{by}")
    sql = (
        f"WITH rd AS ({RUN_DATA_SQL}), latest AS ({_latest(con)}),"
        f" t AS (SELECT {g}v.rule_id, count(*) AS findings,"
        " count(*) FILTER (WHERE v.status = 'violated') AS violated,"
        " count(*) FILTER (WHERE v.status = 'not_evidenced') AS not_evidenced"
        f" FROM {src} v WHERE v.run_id = ? AND ({where}) GROUP BY ALL),"
        f" m AS (SELECT {g}v.rule_id,"
        " count(*) FILTER (WHERE l.state = 'acknowledged') AS acknowledged,"
        " count(*) FILTER (WHERE l.state = 'justified') AS justified,"
        " count(*) FILTER (WHERE l.state = 'corrected' AND l.marked_at >= r.data_at) AS corrected_pending,"
        " count(*) FILTER (WHERE l.state = 'corrected' AND l.marked_at < r.data_at) AS corrected_still_present"
        f" FROM {src} v JOIN latest l ON l.rule_id = v.rule_id AND l.entity = v.entity AND l.entity_id = v.entity_id"
        " LEFT JOIN rd r ON r.run_id = v.run_id"
        f" WHERE v.run_id = ? AND ({where}) AND l.state <> 'open' GROUP BY ALL)"
        f" SELECT {g.replace('v.', 't.')}t.rule_id, t.findings, t.violated, t.not_evidenced,"
        " t.findings - coalesce(m.acknowledged, 0) - coalesce(m.justified, 0)"
        " - coalesce(m.corrected_pending, 0) - coalesce(m.corrected_still_present, 0) AS open,"
        " coalesce(m.acknowledged, 0) AS acknowledged, coalesce(m.justified, 0) AS justified,"
        " coalesce(m.corrected_pending, 0) AS corrected_pending,"
        " coalesce(m.corrected_still_present, 0) AS corrected_still_present"
        f" FROM t LEFT JOIN m ON {on} ORDER BY {g.replace('v.', 't.')}t.rule_id"
    )
    df = con.execute(sql, [run_id, *params, run_id, *params]).df()
    for c in COUNT_COLUMNS:
        df[c] = df[c].astype("int64")
    return df


def still_present(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    where: str = "TRUE",
    params: Sequence[object] = (),
    limit: int = 200,
    source: str = "violations",
    by: str | None = None,
) -> pd.DataFrame:
    """The run's findings marked corrected before its data was loaded (at most ``limit``, ids only).

    Columns: rule_id, entity, entity_id, institution_id, doctor_id, month, marked_by, marked_at, note.
    ``by`` (:data:`GROUP_COLUMNS`): at most ``limit`` per value of that column instead.
    """
    _by(by)
    cap = (
        f" LIMIT {int(limit)}"
        if by is None
        else f" QUALIFY row_number() OVER (PARTITION BY f.{by} ORDER BY f.rule_id, f.entity_id) <= {int(limit)}"
    )
    sql = (
        f"WITH rd AS ({RUN_DATA_SQL}), latest AS ({_latest(con)}),"
        " f AS (SELECT v.rule_id, v.entity, v.entity_id, any_value(v.institution_id) AS institution_id,"
        " any_value(v.doctor_id) AS doctor_id, min(v.month) AS month"
        f" FROM {_source(source)} v WHERE v.run_id = ? AND ({where}) GROUP BY ALL)"
        " SELECT f.*, l.marked_by, strftime(l.marked_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M') AS marked_at, l.note"
        " FROM f JOIN latest l ON l.rule_id = f.rule_id AND l.entity = f.entity AND l.entity_id = f.entity_id"
        " JOIN rd ON rd.run_id = ? WHERE l.state = 'corrected' AND l.marked_at < rd.data_at"
        + (" ORDER BY f.rule_id, f.entity_id" if by is None else "")
        + cap
    )
    df = con.execute(sql, [run_id, *params, run_id]).df()
    return df if by is None else df.sort_values([by, "rule_id", "entity_id"]).reset_index(drop=True)


def resolved_marked(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    prev_run_id: str,
    rules: Sequence[str],
    where: str = "TRUE",
    params: Sequence[object] = (),
) -> pd.DataFrame:
    """Per rule of ``rules``: findings of ``prev_run_id`` the run no longer flags, and how many were marked.

    Columns: rule_id, resolved, resolved_marked (any mark), resolved_corrected (latest mark corrected).
    ``rules``: the rules both runs checked (the caller decides; see report.data.violation_changes).
    """
    cols = ["rule_id", "resolved", "resolved_marked", "resolved_corrected"]
    if not rules:
        return pd.DataFrame(columns=cols)
    marks = ", ".join("?" for _ in rules)
    sql = (
        f"WITH latest AS ({_latest(con)}),"
        " prev AS (SELECT DISTINCT v.rule_id, v.entity, v.entity_id FROM violations v"
        f" WHERE v.run_id = ? AND v.rule_id IN ({marks}) AND ({where})),"
        " cur AS (SELECT DISTINCT v.rule_id, v.entity, v.entity_id FROM violations v"
        f" WHERE v.run_id = ? AND v.rule_id IN ({marks}) AND ({where}))"
        " SELECT p.rule_id, count(*) AS resolved, count(l.mark_id) AS resolved_marked,"
        " count(*) FILTER (WHERE l.state = 'corrected') AS resolved_corrected"
        " FROM prev p ANTI JOIN cur c ON c.rule_id = p.rule_id AND c.entity = p.entity AND c.entity_id = p.entity_id"
        " LEFT JOIN latest l ON l.rule_id = p.rule_id AND l.entity = p.entity AND l.entity_id = p.entity_id"
        " GROUP BY p.rule_id ORDER BY p.rule_id"
    )
    df = con.execute(sql, [prev_run_id, *rules, *params, run_id, *rules, *params]).df()
    return df[cols]
