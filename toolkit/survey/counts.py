"""Exact EC survey counts from the database: one value per owned cell of the layout (local use only)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from toolkit.rules import facts
from toolkit.survey.tables import (
    CONDITIONS,
    DIMENSIONS,
    EC_RULES,
    build_layout,
    cell,
)

# Exact counts from the database


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


#: The session's start in Japan time, as the audit reads it (:func:`toolkit.rules.facts.japan_time`).
JST_START = facts.japan_time("s.started_at")


def _session_filter(months: list[str], institution: str | None) -> tuple[str, list[Any]]:
    marks = ", ".join("?" for _ in months)
    sql = f"strftime({JST_START}, '%Y-%m') IN ({marks})"
    params: list[Any] = list(months)
    if institution is not None:
        sql += " AND s.institution_id = ?"
        params.append(institution)
    return sql, params


def ec_case_rows(
    con: duckdb.DuckDBPyConnection, months: list[str], institution: str | None, as_of: dt.date | None = None
) -> list[dict[str, Any]]:
    """One dict per EC case in the period, with the fields the tables need (exact, local use only).

    The categories the EC rules are judged on (prescriber class, follow-up window and status,
    adult) and the EC tablet lines come from the same SQL as the audit's
    (:mod:`toolkit.rules.facts`); ``follow_up_status`` is NULL when ``as_of`` is not given.
    """
    where, params = _session_filter(months, institution)
    as_of_sql = "NULL::DATE" if as_of is None else f"DATE '{as_of.isoformat()}'"
    sql = f"""WITH drug_flags AS ({facts.DRUG_FLAGS_SELECT}),
lines AS ({facts.ec_lines_select("drug_flags")}),
cases AS (
  SELECT e.*, s.doctor_id, s.patient_id,
    strftime({JST_START}, '%Y-%m') AS month, CAST({JST_START} AS DATE) AS sdate
  FROM ec_cases e JOIN sessions s ON s.session_id = e.session_id
  WHERE {where})
SELECT c.session_id, c.reason, c.referred_by_support_center, c.assault_suspected,
  c.police_or_onestop_referred, c.child_guidance_notified, c.contraception_counselled, c.month, c.sdate,
  {facts.ec_prescriber_class("d.doctor_id", "d.specialty", "d.ec_training_on", "c.sdate")} AS prescriber,
  {facts.ec_follow_up_window("c.follow_up_due_on", "c.sdate")} AS follow_up_window,
  {facts.ec_follow_up_status("c.follow_up_due_on", "c.follow_up_visited_on", as_of_sql)} AS follow_up_status,
  {facts.adult("pt.birth_date", "pt.birth_year", "c.sdate")} AS adult,
  pt.birth_date, pt.birth_year,
  coalesce(l.n_lines, 0) AS n_lines, l.min_q, l.outside, l.pharmacist_trained, l.witnessed_intake
FROM cases c
LEFT JOIN doctors d ON d.doctor_id = c.doctor_id
LEFT JOIN patients pt ON pt.patient_id = c.patient_id
LEFT JOIN lines l ON l.session_id = c.session_id
ORDER BY c.session_id"""
    return _rows(con, sql, params)


def age_range(
    birth_date: dt.date | None, birth_year: int | None, on: dt.date | None
) -> tuple[int, int] | None:
    """(youngest, oldest) possible age on ``on``; exact when birth_date is known; None if unknown."""
    if on is None:
        return None
    if birth_date is not None:
        age = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
        return (age, age) if 0 <= age <= 120 else None
    if birth_year is not None:
        yd = on.year - int(birth_year)
        return (yd - 1, yd) if 1 <= yd <= 121 else None
    return None


def age_band(ages: tuple[int, int] | None) -> str:
    """Band key of an age range: the band if both ends agree, ``boundary`` if not, ``unknown`` if None."""
    if ages is None:
        return "unknown"

    def band(a: int) -> str:
        if a < 16:
            return "u16"
        if a < 18:
            return "16_17"
        if a < 20:
            return "18_19"
        if a < 50:
            return f"{a // 10 * 10}s"
        return "50p"

    lo, hi = band(ages[0]), band(ages[1])
    return lo if lo == hi else "boundary"


def _tri(v: Any) -> str:
    return "unknown" if v is None else ("yes" if v else "no")


def case_facts(c: dict[str, Any]) -> dict[str, str]:
    """The category of one EC case on each dimension of the tables (a row of :func:`ec_case_rows`)."""
    ages = age_range(c["birth_date"], c["birth_year"], c["sdate"])
    n = c["n_lines"]
    if n == 0:
        single = "unknown"
    elif n > 1:
        single = "no"
    elif c["min_q"] is None:
        single = "unknown"
    else:
        single = "yes" if c["min_q"] == 1 else "no"
    line_tri = {
        k: ("unknown" if n == 0 else _tri(c[k]))
        for k in ("outside", "pharmacist_trained", "witnessed_intake")
    }
    minor = {False: "minor", True: "adult"}.get(c["adult"], "age_unknown")
    return {
        "month": c["month"],
        "age": age_band(ages),
        "reason": c["reason"] or "unknown",
        "route": _tri(c["referred_by_support_center"]),
        "prescriber": c["prescriber"],
        "single_tablet": single,
        **line_tri,
        "contraception_counselled": _tri(c["contraception_counselled"]),
        "window": c["follow_up_window"],
        "status": c["follow_up_status"],
        "suspected": _tri(c["assault_suspected"]),
        "referred": _tri(c["police_or_onestop_referred"]),
        "minor": minor,
        "cg": _tri(c["child_guidance_notified"]),
    }


def t6_rows(
    con: duckdb.DuckDBPyConnection, months: list[str], institution: str | None
) -> list[dict[str, Any]]:
    """Per month: first-visit online_care sessions with a prescription and the three flagged counts."""
    where, params = _session_filter(months, institution)
    sql = f"""WITH drug_flags AS ({facts.DRUG_FLAGS_SELECT}),
per_session AS (
  SELECT s.session_id, strftime({JST_START}, '%Y-%m') AS month,
    {facts.history_known("s")} IS TRUE AS hk,
    bool_or(coalesce(f.narcotic, FALSE) OR coalesce(f.psychotropic, FALSE)) AS narc_psych,
    bool_or(coalesce(f.high_risk, FALSE)) AS high_risk,
    bool_or(coalesce(r.days_supply >= 8, FALSE)) AS over7
  FROM sessions s JOIN prescriptions r ON r.session_id = s.session_id
  LEFT JOIN drug_flags f ON f.drug_code = r.drug_code
  WHERE s.kind = 'online_care' AND s.is_first_visit IS TRUE AND {where}
  GROUP BY ALL)
SELECT month, count(*) AS sessions,
  count(*) FILTER (WHERE narc_psych) AS narc_psych,
  count(*) FILTER (WHERE high_risk AND NOT hk) AS high_risk,
  count(*) FILTER (WHERE over7 AND NOT hk) AS over7
FROM per_session GROUP BY month ORDER BY month"""
    return _rows(con, sql, params)


def compute_counts(
    con: duckdb.DuckDBPyConnection,
    months: list[str],
    institution: str | None,
    as_of: dt.date,
    t5: dict[str, dict[str, int]] | None,
) -> dict[str, int]:
    """Exact value of every owned cell of the layout (zeros included).

    ``t5``: per EC rule ``{"in_scope", "violated", "not_evidenced", "available"}`` from the audit run
    (None: no run).
    """
    layout = build_layout(months)
    values = {c: 0 for ids in layout.owned.values() for c in ids}
    cases = ec_case_rows(con, months, institution, as_of)
    case_cats = [case_facts(c) for c in cases]
    for f in case_cats:
        for col in (f["month"], "total"):
            values[cell("T1", "all", col)] += 1
            for dim, *_ in DIMENSIONS:
                values[cell("T1", f"{dim}:{f[dim]}", col)] += 1
        for k, *_ in CONDITIONS:
            values[cell("T2", k, {"yes": "met", "no": "not_met"}.get(f[k], "unknown"))] += 1
        values[cell("T3", f["window"], "count")] += 1
        values[cell("T3", f["status"], "count")] += 1
        if f["status"] in ("completed", "overdue"):
            values[cell("T3", "settled", "count")] += 1
        values[cell("T4", f"suspected_{f['suspected']}", "count")] += 1
        if f["suspected"] == "yes":
            values[cell("T4", f"referred_{f['referred']}", "count")] += 1
            values[cell("T4", f["minor"], "count")] += 1
            if f["minor"] == "minor":
                values[cell("T4", f"cg_{f['cg']}", "count")] += 1
    if t5:
        for rule, _, _ in EC_RULES:
            r = t5.get(rule)
            if not r or not r.get("available"):
                continue
            values[cell("T5", rule, "available")] = 1
            values[cell("T5", rule, "in_scope")] = r["in_scope"]
            values[cell("T5", rule, "violated")] = r["violated"]
            values[cell("T5", rule, "not_evidenced")] = r["not_evidenced"]
            values[cell("T5", rule, "compliant")] = max(0, r["in_scope"] - r["violated"] - r["not_evidenced"])
    for r in t6_rows(con, months, institution):
        for k in ("sessions", "narc_psych", "high_risk", "over7"):
            values[cell("T6", r["month"], k)] += int(r[k])
            values[cell("T6", "total", k)] += int(r[k])
    return values
