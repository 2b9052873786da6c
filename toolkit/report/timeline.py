"""One doctor's sessions on a time line: the only reader of the raw ``sessions`` table in reporting.

Used by the report's overlap chart and notebook 02 (exam.one_patient_at_a_time).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from toolkit.report.data import Scope, strata_where


def timeline_frame(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    doctor_id: str,
    start: str | None = None,
    end: str | None = None,
) -> pd.DataFrame:
    """One doctor's sessions in a date window (Japan time), with overlap lanes and violation flags.

    Reads the raw ``sessions`` table for that doctor only. Without ``start``/``end`` the window is
    the month with most exam.one_patient_at_a_time violations of the doctor (else the latest month).
    Columns: session_id, kind, start, end (naive Japan time), lane (0 = first free row), overlapping
    (bool: in the run's violations of exam.one_patient_at_a_time).
    """
    from datetime import date, timedelta, timezone

    if start is None or end is None:
        row = con.execute(
            "SELECT v.month FROM violations v JOIN sessions s ON s.session_id = v.entity_id"
            " WHERE v.run_id = ? AND v.doctor_id = ? AND v.rule_id = 'exam.one_patient_at_a_time'"
            " AND v.month IS NOT NULL GROUP BY v.month ORDER BY count(*) DESC, v.month DESC LIMIT 1",
            [run_id, doctor_id],
        ).fetchone()
        if row is None:
            row = con.execute(
                "SELECT strftime(max(started_at), '%Y-%m') FROM sessions WHERE doctor_id = ?", [doctor_id]
            ).fetchone()
        if row is None or row[0] is None:
            return pd.DataFrame(columns=["session_id", "kind", "start", "end", "lane", "overlapping"])
        y, mth = (int(x) for x in row[0].split("-"))
        start = date(y, mth, 1).isoformat()
        end = (date(y + mth // 12, mth % 12 + 1, 1)).isoformat()
    jst = timezone(timedelta(hours=9))
    df = con.execute(
        "SELECT s.session_id, s.kind, s.started_at, s.ended_at, v.entity_id IS NOT NULL AS overlapping"
        " FROM sessions s LEFT JOIN (SELECT DISTINCT entity_id FROM violations WHERE run_id = ?"
        "  AND rule_id = 'exam.one_patient_at_a_time') v ON v.entity_id = s.session_id"
        " WHERE s.doctor_id = ? AND s.started_at >= CAST(? AS TIMESTAMPTZ) - INTERVAL 9 HOUR"
        " AND s.started_at < CAST(? AS TIMESTAMPTZ) - INTERVAL 9 HOUR AND s.ended_at IS NOT NULL"
        " ORDER BY s.started_at, s.session_id",
        [run_id, doctor_id, f"{start} 00:00:00+00", f"{end} 00:00:00+00"],
    ).df()
    df["start"] = pd.to_datetime(df.pop("started_at"), utc=True).dt.tz_convert(jst).dt.tz_localize(None)
    df["end"] = pd.to_datetime(df.pop("ended_at"), utc=True).dt.tz_convert(jst).dt.tz_localize(None)
    lanes: list = []
    lane_of = []
    for s, e in zip(df["start"], df["end"], strict=True):
        for i, busy_until in enumerate(lanes):
            if busy_until <= s:
                lanes[i] = e
                lane_of.append(i)
                break
        else:
            lanes.append(e)
            lane_of.append(len(lanes) - 1)
    df["lane"] = lane_of
    return df


def busiest_overlap_doctor(
    con: duckdb.DuckDBPyConnection, run_id: str, scope: Scope | None = None
) -> str | None:
    """The doctor with most exam.one_patient_at_a_time violations whose sessions are in the database."""
    where, params = strata_where(scope or Scope(), "v")
    row = con.execute(
        "SELECT v.doctor_id FROM violations v JOIN sessions s ON s.session_id = v.entity_id"
        " WHERE v.run_id = ? AND v.rule_id = 'exam.one_patient_at_a_time' AND v.doctor_id IS NOT NULL"
        f" AND {where} GROUP BY v.doctor_id ORDER BY count(*) DESC, v.doctor_id LIMIT 1",
        [run_id, *params],
    ).fetchone()
    return row[0] if row else None
