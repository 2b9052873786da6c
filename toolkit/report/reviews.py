"""Review-mark counts of a run for the report and the feedback sheets (:func:`review_summary`).

The counting itself is :mod:`toolkit.review.summary` (SQL); this module assembles what the templates
and the ``--fail-on`` thresholds read, for a scope of the run, one doctor, or every doctor at once
(:class:`DoctorReviews`, for a feedback run).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from toolkit.report.data import (
    FrameSlices,
    Scope,
    section_group,
    section_key,
    strata_where,
    violation_changes,
)
from toolkit.review import summary as review_summary_mod


class DoctorReviews:
    """Review-mark counts of every doctor of a run, read in a few queries: a feedback run's sheets
    take their slice instead of querying per doctor (tens of thousands at 10M sessions)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str, source: str = "violations") -> None:
        self.run_id = run_id
        self.counts = FrameSlices(
            review_summary_mod.mark_counts(con, run_id, source=source, by="doctor_id"), "doctor_id"
        )
        self.present = FrameSlices(
            review_summary_mod.still_present(con, run_id, source=source, by="doctor_id"),
            "doctor_id",
            keep_column=True,  # a still-present finding is listed with its doctor
        )
        self.meta = _review_meta(con, run_id)
        self.any_marks = review_summary_mod.any_marks(con)


def _review_meta(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, dict]:
    """rule_id → level, section and titles of the run's rules."""
    rows = con.execute(
        "SELECT rule_id, level, section, title_ja, title_en FROM rule_results WHERE run_id = ?", [run_id]
    ).fetchall()
    return {r[0]: {"level": r[1], "section": r[2], "title_ja": r[3], "title_en": r[4]} for r in rows}


def review_summary(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    prev_run_id: str | None = None,
    scope: Scope | None = None,
    doctor: str | None = None,
    changes: pd.DataFrame | None = None,
    source: str = "violations",
    doctors: DoctorReviews | None = None,
) -> dict:
    """Review marks of the run's findings in ``scope`` (and of one ``doctor``), for templates and thresholds.

    Keys: ``rules`` (per rule: :data:`toolkit.review.summary.ALL_COLUMNS`, level and titles),
    ``totals``, ``still_present`` (findings marked corrected and still flagged), ``justified``
    (rule → count, for ``--except justified``), ``any_marks``, ``prev_id``. ``changes``: the
    run's :func:`violation_changes` if the caller has it (resolved findings are matched to marks).
    ``scope`` None = the whole run. ``doctors``: every doctor's counts read beforehand (with ``doctor``
    and no scope or previous run).
    """
    scope = Scope() if scope is None else scope
    if doctors is not None:
        if doctor is None or prev_run_id is not None or scope != Scope() or doctors.run_id != run_id:
            raise ValueError("doctors= serves one doctor of its own run, with no scope or previous run")
        counts, present = doctors.counts.of(doctor), doctors.present.of(doctor)
        return _review_dict(counts, None, doctors.meta, present, doctors.any_marks, None)
    where, params = strata_where(scope, "v")
    if doctor is not None:
        where, params = f"{where} AND v.doctor_id = ?", [*params, doctor]
    resolved = None
    if prev_run_id is not None and doctor is None:
        changes = violation_changes(con, run_id, prev_run_id, scope) if changes is None else changes
        rules = list(changes.loc[changes["resolved"] > 0, "rule_id"])
        resolved = review_summary_mod.resolved_marked(con, run_id, prev_run_id, rules, where, params)
    counts = review_summary_mod.mark_counts(con, run_id, where, params, source)
    present = review_summary_mod.still_present(con, run_id, where, params, source=source)
    return _review_dict(
        counts,
        resolved,
        _review_meta(con, run_id),
        present,
        review_summary_mod.any_marks(con),
        prev_run_id if doctor is None else None,
    )


def _review_dict(
    counts: pd.DataFrame,
    resolved: pd.DataFrame | None,
    meta: dict[str, dict],
    present: pd.DataFrame,
    any_marks: bool,
    prev_id: str | None,
) -> dict:
    """What :func:`review_summary` returns, from its parts (plain Python: a feedback run calls it
    once per doctor)."""
    columns = review_summary_mod.ALL_COLUMNS
    blank = dict.fromkeys(("level", "section", "title_ja", "title_en"))
    by_rule: dict[str, dict] = {}
    for part in (counts, resolved):
        for row in [] if part is None else part.to_dict("records"):
            entry = by_rule.setdefault(
                row["rule_id"],
                {"rule_id": row["rule_id"], **dict.fromkeys(columns, 0), **meta.get(row["rule_id"], blank)},
            )
            for c in columns:
                if c in row and not pd.isna(row[c]):
                    entry[c] = int(row[c])
    rules = sorted(
        by_rule.values(),
        key=lambda r: (
            r["level"] is None,
            r["level"] or "",
            section_key(section_group(r["section"] or "")),
            r["rule_id"],
        ),
    )
    return {
        "rules": rules,
        "totals": {c: sum(r[c] for r in rules) for c in columns},
        "still_present": present.astype(object).where(present.notna(), None).to_dict("records"),
        "justified": {r["rule_id"]: r["justified"] for r in rules if r["justified"]},
        "any_marks": any_marks,
        "prev_id": prev_id,
    }
